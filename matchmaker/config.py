"""The matchmaker service's settings and limits."""

from __future__ import annotations

from dataclasses import dataclass

from stadium import once
from stadium.config import ConfigError, setting
from stadium.http import check_origins


@dataclass
class MatchmakerConfig:
    host: str = setting("127.0.0.1", "address to listen on (0.0.0.0 for every interface)")
    port: int = setting(8081, "TCP port of the matchmaker HTTP API")
    redis_url: str | None = setting(
        None, "Redis for tickets, matches, ratings and the relay directory; without it an "
        "embedded server is started (data is lost when it stops)")
    secret: str | None = setting(
        None, "secret shared with the relays, to sign join tokens (HS256 JWTs) and check "
        "player and party tokens; without it and without --signing-key seats carry no token "
        "(for relays that admit anyone)")
    token_keys: list[str] = setting(
        [], "public key player and party tokens may be signed with (ES256, RS256), besides "
        "--secret: KID=FILE.pem (or FILE.pem for tokens without a kid), or a JWKS file whose "
        "keys name their kids (repeatable or comma-separated); without it and --secret "
        "tickets are open to anyone", flag="--token-key")
    token_leeway: float = setting(
        5.0, "seconds of clock skew allowed when checking a token's expiry (exp) and start "
        "(nbf)")
    dev_auth: bool = setting(
        False, "development only: POST /dev/player-token mints a player token (signed with "
        "--secret) for any player who asks; stadium dev turns it on")
    signing_key: str | None = setting(
        None, "PEM private key to sign join tokens with instead of --secret (EC P-256: "
        "ES256, RSA: RS256); relays check them with its public key (--token-key)")
    signing_kid: str | None = setting(
        None, "kid header of the join tokens signed here (with --signing-key or --secret): "
        "relays pick the key by it, so keys rotate without downtime")
    api_key: str | None = setting(
        None, "server key (X-API-Key or Authorization: Bearer) for posting match results, "
        "and for game backends that queue, read and reseat any player; without it results "
        "are open")
    queues: str | None = setting(
        None, "TOML file of queue definitions; without it the shipped 1v1, 2v2 and 5v5 queues")
    match_interval: float = setting(
        0.25, "seconds between two matching passes over a queue")
    lease_ttl: float = setting(
        3.0, "seconds a process holds a queue's matcher lease without renewing it")
    seat_ttl: float = setting(
        60.0, "seconds a seat's join token is valid (the reservation time)")
    seat_grace: float = setting(
        7.0, "seconds after a seat's expiry before it is released and reported as not taken: "
        "the relay accepts a token up to its --token-leeway (5 s) past its expiry, plus 2 s of "
        "clock skew")
    ticket_ttl: float = setting(
        600.0, "seconds a matched, cancelled or failed ticket can still be read")
    match_ttl: float = setting(
        86400.0, "seconds a match is kept for its result to be posted")
    max_waiting: int = setting(
        200000, "waiting tickets per queue; more are refused with HTTP 503 queue_full")
    cors_origins: list[str] = setting(
        [], "browser origins (scheme://host:port, repeatable or comma-separated; * for any) "
        "whose pages may call this API; empty sends no CORS headers")
    max_long_poll: float = setting(
        30.0, "longest wait, in seconds, GET /tickets/{id}/wait may ask for")
    idempotency_ttl: float = setting(
        once.TTL, "seconds the Idempotency-Key of a ticket request is remembered: a retry "
        "with the key within them gets the first ticket and creates nothing (a result's key "
        "is kept with the match, --match-ttl)")
    redis_timeout: float = setting(
        5.0, "seconds to wait for Redis before a request answers 503 redis_unavailable")
    fresh_seats_per_minute: int = setting(
        12, "fresh join tokens (POST /matches/{id}/seat) one player may ask for with their "
        "player token per minute, counted in Redis across every matchmaker process; more "
        "are refused with HTTP 429 rate_limited until the minute is over; 0: no limit")

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"port must be 0-65535, not {self.port}")
        for name in ("match_interval", "lease_ttl", "seat_ttl", "ticket_ttl", "match_ttl",
                     "max_waiting", "max_long_poll", "idempotency_ttl", "redis_timeout"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive, not {getattr(self, name)!r}")
        if self.fresh_seats_per_minute < 0:
            raise ConfigError("fresh_seats_per_minute must be 0 (no limit) or more, not "
                              f"{self.fresh_seats_per_minute}")
        if not self.seat_grace >= 0:
            raise ConfigError(f"seat_grace must be 0 or more, not {self.seat_grace!r}")
        if self.lease_ttl <= self.match_interval:
            raise ConfigError("lease_ttl must be longer than match_interval")
        check_origins(self.cors_origins)
        if not 0 <= self.token_leeway <= 300:
            raise ConfigError(f"token_leeway must be 0-300 seconds, not {self.token_leeway}")
        if self.api_key == "":
            self.api_key = None
        if self.secret == "":
            self.secret = None
        if self.signing_key == "":
            self.signing_key = None
        if self.signing_kid == "":
            self.signing_kid = None
        if self.dev_auth and self.token_keys and self.secret is None:
            raise ConfigError("--dev-auth signs player tokens with --secret: give --secret "
                              "besides --token-key")
