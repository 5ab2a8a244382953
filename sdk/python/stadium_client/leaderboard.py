"""Async client for the leaderboard HTTP API."""

from __future__ import annotations

from typing import Any

from stadium_client.service import ServiceClient, ServiceError


class LeaderboardError(ServiceError):
    """The service refused a request: `status`, and `code`/`message` from its error body."""


class LeaderboardClient(ServiceClient):
    """`api_key` is needed for writes (submit, remove, board settings): game servers hold it,
    game clients read without it."""

    error = LeaderboardError

    async def configure(self, board: str, *, order: str = "desc", operator: str = "best",
                        periods: list[str] | None = None, reset_time: str = "00:00",
                        metadata_max_bytes: int = 1024,
                        idempotency_key: str | None = None) -> dict[str, Any]:
        """Create or change a board; returns its settings. Sent with an Idempotency-Key (as
        `submit`), so a retry after a 503 or a lost answer is not a change of its own."""
        return dict(await self._write_once("PUT", f"/boards/{board}", idempotency_key, json={
            "order": order, "operator": operator, "periods": periods or [],
            "reset_time": reset_time, "metadata_max_bytes": metadata_max_bytes}))

    async def submit(self, board: str, player: str, score: float, metadata: Any = None, *,
                     idempotency_key: str | None = None) -> dict[str, Any]:
        """One score; returns {period: {score, rank}} for the player. Sent with an
        Idempotency-Key (`idempotency_key`, or a new one) and retried under it after a 503
        or a lost answer, so it counts once."""
        body = await self._write_once("POST", f"/boards/{board}/scores", idempotency_key, json={
            "player": player, "score": score, "metadata": metadata})
        return dict(body["results"][0]["periods"])

    async def submit_many(self, board: str, scores: list[dict[str, Any]], *,
                          idempotency_key: str | None = None) -> list[dict[str, Any]]:
        """A batch of {player, score, metadata?}, written atomically, once (as `submit`)."""
        body = await self._write_once("POST", f"/boards/{board}/scores", idempotency_key,
                                      json={"scores": scores})
        return list(body["results"])

    async def top(self, board: str, limit: int = 10, period: str = "all",
                  cursor: str | None = None) -> dict[str, Any]:
        params: dict[str, Any] = {"limit": limit, "period": period}
        if cursor:
            params["cursor"] = cursor
        return dict(await self._call("GET", f"/boards/{board}", params=params))

    async def rank(self, board: str, player: str, period: str = "all") -> dict[str, Any]:
        return dict(await self._call("GET", f"/boards/{board}/players/{player}",
                                     params={"period": period}))

    async def around(self, board: str, player: str, n: int = 5,
                     period: str = "all") -> list[dict[str, Any]]:
        body = await self._call("GET", f"/boards/{board}/players/{player}/around",
                                params={"n": n, "period": period})
        return list(body["entries"])

    async def ranks(self, board: str, players: list[str], period: str = "all") -> dict[str, Any]:
        return dict(await self._call("POST", f"/boards/{board}/ranks",
                                     params={"period": period}, json={"players": players}))

    async def remove(self, board: str, player: str, *,
                     idempotency_key: str | None = None) -> int:
        """Remove the player from every period; returns how many held it. Sent with an
        Idempotency-Key (as `submit`): a retry after a removal that landed answers its count
        rather than 404."""
        body = await self._write_once("DELETE", f"/boards/{board}/players/{player}",
                                      idempotency_key)
        return int(body["removed_from_periods"])

    async def close(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> LeaderboardClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
