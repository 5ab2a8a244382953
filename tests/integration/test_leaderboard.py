"""The leaderboard service over HTTP, on a real Redis, checked against a Python reference."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from loadtest.processes import start_service
from stadium_client import LeaderboardClient, LeaderboardError

KEY = "server-key"
AUTH = {"X-API-Key": KEY}


@pytest.fixture(scope="module")
def service(redis_url: str) -> Iterator[str]:
    proc = start_service("leaderboard", "--redis-url", redis_url, "--api-key", KEY)
    yield proc.url
    proc.stop()


def _error(r: httpx.Response) -> str:
    body = r.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    return str(body["error"]["code"])


async def test_board_lifecycle_and_errors(http: httpx.AsyncClient) -> None:
    r = await http.put("/boards/life", json={"order": "desc"})
    assert r.status_code == 401 and _error(r) == "bad_api_key"
    r = await http.put("/boards/life", json={"order": "desc", "periods": ["daily"]}, headers=AUTH)
    assert r.status_code == 201
    r = await http.put("/boards/life", json={"order": "desc", "periods": ["daily"]},
                       headers={"Authorization": f"Bearer {KEY}"})
    assert r.status_code == 200
    r = await http.post("/boards/life/scores", json={"player": "p1", "score": 10})
    assert r.status_code == 401
    r = await http.post("/boards/life/scores", headers=AUTH,
                        json={"player": "p1", "score": 10, "metadata": {"ship": "blue"}})
    assert r.status_code == 200
    assert r.json()["results"][0]["periods"]["all"] == {"score": 10, "rank": 1}
    assert set(r.json()["results"][0]["periods"]) == {"all", "daily"}
    bad: list[tuple[str, str, Any, int, str]] = [
        ("put", "/boards/life", {"order": "asc"}, 409, "board_has_entries"),
        ("put", "/boards/bad{name}", {}, 400, "bad_board_name"),
        ("put", "/boards/x", {"order": "up"}, 422, "invalid_request"),
        ("put", "/boards/x", {"reset_time": "25:00"}, 422, "bad_reset_time"),
        ("post", "/boards/nope/scores", {"player": "a", "score": 1}, 404, "unknown_board"),
        ("post", "/boards/life/scores", {"player": "a", "score": "1"}, 422, "invalid_request"),
        ("post", "/boards/life/scores", {"player": "a b", "score": 1}, 400, "bad_player"),
        ("post", "/boards/life/scores", {"player": "a", "score": 2**60}, 422, "bad_score"),
        ("post", "/boards/life/scores", {"player": "a", "score": 1,
                                         "metadata": "m" * 2000}, 422, "metadata_too_large"),
        ("post", "/boards/life/scores", {"scores": [{"player": "a", "score": 1},
                                                    {"player": "a", "score": 2}]},
         422, "duplicate_player"),
        ("get", "/boards/life?period=weekly", None, 400, "bad_period"),
        ("get", "/boards/life?period=yesterday", None, 400, "bad_period"),
        ("get", "/boards/life?cursor=garbage", None, 400, "bad_cursor"),
        ("get", "/boards/life?limit=0", None, 422, "invalid_request"),
        ("get", "/boards/life/players/ghost", None, 404, "unknown_player"),
        ("delete", "/boards/life/players/ghost", None, 404, "unknown_player"),
        ("get", "/no/such/route", None, 404, "not_found"),
        # `$` in a pattern also matches before a final newline: each of these must be refused.
        ("get", "/boards/life/players/ghost%0A", None, 400, "bad_player"),
        ("get", "/boards/life%0A", None, 400, "bad_board_name"),
        ("get", "/boards/life?period=d:2026-11-23%0A", None, 400, "bad_period"),
        ("put", "/boards/x", {"reset_time": "00:00\n"}, 422, "bad_reset_time"),
    ]
    for method, url, body, status, code in bad:
        kw: dict[str, Any] = {"headers": AUTH}
        if body is not None:
            kw["json"] = body
        r = await http.request(method.upper(), url, **kw)
        assert (r.status_code, _error(r)) == (status, code), (method, url, r.text)
    # NaN and infinities are not JSON, but some encoders send them: refused, nothing written.
    for raw in (b'{"player": "n", "score": NaN}', b'{"player": "n", "score": Infinity}'):
        r = await http.post("/boards/life/scores", content=raw,
                            headers={**AUTH, "Content-Type": "application/json"})
        assert r.status_code == 422, r.text
    assert (await http.get("/boards/life/players/n")).status_code == 404
    r = await http.get("/boards/life")
    assert r.json()["entries"] == [{"rank": 1, "player": "p1", "score": 10,
                                    "metadata": {"ship": "blue"}}]
    r = await http.delete("/boards/life/players/p1", headers=AUTH)
    assert r.json()["removed_from_periods"] == 2
    assert (await http.get("/boards/life")).json()["entries"] == []


async def test_incr_overflow_writes_nothing(http: httpx.AsyncClient) -> None:
    await http.put("/boards/coins", json={"operator": "incr"}, headers=AUTH)
    await http.post("/boards/coins/scores", json={"player": "rich", "score": 2**53 - 10},
                    headers=AUTH)
    r = await http.post("/boards/coins/scores", headers=AUTH, json={"scores": [
        {"player": "poor", "score": 5}, {"player": "rich", "score": 100}]})
    assert r.status_code == 422 and _error(r) == "score_out_of_range"
    assert (await http.get("/boards/coins/players/poor")).status_code == 404
    r = await http.post("/boards/coins/scores", headers=AUTH, json={"scores": [
        {"player": "poor", "score": 5}, {"player": "rich", "score": 1}]})
    assert r.json()["results"][1]["periods"]["all"]["score"] == 2**53 - 9


async def test_openapi_health_metrics(http: httpx.AsyncClient) -> None:
    assert (await http.get("/healthz")).json() == {"status": "ok"}
    spec = (await http.get("/openapi.json")).json()
    assert "/boards/{board}/scores" in spec["paths"]
    assert (await http.get("/docs")).status_code == 200
    text = (await http.get("/metrics")).text
    assert "stadium_leaderboard_requests_total" in text


def _sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text (0 when absent), labels in any order."""
    for line in text.splitlines():
        head, _, value = line.rpartition(" ")
        metric, _, rest = head.partition("{")
        found = dict(pair.split("=", 1) for pair in rest.rstrip("}").split(",") if pair)
        if metric == name and found == {k: f'"{v}"' for k, v in labels.items()}:
            return float(value)
    return 0.0


async def test_metrics_count_every_request_by_route_and_status(http: httpx.AsyncClient) -> None:
    rank, submit = "/boards/{board}/players/{player}", "/boards/{board}/scores"
    before = (await http.get("/metrics")).text
    await http.put("/boards/counted", json={}, headers=AUTH)
    for i in range(3):
        r = await http.post("/boards/counted/scores", json={"player": f"c{i}", "score": i},
                            headers=AUTH)
        assert r.status_code == 200
    assert (await http.get("/boards/counted/players/c1")).status_code == 200
    assert (await http.get("/boards/counted/players/ghost")).status_code == 404
    assert (await http.post("/boards/counted/scores", json={"player": "x", "score": "1"},
                            headers=AUTH)).status_code == 422  # served by the framework
    after = (await http.get("/metrics")).text
    total = "stadium_leaderboard_requests_total"

    def grew(text: str, route: str, status: str) -> float:
        return _sample(text, total, route=route, status=status) - \
            _sample(before, total, route=route, status=status)

    assert grew(after, submit, "200") == 3
    assert grew(after, submit, "422") == 1
    assert grew(after, rank, "200") == 1
    assert grew(after, rank, "404") == 1
    assert grew(after, "/boards/{board}", "201") + grew(after, "/boards/{board}", "200") == 1
    count = "stadium_leaderboard_request_seconds_count"
    inf = "stadium_leaderboard_request_seconds_bucket"
    assert _sample(after, count, route=rank) - _sample(before, count, route=rank) == 2
    assert _sample(after, inf, route=rank, le="+Inf") == _sample(after, count, route=rank)
    assert _sample(after, inf, route=submit, le="0.0005") <= \
        _sample(after, inf, route=submit, le="1.0") <= _sample(after, count, route=submit)


class Reference:
    """What a desc `best` board must answer, computed in Python."""

    def __init__(self) -> None:
        self.best: dict[str, tuple[float, int]] = {}  # player -> (score, batch reached)

    def submit(self, batch: int, scores: dict[str, int]) -> None:
        for p, s in scores.items():
            old = self.best.get(p)
            if old is None or s > old[0]:
                self.best[p] = (s, batch)

    def order(self) -> list[str]:
        # Equal scores: earlier batch first; same batch (same millisecond): higher id first.
        by_id_desc = sorted(self.best, reverse=True)
        return sorted(by_id_desc, key=lambda p: (-self.best[p][0], self.best[p][1]))


async def test_hundred_thousand_players_against_reference(http: httpx.AsyncClient) -> None:
    rng = random.Random(7)
    await http.put("/boards/big", json={"periods": ["daily", "monthly"]}, headers=AUTH)
    ref = Reference()
    players = [f"p{i:06d}" for i in range(100_000)]
    batch_no = 0

    async def send(scores: dict[str, int]) -> None:
        nonlocal batch_no
        r = await http.post("/boards/big/scores", headers=AUTH, json={"scores": [
            {"player": p, "score": s} for p, s in scores.items()]})
        assert r.status_code == 200, r.text
        ref.submit(batch_no, scores)
        batch_no += 1
        await asyncio.sleep(0.002)  # each batch in a later millisecond than the one before

    for i in range(0, len(players), 1000):
        await send({p: rng.randrange(5000) for p in players[i:i + 1000]})  # many ties
    for _ in range(10):
        chosen = rng.sample(players, 1000)
        await send({p: rng.randrange(6000) for p in chosen})
    order = ref.order()
    rank = {p: i + 1 for i, p in enumerate(order)}

    # Every entry, through cursor pages.
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 1000}
        if cursor:
            params["cursor"] = cursor
        page = (await http.get("/boards/big", params=params)).json()
        for e in page["entries"]:
            assert e["rank"] == len(seen) + 1
            assert e["score"] == ref.best[e["player"]][0]
            seen.append(e["player"])
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == order

    for p in rng.sample(players, 200):
        r = (await http.get(f"/boards/big/players/{p}")).json()
        assert (r["rank"], r["score"]) == (rank[p], ref.best[p][0])
    for p in rng.sample(players, 50):
        r = (await http.get(f"/boards/big/players/{p}/around", params={"n": 5})).json()
        lo = max(0, rank[p] - 1 - 5)
        assert [e["player"] for e in r["entries"]] == order[lo:rank[p] + 5]
    for _ in range(20):
        friends = rng.sample(players, 50) + ["nobody"]
        r = (await http.post("/boards/big/ranks", json={"players": friends})).json()
        assert [e["player"] for e in r["entries"]] == sorted(friends[:-1], key=rank.__getitem__)
        assert [e["rank"] for e in r["entries"]] == sorted(rank[f] for f in friends[:-1])
        assert r["missing"] == ["nobody"]
    # Everything was submitted today: the daily and monthly periods hold the same ranking.
    for period in ("daily", "monthly"):
        top = (await http.get("/boards/big", params={"period": period, "limit": 500})).json()
        assert [e["player"] for e in top["entries"]] == order[:500]


async def test_cursor_paging_stays_correct_while_scores_change(http: httpx.AsyncClient) -> None:
    await http.put("/boards/moving", json={}, headers=AUTH)
    await http.post("/boards/moving/scores", headers=AUTH, json={"scores": [
        {"player": f"m{i:02d}", "score": 100 - i} for i in range(30)]})
    first = (await http.get("/boards/moving", params={"limit": 10})).json()
    assert [e["player"] for e in first["entries"]] == [f"m{i:02d}" for i in range(10)]
    # m05 (already seen) drops to the bottom, m25 (not yet seen) climbs to the top.
    await http.post("/boards/moving/scores", headers=AUTH, json={"player": "m25", "score": 1000})
    await http.put("/boards/moving", json={"operator": "best"}, headers=AUTH)
    await http.delete("/boards/moving/players/m05", headers=AUTH)
    second = (await http.get("/boards/moving", params={"limit": 10,
                                                        "cursor": first["next_cursor"]})).json()
    # The page continues after m09 with no entry skipped or repeated.
    assert [e["player"] for e in second["entries"]] == [f"m{i:02d}" for i in range(10, 20)]


async def test_python_sdk_leaderboard_client(service: str) -> None:
    async with LeaderboardClient(service, api_key=KEY) as server, \
            LeaderboardClient(service) as player_side:
        await server.configure("sdk", periods=["weekly"], operator="latest")
        assert (await server.submit("sdk", "ann", 10, {"hat": 1}))["weekly"]["rank"] == 1
        results = await server.submit_many("sdk", [{"player": "bob", "score": 20},
                                                   {"player": "cid", "score": 5}])
        assert [r["periods"]["all"]["rank"] for r in results] == [1, 3]
        assert (await server.submit("sdk", "ann", 3))["all"] == {"score": 3, "rank": 3}
        top = await player_side.top("sdk", limit=2)
        assert [e["player"] for e in top["entries"]] == ["bob", "cid"]
        rest = await player_side.top("sdk", limit=2, cursor=top["next_cursor"])
        assert [(e["rank"], e["player"], e["metadata"]) for e in rest["entries"]] == \
            [(3, "ann", {"hat": 1})]
        assert (await player_side.rank("sdk", "cid", period="weekly"))["rank"] == 2
        assert [e["player"] for e in await player_side.around("sdk", "cid", n=1)] == \
            ["bob", "cid", "ann"]
        assert (await player_side.ranks("sdk", ["ann", "zed"]))["missing"] == ["zed"]
        with pytest.raises(LeaderboardError) as e:
            await player_side.submit("sdk", "eve", 99)
        assert (e.value.status, e.value.code) == (401, "bad_api_key")
        assert await server.remove("sdk", "ann") == 2


async def test_hot_paths_answer_exactly_as_the_fastapi_routes(redis_url: str) -> None:
    """Submit, rank and top are served without the framework; the answers must not differ."""
    from leaderboard.api import create_app
    from leaderboard.store import Store
    from stadium.redis_client import connect

    redis = await connect(redis_url)
    store = Store(redis)
    app = create_app(store, KEY)
    framework = app.app.app  # hot paths -> metrics -> FastAPI
    requests: list[tuple[str, str, dict[str, Any]]] = [
        ("PUT", "/boards/{b}", {"json": {"periods": ["weekly"]}, "headers": AUTH}),
        ("POST", "/boards/{b}/scores", {"json": {"scores": [
            {"player": f"h{i}", "score": i % 7, "metadata": {"i": i}} for i in range(30)]},
            "headers": AUTH}),
        ("POST", "/boards/{b}/scores", {"json": {"player": "h1", "score": 99}, "headers": AUTH}),
        ("POST", "/boards/{b}/scores", {"json": {"player": "h1", "score": 99}}),
        ("POST", "/boards/{b}/scores", {"json": {"player": "h 1", "score": 1}, "headers": AUTH}),
        ("POST", "/boards/{b}/scores", {"json": {"player": "h1", "score": "1"}, "headers": AUTH}),
        ("POST", "/boards/{b}/scores", {"content": b"not json", "headers": AUTH}),
        ("POST", "/boards/nope/scores", {"json": {"player": "h1", "score": 1}, "headers": AUTH}),
        ("GET", "/boards/{b}", {}),
        ("GET", "/boards/{b}?limit=7&period=weekly", {}),
        ("GET", "/boards/{b}?limit=0", {}),
        ("GET", "/boards/{b}?limit=x", {}),
        ("GET", "/boards/{b}?period=daily", {}),
        ("GET", "/boards/{b}?cursor=bad", {}),
        ("GET", "/boards/nope", {}),
        ("GET", "/boards/{b}/players/h3", {}),
        ("GET", "/boards/{b}/players/h3?period=weekly", {}),
        ("GET", "/boards/{b}/players/ghost", {}),
        ("GET", "/boards/{b}/players/bad%20name", {}),
    ]
    answers = []
    for target, board in ((app, "hot"), (framework, "framework")):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=target),
                                     base_url="http://test") as client:
            got = []
            for method, url, kw in requests:
                r = await client.request(method, url.replace("{b}", board), **kw)
                body = r.json()
                if "next_cursor" in body:  # encodes the board's own times: compare presence
                    body["next_cursor"] = bool(body["next_cursor"])
                got.append((r.status_code, json.dumps(body, sort_keys=True).replace(board, "B")))
            answers.append(got)
    await store.aclose()
    await redis.aclose()
    for req, hot, slow in zip(requests, answers[0], answers[1], strict=True):
        assert hot == slow, req
