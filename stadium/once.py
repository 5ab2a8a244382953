"""`Idempotency-Key` (the IETF draft's header) as the services take it: what a key may be,
how long it is kept, and the fingerprint of a request made under it. A service keeps, with
the write a keyed request made, the request's fingerprint and outcome; a retry under the same
key gets that outcome again and writes nothing, and the key on a request with another
fingerprint is refused (422 `idempotency_key_reused`)."""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

KEY = re.compile(r"[!-~]{1,255}")  # printable ASCII, as the draft's keys
TTL = 86400.0  # seconds a key and its outcome are kept, unless configured otherwise
REUSED = "idempotency_key_reused"

_JSON = json.JSONEncoder(separators=(",", ":"), sort_keys=True)


def fingerprint(*parts: Any) -> str:
    """A digest of what a request asks for (JSON values), to tell a retry from another
    request sent under the same key."""
    return hashlib.sha256(_JSON.encode(parts).encode()).hexdigest()


def digest(*parts: str) -> str:
    """A fixed-length name for a key (and what it is scoped to), for a Redis key name."""
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:32]
