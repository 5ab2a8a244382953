"""CORS for the HTTP services, so a page from another origin (the relay's demo) can call them."""

from __future__ import annotations

import re
from collections.abc import Sequence

from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp

from stadium.config import ConfigError

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
