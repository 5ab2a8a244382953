"""Locust users for the leaderboard: a submit-heavy game-server mix and a read-heavy client mix.

    locust -f loadtest/leaderboard/locustfile.py --host http://127.0.0.1:8082

`STADIUM_API_KEY` is the service's key (if it has one); `LB_PLAYERS` the player id space
(default 100000). The board `locust` is created (desc, daily and weekly) at test start.
"""

from __future__ import annotations

import os
import random
from typing import Any

from locust import HttpUser, between, events, task

BOARD = "locust"
PLAYERS = int(os.environ.get("LB_PLAYERS", "100000"))
KEY = os.environ.get("STADIUM_API_KEY", "")
HEADERS = {"X-API-Key": KEY} if KEY else {}


def _player() -> str:
    return f"p{random.randrange(PLAYERS):07d}"


@events.test_start.add_listener
def create_board(environment: Any, **_: Any) -> None:
    import httpx

    host = environment.host or "http://127.0.0.1:8082"
    with httpx.Client(base_url=host, headers=HEADERS, timeout=30) as http:
        http.put(f"/boards/{BOARD}", json={"periods": ["daily", "weekly"]}).raise_for_status()
        for start in range(0, min(PLAYERS, 10000), 1000):
            http.post(f"/boards/{BOARD}/scores", json={"scores": [
                {"player": f"p{i:07d}", "score": random.randrange(1_000_000)}
                for i in range(start, start + 1000)]}).raise_for_status()


class GameServer(HttpUser):
    """Submit-heavy: game servers reporting results, with some reads."""

    weight = 1
    wait_time = between(0, 0.01)

    @task(8)
    def submit(self) -> None:
        self.client.post(f"/boards/{BOARD}/scores", headers=HEADERS, name="submit",
                         json={"player": _player(), "score": random.randrange(1_000_000)})

    @task(1)
    def submit_batch(self) -> None:
        self.client.post(f"/boards/{BOARD}/scores", headers=HEADERS, name="submit batch of 20",
                         json={"scores": [{"player": p, "score": random.randrange(1_000_000)}
                                          for p in {_player() for _ in range(20)}]})

    @task(1)
    def top(self) -> None:
        self.client.get(f"/boards/{BOARD}?limit=10", name="top 10")


class GameClient(HttpUser):
    """Read-heavy: players looking at boards."""

    weight = 3
    wait_time = between(0, 0.01)

    @task(4)
    def top(self) -> None:
        self.client.get(f"/boards/{BOARD}?limit=50", name="top 50")

    @task(4)
    def rank(self) -> None:
        with self.client.get(f"/boards/{BOARD}/players/{_player()}", name="rank",
                             catch_response=True) as r:
            if r.status_code == 404:  # a player who has not played yet
                r.success()

    @task(2)
    def around(self) -> None:
        with self.client.get(f"/boards/{BOARD}/players/{_player()}/around?n=5",
                             name="around", catch_response=True) as r:
            if r.status_code == 404:
                r.success()

    @task(1)
    def friends(self) -> None:
        self.client.post(f"/boards/{BOARD}/ranks?period=daily", name="friends (50)",
                         json={"players": [_player() for _ in range(50)]})
