"""The leaderboard's HTTP API: routes that validate input and call `Store`."""

from __future__ import annotations

import json
import logging
import time
from bisect import bisect_left
from collections.abc import Iterator, Sequence
from itertools import accumulate
from typing import Annotated, Any, Literal
from urllib.parse import parse_qsl

from fastapi import Depends, FastAPI, Path, Query, Request
from fastapi.responses import JSONResponse
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    StrictFloat,
    StrictInt,
    TypeAdapter,
    ValidationError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from leaderboard.periods import QUERY, RESET
from leaderboard.store import (
    BOARD,
    NAME,
    SCORE_LIMIT,
    Board,
    BoardError,
    Store,
)
from stadium import __version__
from stadium import once as idempotency
from stadium.http import (
    IdempotencyKey,
    JsonData,
    JsonInt,
    MeasureRequests,
    add_cors,
    add_error_handlers,
    add_operations_routes,
    anchored,
    error_response,
    error_responses,
    key_matches,
    refine_openapi,
    server_key,
)

log = logging.getLogger("stadium.leaderboard")

Period = Literal["daily", "weekly", "monthly"]


BoardName = Annotated[str, Path(description="1-64 of A-Z a-z 0-9 _ . -", json_schema_extra={
    "pattern": anchored(BOARD), "minLength": 1, "maxLength": 64})]
PlayerName = Annotated[str, Path(description="1-64 of A-Z a-z 0-9 _ . : @ -", json_schema_extra={
    "pattern": anchored(NAME), "minLength": 1, "maxLength": 64})]
PeriodQuery = Annotated[str, Query(
    min_length=1, json_schema_extra={"pattern": anchored(QUERY)},
    description="all, a kind the board keeps (daily, weekly, monthly: the current one), or a "
    "period id of such a kind: d:2026-11-23, w:2026-W47, m:2026-11")]
_PLAYER_ID: dict[str, JsonValue] = {"pattern": anchored(NAME), "minLength": 1, "maxLength": 64}


class BoardSettings(BaseModel):
    model_config = ConfigDict(strict=True)

    order: Literal["desc", "asc"] = "desc"
    operator: Literal["best", "latest", "incr"] = "best"
    periods: list[Period] = Field(default_factory=list, max_length=3,
                                  json_schema_extra={"uniqueItems": True})
    reset_time: str = Field("00:00", description="UTC time of day (HH:MM) periods reset at",
                            json_schema_extra={"pattern": anchored(RESET)})
    metadata_max_bytes: JsonInt = Field(1024, ge=0, le=16384)


class BoardSummary(BaseModel):
    board: str
    order: str
    operator: str
    periods: list[str]
    entries: int = Field(description="entries of the all-time period")


class BoardList(BaseModel):
    boards: list[BoardSummary]
    count: int = Field(description="boards found (at least this many when `truncated`)")
    more: bool = Field(description="whether boards past `limit` exist")
    truncated: bool = Field(description="the scan stopped at its cap before the end")


class ScoreIn(BaseModel):
    model_config = ConfigDict(strict=True)

    player: str = Field(max_length=64, json_schema_extra=_PLAYER_ID)
    score: StrictInt | StrictFloat = Field(json_schema_extra={
        "minimum": -SCORE_LIMIT, "maximum": SCORE_LIMIT})
    metadata: JsonData | None = Field(None, description="at most the board's "
                                       "metadata_max_bytes as JSON")


class ScoreBatch(BaseModel):
    model_config = ConfigDict(strict=True)

    scores: list[ScoreIn] = Field(min_length=1, max_length=1000,
                                  description="each player at most once")


class PlayersIn(BaseModel):
    model_config = ConfigDict(strict=True)

    players: list[Annotated[str, Field(json_schema_extra=_PLAYER_ID)]] = Field(
        min_length=1, max_length=1000)


# What the routes answer, for the document (the routes build their JSON themselves).
class BoardView(BoardSettings):
    board: str


class Standing(BaseModel):
    score: float
    rank: int


class Written(BaseModel):
    player: str
    periods: dict[str, Standing] = Field(description="period name (all, daily...) -> standing")


class Submitted(BaseModel):
    board: str
    results: list[Written]


class Entry(BaseModel):
    rank: int
    player: str
    score: float
    metadata: JsonValue | None


class Page(BaseModel):
    board: str
    period: str
    entries: list[Entry]
    next_cursor: str | None


class PlayerView(Entry):
    board: str
    period: str


class Around(BaseModel):
    board: str
    period: str
    entries: list[Entry]


class Rank(BaseModel):
    player: str
    rank: int
    score: float


class Ranks(BaseModel):
    board: str
    period: str
    entries: list[Rank]
    missing: list[str]


class Removed(BaseModel):
    board: str
    player: str
    removed_from_periods: int


_NO_KEY = "writes need the server API key (X-API-Key)"


def check_key(api_key: str | None, x_api_key: str | None, authorization: str | None) -> None:
    if not key_matches(api_key, x_api_key, authorization):
        raise BoardError(401, "bad_api_key", _NO_KEY)


_error = error_response


class _Tally:
    """Request counts and latency histograms per route, kept in plain ints and read by
    Prometheus at scrape time: a request adds to a list instead of taking metric locks."""

    BUCKETS = (.0005, .001, .002, .005, .01, .02, .05, .1, .5, 1.0)

    def __init__(self) -> None:
        self.requests: dict[tuple[str, int], int] = {}
        # route -> [count per bucket (last: above every bound), sum of seconds]
        self.latency: dict[str, tuple[list[int], list[float]]] = {}

    def add(self, route: str, status: int, seconds: float) -> None:
        key = (route, status)
        self.requests[key] = self.requests.get(key, 0) + 1
        found = self.latency.get(route)
        if found is None:
            found = self.latency[route] = ([0] * (len(self.BUCKETS) + 1), [0.0])
        found[0][bisect_left(self.BUCKETS, seconds)] += 1
        found[1][0] += seconds

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily("stadium_leaderboard_requests", "HTTP requests",
                                       labels=["route", "status"])
        for (route, status), n in sorted(self.requests.items()):
            requests.add_metric([route, str(status)], n)
        yield requests
        latency = HistogramMetricFamily("stadium_leaderboard_request_seconds", "Request time",
                                        labels=["route"])
        for route, (counts, total) in sorted(self.latency.items()):
            cumulative = list(accumulate(counts))
            buckets = [(str(b), c) for b, c in zip(self.BUCKETS, cumulative,
                                                               strict=False)]
            latency.add_metric([route], buckets + [("+Inf", cumulative[-1])], total[0])
        yield latency


_SUBMIT: TypeAdapter[ScoreIn | ScoreBatch] = TypeAdapter(ScoreIn | ScoreBatch)
_ROUTE_TOP = "/boards/{board}"
_ROUTE_RANK = "/boards/{board}/players/{player}"
_ROUTE_SUBMIT = "/boards/{board}/scores"
# The bytes FastAPI's JSONResponse sends, from one encoder made once.
_JSON = json.JSONEncoder(ensure_ascii=False, allow_nan=False, indent=None,
                         separators=(",", ":"))
_JSON_TYPE = (b"content-type", b"application/json")


def _json_body(content: Any) -> bytes:
    """The bytes FastAPI's JSONResponse would send for `content`."""
    return _JSON.encode(content).encode()


class _Replay:
    """A `receive` that gives the body already read, then defers to the server's."""

    def __init__(self, body: bytes, receive: Any) -> None:
        self.body: bytes | None = body
        self.receive = receive

    async def __call__(self) -> Any:
        if self.body is None:
            return await self.receive()
        body, self.body = self.body, None
        return {"type": "http.request", "body": body, "more_body": False}


def _query(scope: Any) -> dict[str, str] | None:
    """The request's query, or None when a value in it is empty: the framework refuses those
    (422), as the document says."""
    raw = scope["query_string"]
    if not raw:
        return {}
    q = dict(parse_qsl(raw.decode("latin-1"), keep_blank_values=True))
    return None if "" in q.values() else q


class _HotPaths:
    """Submit, rank and top without the framework's per-request work (it is most of the
    cost of a request). Only well-formed requests are served here, by the same `Store`
    calls as the routes below; anything else goes on to the FastAPI app as it came, so
    every validation error still has one source."""

    def __init__(self, app: Any, store: Store, api_key: str | None, tally: _Tally) -> None:
        self.app = app
        self.store = store
        self.api_key = api_key
        self.tally = tally

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/boards/"):
            parts = scope["path"].split("/")
            method = scope["method"]
            n = len(parts)
            if parts[2]:
                if method == "GET" and n == 5 and parts[3] == "players" and parts[4]:
                    if await self._rank(scope, parts[2], parts[4], send):
                        return
                elif method == "POST" and n == 4 and parts[3] == "scores":
                    receive = await self._submit(scope, parts[2], receive, send)
                    if receive is None:
                        return
                elif method == "GET" and n == 3 and await self._top(scope, parts[2], send):
                    return
        await self.app(scope, receive, send)

    async def _top(self, scope: Any, board: str, send: Any) -> bool:
        started = time.perf_counter()
        q = _query(scope)
        if q is None:
            return False
        limit = q.get("limit", "10")
        if not (limit.isascii() and limit.isdigit() and 1 <= int(limit) <= 1000):
            return False
        answer: dict[str, Any] | Exception
        try:
            answer = await self.store.page(board, q.get("period", "all"), int(limit),
                                           q.get("cursor"))
        except Exception as e:
            answer = e
        await self._answer(send, _ROUTE_TOP, started, answer)
        return True

    async def _rank(self, scope: Any, board: str, player: str, send: Any) -> bool:
        started = time.perf_counter()
        q = _query(scope)
        if q is None:
            return False
        answer: dict[str, Any] | Exception
        try:
            answer = await self.store.player(board, player, q.get("period", "all"))
        except Exception as e:
            answer = e
        await self._answer(send, _ROUTE_RANK, started, answer)
        return True

    async def _submit(self, scope: Any, board: str, receive: Any, send: Any) -> Any:
        """None when answered here, else a `receive` that replays the body for the app."""
        started = time.perf_counter()
        message = await receive()
        body = message.get("body", b"")
        while message.get("more_body", False):
            message = await receive()
            body += message.get("body", b"")
        content_type = key = auth = once = None
        for name, value in scope["headers"]:
            if name == b"content-type":
                content_type = value
            elif name == b"idempotency-key":
                once = value.decode("latin-1")
            elif name == b"x-api-key":
                key = value.decode("latin-1")
            elif name == b"authorization":
                auth = value.decode("latin-1")
        if content_type is None or not content_type.startswith(b"application/json") or (
                once is not None and not idempotency.KEY.fullmatch(once)):
            return _Replay(body, receive)
        try:
            parsed = _SUBMIT.validate_json(body)
        except ValidationError:
            return _Replay(body, receive)
        answer: dict[str, Any] | Exception
        try:
            check_key(self.api_key, key, auth)
            scores = parsed.scores if isinstance(parsed, ScoreBatch) else [parsed]
            results = await self.store.submit(board, [s.model_dump() for s in scores],
                                              idempotency_key=once)
            answer = {"board": board, "results": results}
        except Exception as e:
            answer = e
        await self._answer(send, _ROUTE_SUBMIT, started, answer)
        return None

    async def _answer(self, send: Any, route: str, started: float,
                      answer: dict[str, Any] | Exception) -> None:
        if isinstance(answer, Exception):
            try:
                status, body = _failure(answer)
            except Exception:
                self.tally.add(route, 500, time.perf_counter() - started)
                raise
        else:
            status, body = 200, _json_body(answer)
        await send({"type": "http.response.start", "status": status, "headers": [
            _JSON_TYPE, (b"content-length", b"%d" % len(body))]})
        await send({"type": "http.response.body", "body": body})
        self.tally.add(route, status, time.perf_counter() - started)


def _failure(e: Exception) -> tuple[int, bytes]:
    """Status and body for an error a hot path caught: a `BoardError`, or Redis failing
    (503); anything else is a bug and goes on to the server as the framework's would."""
    if isinstance(e, BoardError):
        log.info("%d %s: %s", e.status, e.code, e.message)
        return e.status, bytes(_error(e.status, e.code, e.message).body)
    if isinstance(e, RedisConnectionError | RedisTimeoutError):
        log.warning("503 redis_unavailable: %s", e)
        return 503, bytes(_error(503, "redis_unavailable", _UNAVAILABLE).body)
    raise e


_UNAVAILABLE = "the leaderboard's Redis is not answering; try again later"


def create_app(store: Store, api_key: str | None, cors_origins: Sequence[str] = ()) -> Any:
    """The leaderboard as an ASGI app: the hot paths in front of FastAPI (with metrics)."""
    app = FastAPI(title="Stadium leaderboard", version=__version__,
                  description="Boards on Redis sorted sets. Reads are public; writes and "
                  "board settings need the server API key.")
    registry = CollectorRegistry()
    tally = _Tally()
    registry.register(tally)
    if api_key is None:
        log.warning("no --api-key: anyone may submit scores and change boards")

    writer = [Depends(server_key(api_key, lambda: BoardError(401, "bad_api_key", _NO_KEY)))]
    # Each route's error statuses and codes, for the document.
    keyed: dict[int, list[str]] = {} if api_key is None else {401: ["bad_api_key"]}
    down = {503: ["redis_unavailable"]}

    @app.exception_handler(BoardError)
    async def board_error(_: Request, e: BoardError) -> JSONResponse:
        log.info("%d %s: %s", e.status, e.code, e.message)
        return _error(e.status, e.code, e.message)

    add_error_handlers(app, _UNAVAILABLE)

    add_operations_routes(app, store.redis, registry)
    refine_openapi(app)

    @app.put("/boards/{board}", dependencies=writer, tags=["boards"], response_model=BoardView,
             responses={201: {"model": BoardView, "description": "Created"},
                        **error_responses({
                            400: ["bad_board_name"], **keyed, 409: ["board_has_entries"],
                            422: ["invalid_request", "bad_period", "bad_reset_time",
                                  idempotency.REUSED],
                            **down})})
    async def put_board(board: BoardName, settings: BoardSettings,
                        idempotency_key: IdempotencyKey = None) -> JSONResponse:
        """Create a board (201) or change its settings (200). Order and operator are fixed
        once the board has entries. With an `Idempotency-Key`, a retry of a change already
        applied writes nothing and gets the first answer again (201 if that one created the
        board)."""
        _, created = await store.put_board(board, Board(**settings.model_dump()),
                                           idempotency_key)
        return JSONResponse({"board": board, **settings.model_dump()},
                            status_code=201 if created else 200)

    @app.get("/boards", tags=["boards"], response_model=BoardList,
             responses=error_responses({422: ["invalid_request"], **down}))
    async def list_boards(limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> JSONResponse:
        """Boards by name (the first `limit`), with their settings and all-time entry
        counts; `count` is how many exist (at least, when `truncated`). A scan of Redis: for
        operators' tools such as the relay's console, not for every page view."""
        return JSONResponse(await store.boards(limit))

    @app.get("/boards/{board}/settings", tags=["boards"], response_model=BoardView,
             responses=error_responses({400: ["bad_board_name"], 404: ["unknown_board"],
                                        **down}))
    async def get_settings(board: BoardName) -> JSONResponse:
        found = await store.get_board(board)
        assert found is not None
        return JSONResponse({"board": board, **BoardSettings(**found.__dict__).model_dump()})

    @app.post("/boards/{board}/scores", dependencies=writer, tags=["scores"],
              response_model=Submitted, responses=error_responses({
                  400: ["bad_board_name", "bad_player"], **keyed, 404: ["unknown_board"],
                  422: ["invalid_request", "duplicate_player", "bad_score",
                        "metadata_too_large", "score_out_of_range",
                        idempotency.REUSED], **down}))
    async def submit(board: BoardName, body: ScoreIn | ScoreBatch,
                     idempotency_key: IdempotencyKey = None) -> JSONResponse:
        """Submit one score or a batch; answers each player's score and rank in every period.
        A batch is written atomically: all of it or, on any error, nothing. With an
        `Idempotency-Key`, a retry of a submit already applied (also one answered 503 whose
        write landed) writes nothing and gets the first answer again."""
        scores = body.scores if isinstance(body, ScoreBatch) else [body]
        results = await store.submit(board, [s.model_dump() for s in scores],
                                     idempotency_key=idempotency_key)
        return JSONResponse({"board": board, "results": results})

    @app.get("/boards/{board}", tags=["scores"], response_model=Page,
             responses=error_responses({
                 400: ["bad_board_name", "bad_period", "bad_cursor"], 404: ["unknown_board"],
                 422: ["invalid_request"], **down}))
    async def top(board: BoardName, period: PeriodQuery = "all",
                  limit: Annotated[int, Query(ge=1, le=1000)] = 10,
                  cursor: Annotated[str | None, Query(
                      min_length=1, description="a page's next_cursor")] = None
                  ) -> JSONResponse:
        """Top entries. Pass `next_cursor` back as `cursor` for the following page: the page
        starts right after the last entry you saw, even if scores changed in between."""
        return JSONResponse(await store.page(board, period, limit, cursor))

    one_player = error_responses({
        400: ["bad_board_name", "bad_player", "bad_period"],
        404: ["unknown_board", "unknown_player"], 422: ["invalid_request"], **down})

    @app.get("/boards/{board}/players/{player}", tags=["scores"], response_model=PlayerView,
             responses=one_player)
    async def player(board: BoardName, player: PlayerName,
                     period: PeriodQuery = "all") -> JSONResponse:
        return JSONResponse(await store.player(board, player, period))

    @app.get("/boards/{board}/players/{player}/around", tags=["scores"],
             response_model=Around, responses=one_player)
    async def around(board: BoardName, player: PlayerName, period: PeriodQuery = "all",
                     n: Annotated[int, Query(ge=0, le=100)] = 5) -> JSONResponse:
        return JSONResponse(await store.around(board, player, period, n))

    @app.post("/boards/{board}/ranks", tags=["scores"], response_model=Ranks,
              responses=error_responses({
                  400: ["bad_board_name", "bad_player", "bad_period"], 404: ["unknown_board"],
                  422: ["invalid_request"], **down}))
    async def ranks(board: BoardName, body: PlayersIn,
                    period: PeriodQuery = "all") -> JSONResponse:
        return JSONResponse(await store.ranks(board, body.players, period))

    @app.delete("/boards/{board}/players/{player}", dependencies=writer, tags=["scores"],
                response_model=Removed, responses=error_responses({
                    400: ["bad_board_name", "bad_player"], **keyed,
                    404: ["unknown_board", "unknown_player"],
                    422: ["invalid_request", idempotency.REUSED], **down}))
    async def remove(board: BoardName, player: PlayerName,
                     idempotency_key: IdempotencyKey = None) -> JSONResponse:
        """Remove the player from every period of the board. With an `Idempotency-Key`, a
        retry of a removal already applied gets the first answer again (not 404)."""
        removed = await store.remove(board, player, idempotency_key)
        if not removed:
            raise BoardError(404, "unknown_player", f"{player!r} has no score on {board}")
        return JSONResponse({"board": board, "player": player, "removed_from_periods": removed})

    return add_cors(_HotPaths(MeasureRequests(app, tally.add), store, api_key, tally), cors_origins)
