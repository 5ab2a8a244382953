"""What the HTTP service clients share: the server-key header and the error body."""

from __future__ import annotations

from typing import Any, ClassVar

import httpx


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
