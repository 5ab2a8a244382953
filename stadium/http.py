"""What the HTTP services share: CORS (so a page from another origin, the relay's demo, can
call them), the server-key check, the JSON error body and how the OpenAPI documents show
both."""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Annotated, Any, Literal

from fastapi import FastAPI, Header, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from pydantic import AfterValidator, BaseModel, BeforeValidator, JsonValue, Strict
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.routing import Match
from starlette.types import ASGIApp
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from stadium import once, tokens
from stadium.config import ConfigError

log = logging.getLogger("stadium.http")

ORIGIN = re.compile(r"https?://[^/\s?#]+")
# What a game page needs: reads, tickets, and the key header for tools that hold one.
METHODS = ["GET", "POST", "PUT", "DELETE"]
HEADERS = ["content-type", "x-api-key", "authorization", "idempotency-key"]
PREFLIGHT_CACHE = 600  # seconds a browser may reuse a preflight answer


def check_origins(origins: Sequence[str]) -> None:
    """Raise ConfigError unless every entry is `*` or `scheme://host[:port]` (no path)."""
    for origin in origins:
        if origin != "*" and not ORIGIN.fullmatch(origin):
            raise ConfigError(f"cors_origins: {origin!r} is not * or scheme://host[:port]")


def add_cors(app: ASGIApp, origins: Sequence[str]) -> ASGIApp:
    """`app` behind CORS headers for pages from `origins` (`*`: any); unchanged when empty,
    so a service without browser callers pays nothing per request."""
    if not origins:
        return app
    check_origins(origins)
    return CORSMiddleware(app, allow_origins=list(origins), allow_methods=METHODS,
                          allow_headers=HEADERS, expose_headers=["Retry-After"],
                          max_age=PREFLIGHT_CACHE)


def key_matches(api_key: str | None, x_api_key: str | None, authorization: str | None) -> bool:
    """Whether a request carries the server key (X-API-Key or a bearer token); True when the
    service has none."""
    if api_key is None:
        return True
    given = x_api_key or tokens.bearer(authorization) or ""
    return hmac.compare_digest(given.encode(), api_key.encode())


def _not_text(value: Any) -> Any:
    if isinstance(value, str | bool):
        raise ValueError("must be a JSON number")
    return value


# An integer as JSON Schema has it: 5 or 5.0, not "5" nor true (pydantic's lax int takes
# both, its strict int refuses 5.0).
JsonInt = Annotated[int, BeforeValidator(_not_text), Strict(False)]


_TEXT = json.JSONEncoder(ensure_ascii=False)


def _unicode_only(value: Any) -> Any:
    if value is not None and not isinstance(value, int | float | bool):
        try:
            _TEXT.encode(value).encode()
        except UnicodeEncodeError:
            raise ValueError("text must be Unicode: half a surrogate pair is not") from None
    return value


# Any JSON a client may store and read back. JSON can escape half a surrogate pair ("\ud800"),
# which is no Unicode: kept, it could never be answered in UTF-8 (a 500 on every read).
JsonData = Annotated[JsonValue, AfterValidator(_unicode_only)]
JsonObject = Annotated[dict[str, JsonValue], AfterValidator(_unicode_only)]


def error_response(status: int, code: str, message: str) -> JSONResponse:
    """The services' error body: {"error": {"code", "message"}}."""
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


# What each error status says, in the OpenAPI documents.
_MEANING = {
    400: "A name or value is malformed, or names what is not kept here",
    401: "The server key or token is missing or refused",
    403: "The credential is good but does not allow this",
    404: "Not found",
    409: "Conflicts with what is stored",
    422: "The request is invalid",
    429: "Too many requests: try again after Retry-After seconds",
    503: "Redis is not answering, or the service is busy: try again later",
}


def error_responses(codes: Mapping[int, Sequence[str]]) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route: each error status it answers, in the services' error body,
    with the codes that status may carry (a 429 also with its Retry-After header)."""
    out: dict[int | str, dict[str, Any]] = {}
    for status, names in codes.items():
        out[status] = {"description": f"{_MEANING[status]}: {', '.join(names)}",
                       "content": {"application/json": {"schema": {
                           "title": "Error", "type": "object", "required": ["error"],
                           "additionalProperties": False, "properties": {"error": {
                               "type": "object", "required": ["code", "message"],
                               "additionalProperties": False, "properties": {
                                   "code": {"type": "string", "enum": list(names)},
                                   "message": {"type": "string"}}}}}}}}
        if status == 429:
            out[status]["headers"] = {"Retry-After": {
                "description": "seconds until the request may be made again", "required": True,
                "schema": {"type": "integer", "minimum": 1}}}
    return out


def refine_openapi(app: FastAPI, patch: Callable[[dict[str, Any]], None] | None = None) -> None:
    """Build the app's OpenAPI document, once, as the service answers: without the 422 that
    FastAPI adds in its own validation body (the services answer 422 in theirs, and each route
    that can says so), then changed by `patch` (for what only the running process knows)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            doc = build()
            for item in doc.get("paths", {}).values():
                for operation in item.values():
                    responses = operation.get("responses", {})
                    if "HTTPValidationError" in str(responses.get("422")):
                        del responses["422"]
            schemas = doc.get("components", {}).get("schemas", {})
            for name in ("HTTPValidationError", "ValidationError"):
                schemas.pop(name, None)
            if patch is not None:
                patch(doc)
        return build()

    app.openapi = openapi  # type: ignore[method-assign]


def anchored(regex: re.Pattern[str]) -> str:
    """A regex the services fullmatch, as a JSON Schema pattern (which searches: anchored;
    `$` there matches only at the end, as fullmatch does)."""
    return f"^(?:{regex.pattern})$" if "|" in regex.pattern else f"^{regex.pattern}$"


IdempotencyKey = Annotated[str | None, Header(
    alias="Idempotency-Key", pattern=anchored(once.KEY), min_length=1, max_length=255,
    description="one key per logical request, the same on its retries (1-255 printable ASCII): "
    "a retry of a request already applied gets its first outcome and writes nothing; how "
    "long a key is kept depends on the request (see the service's documentation)")]
"""The Idempotency-Key header of a write route (see stadium.once)."""


_KEY_HEADER = APIKeyHeader(name="X-API-Key", scheme_name="serverKey", auto_error=False,
                           description="the service's --api-key")
_BEARER = HTTPBearer(scheme_name="serverKeyBearer", auto_error=False,
                     description="the service's --api-key as a bearer token")
SERVER_KEY = _KEY_HEADER
"""The server key as X-API-Key, for `Security(...)` in a route that also takes tokens."""
PLAYER_TOKEN = HTTPBearer(scheme_name="playerToken", bearerFormat="JWT", auto_error=False,
                          description="a player token (JWT, kind player) of the player the "
                          "request is about, or the service's --api-key")


def server_key(api_key: str | None, refuse: Callable[[], Exception]
               ) -> Callable[..., Awaitable[None]]:
    """A route dependency that raises `refuse()` unless the request carries `api_key` (as
    X-API-Key or a bearer token); the document says the operation needs it. A service without
    a key needs none, and says so."""
    if api_key is None:
        async def open_to_all() -> None:
            return None
        return open_to_all

    async def require_key(request: Request,
                          _key: Annotated[str | None, Security(_KEY_HEADER)] = None,
                          _bearer: Annotated[HTTPAuthorizationCredentials | None,
                                             Security(_BEARER)] = None) -> None:
        headers = request.headers
        if not key_matches(api_key, headers.get("x-api-key"), headers.get("authorization")):
            raise refuse()

    return require_key


class Health(BaseModel):
    status: Literal["ok"]


def add_operations_routes(app: FastAPI, redis: Any, registry: CollectorRegistry) -> None:
    """`/healthz` (ok once Redis answers a ping) and `/metrics` (the Prometheus text of
    `registry`), as every HTTP service has them."""

    @app.get("/healthz", tags=["operations"],
             responses=error_responses({503: ["redis_unavailable"]}))
    async def healthz() -> Health:
        await redis.ping()
        return Health(status="ok")

    @app.get("/metrics", tags=["operations"], response_class=Response, responses={200: {
        "description": "Prometheus text", "content": {"text/plain": {
            "schema": {"type": "string"}}}}})
    async def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


def add_error_handlers(app: FastAPI, unavailable: str) -> None:
    """Malformed requests (422 invalid_request, naming the first bad field), routing errors
    (404 not_found, 405 method_not_allowed with `Allow`) and Redis not answering (503
    redis_unavailable, saying `unavailable`) in the services' error body."""

    @app.exception_handler(RedisConnectionError)
    @app.exception_handler(RedisTimeoutError)
    async def redis_down(_: Request, e: Exception) -> JSONResponse:
        log.warning("503 redis_unavailable: %s", e)
        return error_response(503, "redis_unavailable", unavailable)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, e: RequestValidationError) -> JSONResponse:
        first = e.errors()[0] if e.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        message = f"{where}: {first.get('msg', 'invalid')}" if where else "invalid request"
        log.info("422 invalid_request: %s", message)
        return error_response(422, "invalid_request", message)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, e: StarletteHTTPException) -> JSONResponse:
        if e.status_code == 400:  # the framework's: a JSON body that is not UTF-8
            log.info("422 invalid_request: body: %s", e.detail)
            return error_response(422, "invalid_request", f"body: {e.detail}")
        code = {404: "not_found", 405: "method_not_allowed"}.get(e.status_code, "http_error")
        response = error_response(e.status_code, code, str(e.detail))
        if e.headers:
            response.headers.update(e.headers)
        if e.status_code == 405:
            response.headers["Allow"] = allowed_methods(app, request)
        return response


def allowed_methods(app: FastAPI, request: Request) -> str:
    """RFC 9110's `Allow` for the request's path: the methods of every route at that path
    (the router's own 405 names only the first route's, and each method is a route here)."""
    methods: set[str] = set()
    for route in app.router.routes:
        found = getattr(route, "methods", None)
        if found and route.matches(request.scope)[0] is not Match.NONE:
            methods |= found
    return ", ".join(sorted(methods))


class MeasureRequests:
    """ASGI wrapper that hands `record(route, status, seconds)` every HTTP request the
    framework served (plain ASGI: no per-request task)."""

    def __init__(self, app: Any, record: Callable[[str, int, float], None]) -> None:
        self.app = app
        self.record = record

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
            self.record(name, status[0], time.perf_counter() - started)


class _OneWritePerResponse:
    """A transport that holds a response's head until its body comes, so that both go out
    in one write (uvicorn writes them apart: the client then often wakes twice per answer
    and the server makes two send calls). A head whose body does not follow in the same
    step is written at the end of the loop pass; `close` writes what is held first."""

    __slots__ = ("_transport", "_held", "_due")

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._held: bytes | None = None
        self._due = False

    def write(self, data: bytes) -> None:
        held = self._held
        if held is not None:
            self._held = None
            self._transport.write(held + data)
        elif data.startswith(b"HTTP/") and data.endswith(b"\r\n\r\n"):
            self._held = data
            if not self._due:
                self._due = True
                asyncio.get_running_loop().call_soon(self._write_held)
        else:
            self._transport.write(data)

    def _write_held(self) -> None:
        self._due = False
        if self._held is not None:
            held, self._held = self._held, None
            if not self._transport.is_closing():
                self._transport.write(held)

    def close(self) -> None:
        self._write_held()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class OneWriteHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with each response's head and body in one write: give
    it as `uvicorn.Config(http=...)`."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # type: ignore[arg-type]
        self.transport = _OneWritePerResponse(self.transport)  # type: ignore[assignment]
