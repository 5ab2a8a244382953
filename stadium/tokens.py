"""Join tokens: a JSON payload naming room and player, signed with HMAC-SHA256.

Format: ``base64url(payload_json) "." base64url(hmac(secret, "stadium.v1." + payload_b64))``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import math
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

__all__ = ["MAX_TOKEN_LENGTH", "Claims", "TokenError", "sign", "verify"]

MAX_TOKEN_LENGTH = 4096
"""Longer tokens are refused as malformed before any decoding is attempted."""

_DOMAIN = b"stadium.v1."
_RESERVED = frozenset({"typ", "rid", "sub", "exp"})
_B64URL = re.compile(r"[A-Za-z0-9_-]+")


class TokenError(Exception):
    """Why a token was refused; `reason` is a short machine-readable string."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True, slots=True)
class Claims:
    """What a verified token says: who may join which room, and until when."""

    room_type: str
    room_id: str
    player: str
    expires: float  # unix seconds
    # Any further JSON fields given at signing (e.g. seat, team); left out of the hash
    # because JSON values such as lists are not hashable.
    extra: Mapping[str, Any] = field(hash=False)


def _key(secret: str | bytes) -> bytes:
    key = secret.encode("utf-8") if isinstance(secret, str) else bytes(secret)
    if not key:
        raise ValueError("token secret must not be empty")
    return key


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    """Decode unpadded base64url; raises ValueError on anything else."""
    if not _B64URL.fullmatch(text) or len(text) % 4 == 1:
        raise ValueError("not base64url")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except binascii.Error as exc:  # pragma: no cover - excluded by the checks above
        raise ValueError("not base64url") from exc


def _signature(key: bytes, payload_b64: str) -> str:
    mac = hmac.new(key, _DOMAIN + payload_b64.encode("ascii"), hashlib.sha256)
    return _b64encode(mac.digest())


def sign(
    secret: str | bytes,
    *,
    room_type: str,
    room_id: str,
    player: str,
    ttl: float = 300.0,
    now: float | None = None,
    **extra: Any,
) -> str:
    """A token letting `player` join room `room_type`/`room_id` for `ttl` seconds from `now`.

    `extra` fields (JSON-serialisable) travel in the payload and come back in `Claims.extra`;
    they may not be named typ, rid, sub or exp.
    """
    key = _key(secret)
    clash = sorted(_RESERVED.intersection(extra))
    if clash:
        raise ValueError(f"extra token fields may not override {', '.join(clash)}")
    for name, value in (("room_type", room_type), ("room_id", room_id), ("player", player)):
        if not isinstance(value, str):
            raise TypeError(f"{name} must be a str, not {type(value).__name__}")
    issued = time.time() if now is None else now
    expires = issued + ttl
    if not math.isfinite(expires):
        raise ValueError("token expiry must be a finite number")
    payload = {**extra, "typ": room_type, "rid": room_id, "sub": player, "exp": expires}
    data = json.dumps(
        payload, separators=(",", ":"), sort_keys=True, ensure_ascii=False, allow_nan=False
    ).encode("utf-8")
    payload_b64 = _b64encode(data)
    return f"{payload_b64}.{_signature(key, payload_b64)}"


def verify(
    secret: str | bytes,
    token: str,
    *,
    room_type: str,
    room_id: str,
    now: float | None = None,
    leeway: float = 5.0,
) -> Claims:
    """The claims of `token` if it is well formed, signed with `secret`, unexpired, for this room.

    Raises TokenError with reason "malformed", "bad_signature", "expired" or "wrong_room"
    (checked in that order); raises ValueError for an empty secret.
    """
    key = _key(secret)
    if not isinstance(token, str):
        raise TokenError("malformed", "token must be a string")
    if len(token) > MAX_TOKEN_LENGTH:
        raise TokenError("malformed", f"token is longer than {MAX_TOKEN_LENGTH} characters")
    parts = token.split(".")
    if len(parts) != 2:
        raise TokenError("malformed", "token must have exactly two dot-separated parts")
    payload_b64, sig_b64 = parts
    try:
        _b64decode(sig_b64)
        _b64decode(payload_b64)
    except ValueError:
        raise TokenError("malformed", "token parts are not unpadded base64url") from None

    # Compare the encoded forms so that only the canonical encoding of the MAC is accepted.
    expected = _signature(key, payload_b64).encode("ascii")
    if not hmac.compare_digest(expected, sig_b64.encode("ascii")):
        raise TokenError("bad_signature", "token signature does not match")

    try:
        payload = json.loads(_b64decode(payload_b64).decode("utf-8"))
    except (ValueError, RecursionError):
        raise TokenError("malformed", "token payload is not valid JSON") from None
    if not isinstance(payload, dict):
        raise TokenError("malformed", "token payload is not a JSON object")

    fields: dict[str, str] = {}
    for name in ("typ", "rid", "sub"):
        value = payload.get(name)
        if not isinstance(value, str):
            raise TokenError("malformed", f"token field {name!r} is missing or not a string")
        fields[name] = value
    exp = payload.get("exp")
    if isinstance(exp, bool) or not isinstance(exp, int | float):
        raise TokenError("malformed", "token field 'exp' is missing or not a number")
    try:
        expires = float(exp)
    except OverflowError:
        expires = math.inf
    if not math.isfinite(expires):
        raise TokenError("malformed", "token field 'exp' is not a finite number")

    current = time.time() if now is None else now
    if current > expires + leeway:
        raise TokenError("expired", f"token expired {current - expires:.0f}s ago")
    if fields["typ"] != room_type or fields["rid"] != room_id:
        raise TokenError(
            "wrong_room",
            f"token is for room {fields['typ']!r}/{fields['rid']!r}, not {room_type!r}/{room_id!r}",
        )

    extra = {k: v for k, v in payload.items() if k not in _RESERVED}
    return Claims(
        room_type=fields["typ"],
        room_id=fields["rid"],
        player=fields["sub"],
        expires=expires,
        extra=MappingProxyType(extra),
    )
