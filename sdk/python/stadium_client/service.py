"""What the HTTP service clients share: the server-key header, the error body, and writes
retried under one Idempotency-Key."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any, ClassVar

import httpx

RETRIES = 2  # more attempts of a write with an Idempotency-Key after a 503 or a lost answer


class ServiceError(Exception):
    """A service refused a request: `status`, and `code`/`message` from its error body."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


class ServiceClient:
    """An async client of one Stadium HTTP service; errors raise `error`."""

    error: ClassVar[type[ServiceError]] = ServiceError

    def __init__(self, base_url: str, api_key: str | None = None, timeout: float = 10.0) -> None:
        headers = {"X-API-Key": api_key} if api_key else {}
        self._http = httpx.AsyncClient(base_url=base_url, headers=headers, timeout=timeout)

    async def _call(self, method: str, path: str, **kw: Any) -> Any:
        r = await self._http.request(method, path, **kw)
        if r.status_code >= 400:
            try:
                err = r.json()["error"]
                raise self.error(r.status_code, err["code"], err["message"])
            except (ValueError, KeyError, TypeError):
                raise self.error(r.status_code, "http_error", r.text[:200]) from None
        return r.json()

    async def _write_once(self, method: str, path: str, key: str | None,
                          retries: int = RETRIES, **kw: Any) -> Any:
        """A write sent with an Idempotency-Key (`key`, or a new one), retried under the
        same key when the service answers 503 or the answer is lost: the service applies
        it once however many attempts arrive."""
        headers = {**(kw.pop("headers", None) or {}), "Idempotency-Key": key or uuid.uuid4().hex}
        for attempt in range(retries + 1):
            last = attempt == retries
            try:
                return await self._call(method, path, headers=headers, **kw)
            except httpx.TransportError:
                if last:
                    raise
            except ServiceError as e:
                if e.status != 503 or last:
                    raise
            await asyncio.sleep(0.2 * 2 ** attempt)
        raise AssertionError("not reached")
