"""What the HTTP services share: CORS (so a page from another origin, the relay's demo, can
call them), the server-key check and the JSON error body."""

from __future__ import annotations

import asyncio
import hmac
import logging
import re
import time
from collections.abc import Callable, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.routing import Match
from starlette.types import ASGIApp
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from stadium.config import ConfigError

log = logging.getLogger("stadium.http")

ORIGIN = re.compile(r"https?://[^/\s?#]+")
# What a game page needs: reads, tickets, and the key header for tools that hold one.
METHODS = ["GET", "POST", "PUT", "DELETE"]
HEADERS = ["content-type", "x-api-key", "authorization"]
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
                          allow_headers=HEADERS, max_age=PREFLIGHT_CACHE)


def key_matches(api_key: str | None, x_api_key: str | None, authorization: str | None) -> bool:
    """Whether a request carries the server key (X-API-Key or a bearer token); True when the
    service has none."""
    if api_key is None:
        return True
    given = x_api_key or ""
    if not given and authorization and authorization[:7].lower() == "bearer ":
        given = authorization[7:].strip()
    return hmac.compare_digest(given.encode(), api_key.encode())


def error_response(status: int, code: str, message: str) -> JSONResponse:
    """The services' error body: {"error": {"code", "message"}}."""
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


def add_operations_routes(app: FastAPI, redis: Any, registry: CollectorRegistry) -> None:
    """`/healthz` (ok once Redis answers a ping) and `/metrics` (the Prometheus text of
    `registry`), as every HTTP service has them."""

    @app.get("/healthz", tags=["operations"])
    async def healthz() -> dict[str, str]:
        await redis.ping()
        return {"status": "ok"}

    @app.get("/metrics", tags=["operations"], response_class=Response)
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
