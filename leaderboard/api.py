"""The leaderboard's HTTP API: routes that validate input and call `Store`."""

from __future__ import annotations

import hmac
import json
import logging
import time
from collections.abc import Awaitable
from types import SimpleNamespace
from typing import Annotated, Any, Literal
from urllib.parse import parse_qsl

from fastapi import Depends, FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from pydantic import (
    BaseModel,
    Field,
    JsonValue,
    StrictFloat,
    StrictInt,
    TypeAdapter,
    ValidationError,
)
from starlette.exceptions import HTTPException as StarletteHTTPException

from leaderboard.store import Board, BoardError, Store
from stadium import __version__

log = logging.getLogger("stadium.leaderboard")

Period = Literal["daily", "weekly", "monthly"]


class BoardSettings(BaseModel):
    order: Literal["desc", "asc"] = "desc"
    operator: Literal["best", "latest", "incr"] = "best"
    periods: list[Period] = Field(default_factory=list, max_length=3)
    reset_time: str = Field("00:00", description="UTC time of day (HH:MM) periods reset at")
    metadata_max_bytes: int = Field(1024, ge=0, le=16384)


class ScoreIn(BaseModel):
    player: str = Field(max_length=64)
    score: StrictInt | StrictFloat
    metadata: JsonValue | None = None


class ScoreBatch(BaseModel):
    scores: list[ScoreIn] = Field(min_length=1, max_length=1000)


class PlayersIn(BaseModel):
    players: list[str] = Field(min_length=1, max_length=1000)


def check_key(api_key: str | None, x_api_key: str | None, authorization: str | None) -> None:
    if api_key is None:
        return
    given = x_api_key or ""
    if not given and authorization and authorization[:7].lower() == "bearer ":
        given = authorization[7:].strip()
    if not hmac.compare_digest(given.encode(), api_key.encode()):
        raise BoardError(401, "bad_api_key", "writes need the server API key (X-API-Key)")


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


class _Measure:
    """Counts requests and times them per route (plain ASGI: no per-request task)."""

    def __init__(self, app: Any, requests: Counter, latency: Histogram) -> None:
        self.app = app
        self.requests = requests
        self.latency = latency

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = [500]

        async def send_status(message: Any) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            name = getattr(scope.get("route"), "path", "unmatched")
            self.requests.labels(name, str(status[0])).inc()
            self.latency.labels(name).observe(time.perf_counter() - started)


_SUBMIT: TypeAdapter[ScoreIn | ScoreBatch] = TypeAdapter(ScoreIn | ScoreBatch)
_ROUTE_TOP = SimpleNamespace(path="/boards/{board}")
_ROUTE_RANK = SimpleNamespace(path="/boards/{board}/players/{player}")
_ROUTE_SUBMIT = SimpleNamespace(path="/boards/{board}/scores")


def _json_body(content: Any) -> bytes:
    """The bytes FastAPI's JSONResponse would send for `content`."""
    return json.dumps(content, ensure_ascii=False, allow_nan=False, indent=None,
                      separators=(",", ":")).encode()


class _HotPaths:
    """Submit, rank and top without the framework's per-request work (it is most of the
    cost of a request). Only well-formed requests are served here, by the same `Store`
    calls as the routes below; anything else goes on to the FastAPI app as it came, so
    every validation error still has one source."""

    def __init__(self, app: Any, store: Store, api_key: str | None) -> None:
        self.app = app
        self.store = store
        self.api_key = api_key

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            parts = scope["path"].split("/")
            method = scope["method"]
            if len(parts) > 2 and parts[1] == "boards" and parts[2]:
                if method == "GET" and len(parts) == 3:
                    if await self._top(scope, parts[2], send):
                        return
                elif method == "GET" and len(parts) == 5 and parts[3] == "players" and parts[4]:
                    if await self._rank(scope, parts[2], parts[4], send):
                        return
                elif method == "POST" and len(parts) == 4 and parts[3] == "scores":
                    receive = await self._submit(scope, parts[2], receive, send)
                    if receive is None:
                        return
        await self.app(scope, receive, send)

    async def _top(self, scope: Any, board: str, send: Any) -> bool:
        q = dict(parse_qsl(scope["query_string"].decode("latin-1")))
        limit = q.get("limit", "10")
        if not (limit.isascii() and limit.isdigit() and 1 <= int(limit) <= 1000):
            return False
        scope["route"] = _ROUTE_TOP
        await self._answer(send, self.store.page(board, q.get("period", "all"), int(limit),
                                                 q.get("cursor")))
        return True

    async def _rank(self, scope: Any, board: str, player: str, send: Any) -> bool:
        q = dict(parse_qsl(scope["query_string"].decode("latin-1")))
        scope["route"] = _ROUTE_RANK
        await self._answer(send, self.store.player(board, player, q.get("period", "all")))
        return True

    async def _submit(self, scope: Any, board: str, receive: Any, send: Any) -> Any:
        """None when answered here, else a `receive` that replays the body for the app."""
        headers = dict(scope["headers"])
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        replayed = False

        async def replay() -> Any:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        if not headers.get(b"content-type", b"").startswith(b"application/json"):
            return replay
        try:
            parsed = _SUBMIT.validate_json(body)
        except ValidationError:
            return replay
        scope["route"] = _ROUTE_SUBMIT

        async def submit() -> dict[str, Any]:
            key = headers.get(b"x-api-key")
            auth = headers.get(b"authorization")
            check_key(self.api_key, key.decode("latin-1") if key else None,
                      auth.decode("latin-1") if auth else None)
            scores = parsed.scores if isinstance(parsed, ScoreBatch) else [parsed]
            results = await self.store.submit(board, [s.model_dump() for s in scores])
            return {"board": board, "results": results}

        await self._answer(send, submit())
        return None

    async def _answer(self, send: Any, work: Awaitable[dict[str, Any]]) -> None:
        try:
            status, body = 200, _json_body(await work)
        except BoardError as e:
            log.info("%d %s: %s", e.status, e.code, e.message)
            status, body = e.status, bytes(_error(e.status, e.code, e.message).body)
        await send({"type": "http.response.start", "status": status, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


def create_app(store: Store, api_key: str | None) -> Any:
    """The leaderboard as an ASGI app: metrics around the hot paths around FastAPI."""
    app = FastAPI(title="Stadium leaderboard", version=__version__,
                  description="Boards on Redis sorted sets. Reads are public; writes and "
                  "board settings need the server API key.")
    registry = CollectorRegistry()
    requests = Counter("stadium_leaderboard_requests", "HTTP requests", ["route", "status"],
                       registry=registry)
    latency = Histogram("stadium_leaderboard_request_seconds", "Request time", ["route"],
                        registry=registry,
                        buckets=(.0005, .001, .002, .005, .01, .02, .05, .1, .5, 1))
    if api_key is None:
        log.warning("no --api-key: anyone may submit scores and change boards")

    def require_key(x_api_key: Annotated[str | None, Header()] = None,
                    authorization: Annotated[str | None, Header()] = None) -> None:
        check_key(api_key, x_api_key, authorization)

    writer = [Depends(require_key)]

    @app.exception_handler(BoardError)
    async def board_error(_: Request, e: BoardError) -> JSONResponse:
        log.info("%d %s: %s", e.status, e.code, e.message)
        return _error(e.status, e.code, e.message)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, e: RequestValidationError) -> JSONResponse:
        first = e.errors()[0] if e.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        message = f"{where}: {first.get('msg', 'invalid')}" if where else "invalid request"
        log.info("422 invalid_request: %s", message)
        return _error(422, "invalid_request", message)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, e: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(e.status_code, "http_error")
        return _error(e.status_code, code, str(e.detail))

    @app.get("/healthz", tags=["operations"])
    async def healthz() -> dict[str, str]:
        await store.redis.ping()
        return {"status": "ok"}

    @app.get("/metrics", tags=["operations"], response_class=Response)
    async def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @app.put("/boards/{board}", dependencies=writer, tags=["boards"])
    async def put_board(board: str, settings: BoardSettings) -> JSONResponse:
        _, created = await store.put_board(board, Board(**settings.model_dump()))
        return JSONResponse({"board": board, **settings.model_dump()},
                            status_code=201 if created else 200)

    @app.get("/boards/{board}/settings", tags=["boards"])
    async def get_settings(board: str) -> dict[str, Any]:
        found = await store.get_board(board)
        assert found is not None
        return {"board": board, **BoardSettings(**found.__dict__).model_dump()}

    @app.post("/boards/{board}/scores", dependencies=writer, tags=["scores"])
    async def submit(board: str, body: ScoreIn | ScoreBatch) -> JSONResponse:
        """Submit one score or a batch; answers each player's score and rank in every period.
        A batch is written atomically: all of it or, on any error, nothing."""
        scores = body.scores if isinstance(body, ScoreBatch) else [body]
        results = await store.submit(board, [s.model_dump() for s in scores])
        return JSONResponse({"board": board, "results": results})

    @app.get("/boards/{board}", tags=["scores"])
    async def top(board: str, period: str = "all",
                  limit: Annotated[int, Query(ge=1, le=1000)] = 10,
                  cursor: str | None = None) -> JSONResponse:
        """Top entries. Pass `next_cursor` back as `cursor` for the following page: the page
        starts right after the last entry you saw, even if scores changed in between."""
        return JSONResponse(await store.page(board, period, limit, cursor))

    @app.get("/boards/{board}/players/{player}", tags=["scores"])
    async def player(board: str, player: str, period: str = "all") -> JSONResponse:
        return JSONResponse(await store.player(board, player, period))

    @app.get("/boards/{board}/players/{player}/around", tags=["scores"])
    async def around(board: str, player: str, period: str = "all",
                     n: Annotated[int, Query(ge=0, le=100)] = 5) -> JSONResponse:
        return JSONResponse(await store.around(board, player, period, n))

    @app.post("/boards/{board}/ranks", tags=["scores"])
    async def ranks(board: str, body: PlayersIn, period: str = "all") -> JSONResponse:
        return JSONResponse(await store.ranks(board, body.players, period))

    @app.delete("/boards/{board}/players/{player}", dependencies=writer, tags=["scores"])
    async def remove(board: str, player: str) -> JSONResponse:
        removed = await store.remove(board, player)
        if not removed:
            raise BoardError(404, "unknown_player", f"{player!r} has no score on {board}")
        return JSONResponse({"board": board, "player": player, "removed_from_periods": removed})

    return _Measure(_HotPaths(app, store, api_key), requests, latency)
