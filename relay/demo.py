"""The demo page (`--demo`): relay/demo/ at `/` and `/demo/`, the JS SDK's sources at `/sdk/`,
and `/demo/config.json` telling the page where the matchmaker and leaderboard are."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from relay.config import RelayConfig
from relay.http import HttpError, Request, http_response

log = logging.getLogger("stadium.relay.demo")

PAGE_DIR = Path(__file__).with_name("demo")
# The SDK is served from the checkout (no build step); a wheel without it gets a clear 404.
SDK_DIR = Path(__file__).resolve().parents[1] / "sdk" / "js" / "src"
TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
# Files change while a developer edits them: no stale copies in the browser.
NO_CACHE = (("Cache-Control", "no-store"),)


class DemoSite:
    """Answers GET/HEAD for `/`, `/demo/...` and `/sdk/...`; `links` (filled by `stadium dev`)
    are the service URLs the page reads from `/demo/config.json`."""

    def __init__(self, config: RelayConfig) -> None:
        self.config = config
        self.links: dict[str, str] = {}
        if not SDK_DIR.is_dir():
            log.warning("--demo: the JS SDK is not at %s (it ships in the source tree, "
                        "sdk/js/src); the page will not load", SDK_DIR)

    @staticmethod
    def serves(path: str) -> bool:
        return path == "/" or path.startswith(("/demo/", "/sdk/"))

    def response(self, req: Request) -> bytes:
        """The whole HTTP response for a path `serves` accepted; HttpError for anything else."""
        if req.method not in ("GET", "HEAD"):
            raise HttpError(405, "method_not_allowed", f"{req.path} answers GET only")
        path = req.path
        if path == "/demo/config.json":
            body = json.dumps(self.services()).encode()
            ctype = "application/json"
        else:
            if path == "/":
                file = PAGE_DIR / "index.html"
            elif path.startswith("/demo/"):
                file = _inside(PAGE_DIR, path[len("/demo/"):])
            else:
                if not SDK_DIR.is_dir():
                    raise HttpError(404, "sdk_missing", f"the JS SDK is not at {SDK_DIR}: run "
                                    "the relay from a Stadium source checkout to use --demo")
                file = _inside(SDK_DIR, path[len("/sdk/"):])
            body, ctype = file.read_bytes(), TYPES[file.suffix]
        return http_response(200, b"" if req.method == "HEAD" else body, ctype, NO_CACHE)

    def services(self) -> dict[str, str | None]:
        return {"matchmaker": self.links.get("matchmaker"),
                "leaderboard": self.links.get("leaderboard") or self.config.leaderboard_url,
                "queue": self.links.get("queue")}


def _inside(root: Path, rel: str) -> Path:
    """`root/rel` when it is a servable file below `root` (no dot segments, known type)."""
    parts = rel.split("/")
    if not rel or any(not p or p.startswith(".") for p in parts):
        raise HttpError(404, "not_found", f"no demo file {rel!r}")
    file = root.joinpath(*parts)
    if file.suffix not in TYPES or not file.is_file() or not file.resolve().is_relative_to(
            root.resolve()):
        raise HttpError(404, "not_found", f"no demo file {rel!r}")
    return file
