"""Locust players for the matchmaker: queue, wait for a seat, join the room on the relay,
play a few seconds, post the result (one player per match), go again. Settings (env) and
the stats it reports: docs/matchmaker.md#load-test.

    STADIUM_SECRET=S locust -f loadtest/matchmaker/locustfile.py --host http://127.0.0.1:8081
"""

from __future__ import annotations

import base64
import contextlib
import csv
import os
import random
import socket
import time
import uuid
from typing import Any
from urllib.parse import urlencode, urlsplit

from locust import FastHttpUser, between, events, task
from locust.env import Environment
from locust.runners import WorkerRunner
from locust.stats import PERCENTILES_TO_REPORT, StatsCSV

from relay.ws.frames import (
    OP_CLOSE,
    OP_PONG,
    OP_TEXT,
    Close,
    FrameReader,
    Message,
    Ping,
    ProtocolError,
    close_payload,
    encode_client_frame,
)
from relay.ws.handshake import accept_key
from stadium.tokens import sign_player

QUEUE = os.environ.get("MM_QUEUE", "1v1")
PLAY_SECONDS = float(os.environ.get("MM_PLAY_SECONDS", "3"))
MESSAGE_RATE = float(os.environ.get("MM_MESSAGE_RATE", "4"))
KEY = os.environ.get("STADIUM_API_KEY", "")
HEADERS = {"X-API-Key": KEY} if KEY else {}
# The matchmaker's --secret: each player queues with a player token signed with it, as the
# game's own backend would give them; without it, tickets go without a token.
SECRET = os.environ.get("STADIUM_SECRET", "")
# Player ids unique across the locust processes of one run (and across runs on one Redis).
_RUN = base64.b32encode(os.urandom(5)).decode().lower()
_players = 0


@events.test_stop.add_listener  # type: ignore[untyped-decorator]
def write_final_csv(environment: Environment, **_: Any) -> None:
    """Locust rewrites the --csv files once a second, so the end of a run can be missing from
    them: replace them with the final stats."""
    prefix = getattr(environment.parsed_options, "csv_prefix", None)
    if not prefix or isinstance(environment.runner, WorkerRunner):
        return
    stats = StatsCSV(environment, PERCENTILES_TO_REPORT)
    for suffix, write in (("_stats.csv", stats.requests_csv),
                          ("_failures.csv", stats.failures_csv)):
        with open(f"{prefix}{suffix}.tmp", "w", newline="") as f:
            write(csv.writer(f))
        os.replace(f"{prefix}{suffix}.tmp", f"{prefix}{suffix}")


class RoomRefused(Exception):
    """The relay answered the upgrade with an HTTP error (e.g. 401 for a bad token)."""


class RoomClosed(Exception):
    """The relay closed the room (`code`) before the game was over."""


class RoomSocket:
    """A blocking WebSocket to one room on the relay's own codec; under locust the socket
    module is gevent's, so a blocked read yields to the other users."""

    def __init__(self, url: str, token: str | None, timeout: float = 10.0) -> None:
        parts = urlsplit(url)
        host, port = parts.hostname or "127.0.0.1", parts.port or 80
        path = parts.path + (f"?{urlencode({'token': token})}" if token else "")
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock = socket.create_connection((host, port), timeout)
        self.sock.sendall((f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
                           "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                           f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
                           ).encode())
        head = b""
        while b"\r\n\r\n" not in head:
            data = self.sock.recv(4096)
            if not data:
                self.sock.close()
                raise RoomRefused(f"relay closed the socket during the handshake: {head[:200]!r}")
            head += data
        head, rest = head.split(b"\r\n\r\n", 1)
        status = head.split(b" ", 2)[1]
        if status != b"101" or f"Sec-WebSocket-Accept: {accept_key(key)}".encode() not in head:
            body = rest + self._rest_of_body()
            self.sock.close()
            raise RoomRefused(f"HTTP {status.decode()}: {body[:200].decode(errors='replace')}")
        self.reader = FrameReader(masked=False, max_message_size=1 << 24)
        self.pending: list[str | bytes] = []
        self.close_code: int | None = None
        if rest:
            self._feed(rest)

    def _rest_of_body(self) -> bytes:
        try:
            self.sock.settimeout(1.0)
            return self.sock.recv(4096)
        except OSError:
            return b""

    def _feed(self, data: bytes) -> None:
        for ev in self.reader.feed(data):
            if type(ev) is Message:
                self.pending.append(ev.data)
            elif type(ev) is Ping:
                self.sock.sendall(encode_client_frame(OP_PONG, ev.payload))
            elif type(ev) is Close and self.close_code is None:
                self.close_code = ev.code

    def send(self, text: str) -> None:
        self.sock.sendall(encode_client_frame(OP_TEXT, text.encode()))

    def recv(self, timeout: float) -> list[str | bytes]:
        """Messages that arrive within `timeout` seconds (returns at the first read)."""
        if not self.pending and self.close_code is None:
            self.sock.settimeout(max(timeout, 0.001))
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                return []
            if not data:
                raise RoomClosed("relay closed the socket without a close frame")
            self._feed(data)
        if self.close_code is not None and not self.pending:
            raise RoomClosed(f"relay closed the room: {self.close_code}")
        out, self.pending = self.pending, []
        return out

    def close(self) -> None:
        with contextlib.suppress(OSError):  # the relay may have closed it first
            self.sock.sendall(encode_client_frame(OP_CLOSE, close_payload(1000)))
        self.sock.close()


class Player(FastHttpUser):
    """One player who plays game after game in `MM_QUEUE`."""

    wait_time = between(0.5, 1.5)  # back in the lobby between games

    def on_start(self) -> None:
        global _players
        _players += 1
        self.player = f"lp-{_RUN}-{_players}"

    def _report(self, kind: str, name: str, started: float, length: int = 0,
                error: Exception | None = None) -> None:
        self.environment.events.request.fire(
            request_type=kind, name=name, response_time=(time.perf_counter() - started) * 1000,
            response_length=length, exception=error, context={})

    @task
    def game(self) -> None:
        seat = self.find_seat()
        if seat is not None:
            self.play(seat)

    def _player_token(self) -> dict[str, str]:
        """The player's token for this game (an hour's, minted afresh each game)."""
        if not SECRET:
            return {}
        return {"Authorization": f"Bearer {sign_player(SECRET, player=self.player)}"}

    def find_seat(self) -> dict[str, Any] | None:
        """Queue and long-poll until matched: the seat, or None (reported as a failure)."""
        started = time.perf_counter()
        auth = self._player_token()
        # an Idempotency-Key on each write, as the SDKs send them
        with self.client.post("/tickets", name="queue", catch_response=True,
                              headers={**auth, "Idempotency-Key": uuid.uuid4().hex},
                              json={"player": self.player, "queue": QUEUE}) as r:
            if r.status_code != 201:
                r.failure(f"HTTP {r.status_code}: {r.text[:200]}")
                return None
            ticket = r.json()
        while ticket["status"] == "waiting":
            with self.client.get(f"/tickets/{ticket['id']}/wait?timeout=10", headers=auth,
                                 name="wait (long-poll)", catch_response=True) as r:
                if r.status_code != 200:
                    r.failure(f"HTTP {r.status_code}: {r.text[:200]}")
                    return None
                ticket = r.json()
        if ticket["status"] != "matched":
            self._report("seat", "wait_seat", started, error=RuntimeError(
                f"ticket {ticket['status']}: {ticket.get('reason', '')}"))
            return None
        self._report("seat", "wait_seat", started)
        seat: dict[str, Any] = ticket["seats"][self.player]
        return seat

    def play(self, seat: dict[str, Any]) -> None:
        started = time.perf_counter()
        try:
            room = RoomSocket(seat["url"], seat["token"])
        except (OSError, RoomRefused) as e:
            self._report("WS", "join", started, error=e)
            return
        self._report("WS", "join", started)
        started = time.perf_counter()
        received = 0
        try:
            end = started + PLAY_SECONDS
            next_send = started
            sent = 0
            while (now := time.perf_counter()) < end:
                if now >= next_send:
                    # the wall clock: sender and receiver are on one machine
                    room.send(f"{time.time():.6f} {self.player} {sent}")
                    sent += 1
                    next_send += 1.0 / MESSAGE_RATE
                for message in room.recv(min(next_send, end) - now):
                    received += 1
                    sent_at = float(str(message).split(" ", 1)[0])
                    self.environment.events.request.fire(
                        request_type="WS", name="message",
                        response_time=max(time.time() - sent_at, 0.0) * 1000,
                        response_length=len(message), exception=None, context={})
        except (OSError, ProtocolError, RoomClosed) as e:
            self._report("WS", "play", started, received, e)
            room.close()
            return
        room.close()
        error = None if received else RoomClosed(
            f"no message from the other players in {PLAY_SECONDS:g}s")
        self._report("WS", "play", started, received, error)
        if seat["team"] == 0:
            self.post_result(seat["match_id"])

    def post_result(self, match_id: str) -> None:
        """Team 0's first player is the game server of the match: it posts a random result."""
        with self.client.get(f"/matches/{match_id}", name="match", catch_response=True) as r:
            if r.status_code != 200:
                r.failure(f"HTTP {r.status_code}: {r.text[:200]}")
                return
            match = r.json()
        if match["teams"][0][0] != self.player:
            return
        ranks = list(range(1, len(match["teams"]) + 1))
        random.shuffle(ranks)
        with self.client.post(f"/matches/{match_id}/result", name="result",
                              headers={**HEADERS, "Idempotency-Key": uuid.uuid4().hex},
                              json={"ranks": ranks}, catch_response=True) as r:
            if r.status_code != 200:
                r.failure(f"HTTP {r.status_code}: {r.text[:200]}")
