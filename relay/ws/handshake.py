"""The WebSocket opening handshake (RFC 6455 section 4) on a parsed HTTP request, without I/O."""

from __future__ import annotations

import base64
import binascii
import hashlib

from relay.http import HttpError, Request

WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def is_upgrade(req: Request) -> bool:
    """The client asks for a protocol switch (to WebSocket or to something we refuse)."""
    return "upgrade" in req.header_tokens("connection") or "upgrade" in req.headers


def accept_key(key: str) -> str:
    return base64.b64encode(hashlib.sha1(key.encode("ascii") + WS_GUID).digest()).decode("ascii")


def validate_upgrade(req: Request) -> str:
    """Check a WebSocket opening handshake; return the Sec-WebSocket-Accept value."""
    if req.method != "GET":
        raise HttpError(400, "bad_upgrade", "a WebSocket upgrade must use GET")
    if not req.headers.get("host", "").strip():
        raise HttpError(400, "bad_upgrade", "the Host header is required")
    if "websocket" not in req.header_tokens("upgrade"):
        raise HttpError(426, "upgrade_required", "only 'Upgrade: websocket' is supported",
                        (("Upgrade", "websocket"),))
    if "upgrade" not in req.header_tokens("connection"):
        raise HttpError(400, "bad_upgrade", "'Connection' header must contain 'Upgrade'")
    if req.headers.get("sec-websocket-version", "").strip() != "13":
        raise HttpError(426, "unsupported_version", "Sec-WebSocket-Version must be 13",
                        (("Sec-WebSocket-Version", "13"),))
    key = req.headers.get("sec-websocket-key", "").strip()
    try:
        raw = base64.b64decode(key.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raw = b""
    if len(raw) != 16:
        raise HttpError(400, "bad_upgrade", "Sec-WebSocket-Key must be 16 bytes in base64")
    return accept_key(key)


def accept_response(accept: str) -> bytes:
    # No Sec-WebSocket-Extensions header: permessage-deflate and every other extension are declined.
    return (
        "HTTP/1.1 101 Switching Protocols\r\n"
        "Upgrade: websocket\r\n"
        "Connection: Upgrade\r\n"
        f"Sec-WebSocket-Accept: {accept}\r\n\r\n"
    ).encode("ascii")
