"""Who may open a connection or send a request to a room: per-address limits, the
per-address handshake rate, and the join token, the same for every transport."""

from __future__ import annotations

from relay.config import RelayConfig
from relay.http import HttpError, Request
from stadium.keys import KeySet
from stadium.tokens import Claims, TokenError, bearer, verify


class Admission:
    """Per-address counters and token checks of one process. Without `keys` (no --secret,
    no --token-key) every client is admitted without a token."""

    __slots__ = ("config", "keys", "connections", "pending", "buckets")

    def __init__(self, config: RelayConfig, keys: KeySet | None = None) -> None:
        self.config = config
        self.keys = keys
        self.connections: dict[str, int] = {}  # open connections per address
        self.pending: dict[str, int] = {}  # unfinished requests per address
        self.buckets: dict[str, list[float]] = {}  # handshake tokens and their time

    # --- unfinished requests (a transport's handshake phase) -------------------------------
    def pending_started(self, ip: str) -> None:
        """A new socket from `ip`; HttpError 429 when `ip` has too many unfinished ones."""
        n = self.pending.get(ip, 0)
        if n >= self.config.ip_max_pending:
            raise HttpError(429, "too_many_pending", f"{n} unfinished requests from {ip}")
        self.pending[ip] = n + 1

    def pending_ended(self, ip: str) -> None:
        _decrement(self.pending, ip)

    # --- open connections ------------------------------------------------------------------
    def check_room_for(self, ip: str) -> None:
        limit = self.config.ip_max_connections
        if self.connections.get(ip, 0) >= limit:
            raise HttpError(429, "too_many_connections",
                            f"{limit} connections already open from {ip}")

    def opened(self, ip: str) -> None:
        self.connections[ip] = self.connections.get(ip, 0) + 1

    def closed(self, ip: str) -> None:
        _decrement(self.connections, ip)

    # --- requests to rooms -----------------------------------------------------------------
    def admit(self, ip: str, req: Request, type_name: str, room_id: str,
              now: float) -> Claims | None:
        """The per-address request rate and, with keys, the join token for this room:
        checked for connections and for HTTP requests to rooms alike."""
        cfg = self.config
        bucket = self.buckets.get(ip)
        if bucket is None:
            bucket = self.buckets[ip] = [cfg.ip_handshake_burst, now]
        tokens = min(cfg.ip_handshake_burst, bucket[0] + (now - bucket[1]) * cfg.ip_handshake_rate)
        bucket[1] = now
        if tokens < 1.0:
            bucket[0] = tokens
            raise HttpError(429, "too_many_handshakes",
                            f"over {cfg.ip_handshake_rate:g} handshakes/s from {ip}",
                            (("Retry-After", "1"),))
        bucket[0] = tokens - 1.0
        if self.keys is None:
            return None
        token = req.query.get("token") or bearer(req.headers.get("authorization")) or ""
        if not token:
            raise HttpError(401, "missing_token", "this relay needs a join token (?token=)")
        try:
            return verify(self.keys, token, room_type=type_name, room_id=room_id,
                          leeway=cfg.token_leeway)
        except TokenError as e:
            raise HttpError(401, e.reason, e.message) from None

    def sweep(self, now: float) -> None:
        """Forget the buckets that have refilled."""
        rate, burst = self.config.ip_handshake_rate, self.config.ip_handshake_burst
        for ip, (tokens, at) in list(self.buckets.items()):
            if tokens + (now - at) * rate >= burst:
                del self.buckets[ip]


def _decrement(counts: dict[str, int], ip: str) -> None:
    n = counts.get(ip, 1) - 1
    if n > 0:
        counts[ip] = n
    else:
        counts.pop(ip, None)
