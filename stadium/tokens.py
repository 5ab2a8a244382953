"""Join tokens (one player into one room), player tokens (who a player is) and party tokens
(who agreed to queue together): JWTs (RFC 7519) made and checked through PyJWT, signed with
HS256 over the shared secret or ES256/RS256 with a private key; docs/security.md lists the
claims of each kind."""

from __future__ import annotations

import json
import math
import re
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import jwt
from jwt.exceptions import InvalidSubjectError
from jwt.types import Options

from stadium.keys import MIN_SECRET_BYTES, KeySet, SigningKey, VerificationKey

__all__ = ["AUDIENCE", "DEFAULT_LEEWAY", "JOIN", "MAX_PARTY", "MAX_TOKEN_LENGTH", "PARTY",
           "PLAYER", "REASONS", "Claims", "PartyClaims", "PlayerClaims", "Signer", "TokenError",
           "Verifier", "bearer", "sign", "sign_party", "sign_player", "verify", "verify_party",
           "verify_player"]

AUDIENCE = "stadium"
"""Every Stadium token has `aud` "stadium" (or a list holding it), so a token a studio's
auth service mints for another audience is refused."""

JOIN = "join"
PLAYER = "player"
PARTY = "party"
"""The `kind` claim: no kind of token is ever taken for another."""

MAX_PARTY = 63
"""Most members a party token names besides its leader (a match holds at most 64 players)."""

MAX_TOKEN_LENGTH = 4096
"""Longer tokens are refused as malformed before any decoding is attempted."""

DEFAULT_LEEWAY = 5.0
"""Seconds of clock skew allowed between the signer and the checker, both ways."""

REASONS = ("malformed", "unknown_key", "bad_signature", "wrong_audience", "wrong_kind",
           "expired", "not_yet_valid", "wrong_room")
"""`TokenError.reason` values, in the order the checks run."""

_REGISTERED = frozenset({"iss", "sub", "aud", "exp", "nbf", "iat", "jti"})
_RESERVED = _REGISTERED | {"kind", "room_type", "room_id", "seat", "members"}
_SAFE_KID = re.compile(r"[A-Za-z0-9._:~+/=-]{1,64}")  # echoed in a refusal only if so
_DECODE_OPTIONS: Options = {
    "require": ["exp", "sub", "aud"],
    # times are checked below against one clock reading that callers can give (`now`)
    "verify_exp": False, "verify_nbf": False, "verify_iat": False,
}

Verifier = str | bytes | KeySet
"""What tokens are checked with: the shared secret, or a KeySet (secret, public keys)."""

Signer = str | bytes | SigningKey
"""What tokens are signed with: the shared secret (HS256, no kid), or a SigningKey."""


def bearer(authorization: str | None) -> str | None:
    """The credential of an `Authorization: Bearer ...` header; None for any other."""
    if authorization and authorization[:7].lower() == "bearer ":
        return authorization[7:].strip()
    return None


class TokenError(Exception):
    """Why a token was refused; `reason` is one of REASONS. The message never holds the
    token."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True, slots=True)
class Claims:
    """What a verified join token says: who may join which room, in which seat, until when."""

    room_type: str
    room_id: str
    player: str
    seat: str  # the player's place in the room; the player id unless the issuer named one
    expires: float  # unix seconds
    # Any further JSON claims given at signing (e.g. team, match); left out of the hash
    # because JSON values such as lists are not hashable.
    extra: Mapping[str, Any] = field(hash=False)


@dataclass(frozen=True, slots=True)
class PlayerClaims:
    """What a verified player token says: who the player is, until when."""

    player: str
    expires: float
    extra: Mapping[str, Any] = field(hash=False)


class _StrictJSON(json.JSONEncoder):
    """NaN and infinities are not JSON: refuse them in claims instead of writing them."""

    def __init__(self, **kw: Any) -> None:
        kw["allow_nan"] = False
        super().__init__(**kw)


@contextmanager
def _short_secrets_allowed(key: SigningKey | VerificationKey) -> Iterator[None]:
    """PyJWT warns at every use of an HS256 secret under 32 bytes; the services say it once
    at start instead, so development secrets stay usable without a warning per token."""
    if key.algorithm != "HS256" or not isinstance(key.key, bytes) or \
            len(key.key) >= MIN_SECRET_BYTES:
        yield
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", jwt.InsecureKeyLengthWarning)
        yield


@dataclass(frozen=True, slots=True)
class PartyClaims:
    """What a verified party token says: these members agreed to queue with this leader,
    until when."""

    leader: str
    members: tuple[str, ...]  # the other players, not the leader
    expires: float
    extra: Mapping[str, Any] = field(hash=False)


# --- signing ---------------------------------------------------------------------------------


def _encode(signer: Signer, claims: dict[str, Any], extra: Mapping[str, Any], ttl: float,
            now: float | None) -> str:
    key = signer if isinstance(signer, SigningKey) else SigningKey.from_secret(signer)
    clash = sorted(_RESERVED.intersection(extra))
    if clash:
        raise ValueError(f"extra token claims may not override {', '.join(clash)}")
    issued = time.time() if now is None else now
    expires = issued + ttl
    if not (math.isfinite(issued) and math.isfinite(expires)):
        raise ValueError("token times must be finite numbers")
    # Whole seconds, as issuers commonly write them; the expiry is rounded down so a token
    # never outlives the time its issuer announced (a seat's `expires`).
    payload = {**extra, **claims, "aud": AUDIENCE, "iat": math.floor(issued),
               "nbf": math.floor(issued), "exp": math.floor(expires)}
    headers = {"kid": key.kid} if key.kid is not None else None
    with _short_secrets_allowed(key):
        return jwt.encode(payload, key.key, algorithm=key.algorithm, headers=headers,
                          json_encoder=_StrictJSON)


def _check_str(name: str, value: object) -> None:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, not {type(value).__name__}")


def sign(
    key: Signer,
    *,
    room_type: str,
    room_id: str,
    player: str,
    seat: str | None = None,
    ttl: float = 300.0,
    now: float | None = None,
    **extra: Any,
) -> str:
    """A join token letting `player` into room `room_type`/`room_id` for `ttl` seconds from
    `now`, in `seat` (default: the player id).

    `extra` claims (JSON-serialisable) come back in `Claims.extra`; they may not be named
    like a registered JWT claim or kind, room_type, room_id or seat.
    """
    for name, value in (("room_type", room_type), ("room_id", room_id), ("player", player)):
        _check_str(name, value)
    seat = player if seat is None else seat
    _check_str("seat", seat)
    claims = {"kind": JOIN, "sub": player, "room_type": room_type, "room_id": room_id,
              "seat": seat}
    return _encode(key, claims, extra, ttl, now)


def sign_player(
    key: Signer,
    *,
    player: str,
    ttl: float = 3600.0,
    now: float | None = None,
    **extra: Any,
) -> str:
    """A player token saying the holder is `player`, for `ttl` seconds from `now`; `extra`
    claims as for `sign`."""
    _check_str("player", player)
    return _encode(key, {"kind": PLAYER, "sub": player}, extra, ttl, now)


def sign_party(
    key: Signer,
    *,
    leader: str,
    members: Sequence[str],
    ttl: float = 300.0,
    now: float | None = None,
    **extra: Any,
) -> str:
    """A party token saying `members` (the players besides `leader`) agreed to queue with
    `leader`, for `ttl` seconds from `now`; `extra` claims as for `sign`. A game backend
    mints it once every member has said yes in its own lobby."""
    _check_str("leader", leader)
    if isinstance(members, str):
        raise TypeError("members must be a sequence of player ids, not a str")
    listed = list(members)
    for member in listed:
        _check_str("member", member)
    if len(listed) > MAX_PARTY:
        raise ValueError(f"a party token names at most {MAX_PARTY} members")
    if len(set(listed)) != len(listed) or leader in listed:
        raise ValueError("a party token names each player once (the leader not among members)")
    return _encode(key, {"kind": PARTY, "sub": leader, "members": listed}, extra, ttl, now)


# --- verifying -------------------------------------------------------------------------------


def _keys_for(key_set: KeySet, header: Mapping[str, Any]) -> list[VerificationKey]:
    """The keys that may have signed a token with this header (see KeySet)."""
    alg, kid = header.get("alg"), header.get("kid")  # PyJWT refused a kid that is no str
    if kid is not None:
        key = key_set.by_kid.get(kid)
        if key is None:
            named = f"key {kid!r}" if _SAFE_KID.fullmatch(kid) else "a key"
            raise TokenError("unknown_key", f"token is signed with {named} not configured here")
        if key.algorithm != alg:
            raise TokenError("bad_signature", f"token is not signed with {key.algorithm}, "
                             f"the algorithm of its key")
        return [key]
    if not key_set.unnamed:
        raise TokenError("unknown_key", "token names no key (kid), and every key here has one")
    keys = [k for k in key_set.unnamed if k.algorithm == alg]
    if not keys:
        raise TokenError("bad_signature", "token is not signed with an accepted algorithm")
    return keys


def _refusal(e: jwt.PyJWTError) -> TokenError:
    """Our reason for PyJWT's exception, with a message of ours: theirs may quote the token."""
    if isinstance(e, jwt.InvalidAudienceError) or (
            isinstance(e, jwt.MissingRequiredClaimError) and e.claim == "aud"):
        return TokenError("wrong_audience", f"token is not for audience {AUDIENCE!r}")
    if isinstance(e, jwt.MissingRequiredClaimError):
        return TokenError("malformed", f"token has no {e.claim!r} claim")
    if isinstance(e, jwt.InvalidAlgorithmError):
        return TokenError("bad_signature", "token is not signed with an accepted algorithm")
    if isinstance(e, InvalidSubjectError):
        return TokenError("malformed", "token claim 'sub' is not a string")
    if isinstance(e, jwt.InvalidTokenError):
        return TokenError("malformed", "token payload is not a valid JWT claims set")
    return TokenError("bad_signature", "token cannot be checked with its key")


def _decode(keys: Verifier, token: object, kind: str) -> dict[str, Any]:
    """The claims of a token whose signature, audience and kind are right; times and the
    rest are the caller's to check."""
    key_set = keys if isinstance(keys, KeySet) else KeySet.from_secret(keys)
    if not isinstance(token, str):
        raise TokenError("malformed", "token must be a string")
    if len(token) > MAX_TOKEN_LENGTH:
        raise TokenError("malformed", f"token is longer than {MAX_TOKEN_LENGTH} characters")
    if not token.isascii():
        raise TokenError("malformed", "token is not a JWT (it has non-ASCII characters)")
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise TokenError("malformed", "token is not a JWT (three base64url parts, the "
                         "first a JSON header)") from None
    payload: dict[str, Any] | None = None
    for key in _keys_for(key_set, header):
        try:
            with _short_secrets_allowed(key):
                payload = jwt.decode(token, key.key, algorithms=[key.algorithm],
                                     audience=AUDIENCE, options=_DECODE_OPTIONS)
            break
        except jwt.InvalidSignatureError:
            continue  # another key without a kid may have signed it
        except jwt.PyJWTError as e:
            raise _refusal(e) from None
    if payload is None:
        raise TokenError("bad_signature", "token signature does not match")
    if payload.get("kind") != kind:
        raise TokenError("wrong_kind", f"token is not a {kind} token")
    return payload


def _time_claim(payload: Mapping[str, Any], name: str) -> float | None:
    value = payload.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TokenError("malformed", f"token claim {name!r} is not a number")
    try:
        seconds = float(value)
    except OverflowError:
        seconds = math.inf
    if not math.isfinite(seconds):
        raise TokenError("malformed", f"token claim {name!r} is not a finite number")
    return seconds


def _times(payload: Mapping[str, Any]) -> tuple[float, float | None]:
    """`exp` (required: PyJWT checked it is there) and `nbf`; `iat` only has to be a time."""
    expires = _time_claim(payload, "exp")
    assert expires is not None
    _time_claim(payload, "iat")
    return expires, _time_claim(payload, "nbf")


def _check_clock(expires: float, not_before: float | None, now: float | None,
                 leeway: float) -> None:
    current = time.time() if now is None else now
    if current > expires + leeway:
        raise TokenError("expired", f"token expired {current - expires:.0f}s ago")
    if not_before is not None and not_before > current + leeway:
        raise TokenError("not_yet_valid",
                         f"token is valid only in {not_before - current:.0f}s")


def _extra(payload: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType({k: v for k, v in payload.items() if k not in _RESERVED})


def verify(
    keys: Verifier,
    token: str,
    *,
    room_type: str,
    room_id: str,
    now: float | None = None,
    leeway: float = DEFAULT_LEEWAY,
) -> Claims:
    """The claims of `token` if it is a well-formed join token signed with one of `keys`,
    for audience "stadium", within its `nbf`..`exp` (± `leeway` s), for this room.

    Raises TokenError with a reason of REASONS (checked in that order); ValueError for an
    empty secret.
    """
    payload = _decode(keys, token, JOIN)
    expires, not_before = _times(payload)
    player, token_type, token_id = payload["sub"], payload.get("room_type"), \
        payload.get("room_id")
    seat = payload.get("seat", player)
    for name, value in (("room_type", token_type), ("room_id", token_id), ("seat", seat)):
        if not isinstance(value, str):
            raise TokenError("malformed", f"token claim {name!r} is missing or not a string")
    _check_clock(expires, not_before, now, leeway)
    if token_type != room_type or token_id != room_id:
        raise TokenError("wrong_room", f"token is for room {token_type!r}/{token_id!r}, "
                         f"not {room_type!r}/{room_id!r}")
    return Claims(room_type=token_type, room_id=token_id, player=player, seat=seat,
                  expires=expires, extra=_extra(payload))


def verify_player(
    keys: Verifier,
    token: str,
    *,
    now: float | None = None,
    leeway: float = DEFAULT_LEEWAY,
) -> PlayerClaims:
    """The claims of `token` if it is a well-formed player token signed with one of `keys`,
    for audience "stadium", within its `nbf`..`exp` (± `leeway` s).

    Raises TokenError as `verify` does (never "wrong_room").
    """
    payload = _decode(keys, token, PLAYER)
    expires, not_before = _times(payload)
    _check_clock(expires, not_before, now, leeway)
    return PlayerClaims(player=payload["sub"], expires=expires, extra=_extra(payload))


def verify_party(
    keys: Verifier,
    token: str,
    *,
    now: float | None = None,
    leeway: float = DEFAULT_LEEWAY,
) -> PartyClaims:
    """The claims of `token` if it is a well-formed party token signed with one of `keys`,
    for audience "stadium", within its `nbf`..`exp` (± `leeway` s).

    Raises TokenError as `verify` does (never "wrong_room"); `members` must be a list of at
    most MAX_PARTY distinct strings, the leader not among them, else "malformed".
    """
    payload = _decode(keys, token, PARTY)
    expires, not_before = _times(payload)
    leader, members = payload["sub"], payload.get("members")
    if not isinstance(members, list) or len(members) > MAX_PARTY or \
            not all(isinstance(m, str) for m in members):
        raise TokenError("malformed", f"token claim 'members' is not a list of at most "
                         f"{MAX_PARTY} player ids")
    if len(set(members)) != len(members) or leader in members:
        raise TokenError("malformed", "token claim 'members' names a player twice")
    _check_clock(expires, not_before, now, leeway)
    return PartyClaims(leader=leader, members=tuple(members), expires=expires,
                       extra=_extra(payload))
