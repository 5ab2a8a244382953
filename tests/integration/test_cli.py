"""The `stadium` command as a user runs it: `dev`, `token`, config files and errors."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from loadtest.wsclient import HandshakeRefused, WSClient
from stadium import tokens
from stadium.keys import KeySet, VerificationKey
from stadium_client import Room, RoomClosed
from tests.conftest import ROOT, start_relay

ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def _stadium(*args: str, cwd: Path = ROOT, env: dict[str, str] | None = None
             ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "stadium.cli", *args], cwd=cwd,
                          env=env or ENV, capture_output=True, text=True, timeout=30)


async def test_dev_prints_urls_serves_and_stops_on_ctrl_c() -> None:
    proc = subprocess.Popen([sys.executable, "-m", "stadium.cli", "dev", "--port", "0"],
                            cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    assert proc.stdout is not None
    lines = [proc.stdout.readline() for _ in range(3)]
    m = re.search(r"relay\s+(ws://\S+)", lines[1])
    assert m, lines
    async with await Room.connect(m.group(1)) as a, await Room.connect(m.group(1)) as b:
        await a.send("dev works")
        assert await asyncio.wait_for(b.recv(), 5) == "dev works"
        proc.send_signal(signal.SIGINT)
        started = time.monotonic()
        assert await asyncio.to_thread(proc.wait, 10) == 0
        assert time.monotonic() - started < 5
        with pytest.raises(RoomClosed) as e:
            await asyncio.wait_for(a.recv(), 2)
        assert e.value.code == 1001


def test_token_command_signs_a_token_the_relay_accepts() -> None:
    out = _stadium("token", "--secret", "k", "--room", "broadcast/r1", "--player", "ann")
    assert out.returncode == 0, out.stderr
    claims = tokens.verify("k", out.stdout.strip(), room_type="broadcast", room_id="r1")
    assert claims.player == "ann"
    bad = _stadium("token", "--secret", "k", "--room", "no-slash", "--player", "ann")
    assert bad.returncode == 2 and "TYPE/ROOM_ID" in bad.stderr


def test_token_command_mints_player_tokens_and_signs_with_a_key(tmp_path: Path) -> None:
    out = _stadium("token", "--secret", "k", "--player", "ann")
    assert out.returncode == 0, out.stderr
    player_token = out.stdout.strip()
    claims = tokens.verify_player("k", player_token)
    assert claims.player == "ann" and 3590 < claims.expires - time.time() <= 3601
    with pytest.raises(tokens.TokenError) as e:
        tokens.verify("k", player_token, room_type="broadcast", room_id="r1")
    assert e.value.reason == "wrong_kind"

    key = ec.generate_private_key(ec.SECP256R1())
    (tmp_path / "dev.key").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    out = _stadium("token", "--signing-key", str(tmp_path / "dev.key"), "--kid", "dev-1",
                   "--player", "ann", "--room", "broadcast/r1", "--seat", "3", "--ttl", "30")
    assert out.returncode == 0, out.stderr
    keys = KeySet([VerificationKey("ES256", key.public_key(), "dev-1")])
    join = tokens.verify(keys, out.stdout.strip(), room_type="broadcast", room_id="r1")
    assert (join.player, join.seat) == ("ann", "3")
    assert 25 < join.expires - time.time() <= 31

    for args in (["--secret", "k", "--player", "ann", "--seat", "3"],
                 ["--player", "ann"],
                 ["--secret", "k", "--signing-key", "x.pem", "--player", "ann"],
                 ["--signing-key", str(tmp_path / "none.key"), "--player", "ann"]):
        assert _stadium("token", *args).returncode == 2, args


def test_bad_settings_exit_2_with_the_setting_named(tmp_path: Path) -> None:
    out = _stadium("relay", env={**ENV, "STADIUM_PORT": "eighty"})
    assert out.returncode == 2 and "STADIUM_PORT" in out.stderr
    out = _stadium("relay", "--room", "x=nowhere:Nothing")
    assert out.returncode == 2 and "nowhere" in out.stderr
    (tmp_path / "stadium.toml").write_text("[relay]\nport = 'x'\n")
    out = _stadium("relay", cwd=tmp_path)
    assert out.returncode == 2 and "relay.port" in out.stderr


def test_stadium_toml_in_the_working_directory_is_read(tmp_path: Path) -> None:
    (tmp_path / "stadium.toml").write_text("[relay]\nport = 0\nmax_message_size = 10\n")
    relay = start_relay(cwd=tmp_path)
    try:
        async def oversized() -> int | None:
            c = await WSClient.connect(relay.host, relay.port, "/rooms/broadcast/t")
            c.send(b"x" * 11)
            return await c.wait_closed()
        assert asyncio.run(oversized()) == 1009
    finally:
        relay.stop()


def test_log_format_json_writes_one_object_per_line() -> None:
    relay = start_relay("--log-format", "json")
    try:
        async def refused() -> None:
            with pytest.raises(HandshakeRefused):
                await WSClient.connect(relay.host, relay.port, "/rooms/nowhere/x")
        asyncio.run(refused())
        time.sleep(0.2)
        log = relay.log()
    finally:
        relay.stop()
    lines = [json.loads(line) for line in log.splitlines() if line.strip()]
    assert lines and all(set(line) >= {"time", "level", "logger", "message"} for line in lines)
    assert any("listening on ws://" in line["message"] for line in lines)
    assert any(line["level"] == "INFO" and "404 unknown_room_type" in line["message"]
               for line in lines)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", lines[0]["time"])
    out = _stadium("relay", env={**ENV, "STADIUM_LOG_FORMAT": "xml"})
    assert out.returncode == 2 and "log format 'xml'" in out.stderr


def test_http_clients_do_not_log_a_line_per_request() -> None:
    code = ("import logging; from stadium import logs; logs.configure('INFO', 'text');"
            "logging.getLogger('httpx').info('HTTP Request: POST http://x \"HTTP/1.1 200 OK\"');"
            "logging.getLogger('httpx').warning('a warning still shows');"
            "logging.getLogger('stadium.relay').info('our own info shows')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=ENV, check=True)
    assert "HTTP Request" not in out.stderr
    assert "a warning still shows" in out.stderr and "our own info shows" in out.stderr
