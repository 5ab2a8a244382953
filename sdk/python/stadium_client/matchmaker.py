"""Async client for the matchmaker HTTP API: queue, wait for a seat, join its room."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from stadium_client.room import Room
from stadium_client.service import ServiceClient, ServiceError


class MatchmakerError(ServiceError):
    """The matchmaker refused a request or a ticket failed: `status` (0 for a failed ticket),
    and `code`/`message` from its error body or the ticket's reason."""


@dataclass(frozen=True)
class Seat:
    """A place in a match: the room on a relay, and the token that lets this player in."""

    player: str
    team: int
    match_id: str
    room_type: str
    room_id: str
    url: str
    token: str | None
    expires: float

    async def join(self, **kw: Any) -> Room:
        """Open the room on the relay with this seat's token."""
        return await Room.connect(self.url, self.token, **kw)


class MatchmakerClient(ServiceClient):
    """`api_key` is only needed to post results (game servers hold it, game clients do not)."""

    error = MatchmakerError

    def __init__(self, base_url: str, api_key: str | None = None, timeout: float = 40.0) -> None:
        super().__init__(base_url, api_key, timeout)  # long enough for a long-poll wait

    async def create_ticket(self, queue: str, player: str, *, party: list[str] | None = None,
                            regions: dict[str, float] | None = None,
                            attributes: dict[str, Any] | None = None) -> dict[str, Any]:
        return dict(await self._call("POST", "/tickets", json={
            "queue": queue, "player": player, "party": party or [],
            "regions": regions or {}, "attributes": attributes or {}}))

    async def ticket(self, ticket_id: str) -> dict[str, Any]:
        return dict(await self._call("GET", f"/tickets/{ticket_id}"))

    async def wait(self, ticket_id: str, timeout: float = 25.0) -> dict[str, Any]:
        """The ticket once it is no longer waiting, or still waiting after `timeout` s."""
        return dict(await self._call("GET", f"/tickets/{ticket_id}/wait",
                                     params={"timeout": timeout}))

    async def cancel(self, ticket_id: str) -> dict[str, Any]:
        return dict(await self._call("DELETE", f"/tickets/{ticket_id}"))

    async def matchmake(self, queue: str, player: str, *, party: list[str] | None = None,
                        regions: dict[str, float] | None = None,
                        attributes: dict[str, Any] | None = None,
                        timeout: float | None = None) -> Seat:
        """Queue and wait for `player`'s seat (the party's seats: `seats(ticket)`).

        Raises MatchmakerError when the ticket fails (code = its reason, e.g. `timeout`), and
        TimeoutError after `timeout` seconds, having cancelled the ticket. A cancelled task
        cancels its ticket too.
        """
        ticket = await self.create_ticket(queue, player, party=party, regions=regions,
                                          attributes=attributes)
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            while ticket["status"] == "waiting":
                left = 25.0 if deadline is None else min(25.0, deadline - time.monotonic())
                if left <= 0:
                    ticket = await self._give_up(ticket["id"])
                    break
                ticket = await self.wait(ticket["id"], max(left, 0.05))
        except asyncio.CancelledError:
            await asyncio.shield(self._give_up(ticket["id"]))
            raise
        if ticket["status"] == "matched":
            return self.seats(ticket)[player]
        if ticket["status"] == "cancelled":
            raise TimeoutError(f"no match in {queue} within {timeout}s")
        raise MatchmakerError(0, str(ticket.get("reason", ticket["status"])),
                              f"ticket {ticket['id']} {ticket['status']}")

    async def _give_up(self, ticket_id: str) -> dict[str, Any]:
        try:
            return await self.cancel(ticket_id)
        except MatchmakerError as e:
            if e.code in ("already_matched", "already_failed"):
                return await self.ticket(ticket_id)  # the matcher was first: keep the seat
            raise

    @staticmethod
    def seats(ticket: dict[str, Any]) -> dict[str, Seat]:
        """player -> Seat of a matched ticket (one per party member)."""
        return {p: Seat(**s) for p, s in ticket.get("seats", {}).items()}

    async def join(self, seat: Seat, **kw: Any) -> Room:
        """Open the seat's room on its relay."""
        return await seat.join(**kw)

    async def report(self, match_id: str, ranks: list[int]) -> dict[str, Any]:
        """Post a result (needs the server key): one rank per team, 1 won, equal ranks drew."""
        return dict(await self._call("POST", f"/matches/{match_id}/result",
                                     json={"ranks": ranks}))

    async def match(self, match_id: str) -> dict[str, Any]:
        return dict(await self._call("GET", f"/matches/{match_id}"))

    async def player(self, player: str) -> dict[str, Any]:
        """The player's rating: mu, sigma, ordinal, games."""
        return dict(await self._call("GET", f"/players/{player}"))

    async def close(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> MatchmakerClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
