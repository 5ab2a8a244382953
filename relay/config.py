"""The relay's settings and limits, each with its default and the reason for it."""

from __future__ import annotations

from dataclasses import dataclass

from stadium.config import ConfigError, setting


@dataclass
class RelayConfig:
    host: str = setting("127.0.0.1", "address to listen on (0.0.0.0 for every interface)")
    port: int = setting(8080, "TCP port for HTTP and WebSocket")
    secret: str | None = setting(
        None, "shared secret join tokens are signed with (HS256 JWTs); without it and "
        "without --token-key the relay admits anyone")
    token_keys: list[str] = setting(
        [], "public key join tokens may be signed with (ES256, RS256), besides --secret: "
        "KID=FILE.pem (or FILE.pem for tokens without a kid), or a JWKS file whose keys name "
        "their kids (repeatable or comma-separated)", flag="--token-key")
    token_leeway: float = setting(
        5.0, "seconds of clock skew allowed when checking a token's expiry (exp) and start "
        "(nbf)")
    redis_url: str | None = setting(
        None, "Redis for the relay directory (read by matchmakers) and the snapshots of "
        "hibernated rooms (else kept in process memory)")
    public_url: str | None = setting(
        None, "ws:// or wss:// URL clients reach this relay at, as registered in the relay "
        "directory (default: the address it listens on)")
    leaderboard_url: str | None = setting(
        None, "leaderboard service where built-in game rooms (arena) post scores")
    leaderboard_api_key: str | None = setting(
        None, "server API key for --leaderboard-url")
    matchmaker_url: str | None = setting(
        None, "matchmaker service whose queues the operator console shows")
    admin_key: str | None = setting(
        None, "operator key for the console at /console and its JSON API (sent as a bearer "
        "token or X-Admin-Key); without it the console answers 404, except under stadium dev")
    rooms: list[str] = setting(
        [], "extra room type as TYPE=module:Class (repeatable)", flag="--room")
    cert: str | None = setting(None, "TLS certificate chain (PEM) to serve wss:// and https://")
    key: str | None = setting(None, "TLS private key (PEM) for --cert")
    allowed_origins: list[str] = setting(
        [], "browser origins allowed to open a socket (repeatable or comma-separated); "
        "empty allows every origin; requests without an Origin header are allowed")
    trust_proxy: bool = setting(
        False, "take the client address from the last X-Forwarded-For entry (behind a proxy)")
    max_message_size: int = setting(
        65536, "largest WebSocket message a client may send, in bytes (else close 1009)")
    max_head_size: int = setting(8192, "largest HTTP request head, in bytes (else HTTP 431)")
    max_body_size: int = setting(
        1048576, "largest HTTP request body for a room's on_request, in bytes (else HTTP 413)")
    handshake_timeout: float = setting(
        10.0, "seconds a client has to send a complete request after connecting")
    idle_timeout: float = setting(
        60.0, "seconds without any frame from a client before it is closed (1001)")
    ping_interval: float = setting(
        20.0, "seconds of client silence before the relay sends a ping to keep the socket alive")
    close_timeout: float = setting(
        2.0, "seconds to wait for the client's close frame after the relay sent its own")
    msg_rate: float = setting(100.0, "messages per second a connection may send, sustained")
    msg_burst: float = setting(200.0, "messages a connection may send in one burst")
    byte_rate: float = setting(262144.0, "bytes per second a connection may send, sustained")
    byte_burst: float = setting(1048576.0, "bytes a connection may send in one burst")
    rate_close_after: int = setting(
        100, "dropped messages (one forgiven per second) before a connection is closed with 1008")
    ip_max_connections: int = setting(
        1000, "open WebSocket connections per client address (else HTTP 429)")
    ip_handshake_rate: float = setting(
        50.0, "WebSocket handshakes per second per client address, sustained (else HTTP 429)")
    ip_handshake_burst: float = setting(200.0, "handshakes one client address may make at once")
    ip_max_pending: int = setting(
        100, "sockets one address may hold before its request is complete (else HTTP 429); "
        "not applied with --trust-proxy")
    flush_interval: float = setting(
        0.002, "seconds the first message of a batch waits so that what follows joins it in "
        "one write per socket (state ticks write at once); 0: write at the end of every "
        "event-loop pass")
    max_outbound_buffer: int = setting(
        4194304, "bytes queued for a client that does not read before it is closed (1008)")
    slow_reader_bytes: int = setting(
        262144, "bytes queued for a client above which it is slow: it skips state ticks and "
        "droppable broadcasts until it drains")
    slow_reader_timeout: float = setting(
        10.0, "seconds a client may stay slow before it is closed (1008)")
    hibernate_after: float = setting(
        30.0, "seconds without messages, requests or alarms before a room that implements "
        "snapshot() hibernates: its object is dropped, its sockets stay open (0: never)")
    max_attachment_size: int = setting(
        2048, "largest conn.state attachment, in bytes of msgpack")
    demo: bool = setting(
        False, "serve the demo page at / (its files under /demo/, the JS SDK under /sdk/); "
        "stadium dev turns it on")
    drain_timeout: float = setting(
        5.0, "seconds SIGTERM waits for sockets to close (1001) before the process exits")

    def __post_init__(self) -> None:
        positive = ("max_message_size", "max_head_size", "handshake_timeout", "idle_timeout",
                    "ping_interval", "msg_rate", "msg_burst", "byte_rate", "byte_burst",
                    "ip_max_connections", "ip_handshake_rate", "ip_handshake_burst",
                    "ip_max_pending", "max_outbound_buffer", "max_attachment_size")
        for name in positive:
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive, not {getattr(self, name)!r}")
        if not 0 <= self.flush_interval <= 1:
            raise ConfigError(f"flush_interval must be 0-1 seconds, not {self.flush_interval}")
        if self.slow_reader_bytes > self.max_outbound_buffer:
            raise ConfigError(f"slow_reader_bytes ({self.slow_reader_bytes}) must not be over "
                              f"max_outbound_buffer ({self.max_outbound_buffer})")
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"port must be 0-65535, not {self.port}")
        if bool(self.cert) != bool(self.key):
            raise ConfigError("--cert and --key go together")
        if not 0 <= self.token_leeway <= 300:
            raise ConfigError(f"token_leeway must be 0-300 seconds, not {self.token_leeway}")
        if self.secret == "":
            self.secret = None
        if self.admin_key == "":
            self.admin_key = None
