"""Join tokens signed with keys the services know only publicly: a relay given ES256 and
RS256 public keys (a PEM file and a JWKS file) admits tokens by their kid and refuses a
rotated-out kid, a player token and a token past its leeway; a matchmaker that signs seats
with a private key seats players on a relay that holds its public key only, and takes player
tokens from a studio's auth service whose public key it holds."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import RSAAlgorithm
from websockets.exceptions import InvalidStatus

from loadtest.processes import ServiceProcess, start_service
from stadium import tokens
from stadium.keys import SigningKey
from stadium.redis_server import EmbeddedRedis
from stadium_client import MatchmakerClient, MatchmakerError, Room
from tests.conftest import ROOT

EC_KEY = ec.generate_private_key(ec.SECP256R1())
RSA_OLD = rsa.generate_private_key(public_exponent=65537, key_size=2048)
RSA_NEW = rsa.generate_private_key(public_exponent=65537, key_size=2048)
AUTH_KEY = ec.generate_private_key(ec.SECP256R1())  # a studio's auth service


def _public_pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)


def _jwks(path: Path, **keys: rsa.RSAPrivateKey) -> str:
    path.write_text(json.dumps({"keys": [
        {**RSAAlgorithm.to_jwk(k.public_key(), as_dict=True), "kid": kid, "use": "sig"}
        for kid, k in keys.items()]}))
    return str(path)


@pytest.fixture(scope="module")
def keyed_relay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    """A relay without a secret: ES256 key `es-1` from a PEM file, RS256 key `rs-2025` from
    a JWKS file (the studio's auth service moved to it from `rs-2024`), 30 s of leeway."""
    tmp = tmp_path_factory.mktemp("keys")
    (tmp / "es.pem").write_bytes(_public_pem(EC_KEY))
    relay = start_service("relay", "--token-key", f"es-1={tmp / 'es.pem'}",
                          "--token-key", _jwks(tmp / "jwks.json", **{"rs-2025": RSA_NEW}),
                          "--token-leeway", "30")
    yield relay
    relay.stop(signal.SIGKILL)


def _token(key: SigningKey, room_id: str = "k", player: str = "p1", **kw: object) -> str:
    return tokens.sign(key, room_type="broadcast", room_id=room_id, player=player, **kw)


async def test_a_relay_with_public_keys_admits_by_kid(keyed_relay: ServiceProcess) -> None:
    url = f"{keyed_relay.url}/rooms/broadcast/k"
    es = _token(SigningKey("ES256", EC_KEY, "es-1"))
    rs = _token(SigningKey("RS256", RSA_NEW, "rs-2025"), player="p2")  # p1 holds one socket
    async with await Room.connect(url, es) as a, await Room.connect(url, rs) as b:
        await a.send("signed by the studio")
        assert await asyncio.wait_for(b.recv(), 5) == "signed by the studio"
    # a token 20 s past its expiry is still in the relay's 30 s of leeway
    late = _token(SigningKey("ES256", EC_KEY, "es-1"), now=time.time() - 80, ttl=60)
    async with await Room.connect(url, late):
        pass


@pytest.mark.parametrize("case, code", [
    ("rotated-out kid", "unknown_key"),
    ("unknown kid", "unknown_key"),
    ("no kid", "unknown_key"),
    ("key of another kid", "bad_signature"),
    ("player token", "wrong_kind"),
    ("past the leeway", "expired"),
    ("other room", "wrong_room"),
])
async def test_a_relay_with_public_keys_refuses(keyed_relay: ServiceProcess, case: str,
                                                code: str) -> None:
    token = {
        "rotated-out kid": lambda: _token(SigningKey("RS256", RSA_OLD, "rs-2024")),
        "unknown kid": lambda: _token(SigningKey("ES256", EC_KEY, "es-9")),
        "no kid": lambda: _token(SigningKey("ES256", EC_KEY)),
        "key of another kid": lambda: _token(SigningKey("RS256", RSA_OLD, "rs-2025")),
        "player token": lambda: tokens.sign_player(SigningKey("ES256", EC_KEY, "es-1"),
                                                   player="p1"),
        "past the leeway": lambda: _token(SigningKey("ES256", EC_KEY, "es-1"),
                                          now=time.time() - 100, ttl=60),
        "other room": lambda: _token(SigningKey("ES256", EC_KEY, "es-1"), room_id="elsewhere"),
    }[case]()
    with pytest.raises(InvalidStatus) as refused:
        await Room.connect(f"{keyed_relay.url}/rooms/broadcast/k", token)
    assert refused.value.response.status_code == 401
    body = json.loads(refused.value.response.body)
    assert body["error"]["code"] == code
    for part in token.split("."):
        assert part not in refused.value.response.body.decode()
        assert part not in keyed_relay.log()


@pytest.mark.parametrize("command, args, message", [
    ("relay", ["--token-key", "/nonexistent/key.pem"], "/nonexistent/key.pem"),
    ("relay", ["--token-leeway", "-1"], "token_leeway"),
    ("matchmaker", ["--signing-key", "/nonexistent/key.pem"], "/nonexistent/key.pem"),
])
def test_a_bad_key_setting_stops_the_service_with_exit_2(command: str, args: list[str],
                                                         message: str) -> None:
    out = subprocess.run([sys.executable, "-m", "stadium.cli", command, "--port", "0",
                          "--redis-url", "redis://127.0.0.1:1", *args], cwd=ROOT,
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 2, out.stderr
    assert message in out.stderr


async def test_seats_signed_with_a_private_key(tmp_path: Path) -> None:
    """The matchmaker signs with ES256 (--signing-key, --signing-kid); the relay holds only
    the public key, and both players join with the tokens of their seats."""
    (tmp_path / "mm.key").write_bytes(EC_KEY.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    (tmp_path / "mm.pem").write_bytes(_public_pem(EC_KEY))
    (tmp_path / "auth.pem").write_bytes(_public_pem(AUTH_KEY))
    auth = SigningKey("ES256", AUTH_KEY, "auth-1")
    with EmbeddedRedis() as redis:
        relay = start_service("relay", "--redis-url", redis.url,
                              "--token-key", f"mm-1={tmp_path / 'mm.pem'}")
        mm = start_service("matchmaker", "--redis-url", redis.url,
                           "--signing-key", str(tmp_path / "mm.key"), "--signing-kid", "mm-1",
                           "--token-key", f"auth-1={tmp_path / 'auth.pem'}")
        try:
            async with MatchmakerClient(mm.url) as client:
                with pytest.raises(MatchmakerError) as refused:  # player tokens are checked
                    await client.create_ticket("1v1", "ann")
                assert refused.value.code == "missing_token"
                ann, bob = await asyncio.wait_for(asyncio.gather(*(
                    client.matchmake("1v1", p, token=tokens.sign_player(auth, player=p))
                    for p in ("ann", "bob"))), 30)
            assert ann.token is not None
            assert jwt.get_unverified_header(ann.token) == {"alg": "ES256", "kid": "mm-1",
                                                            "typ": "JWT"}
            async with await ann.join() as a, await bob.join() as b:
                await a.send("gg")
                assert await asyncio.wait_for(b.recv(), 5) == "gg"
        finally:
            mm.stop()
            relay.stop(signal.SIGKILL)


async def test_token_keys_are_read_again_on_sighup_without_a_restart(tmp_path: Path) -> None:
    """Rotation without a restart: a JWKS file gains the new kid, loses the old one, and the
    relay and the matchmaker follow each change on SIGHUP; a socket opened before stays open,
    and a broken file leaves the keys loaded before."""
    jwks = tmp_path / "jwks.json"
    _jwks(jwks, **{"rs-2024": RSA_OLD})
    old, new = SigningKey("RS256", RSA_OLD, "rs-2024"), SigningKey("RS256", RSA_NEW, "rs-2025")
    relay = start_service("relay", "--token-key", str(jwks))
    mm = start_service("matchmaker", "--token-key", str(jwks))
    url = f"{relay.url}/rooms/broadcast/rotating"

    async def relay_refuses(key: SigningKey, player: str) -> str | None:
        try:
            async with await Room.connect(url, _token(key, "rotating", player)):
                return None
        except InvalidStatus as e:
            return str(json.loads(e.response.body)["error"]["code"])

    async def matchmaker_refuses(key: SigningKey, player: str) -> str | None:
        client = MatchmakerClient(mm.url, token=tokens.sign_player(key, player=player))
        try:
            await client.create_ticket("1v1", player)
            return None
        except MatchmakerError as e:
            return e.code
        finally:
            await client.close()

    async def hang_up(*log_lines: str) -> None:
        for proc, line in zip((relay, mm), log_lines, strict=True):
            seen = proc.log().count(line)
            proc.proc.send_signal(signal.SIGHUP)
            async with asyncio.timeout(10):
                while proc.log().count(line) == seen:
                    await asyncio.sleep(0.05)

    try:
        assert await relay_refuses(new, "a") == "unknown_key"
        assert await matchmaker_refuses(new, "a") == "unknown_key"
        async with await Room.connect(url, _token(old, "rotating", "early")) as early:
            _jwks(jwks, **{"rs-2024": RSA_OLD, "rs-2025": RSA_NEW})
            await hang_up("token keys reloaded: rs-2024, rs-2025",
                          "token keys reloaded: rs-2024, rs-2025")
            assert await relay_refuses(new, "b") is None
            assert await matchmaker_refuses(new, "b") is None
            assert await relay_refuses(old, "c") is None
            jwks.write_text("{not json")
            await hang_up("token keys not reloaded", "token keys not reloaded")
            assert await relay_refuses(new, "d") is None
            assert await matchmaker_refuses(new, "d") is None
            _jwks(jwks, **{"rs-2025": RSA_NEW})
            await hang_up("token keys reloaded: rs-2025", "token keys reloaded: rs-2025")
            assert await relay_refuses(old, "e") == "unknown_key"
            assert await matchmaker_refuses(old, "e") == "unknown_key"
            async with await Room.connect(url, _token(new, "rotating", "late")) as late:
                await late.send("to the early one")  # the reloads closed nothing
                assert await asyncio.wait_for(early.recv(), 5) == "to the early one"
    finally:
        mm.stop()
        relay.stop(signal.SIGKILL)
