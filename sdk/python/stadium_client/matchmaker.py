"""Async client for the matchmaker HTTP API: queue, wait for a seat, join its room."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import Any

from websockets.exceptions import InvalidStatus

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


def _bearer(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


class MatchmakerClient(ServiceClient):
    """`token`: the player token of the player this client acts for (from the game's own
    backend; `stadium dev` mints them at POST /dev/player-token), sent with every ticket and
    seat request; each of those methods also takes `token=` for another player. `api_key`:
    the server key, which acts for any player and posts results (game servers hold it, game
    clients do not)."""

    error = MatchmakerError

    def __init__(self, base_url: str, api_key: str | None = None, timeout: float = 40.0, *,
                 token: str | None = None) -> None:
        super().__init__(base_url, api_key, timeout)  # long enough for a long-poll wait
        self.token = token

    def _auth(self, token: str | None) -> dict[str, str]:
        return _bearer(token or self.token)

    async def create_ticket(self, queue: str, player: str, *, party: list[str] | None = None,
                            regions: dict[str, float] | None = None,
                            attributes: dict[str, Any] | None = None,
                            party_token: str | None = None, token: str | None = None,
                            idempotency_key: str | None = None) -> dict[str, Any]:
        """A waiting ticket; a party needs a `party_token` from the game's backend (unless
        this client holds the server key). Sent with an Idempotency-Key (`idempotency_key`,
        or a new one) and retried under it after a 503 or a lost answer, so it makes one
        ticket."""
        body: dict[str, Any] = {"queue": queue, "player": player, "party": party or [],
                                "regions": regions or {}, "attributes": attributes or {}}
        if party_token is not None:
            body["party_token"] = party_token
        return dict(await self._write_once("POST", "/tickets", idempotency_key, json=body,
                                           headers=self._auth(token)))

    async def ticket(self, ticket_id: str, *, token: str | None = None) -> dict[str, Any]:
        return dict(await self._call("GET", f"/tickets/{ticket_id}",
                                     headers=self._auth(token)))

    async def wait(self, ticket_id: str, timeout: float = 25.0, *,
                   token: str | None = None) -> dict[str, Any]:
        """The ticket once it is no longer waiting, or still waiting after `timeout` s."""
        return dict(await self._call("GET", f"/tickets/{ticket_id}/wait",
                                     params={"timeout": timeout}, headers=self._auth(token)))

    async def cancel(self, ticket_id: str, *, token: str | None = None) -> dict[str, Any]:
        return dict(await self._call("DELETE", f"/tickets/{ticket_id}",
                                     headers=self._auth(token)))

    async def fresh_seat(self, match_id: str, player: str | None = None, *,
                         token: str | None = None) -> Seat:
        """The player's seat in the match with a fresh join token, for getting back in after
        the first one expired (the token's player; `player` with the server key)."""
        body = {} if player is None else {"player": player}
        return Seat(**await self._call("POST", f"/matches/{match_id}/seat", json=body,
                                       headers=self._auth(token)))

    async def matchmake(self, queue: str, player: str, *, party: list[str] | None = None,
                        regions: dict[str, float] | None = None,
                        attributes: dict[str, Any] | None = None,
                        timeout: float | None = None, party_token: str | None = None,
                        token: str | None = None) -> Seat:
        """Queue and wait for `player`'s seat (the party's seats: `seats(ticket)`).

        Raises MatchmakerError when the ticket fails (code = its reason, e.g. `timeout`), and
        TimeoutError after `timeout` seconds, having cancelled the ticket. A cancelled task
        cancels its ticket too.
        """
        ticket = await self.create_ticket(queue, player, party=party, regions=regions,
                                          attributes=attributes, party_token=party_token,
                                          token=token)
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            while ticket["status"] == "waiting":
                left = 25.0 if deadline is None else min(25.0, deadline - time.monotonic())
                if left <= 0:
                    ticket = await self._give_up(ticket["id"], token)
                    break
                ticket = await self.wait(ticket["id"], max(left, 0.05), token=token)
        except asyncio.CancelledError:
            await asyncio.shield(self._give_up(ticket["id"], token))
            raise
        if ticket["status"] == "matched":
            return self.seats(ticket)[player]
        if ticket["status"] == "cancelled":
            raise TimeoutError(f"no match in {queue} within {timeout}s")
        raise MatchmakerError(0, str(ticket.get("reason", ticket["status"])),
                              f"ticket {ticket['id']} {ticket['status']}")

    async def _give_up(self, ticket_id: str, token: str | None) -> dict[str, Any]:
        try:
            return await self.cancel(ticket_id, token=token)
        except MatchmakerError as e:
            if e.code in ("already_matched", "already_failed"):
                # the matcher was first: keep the seat
                return await self.ticket(ticket_id, token=token)
            raise

    @staticmethod
    def seats(ticket: dict[str, Any]) -> dict[str, Seat]:
        """player -> Seat of a matched ticket (one per party member)."""
        return {p: Seat(**s) for p, s in ticket.get("seats", {}).items()}

    async def join(self, seat: Seat, *, token: str | None = None, **kw: Any) -> Room:
        """Open the seat's room on its relay. When the relay refuses the seat's join token as
        `expired` (a player back after the token's minute), ask for a fresh seat with the
        player token and join with that."""
        try:
            return await seat.join(**kw)
        except InvalidStatus as e:
            if e.response.status_code != 401 or _refusal(e) != "expired" or \
                    not (token or self.token or self._http.headers.get("X-API-Key")):
                raise
        player = None if token or self.token else seat.player
        fresh = await self.fresh_seat(seat.match_id, player, token=token)
        return await fresh.join(**kw)

    async def report(self, match_id: str, ranks: list[int], *,
                     idempotency_key: str | None = None) -> dict[str, Any]:
        """Post a result (needs the server key): one rank per team, 1 won, equal ranks drew.
        Sent with an Idempotency-Key and retried under it, as `create_ticket`."""
        return dict(await self._write_once("POST", f"/matches/{match_id}/result",
                                           idempotency_key, json={"ranks": ranks}))

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


def _refusal(e: InvalidStatus) -> str | None:
    """The code of the relay's JSON error body of a refused upgrade."""
    try:
        code = json.loads(e.response.body or b"")["error"]["code"]
    except (ValueError, KeyError, TypeError):
        return None
    return code if isinstance(code, str) else None
