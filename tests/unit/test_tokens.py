"""Unit tests for `stadium.tokens`: signing, verifying and every way a token is refused."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stadium.tokens import Claims, TokenError, sign, verify

SECRET = "correct horse battery staple"
NOW = 1_700_000_000.0
ROOM: dict[str, Any] = {"room_type": "arena", "room_id": "r-42"}


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def forge(payload: Any, secret: bytes = SECRET.encode(), *, raw: bytes | None = None) -> str:
    """A correctly signed token over an arbitrary payload, built independently of the module."""
    data = raw if raw is not None else json.dumps(payload).encode()
    payload_b64 = b64(data)
    mac = hmac.new(secret, b"stadium.v1." + payload_b64.encode(), hashlib.sha256).digest()
    return f"{payload_b64}.{b64(mac)}"


def good_token(**extra: Any) -> str:
    return sign(SECRET, **ROOM, player="alice", ttl=60, now=NOW, **extra)


def reason_of(token: str, secret: str | bytes = SECRET, **kwargs: Any) -> str:
    args: dict[str, Any] = {**ROOM, "now": NOW, **kwargs}
    with pytest.raises(TokenError) as info:
        verify(secret, token, **args)
    assert str(info.value) == info.value.message
    assert info.value.message
    return info.value.reason


# --- round trip and format -------------------------------------------------------------------


def test_round_trip_with_extra_fields() -> None:
    token = good_token(seat=3, team="red", tags=["a", "b"], meta={"x": None})
    claims = verify(SECRET, token, **ROOM, now=NOW)
    assert isinstance(claims, Claims)
    assert claims.room_type == "arena"
    assert claims.room_id == "r-42"
    assert claims.player == "alice"
    assert claims.expires == NOW + 60
    assert dict(claims.extra) == {"seat": 3, "team": "red", "tags": ["a", "b"], "meta": {"x": None}}
    hash(claims)  # hashable despite unhashable extra values


def test_round_trip_without_extra_and_unicode() -> None:
    token = sign(SECRET, room_type="lobby", room_id="ü/1", player="Zoë 🎮", now=NOW)
    claims = verify(SECRET, token, room_type="lobby", room_id="ü/1", now=NOW)
    assert claims.player == "Zoë 🎮"
    assert claims.expires == NOW + 300.0  # default ttl
    assert dict(claims.extra) == {}


def test_default_now_is_current_time() -> None:
    token = sign(SECRET, **ROOM, player="bob")
    assert verify(SECRET, token, **ROOM).player == "bob"


def test_wire_format() -> None:
    token = good_token(seat=1)
    payload_b64, sig_b64 = token.split(".")
    assert "=" not in token
    assert unb64(payload_b64) == (
        b'{"exp":1700000060.0,"rid":"r-42","seat":1,"sub":"alice","typ":"arena"}'
    )
    mac = hmac.new(SECRET.encode(), b"stadium.v1." + payload_b64.encode(), hashlib.sha256)
    assert sig_b64 == b64(mac.digest())


def test_str_and_bytes_secret_are_equivalent() -> None:
    as_str = sign("sécret", **ROOM, player="p", now=NOW)
    as_bytes = sign("sécret".encode(), **ROOM, player="p", now=NOW)
    assert as_str == as_bytes
    assert verify(b"s\xc3\xa9cret", as_str, **ROOM, now=NOW).player == "p"
    assert verify("sécret", as_bytes, **ROOM, now=NOW).player == "p"


def test_extra_may_not_override_reserved_fields() -> None:
    for name in ("typ", "rid", "sub", "exp"):
        extra: dict[str, Any] = {name: "x"}
        with pytest.raises(ValueError, match=name):
            sign(SECRET, **ROOM, player="p", now=NOW, **extra)


def test_empty_secret_is_refused() -> None:
    token = good_token()
    for secret in ("", b""):
        with pytest.raises(ValueError):
            sign(secret, **ROOM, player="p", now=NOW)
        with pytest.raises(ValueError):
            verify(secret, token, **ROOM, now=NOW)


def test_non_finite_expiry_cannot_be_signed() -> None:
    with pytest.raises(ValueError):
        sign(SECRET, **ROOM, player="p", ttl=float("inf"), now=NOW)


def test_token_error_attributes() -> None:
    err = TokenError("expired", "token expired 12s ago")
    assert err.reason == "expired"
    assert err.message == "token expired 12s ago"
    assert str(err) == "token expired 12s ago"


# --- refusals ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "token",
    [
        "",
        "abc",
        "a.b.c",
        ".",
        "abc.",
        ".abc",
        "ab$c.abcd",
        "abcd.ab=c",
        "abcde.abcd",  # length 5: not decodable base64
        "a" * 4097,
        good_token() + "=",
        good_token() + ".x",
    ],
)
def test_malformed_shapes(token: str) -> None:
    assert reason_of(token) == "malformed"


def test_too_long_token_is_malformed_even_if_signed() -> None:
    token = good_token(pad="x" * 4000)
    assert len(token) > 4096
    assert reason_of(token) == "malformed"


@pytest.mark.parametrize(
    "payload",
    [
        [1, 2, 3],
        "string",
        42,
        None,
        {},
        {"rid": "r-42", "sub": "alice", "exp": NOW + 60},  # typ missing
        {"typ": "arena", "sub": "alice", "exp": NOW + 60},  # rid missing
        {"typ": "arena", "rid": "r-42", "exp": NOW + 60},  # sub missing
        {"typ": "arena", "rid": "r-42", "sub": "alice"},  # exp missing
        {"typ": 1, "rid": "r-42", "sub": "alice", "exp": NOW + 60},
        {"typ": "arena", "rid": None, "sub": "alice", "exp": NOW + 60},
        {"typ": "arena", "rid": "r-42", "sub": ["alice"], "exp": NOW + 60},
        {"typ": "arena", "rid": "r-42", "sub": "alice", "exp": str(NOW + 60)},
        {"typ": "arena", "rid": "r-42", "sub": "alice", "exp": True},
        {"typ": "arena", "rid": "r-42", "sub": "alice", "exp": float("nan")},
        {"typ": "arena", "rid": "r-42", "sub": "alice", "exp": float("inf")},
        {"typ": "arena", "rid": "r-42", "sub": "alice", "exp": 10**400},
    ],
)
def test_signed_but_malformed_payload(payload: Any) -> None:
    assert reason_of(forge(payload)) == "malformed"


@pytest.mark.parametrize("raw", [b"", b"not json", b"\xff\xfe", b"[" * 3000, b'{"typ": '])
def test_signed_but_unparseable_payload(raw: bytes) -> None:
    assert reason_of(forge(None, raw=raw)) == "malformed"


def test_integer_expiry_is_accepted() -> None:
    token = forge({"typ": "arena", "rid": "r-42", "sub": "alice", "exp": int(NOW) + 60})
    claims = verify(SECRET, token, **ROOM, now=NOW)
    assert claims.expires == NOW + 60
    assert isinstance(claims.expires, float)


def test_forged_token_matches_module_format() -> None:
    token = forge({"typ": "arena", "rid": "r-42", "sub": "alice", "exp": NOW + 60, "seat": 2})
    assert verify(SECRET, token, **ROOM, now=NOW).extra == {"seat": 2}


def test_wrong_secret_is_bad_signature() -> None:
    assert reason_of(good_token(), secret="another secret") == "bad_signature"
    assert reason_of(good_token(), secret=SECRET.upper()) == "bad_signature"
    assert reason_of(good_token(), secret=SECRET[:-1]) == "bad_signature"


def test_tampered_payload_with_original_signature_is_bad_signature() -> None:
    payload_b64, sig_b64 = good_token().split(".")
    payload = json.loads(unb64(payload_b64))
    payload["sub"] = "mallory"
    tampered = b64(json.dumps(payload, separators=(",", ":"), sort_keys=True).encode())
    assert reason_of(f"{tampered}.{sig_b64}") == "bad_signature"


def test_signature_is_checked_before_payload_is_parsed() -> None:
    _, sig_b64 = good_token().split(".")
    assert reason_of(f"{b64(b'not json')}.{sig_b64}") == "bad_signature"


def test_truncated_or_empty_looking_signature_is_bad_signature() -> None:
    payload_b64, sig_b64 = good_token().split(".")
    assert reason_of(f"{payload_b64}.{sig_b64[:-4]}") == "bad_signature"
    assert reason_of(f"{payload_b64}.AAAA") == "bad_signature"


def test_expired() -> None:
    token = good_token()  # expires at NOW + 60
    with pytest.raises(TokenError) as info:
        verify(SECRET, token, **ROOM, now=NOW + 60 + 12)
    assert info.value.reason == "expired"
    assert "12s ago" in info.value.message


def test_leeway_boundary() -> None:
    token = good_token()
    exp = NOW + 60
    assert verify(SECRET, token, **ROOM, now=exp).player == "alice"
    assert verify(SECRET, token, **ROOM, now=exp + 5.0).player == "alice"  # default leeway
    assert reason_of(token, now=exp + 5.001) == "expired"
    assert verify(SECRET, token, **ROOM, now=exp, leeway=0).player == "alice"
    assert reason_of(token, now=exp + 0.001, leeway=0) == "expired"
    assert verify(SECRET, token, **ROOM, now=exp + 30, leeway=30).player == "alice"
    assert reason_of(token, now=exp + 30.5, leeway=30) == "expired"


def test_wrong_room() -> None:
    token = good_token()
    assert reason_of(token, room_type="duel") == "wrong_room"
    assert reason_of(token, room_id="r-43") == "wrong_room"
    assert reason_of(token, room_type="duel", room_id="r-43") == "wrong_room"


# --- properties ---------------------------------------------------------------------------------


B64_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
token_like = st.one_of(
    st.text(max_size=200),
    st.text(alphabet=B64_ALPHABET + ".", max_size=200),
    st.builds(
        lambda a, b: f"{a}.{b}",
        st.text(alphabet=B64_ALPHABET, max_size=120),
        st.text(alphabet=B64_ALPHABET, max_size=60),
    ),
)


def _verify_or_refuse(token: str) -> None:
    try:
        result = verify(SECRET, token, **ROOM, now=NOW)
    except TokenError as err:
        assert err.reason in {"malformed", "bad_signature", "expired", "wrong_room"}
    else:
        assert isinstance(result, Claims)


@given(token_like)
def test_random_text_never_raises_anything_but_token_error(token: str) -> None:
    _verify_or_refuse(token)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=4)
    ),
    max_leaves=20,
)


@given(
    st.one_of(
        json_values,
        st.dictionaries(st.sampled_from(["typ", "rid", "sub", "exp", "x"]), json_values),
    )
)
def test_any_signed_json_payload_gives_claims_or_token_error(payload: Any) -> None:
    _verify_or_refuse(forge(payload))


@given(st.binary(max_size=300))
def test_any_signed_bytes_payload_gives_claims_or_token_error(raw: bytes) -> None:
    _verify_or_refuse(forge(None, raw=raw))


@settings(max_examples=300)
@given(st.data())
def test_flipping_any_one_character_never_verifies(data: st.DataObject) -> None:
    token = good_token(seat=7, team="blue")
    index = data.draw(st.integers(min_value=0, max_value=len(token) - 1), label="index")
    original = token[index]
    replacement = data.draw(
        st.one_of(st.sampled_from(B64_ALPHABET + "."), st.characters()).filter(
            lambda c: c != original
        ),
        label="replacement",
    )
    flipped = token[:index] + replacement + token[index + 1 :]
    with pytest.raises(TokenError):
        verify(SECRET, flipped, **ROOM, now=NOW)


def test_flipping_each_character_to_each_alphabet_letter_never_verifies() -> None:
    token = good_token(seat=7)
    for index, original in enumerate(token):
        for replacement in B64_ALPHABET + ".":
            if replacement == original:
                continue
            flipped = token[:index] + replacement + token[index + 1 :]
            with pytest.raises(TokenError):
                verify(SECRET, flipped, **ROOM, now=NOW)
