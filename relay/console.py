"""The operator console: a page at `/console` and the JSON it reads under `/console/api/`
(this relay, the relay directory, rooms and their members, the matchmaker's queues and the
leaderboard's boards), behind the operator key (--admin-key); open without one only under
`stadium dev`. See docs/operations.md."""

from __future__ import annotations

import asyncio
import hmac
import itertools
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable, Iterable
from heapq import nlargest
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from relay.core.host import ROOM_ID, TYPE_NAME
from relay.core.runtime import RoomRuntime
from relay.core.stats import TICK_BUCKETS
from relay.http import HttpError, Request, http_response
from stadium import __version__
from stadium.tokens import bearer

if TYPE_CHECKING:
    from relay.server import Relay
    from relay.transports.websocket import Connection

log = logging.getLogger("stadium.relay.console")

PAGE_DIR = Path(__file__).with_name("console")
TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
         ".css": "text/css; charset=utf-8"}
NO_STORE = (("Cache-Control", "no-store"),)
ROOMS_LIMIT = (100, 1000)  # rooms one answer lists (?limit=): default, most; the rest counted
MEMBERS_LIMIT = (200, 1000)  # members of one room, the same way
BOARDS_LIMIT = 50  # boards asked of the leaderboard; the first BOARDS_TOP show their top 3
BOARDS_TOP = 10
SERVICE_TIMEOUT = 2.0  # seconds the matchmaker or leaderboard may take to answer the console
QUANTILES = (0.5, 0.9, 0.99)


class Console:
    """Answers `/console`, its files and its JSON API for one relay (see `serves`)."""

    def __init__(self, relay: Relay, dev: bool = False) -> None:
        self.relay = relay
        self.dev = dev
        self.started = time.time()
        self.files = {p.name for p in PAGE_DIR.iterdir() if p.suffix in TYPES} \
            if PAGE_DIR.is_dir() else set()
        self._http: httpx.AsyncClient | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def enabled(self) -> bool:
        return self.relay.config.admin_key is not None or self.dev

    @property
    def access(self) -> str:
        """`key` (the operator key is needed), `open` (stadium dev without one) or `off`."""
        if self.relay.config.admin_key is not None:
            return "key"
        return "open" if self.dev else "off"

    @staticmethod
    def serves(path: str) -> bool:
        return path == "/console" or path.startswith("/console/")

    def handle(self, conn: Connection, req: Request) -> None:
        """Answer one request for a path `serves` accepted (HttpError for a refusal)."""
        if not self.enabled:
            raise HttpError(404, "not_found", f"no route for {req.path}")
        if req.method not in ("GET", "HEAD"):
            raise HttpError(405, "method_not_allowed", f"{req.path} answers GET only",
                            (("Allow", "GET, HEAD"),))
        path = req.path
        if not path.startswith("/console/api/"):
            conn.respond(self._file(req))
            return
        self._check_key(req)
        parts = path[len("/console/api/"):].split("/")
        if parts == ["relay"]:
            self._json(conn, req, self.overview())
        elif parts == ["rooms"]:
            self._json(conn, req, self.rooms(_limit(req, ROOMS_LIMIT), req.query.get("type")))
        elif len(parts) == 3 and parts[0] == "rooms":
            self._json(conn, req, self.room(parts[1], parts[2], _limit(req, MEMBERS_LIMIT)))
        elif parts == ["nodes"]:
            self._later(conn, req, self.nodes)
        elif parts == ["queues"]:
            self._later(conn, req, self.queues)
        elif parts == ["boards"]:
            self._later(conn, req, self.boards)
        else:
            raise HttpError(404, "not_found", f"no console route {path}")

    def _check_key(self, req: Request) -> None:
        key = self.relay.config.admin_key
        if key is None:  # stadium dev without a key: open, and its log says so
            return
        given = req.headers.get("x-admin-key") or bearer(req.headers.get("authorization")) or ""
        if not hmac.compare_digest(given.encode(), key.encode()):
            raise HttpError(401, "bad_admin_key", "the console's API needs the operator key "
                            "(Authorization: Bearer KEY, or X-Admin-Key)",
                            (("WWW-Authenticate", 'Bearer realm="stadium console"'),))

    def _file(self, req: Request) -> bytes:
        """The page itself holds no data: it is served without the key, which it asks for."""
        name = req.path[len("/console/"):] if req.path != "/console" else ""
        name = name or "index.html"
        if name not in self.files:
            raise HttpError(404, "not_found", f"no console file {name!r}")
        file = PAGE_DIR / name
        body = b"" if req.method == "HEAD" else file.read_bytes()
        return http_response(200, body, TYPES[file.suffix], NO_STORE)

    @staticmethod
    def _json(conn: Connection, req: Request, value: Any) -> None:
        body = b"" if req.method == "HEAD" else json.dumps(value).encode()
        conn.respond(http_response(200, body, "application/json", NO_STORE))

    def _later(self, conn: Connection, req: Request,
               make: Callable[[], Awaitable[dict[str, Any]]]) -> None:
        """Answer with what `make()` gives once it is done (it reads Redis or a service)."""
        async def answer() -> None:
            try:
                value = await make()
            except HttpError as e:
                if conn.transport is not None:
                    self.relay.ws.reject(conn, e)
                return
            except Exception:
                log.exception("console: %s failed", req.path)
                if conn.transport is not None:
                    self.relay.ws.reject(conn, HttpError(500, "internal_error",
                                                         "the console could not answer"))
                return
            if conn.transport is not None:
                self._json(conn, req, value)

        task = self.relay.loop.create_task(answer())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    # --- this relay and its rooms ----------------------------------------------------------
    def overview(self) -> dict[str, Any]:
        """This relay process: its counters (the page charts their rates) and tick times."""
        relay = self.relay
        s = relay.stats
        gauges = relay.host.gauges()
        ticks = {}
        for room_type, times in sorted(s.tick_times.items()):
            count = sum(times.counts)
            p99 = histogram_quantile(0.99, _cumulative(TICK_BUCKETS, times.counts))
            ticks[room_type] = {
                "ticks": count, "mean_ms": _ms(times.total / count) if count else None,
                "p99_ms": _ms(p99), "overruns": s.tick_overruns.get(room_type, 0)}
        return {
            "service": "stadium-relay", "version": __version__, "url": relay.url,
            "node": relay.host.node, "pid": os.getpid(), "console": self.access,
            "draining": relay.draining, "uptime": round(time.time() - self.started, 1),
            "time": time.time(), "connections": relay.ws.open_count,
            "rooms": gauges["rooms"], "rooms_hibernated": gauges["rooms_hibernated"],
            "messages_in": s.messages_in, "messages_out": s.messages_out,
            "bytes_in": s.bytes_in, "bytes_out": s.bytes_out,
            "handler_errors": s.handler_errors, "rate_limit_drops": s.rate_limit_drops,
            "hibernations": s.hibernations, "wakes": s.wakes,
            "closes": {str(code): n for code, n in sorted(s.closes.items())},
            "ticks": ticks,
            "services": {"matchmaker": relay.config.matchmaker_url,
                         "leaderboard": relay.config.leaderboard_url}}

    def rooms(self, limit: int, room_type: str | None = None) -> dict[str, Any]:
        """The rooms with the most members first, at most `limit`; `more` counts the rest."""
        listed = [rt for rt in self.relay.host.rooms.values()
                  if not room_type or rt.type == room_type]
        top = nlargest(limit, listed, key=lambda rt: (len(rt.members), rt.type, rt.id))
        return {"count": len(listed), "more": len(listed) - len(top),
                "rooms": [_room_row(rt) for rt in top]}

    def room(self, type_name: str, room_id: str, limit: int) -> dict[str, Any]:
        """One room: its members (the first `limit` to join; `more` counts the rest) and its
        last closes, newest first. Attachments and tokens are never shown."""
        if not (TYPE_NAME.fullmatch(type_name) and ROOM_ID.fullmatch(room_id)):
            raise HttpError(400, "bad_room", "room type or id has characters rooms never have")
        rt = self.relay.host.rooms.get((type_name, room_id))
        if rt is None:
            raise HttpError(404, "unknown_room", f"no room {type_name}/{room_id} on this relay "
                            "(rooms with no members are not kept)")
        members = [{"id": m.id, "player": m.player, "ip": m.ip, "kind": m.kind,
                    "tags": m.tag_list(), "open": m.open, "slow": bool(m.slow_since)}
                   for m in itertools.islice(rt.members.values(), limit)]
        closes = [{"member": member, "player": player, "code": code, "at": at}
                  for member, player, code, at in reversed(rt.closes or ())]
        return {**_room_row(rt), "members_listed": members,
                "more": len(rt.members) - len(members), "closes": closes,
                "seats": rt.cls.seats}

    async def nodes(self) -> dict[str, Any]:
        """The relays registered in the directory (only this one without Redis)."""
        relay = self.relay
        me = relay.config.public_url or relay.url
        directory = relay.directory
        if directory is None:
            return {"directory": False, "nodes": [
                {"url": me, "load": relay.ws.open_count, "expires_in": None, "self": True}]}
        now = time.time()
        entries = await asyncio.wait_for(directory.entries(), SERVICE_TIMEOUT)
        nodes = [{"url": e.get("url"), "load": e.get("load"),
                  "expires_in": round(float(e.get("expires", 0)) - now, 1),
                  "self": e.get("url") == me} for e in entries]
        nodes.sort(key=lambda n: str(n["url"]))
        return {"directory": True, "nodes": nodes}

    # --- the other services, read from their own endpoints ---------------------------------
    def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            quiet = logging.getLogger("httpx")
            if quiet.level == logging.NOTSET:  # else one INFO line per request, every poll
                quiet.setLevel(logging.WARNING)
            self._http = httpx.AsyncClient(timeout=SERVICE_TIMEOUT)
        return self._http

    async def queues(self) -> dict[str, Any]:
        """The matchmaker's queues (GET /queues) with what its /metrics counts of each:
        waiting tickets, matches, wait-time percentiles and match quality."""
        base = self.relay.config.matchmaker_url
        if not base:
            return {"url": None, "queues": [], "error": None}
        base = base.rstrip("/")
        http = self._client()
        try:
            listed, metrics = await asyncio.gather(http.get(f"{base}/queues"),
                                                   http.get(f"{base}/metrics"))
            listed.raise_for_status()
            metrics.raise_for_status()
            per_queue = _queue_metrics(metrics.text)
            queues = []
            for q in listed.json()["queues"]:
                m = per_queue.get(q["name"], {})
                queues.append({"name": q["name"], "teams": q["teams"],
                               "team_size": q["team_size"], "room_type": q["room_type"],
                               "max_wait": q["max_wait"], **_queue_row(m)})
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as e:
            return {"url": base, "queues": [], "error": f"the matchmaker did not answer: {e}"}
        return {"url": base, "queues": queues, "error": None}

    async def boards(self) -> dict[str, Any]:
        """The leaderboard's boards (GET /boards) and the top 3 of the first few."""
        base = self.relay.config.leaderboard_url
        if not base:
            return {"url": None, "boards": [], "more": False, "error": None}
        base = base.rstrip("/")
        http = self._client()
        try:
            resp = await http.get(f"{base}/boards", params={"limit": BOARDS_LIMIT})
            resp.raise_for_status()
            listed = resp.json()
            boards = listed["boards"]
            tops = await asyncio.gather(*(
                http.get(f"{base}/boards/{b['board']}", params={"limit": 3})
                for b in boards[:BOARDS_TOP]), return_exceptions=True)
            for board, top in zip(boards, tops, strict=False):
                if isinstance(top, httpx.Response) and top.status_code == 200:
                    board["top"] = [{"player": e["player"], "score": e["score"]}
                                    for e in top.json().get("entries", [])]
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as e:
            return {"url": base, "boards": [], "more": False,
                    "error": f"the leaderboard did not answer: {e}"}
        return {"url": base, "boards": boards, "more": listed.get("more", False), "error": None}


def _room_row(rt: RoomRuntime) -> dict[str, Any]:
    return {"type": rt.type, "id": rt.id, "awake": rt.room is not None,
            "members": len(rt.members), "tick_rate": rt.cls.tick_rate, "tick": rt.tick,
            "tick_ms": _ms(rt.tick_seconds) if rt.tick else None, "overruns": rt.overruns,
            "recent_closes": len(rt.closes or ())}


def _limit(req: Request, bounds: tuple[int, int]) -> int:
    default, most = bounds
    raw = req.query.get("limit")
    if raw is None:
        return default
    if not (raw.isascii() and raw.isdigit() and 1 <= int(raw) <= most):
        raise HttpError(422, "bad_limit", f"limit is a whole number from 1 to {most}")
    return int(raw)


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)


def _cumulative(bounds: Iterable[float], counts: Iterable[int]) -> list[tuple[float, float]]:
    """Per-bucket counts to Prometheus-style cumulative (upper bound, count) pairs."""
    total, out = 0.0, []
    for le, n in zip((*bounds, float("inf")), counts, strict=True):
        total += n
        out.append((le, total))
    return out


def histogram_quantile(q: float, buckets: list[tuple[float, float]]) -> float | None:
    """The q-quantile of a histogram's cumulative buckets, interpolated within its bucket as
    Prometheus' histogram_quantile does; the last finite bound when it falls in +Inf."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    lower, below = 0.0, 0.0
    for le, count in buckets:
        if count >= rank:
            if le == float("inf"):
                return lower
            if count == below:
                return le
            return lower + (le - lower) * (rank - below) / (count - below)
        lower, below = le, count
    return lower


def _queue_metrics(text: str) -> dict[str, dict[str, Any]]:
    """Per queue, from the matchmaker's Prometheus text: the samples the console shows."""
    out: dict[str, dict[str, Any]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            queue = sample.labels.get("queue")
            if queue is None:
                continue
            m = out.setdefault(queue, {})
            name = sample.name
            if name == "stadium_matchmaker_waiting_tickets":
                m["waiting"] = int(sample.value)
            elif name == "stadium_matchmaker_matches_total":
                m["matches"] = int(sample.value)
            elif name == "stadium_matchmaker_tickets_total":
                m.setdefault("tickets", {})[sample.labels.get("outcome", "")] = int(sample.value)
            elif name.endswith("_bucket"):
                m.setdefault(name[:-len("_bucket")], []).append(
                    (float(sample.labels["le"]), sample.value))
            elif name.endswith(("_sum", "_count")):
                m[name] = sample.value
    return out


def _queue_row(m: dict[str, Any]) -> dict[str, Any]:
    wait = "stadium_matchmaker_match_wait_seconds"
    spread = "stadium_matchmaker_match_rating_spread"
    favourite = "stadium_matchmaker_match_favourite_win_probability"

    def mean(name: str) -> float | None:
        count = m.get(f"{name}_count", 0)
        return round(m[f"{name}_sum"] / count, 3) if count else None

    waits = sorted(m.get(wait, []))
    percentiles = {f"p{round(q * 100)}": _round(histogram_quantile(q, waits)) for q in QUANTILES}
    return {"waiting": m.get("waiting", 0), "matches": m.get("matches", 0),
            "tickets": m.get("tickets", {}),
            "wait_seconds": {**percentiles, "mean": mean(wait)},
            "quality": {"rating_spread_mean": mean(spread),
                        "favourite_win_mean": mean(favourite)}}


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)
