"""Unit tests for `stadium.tokens`: join and player tokens as JWTs, signed with the shared
secret (HS256) or a private key (ES256, RS256) that the checker knows only publicly, and
every way a token is refused."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from hypothesis import given, settings
from hypothesis import strategies as st
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from stadium.keys import KeySet, SigningKey, VerificationKey, load_verification_keys
from stadium.tokens import (
    MAX_PARTY,
    MAX_TOKEN_LENGTH,
    REASONS,
    Claims,
    PartyClaims,
    PlayerClaims,
    TokenError,
    sign,
    sign_party,
    sign_player,
    verify,
    verify_party,
    verify_player,
)

SECRET = "correct horse battery staple, 32+"
NOW = 1_700_000_000.0
ROOM: dict[str, Any] = {"room_type": "arena", "room_id": "r-42"}
EC_KEY = ec.generate_private_key(ec.SECP256R1())
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def claims_of(token: str) -> dict[str, Any]:
    """The payload as any JWT reader sees it, without checking anything."""
    payload: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return payload


DROP = object()  # a claim join_claims leaves out


def join_claims(**over: Any) -> dict[str, Any]:
    claims = {"kind": "join", "sub": "alice", "room_type": "arena", "room_id": "r-42",
              "seat": "alice", "aud": "stadium", "iat": int(NOW), "nbf": int(NOW),
              "exp": int(NOW) + 60}
    claims.update(over)
    return {k: v for k, v in claims.items() if v is not DROP}


def forge(claims: Any, key: Any = SECRET, algorithm: str = "HS256", kid: str | None = None,
          *, raw: bytes | None = None) -> str:
    """A token made the way another issuer (a studio's auth service) would: with PyJWT
    directly, not through stadium.tokens; `raw` signs arbitrary payload bytes."""
    headers = {"kid": kid} if kid is not None else None
    if raw is not None or not isinstance(claims, dict):
        data = raw if raw is not None else json.dumps(claims).encode()
        return jwt.api_jws.encode(data, key, algorithm=algorithm, headers=headers)
    return jwt.encode(claims, key, algorithm=algorithm, headers=headers)


def hs256(header: dict[str, Any], claims: dict[str, Any], key: bytes = SECRET.encode()) -> str:
    """A token with any header at all, signed by hand."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    mac = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(mac)}"


def good_token(**extra: Any) -> str:
    return sign(SECRET, **ROOM, player="alice", ttl=60, now=NOW, **extra)


def refusal(token: str, keys: Any = SECRET, *, player: bool = False,
            **kwargs: Any) -> TokenError:
    args: dict[str, Any] = {"now": NOW, **kwargs}
    with pytest.raises(TokenError) as info:
        if player:
            verify_player(keys, token, **args)
        else:
            verify(keys, token, **{**ROOM, **args})
    err = info.value
    assert str(err) == err.message and err.message
    assert err.reason in REASONS
    # the message never holds the token, nor any of its parts
    assert token not in err.message or not token
    for part in token.split("."):
        assert len(part) < 8 or part not in err.message
    return err


def reason_of(token: str, keys: Any = SECRET, **kwargs: Any) -> str:
    return refusal(token, keys, **kwargs).reason


def pem_public(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)


def jwk_public(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey, kid: str) -> dict[str, Any]:
    if isinstance(key, ec.EllipticCurvePrivateKey):
        jwk: dict[str, Any] = ECAlgorithm.to_jwk(key.public_key(), as_dict=True)
    else:
        jwk = RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
    return {**jwk, "kid": kid, "use": "sig"}


# --- HS256 with the shared secret ------------------------------------------------------------


def test_round_trip_with_extra_claims() -> None:
    token = good_token(team="red", tags=["a", "b"], meta={"x": None}, match="1v1.abc")
    claims = verify(SECRET, token, **ROOM, now=NOW)
    assert isinstance(claims, Claims)
    assert (claims.room_type, claims.room_id, claims.player, claims.seat) == (
        "arena", "r-42", "alice", "alice")
    assert claims.expires == NOW + 60
    assert dict(claims.extra) == {"team": "red", "tags": ["a", "b"], "meta": {"x": None},
                                  "match": "1v1.abc"}
    hash(claims)  # hashable despite unhashable extra values


def test_round_trip_unicode_and_named_seat() -> None:
    token = sign(SECRET, room_type="lobby", room_id="ü:1", player="Zoë 🎮", seat="2", now=NOW)
    claims = verify(SECRET, token, room_type="lobby", room_id="ü:1", now=NOW)
    assert (claims.player, claims.seat) == ("Zoë 🎮", "2")
    assert claims.expires == NOW + 300.0  # default ttl
    assert dict(claims.extra) == {}


def test_default_now_is_current_time() -> None:
    token = sign(SECRET, **ROOM, player="bob")
    assert verify(SECRET, token, **ROOM).player == "bob"
    assert verify_player(SECRET, sign_player(SECRET, player="bob")).player == "bob"


def test_a_join_token_is_a_jwt_any_reader_understands() -> None:
    token = good_token(team=1)
    header = jwt.get_unverified_header(token)
    assert header == {"alg": "HS256", "typ": "JWT"}  # no kid: the secret has none
    assert claims_of(token) == {"kind": "join", "sub": "alice", "room_type": "arena",
                                "room_id": "r-42", "seat": "alice", "aud": "stadium",
                                "iat": 1_700_000_000, "nbf": 1_700_000_000,
                                "exp": 1_700_000_060, "team": 1}
    # a studio's own code checks it with PyJWT and the shared secret
    assert jwt.decode(token, SECRET, algorithms=["HS256"], audience="stadium",
                      options={"verify_exp": False, "verify_nbf": False,
                               "verify_iat": False})["sub"] == "alice"


def test_times_are_whole_seconds_and_the_expiry_rounds_down() -> None:
    """A token never outlives what it was signed for (a seat's expiry, say)."""
    token = sign(SECRET, **ROOM, player="p", ttl=60, now=NOW + 0.75)
    claims = claims_of(token)
    assert (claims["iat"], claims["nbf"], claims["exp"]) == (int(NOW), int(NOW), int(NOW) + 60)


def test_str_and_bytes_secret_are_equivalent() -> None:
    as_str = sign("sécret", **ROOM, player="p", now=NOW)
    as_bytes = sign("sécret".encode(), **ROOM, player="p", now=NOW)
    assert as_str == as_bytes
    assert verify(b"s\xc3\xa9cret", as_str, **ROOM, now=NOW).player == "p"
    assert verify("sécret", as_bytes, **ROOM, now=NOW).player == "p"


def test_a_short_secret_works_without_a_warning_per_token(
        recwarn: pytest.WarningsRecorder) -> None:
    token = sign("k", **ROOM, player="p", now=NOW)
    assert verify("k", token, **ROOM, now=NOW).player == "p"
    assert not [w for w in recwarn if issubclass(w.category, jwt.InsecureKeyLengthWarning)]


def test_extra_may_not_override_reserved_claims() -> None:
    for name in ("kind", "iss", "sub", "aud", "exp", "nbf", "iat", "jti", "room_type",
                 "room_id", "seat"):
        extra: dict[str, Any] = {name: "x"}
        if name not in ("room_type", "room_id", "seat"):  # arguments of sign
            with pytest.raises(ValueError, match=name):
                sign(SECRET, **ROOM, player="p", now=NOW, **extra)
        with pytest.raises(ValueError, match=name):
            sign_player(SECRET, player="p", now=NOW, **extra)


def test_bad_arguments_are_refused_at_signing() -> None:
    for secret in ("", b""):
        with pytest.raises(ValueError):
            sign(secret, **ROOM, player="p", now=NOW)
        with pytest.raises(ValueError):
            verify(secret, good_token(), **ROOM, now=NOW)
    with pytest.raises(ValueError):
        sign(SECRET, **ROOM, player="p", ttl=float("inf"), now=NOW)
    with pytest.raises(ValueError):
        sign(SECRET, **ROOM, player="p", now=NOW, score=float("nan"))
    with pytest.raises(TypeError):
        sign(SECRET, **ROOM, player=7, now=NOW)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        sign(SECRET, **ROOM, player="p", seat=3, now=NOW)  # type: ignore[arg-type]


def test_token_error_attributes() -> None:
    err = TokenError("expired", "token expired 12s ago")
    assert err.reason == "expired"
    assert err.message == "token expired 12s ago"
    assert str(err) == "token expired 12s ago"


# --- player tokens -----------------------------------------------------------------------------


def test_player_token_round_trip() -> None:
    token = sign_player(SECRET, player="alice", ttl=600, now=NOW, name="Alice", steam="7656")
    claims = verify_player(SECRET, token, now=NOW)
    assert isinstance(claims, PlayerClaims)
    assert claims.player == "alice" and claims.expires == NOW + 600
    assert dict(claims.extra) == {"name": "Alice", "steam": "7656"}
    assert claims_of(token) == {"kind": "player", "sub": "alice", "aud": "stadium",
                                "iat": int(NOW), "nbf": int(NOW), "exp": int(NOW) + 600,
                                "name": "Alice", "steam": "7656"}
    assert sign_player(SECRET, player="p", now=NOW) and claims_of(
        sign_player(SECRET, player="p", now=NOW))["exp"] == int(NOW) + 3600  # default ttl


def test_a_player_token_is_no_join_token_nor_the_reverse() -> None:
    player_token = sign_player(SECRET, player="alice", now=NOW)
    assert reason_of(player_token) == "wrong_kind"
    assert refusal(good_token(), player=True).reason == "wrong_kind"
    # nor is a token without a kind, or of another kind, either
    assert reason_of(forge(join_claims(kind=DROP))) == "wrong_kind"
    assert reason_of(forge(join_claims(kind="refresh"))) == "wrong_kind"
    assert refusal(forge(join_claims(kind=DROP)), player=True).reason == "wrong_kind"


def test_player_token_refusals() -> None:
    token = sign_player(SECRET, player="alice", ttl=60, now=NOW)
    assert refusal(token, "another secret, as long as it needs", player=True).reason == \
        "bad_signature"
    assert refusal(token, player=True, now=NOW + 66).reason == "expired"
    assert refusal(token, player=True, now=NOW - 6).reason == "not_yet_valid"
    foreign = forge({"kind": "player", "sub": "alice", "aud": "game-api", "exp": int(NOW) + 60})
    assert refusal(foreign, player=True).reason == "wrong_audience"


def test_party_token_round_trip() -> None:
    token = sign_party(SECRET, leader="ada", members=["bob", "cyd"], ttl=120, now=NOW,
                       lobby="L-7")
    claims = verify_party(SECRET, token, now=NOW)
    assert isinstance(claims, PartyClaims)
    assert claims.leader == "ada" and claims.members == ("bob", "cyd")
    assert claims.expires == NOW + 120 and dict(claims.extra) == {"lobby": "L-7"}
    assert claims_of(token) == {"kind": "party", "sub": "ada", "members": ["bob", "cyd"],
                                "aud": "stadium", "iat": int(NOW), "nbf": int(NOW),
                                "exp": int(NOW) + 120, "lobby": "L-7"}
    assert claims_of(sign_party(SECRET, leader="a", members=[], now=NOW))["exp"] == \
        int(NOW) + 300  # default ttl


def test_a_party_token_is_no_player_or_join_token_nor_the_reverse() -> None:
    party = sign_party(SECRET, leader="ada", members=["bob"], now=NOW)
    assert reason_of(party) == "wrong_kind"
    assert refusal(party, player=True).reason == "wrong_kind"
    for other in (good_token(), sign_player(SECRET, player="ada", now=NOW)):
        with pytest.raises(TokenError) as info:
            verify_party(SECRET, other, now=NOW)
        assert info.value.reason == "wrong_kind"


def test_party_token_refusals() -> None:
    token = sign_party(SECRET, leader="ada", members=["bob"], ttl=60, now=NOW)
    cases: list[tuple[str, Any, float]] = [
        ("bad_signature", "another secret, as long as it needs", NOW),
        ("expired", SECRET, NOW + 66), ("not_yet_valid", SECRET, NOW - 6)]
    for reason, keys, at in cases:
        with pytest.raises(TokenError) as info:
            verify_party(keys, token, now=at)
        assert info.value.reason == reason and token not in info.value.message
    party = {"kind": "party", "sub": "ada", "aud": "stadium", "exp": int(NOW) + 60}
    for members in (DROP, "bob", [1], ["bob", "bob"], ["ada"], ["p"] * (MAX_PARTY + 1),
                    [f"p{i}" for i in range(MAX_PARTY + 1)]):
        claims = {**party, "members": members}
        with pytest.raises(TokenError) as info:
            verify_party(SECRET, forge({k: v for k, v in claims.items() if v is not DROP}),
                         now=NOW)
        assert info.value.reason == "malformed", members
    with pytest.raises(TokenError) as info:
        verify_party(SECRET, forge({**party, "members": [], "aud": "x"}), now=NOW)
    assert info.value.reason == "wrong_audience"


def test_bad_party_arguments_are_refused_at_signing() -> None:
    with pytest.raises(TypeError):
        sign_party(SECRET, leader="ada", members="bob")
    with pytest.raises(TypeError):
        sign_party(SECRET, leader="ada", members=[7])  # type: ignore[list-item]
    for members in (["bob", "bob"], ["ada"], [f"p{i}" for i in range(MAX_PARTY + 1)]):
        with pytest.raises(ValueError):
            sign_party(SECRET, leader="ada", members=members)
    with pytest.raises(ValueError):
        sign_party(SECRET, leader="ada", members=[], members_extra=1, seat="x")


# --- ES256 and RS256: the checker knows the public key only -----------------------------------


@pytest.fixture(params=["ES256", "RS256"])
def private_key(request: pytest.FixtureRequest) -> tuple[str, Any]:
    return request.param, EC_KEY if request.param == "ES256" else RSA_KEY


@pytest.mark.parametrize("form", ["pem", "jwks"])
def test_asymmetric_tokens_checked_with_the_public_key_only(
        private_key: tuple[str, Any], form: str, tmp_path: Path) -> None:
    algorithm, key = private_key
    if form == "pem":
        path = tmp_path / "public.pem"
        path.write_bytes(pem_public(key))
        spec = f"studio-1={path}"
    else:
        path = tmp_path / "jwks.json"
        path.write_text(json.dumps({"keys": [jwk_public(key, "studio-1")]}))
        spec = str(path)
    keys = KeySet(load_verification_keys(spec))
    assert [(k.algorithm, k.kid) for k in keys] == [(algorithm, "studio-1")]
    assert not isinstance(next(iter(keys)).key, bytes | ec.EllipticCurvePrivateKey
                          | rsa.RSAPrivateKey)

    signer = SigningKey(algorithm, key, "studio-1")
    token = sign(signer, **ROOM, player="alice", ttl=60, now=NOW, team=0)
    assert jwt.get_unverified_header(token) == {"alg": algorithm, "kid": "studio-1",
                                                "typ": "JWT"}
    claims = verify(keys, token, **ROOM, now=NOW)
    assert (claims.player, dict(claims.extra)) == ("alice", {"team": 0})
    player_token = sign_player(signer, player="alice", now=NOW)
    assert verify_player(keys, player_token, now=NOW).player == "alice"

    # what a studio's auth service mints with its own JWT library is accepted too
    minted = forge(join_claims(), key, algorithm, kid="studio-1")
    assert verify(keys, minted, **ROOM, now=NOW).player == "alice"
    # a key of the same kind that is not the configured one is not
    other = (ec.generate_private_key(ec.SECP256R1()) if algorithm == "ES256"
             else rsa.generate_private_key(public_exponent=65537, key_size=2048))
    assert reason_of(forge(join_claims(), other, algorithm, kid="studio-1"), keys) == \
        "bad_signature"


def test_a_public_key_without_a_kid_checks_tokens_without_one(tmp_path: Path) -> None:
    (tmp_path / "ec.pem").write_bytes(pem_public(EC_KEY))
    keys = KeySet(load_verification_keys(str(tmp_path / "ec.pem")))
    token = sign(SigningKey("ES256", EC_KEY), **ROOM, player="p", now=NOW)
    assert "kid" not in jwt.get_unverified_header(token)
    assert verify(keys, token, **ROOM, now=NOW).player == "p"


def test_secret_and_public_keys_together() -> None:
    keys = KeySet([VerificationKey("HS256", SECRET.encode()),
                   VerificationKey("ES256", EC_KEY.public_key(), "es"),
                   VerificationKey("RS256", RSA_KEY.public_key(), "rs")])
    assert verify(keys, good_token(), **ROOM, now=NOW).player == "alice"
    for key, alg, kid in ((EC_KEY, "ES256", "es"), (RSA_KEY, "RS256", "rs")):
        token = sign(SigningKey(alg, key, kid), **ROOM, player="p", now=NOW)
        assert verify(keys, token, **ROOM, now=NOW).player == "p"


def test_rotation_by_kid() -> None:
    """Keys rotate without downtime: during the change both kids are accepted; once the old
    key is dropped its tokens are refused while the new kid's are accepted."""
    old_key = ec.generate_private_key(ec.SECP256R1())
    new_key = ec.generate_private_key(ec.SECP256R1())
    old = sign(SigningKey("ES256", old_key, "2024-12"), **ROOM, player="p", now=NOW)
    new = sign(SigningKey("ES256", new_key, "2025-01"), **ROOM, player="p", now=NOW)
    both = KeySet([VerificationKey("ES256", old_key.public_key(), "2024-12"),
                   VerificationKey("ES256", new_key.public_key(), "2025-01")])
    assert verify(both, old, **ROOM, now=NOW).player == "p"
    assert verify(both, new, **ROOM, now=NOW).player == "p"
    rotated = KeySet([VerificationKey("ES256", new_key.public_key(), "2025-01")])
    err = refusal(old, rotated)
    assert err.reason == "unknown_key" and "'2024-12'" in err.message
    assert verify(rotated, new, **ROOM, now=NOW).player == "p"
    # HS256 secrets rotate the same way, named in a JWKS (kty oct)
    secrets = KeySet([VerificationKey("HS256", b"new secret, long enough to be fine", "hs-2")])
    assert reason_of(sign(SigningKey.from_secret("old secret, long enough to be fine", "hs-1"),
                          **ROOM, player="p", now=NOW), secrets) == "unknown_key"
    assert verify(secrets, sign(SigningKey.from_secret("new secret, long enough to be fine",
                                                       "hs-2"), **ROOM, player="p", now=NOW),
                  **ROOM, now=NOW).player == "p"


def test_kid_rules() -> None:
    named = KeySet([VerificationKey("HS256", SECRET.encode(), "k1")])
    # a token without a kid, where every key has one
    assert reason_of(good_token(), named) == "unknown_key"
    # a token with a kid, where the secret has none
    assert reason_of(sign(SigningKey.from_secret(SECRET, "k1"), **ROOM, player="p", now=NOW)
                     ) == "unknown_key"
    # a kid that is not a string is malformed; one not fit to quote is not quoted
    assert reason_of(hs256({"alg": "HS256", "kid": 7}, join_claims())) == "malformed"
    err = refusal(forge(join_claims(), kid="x\n" + "y" * 100))
    assert err.reason == "unknown_key" and "yyy" not in err.message


def test_algorithm_confusion_is_refused() -> None:
    """The public key's PEM used as an HMAC secret under the ES256 key's kid, `none`, and
    algorithms outside HS256/ES256/RS256 are all refused."""
    keys = KeySet([VerificationKey("HS256", SECRET.encode()),
                   VerificationKey("ES256", EC_KEY.public_key(), "es")])
    confused = hs256({"alg": "HS256", "kid": "es"}, join_claims(), pem_public(EC_KEY))
    assert reason_of(confused, keys) == "bad_signature"
    none = jwt.encode(join_claims(), None, algorithm="none")  # type: ignore[arg-type]
    assert reason_of(none, keys) == "bad_signature"
    assert reason_of(forge(join_claims(), SECRET * 2, "HS512"), keys) == "bad_signature"
    assert reason_of(forge(join_claims(), SECRET * 2, "HS384", kid="es"), keys) == \
        "bad_signature"


# --- refusals ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "token",
    [
        "",
        "abc",
        "a.b",
        "a.b.c.d",
        ".",
        "..",
        "abc.def.",
        "ab$c.abcd.abcd",
        "abcde.abcd.abcd",  # length 5: not decodable base64
        "é" + good_token(),
        good_token().replace(".", "", 1),
        b64(b"[1]") + "." + good_token().split(".", 1)[1],  # header not an object
        b64(b"{not json") + "." + good_token().split(".", 1)[1],
    ],
)
def test_malformed_shapes(token: str) -> None:
    assert reason_of(token) == "malformed"


def test_a_huge_token_is_refused_before_decoding() -> None:
    token = good_token(pad="x" * MAX_TOKEN_LENGTH)
    assert len(token) > MAX_TOKEN_LENGTH
    err = refusal(token)
    assert err.reason == "malformed" and str(MAX_TOKEN_LENGTH) in err.message
    assert reason_of("a" * (MAX_TOKEN_LENGTH + 1)) == "malformed"
    assert refusal("x" * 10**6, player=True).message == err.message
    with pytest.raises(TokenError):
        verify(SECRET, 42, **ROOM)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "claims",
    [
        join_claims(sub=DROP),
        join_claims(sub=["alice"]),
        join_claims(sub=None),
        join_claims(exp=DROP),
        join_claims(exp=str(int(NOW) + 60)),
        join_claims(exp=True),
        join_claims(exp=float("nan")),
        join_claims(exp=float("inf")),
        join_claims(exp=10**400),
        join_claims(nbf="soon"),
        join_claims(iat=[1]),
        join_claims(room_type=DROP),
        join_claims(room_id=1),
        join_claims(seat=3),
        join_claims(jti=5),
    ],
)
def test_signed_but_malformed_claims(claims: dict[str, Any]) -> None:
    assert reason_of(forge(claims)) == "malformed"


@pytest.mark.parametrize("raw", [b"", b"not json", b"\xff\xfe", b"[" * 3000, b'{"sub": ',
                                 b"[1, 2]", b'"string"', b"42", b"null"])
def test_signed_but_unparseable_payload(raw: bytes) -> None:
    assert reason_of(forge(None, raw=raw)) == "malformed"


def test_what_other_issuers_may_write() -> None:
    # integer or fractional times, no nbf or iat, no seat, an audience list holding ours
    for claims in (join_claims(exp=int(NOW) + 60), join_claims(exp=NOW + 60.5),
                   join_claims(nbf=DROP, iat=DROP, seat=DROP),
                   join_claims(aud=["game-api", "stadium"]),
                   join_claims(iss="https://auth.studio.example", jti="t-1")):
        claims_ = verify(SECRET, forge(claims), **ROOM, now=NOW)
        assert claims_.player == claims_.seat == "alice"
        assert isinstance(claims_.expires, float)
        assert "iss" not in claims_.extra and "jti" not in claims_.extra


def test_wrong_secret_or_tampering_is_bad_signature() -> None:
    assert reason_of(good_token(), "another secret") == "bad_signature"
    assert reason_of(good_token(), SECRET.upper()) == "bad_signature"
    assert reason_of(good_token(), SECRET[:-1]) == "bad_signature"
    header, body, sig = good_token().split(".")
    payload = json.loads(unb64(body))
    payload["sub"] = "mallory"
    assert reason_of(f"{header}.{b64(json.dumps(payload).encode())}.{sig}") == "bad_signature"
    assert reason_of(f"{header}.{b64(b'not json')}.{sig}") == "bad_signature"  # checked first
    assert reason_of(f"{header}.{body}.{b64(unb64(sig)[:-3])}") == "bad_signature"
    assert reason_of(f"{header}.{body}.AAAA") == "bad_signature"
    assert reason_of(f"{header}.{body}.") == "bad_signature"


def test_wrong_audience() -> None:
    assert reason_of(forge(join_claims(aud="game-api"))) == "wrong_audience"
    assert reason_of(forge(join_claims(aud=["game-api", "chat"]))) == "wrong_audience"
    assert reason_of(forge(join_claims(aud=DROP))) == "wrong_audience"


def test_expired() -> None:
    token = good_token()  # expires at NOW + 60
    err = refusal(token, now=NOW + 60 + 12)
    assert err.reason == "expired" and "12s ago" in err.message


def test_not_valid_before_nbf() -> None:
    token = forge(join_claims(nbf=int(NOW) + 30))
    err = refusal(token, now=NOW)
    assert err.reason == "not_yet_valid" and "30s" in err.message
    assert verify(SECRET, token, **ROOM, now=NOW + 25).player == "alice"  # within the leeway
    assert reason_of(token, now=NOW + 24.9) == "not_yet_valid"


def test_leeway_is_honoured_both_ways() -> None:
    token = forge(join_claims(nbf=int(NOW), exp=int(NOW) + 60))
    exp = NOW + 60
    assert verify(SECRET, token, **ROOM, now=exp).player == "alice"
    assert verify(SECRET, token, **ROOM, now=exp + 5.0).player == "alice"  # default leeway
    assert reason_of(token, now=exp + 5.001) == "expired"
    assert verify(SECRET, token, **ROOM, now=exp, leeway=0).player == "alice"
    assert reason_of(token, now=exp + 0.001, leeway=0) == "expired"
    assert verify(SECRET, token, **ROOM, now=exp + 30, leeway=30).player == "alice"
    assert reason_of(token, now=exp + 30.5, leeway=30) == "expired"
    assert verify(SECRET, token, **ROOM, now=NOW - 5.0).player == "alice"
    assert reason_of(token, now=NOW - 5.001) == "not_yet_valid"
    assert verify(SECRET, token, **ROOM, now=NOW - 20, leeway=20).player == "alice"
    assert reason_of(token, now=NOW - 0.5, leeway=0) == "not_yet_valid"


def test_wrong_room() -> None:
    token = good_token()
    assert reason_of(token, room_type="duel") == "wrong_room"
    assert reason_of(token, room_id="r-43") == "wrong_room"
    err = refusal(token, room_type="duel", room_id="r-43")
    assert err.reason == "wrong_room"
    assert err.message == "token is for room 'arena'/'r-42', not 'duel'/'r-43'"


def test_the_checks_run_in_the_documented_order() -> None:
    stale_elsewhere = forge(join_claims(room_id="r-1", exp=int(NOW) - 100))
    assert reason_of(stale_elsewhere) == "expired"  # expired before wrong_room
    assert reason_of(forge(join_claims(kind="player", exp=int(NOW) - 100))) == "wrong_kind"
    assert reason_of(forge(join_claims(aud="x", kind="player"))) == "wrong_audience"
    assert reason_of(forge(join_claims(aud="x")), "some other secret") == "bad_signature"


# --- properties ---------------------------------------------------------------------------------


B64_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
token_like = st.one_of(
    st.text(max_size=200),
    st.text(alphabet=B64_ALPHABET + ".", max_size=300),
    st.builds(
        lambda a, b, c: f"{a}.{b}.{c}",
        st.text(alphabet=B64_ALPHABET, max_size=60),
        st.text(alphabet=B64_ALPHABET, max_size=120),
        st.text(alphabet=B64_ALPHABET, max_size=60),
    ),
    st.builds(lambda b, c: f"{good_token().split('.')[0]}.{b}.{c}",
              st.text(alphabet=B64_ALPHABET, max_size=120),
              st.text(alphabet=B64_ALPHABET, max_size=60)),
)


def _verify_or_refuse(token: str) -> None:
    for check in (lambda: verify(SECRET, token, **ROOM, now=NOW),
                  lambda: verify_player(SECRET, token, now=NOW),
                  lambda: verify_party(SECRET, token, now=NOW)):
        try:
            result = check()
        except TokenError as err:
            assert err.reason in REASONS
            assert not token or len(token) < 8 or token not in err.message
        else:
            assert isinstance(result, Claims | PlayerClaims | PartyClaims)


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
        st.dictionaries(st.sampled_from(["kind", "sub", "aud", "exp", "nbf", "iat", "room_type",
                                         "room_id", "seat", "jti", "x"]), json_values),
        st.fixed_dictionaries({}, optional={k: json_values for k in join_claims()}).map(
            lambda d: {**join_claims(), **d}),
    )
)
def test_any_signed_json_payload_gives_claims_or_token_error(payload: Any) -> None:
    _verify_or_refuse(forge(payload if isinstance(payload, dict) else None,
                            raw=None if isinstance(payload, dict) else
                            json.dumps(payload).encode()))


@given(st.binary(max_size=300))
def test_any_signed_bytes_payload_gives_claims_or_token_error(raw: bytes) -> None:
    _verify_or_refuse(forge(None, raw=raw))


@given(st.dictionaries(st.sampled_from(["alg", "kid", "typ", "crit", "b64", "x"]), json_values))
def test_any_header_gives_claims_or_token_error(header: dict[str, Any]) -> None:
    _, body, sig = good_token().split(".")
    _verify_or_refuse(f"{b64(json.dumps(header).encode())}.{body}.{sig}")


@settings(max_examples=300)
@given(st.data())
def test_flipping_any_one_character_never_verifies(data: st.DataObject) -> None:
    token = good_token(team="blue")
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
    token = good_token()
    for index, original in enumerate(token):
        for replacement in B64_ALPHABET + ".":
            if replacement == original:
                continue
            flipped = token[:index] + replacement + token[index + 1 :]
            with pytest.raises(TokenError):
                verify(SECRET, flipped, **ROOM, now=NOW)
