"""The leaderboard service's settings."""

from __future__ import annotations

from dataclasses import dataclass

from leaderboard.batch import CHUNK
from leaderboard.store import COALESCE
from stadium import once
from stadium.config import ConfigError, setting
from stadium.http import check_origins


@dataclass
class LeaderboardConfig:
    host: str = setting("127.0.0.1", "address to listen on (0.0.0.0 for every interface)")
    port: int = setting(8082, "TCP port of the HTTP API")
    redis_url: str | None = setting(
        None, "Redis to keep boards in; without it an embedded server is started (data is "
        "lost when it stops)")
    api_key: str | None = setting(
        None, "server key for writes and board settings (X-API-Key or Authorization: Bearer); "
        "without it writes are open")
    cors_origins: list[str] = setting(
        [], "browser origins (scheme://host:port, repeatable or comma-separated; * for any) "
        "whose pages may call this API; empty sends no CORS headers")
    redis_timeout: float = setting(
        5.0, "seconds Redis may take to answer before the connection is dropped and the "
        "requests waiting on it fail (503)")

    redis_chunk: int = setting(
        CHUNK, "script calls per write to Redis within one event-loop pass, so Redis starts on "
        "the first ones while the service still prepares the rest (0: one write per pass)")

    coalesce_submits: int = setting(
        COALESCE, "single-score submits to one board, made within one event-loop pass, that "
        "may share one script call to Redis (each still succeeds or fails on its own); "
        "1 sends each on its own")

    idempotency_ttl: float = setting(
        once.TTL, "seconds the Idempotency-Key of a write (a score submit, a board's "
        "settings, a player's removal) is remembered: a retry with the key within them gets "
        "the first outcome and writes nothing")

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"port must be 0-65535, not {self.port}")
        if not self.idempotency_ttl > 0:
            raise ConfigError(f"idempotency_ttl must be above 0, not {self.idempotency_ttl}")
        if not self.redis_timeout > 0:
            raise ConfigError(f"redis_timeout must be above 0, not {self.redis_timeout}")
        if self.coalesce_submits < 1:
            raise ConfigError(f"coalesce_submits must be 1 or more, not {self.coalesce_submits}")
        if self.redis_chunk < 0:
            raise ConfigError(f"redis_chunk must be 0 or more, not {self.redis_chunk}")
        check_origins(self.cors_origins)
        if self.api_key == "":
            self.api_key = None
