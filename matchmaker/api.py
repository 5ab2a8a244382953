"""The matchmaker's HTTP API: routes that validate input and call `Store`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, JsonValue, StrictFloat, StrictInt

from matchmaker.metrics import Metrics
from matchmaker.queues import MAX_PLAYERS
from matchmaker.ratings import Rating
from matchmaker.store import MatchmakerError, Store, check_player
from matchmaker.waiters import TicketWaiters
from stadium import __version__
from stadium.http import (
    MeasureRequests,
    add_cors,
    add_error_handlers,
    add_operations_routes,
    error_response,
    key_matches,
)

log = logging.getLogger("stadium.matchmaker")


class TicketIn(BaseModel):
    player: str = Field(max_length=64)
    queue: str = Field(max_length=64)
    party: list[Annotated[str, Field(max_length=64)]] = Field(
        default_factory=list, max_length=MAX_PLAYERS,
        description="the other players who must play on the player's team")
    regions: dict[str, StrictInt | StrictFloat] = Field(
        default_factory=dict, description="region name -> latency in ms; empty: any region")
    attributes: dict[str, JsonValue] = Field(default_factory=dict)


class ResultIn(BaseModel):
    ranks: list[StrictInt] = Field(
        min_length=2, max_length=MAX_PLAYERS,
        description="one rank per team, in the match's team order: 1 won; equal ranks drew")


def check_key(api_key: str | None, x_api_key: str | None, authorization: str | None) -> None:
    if not key_matches(api_key, x_api_key, authorization):
        raise MatchmakerError(401, "bad_api_key", "results need the server API key (X-API-Key)")


_error = error_response
_UNAVAILABLE = "the matchmaker's Redis is not answering; try again later"


def create_app(store: Store, metrics: Metrics, api_key: str | None, waiters: TicketWaiters,
               max_long_poll: float = 30.0, cors_origins: Sequence[str] = ()) -> Any:
    app = FastAPI(title="Stadium matchmaker", version=__version__,
                  description="Tickets wait in queues until the matcher seats them in a room "
                  "on a relay. Results (server key) update OpenSkill ratings.")
    if api_key is None:
        log.warning("no --api-key: anyone may post match results")

    def require_key(x_api_key: Annotated[str | None, Header()] = None,
                    authorization: Annotated[str | None, Header()] = None) -> None:
        check_key(api_key, x_api_key, authorization)

    @app.exception_handler(MatchmakerError)
    async def matchmaker_error(_: Request, e: MatchmakerError) -> JSONResponse:
        log.info("%d %s: %s", e.status, e.code, e.message)
        return _error(e.status, e.code, e.message)

    add_error_handlers(app, _UNAVAILABLE)

    add_operations_routes(app, store.redis, metrics.registry)

    @app.get("/queues", tags=["queues"])
    async def queues() -> JSONResponse:
        return JSONResponse({"queues": [
            {"name": q.name, "teams": q.teams, "team_size": q.team_size,
             "rating_window": q.rating_window, "widen_per_second": q.widen_per_second,
             "max_wait": q.max_wait, "max_region_latency_ms": q.max_region_latency_ms,
             "room_type": q.room_type, "regions": list(q.regions), "bots": q.bots}
            for q in store.queues.values()]})

    @app.post("/tickets", tags=["tickets"], status_code=201)
    async def create_ticket(body: TicketIn) -> JSONResponse:
        """Queue a player (and their party). The rating is the player's stored one."""
        ticket = await store.create_ticket(body.queue, body.player, body.party,
                                           dict(body.regions), dict(body.attributes))
        metrics.tickets.labels(ticket.queue, "created").inc()
        return JSONResponse(await store.ticket(ticket.id), status_code=201)

    @app.get("/tickets/{ticket_id}", tags=["tickets"])
    async def get_ticket(ticket_id: str) -> JSONResponse:
        return JSONResponse(await store.ticket(ticket_id))

    @app.get("/tickets/{ticket_id}/wait", tags=["tickets"])
    async def wait_ticket(ticket_id: str, timeout: Annotated[float, Query(gt=0)] = 25.0
                          ) -> JSONResponse:
        """Answer once the ticket is no longer waiting, or after `timeout` seconds with its
        status still `waiting` (then ask again)."""
        if timeout > max_long_poll:
            raise MatchmakerError(422, "bad_timeout", f"timeout is at most {max_long_poll:g}s")
        deadline = time.monotonic() + timeout
        while True:
            woken = waiters.expect(ticket_id)  # before the read: no notice falls in between
            try:
                view = await store.ticket(ticket_id)
                left = deadline - time.monotonic()
                if view["status"] != "waiting" or left <= 0:
                    return JSONResponse(view)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(woken, min(left, waiters.recheck))
            finally:
                waiters.drop(ticket_id, woken)

    @app.delete("/tickets/{ticket_id}", tags=["tickets"])
    async def cancel_ticket(ticket_id: str) -> JSONResponse:
        """Cancel: once this answers 200 the ticket is never matched; 409 `already_matched`
        when the matcher was first (the seats are in the ticket)."""
        view = await store.cancel(ticket_id)
        metrics.tickets.labels(view["queue"], "cancelled").inc()
        return JSONResponse(view)

    @app.get("/matches/{match_id}", tags=["matches"])
    async def get_match(match_id: str) -> JSONResponse:
        return JSONResponse(await store.match(match_id))

    @app.post("/matches/{match_id}/result", tags=["matches"],
              dependencies=[Depends(require_key)])
    async def post_result(match_id: str, body: ResultIn) -> JSONResponse:
        """Record the result once; every player's rating is updated."""
        return JSONResponse(await store.report(match_id, body.ranks))

    @app.get("/players/{player}", tags=["players"])
    async def get_player(player: str) -> JSONResponse:
        check_player(player)
        r: Rating = (await store.ratings([player]))[0]
        return JSONResponse({"player": player, "mu": r.mu, "sigma": r.sigma,
                             "ordinal": r.ordinal, "games": r.games})

    def record(route: str, status: int, _: float) -> None:
        metrics.requests.labels(route, str(status)).inc()

    return add_cors(MeasureRequests(app, record), cors_origins)
