"""The matchmaker's HTTP API: routes that validate input and call `Store`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable, Sequence
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Path, Query, Request, Security
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials
from pydantic import BaseModel, ConfigDict, Field, JsonValue, StrictFloat, StrictInt

from matchmaker.auth import FORBIDDEN_TICKET, MISSING, UNAUTHORIZED, Auth, Caller
from matchmaker.metrics import Metrics
from matchmaker.queues import MAX_PLAYERS
from matchmaker.ratings import Rating
from matchmaker.seats import reseat
from matchmaker.store import (
    MATCH_ID,
    MAX_ATTRIBUTES_BYTES,
    MAX_LATENCY_MS,
    MAX_REGIONS,
    NO_TICKET,
    PLAYER,
    REGION,
    TICKET_ID,
    AlreadyQueued,
    MatchmakerError,
    Store,
    check_player,
)
from matchmaker.waiters import TicketWaiters
from stadium import __version__, once, tokens
from stadium.http import (
    PLAYER_TOKEN,
    SERVER_KEY,
    IdempotencyKey,
    JsonInt,
    JsonObject,
    MeasureRequests,
    add_cors,
    add_error_handlers,
    add_operations_routes,
    anchored,
    error_response,
    error_responses,
    key_matches,
    refine_openapi,
    server_key,
)
from stadium.keys import SigningKey

log = logging.getLogger("stadium.matchmaker")


PlayerName = Annotated[str, Path(description="1-64 of A-Z a-z 0-9 _ . : @ -",
                                json_schema_extra={"pattern": anchored(PLAYER),
                                                   "minLength": 1, "maxLength": 64})]
TicketId = Annotated[str, Path(description="as POST /tickets gave it", json_schema_extra={
    "pattern": anchored(TICKET_ID)})]
MatchId = Annotated[str, Path(description="as a seat or a ticket gives it", json_schema_extra={
    "pattern": anchored(MATCH_ID)})]
_PLAYER_ID: dict[str, JsonValue] = {"pattern": anchored(PLAYER), "minLength": 1, "maxLength": 64}
Latency = Annotated[StrictInt | StrictFloat, Field(json_schema_extra={
    "minimum": 0, "maximum": MAX_LATENCY_MS})]


class TicketIn(BaseModel):
    model_config = ConfigDict(strict=True)

    player: str = Field(max_length=64, json_schema_extra=_PLAYER_ID)
    queue: str = Field(max_length=64, description="one of GET /queues")
    party: list[Annotated[str, Field(max_length=64, json_schema_extra=_PLAYER_ID)]] = Field(
        default_factory=list, max_length=MAX_PLAYERS, json_schema_extra={"uniqueItems": True},
        description="the other players who must play on the player's team (with the player, "
        "at most the queue's team_size)")
    regions: dict[str, Latency] = Field(
        default_factory=dict, json_schema_extra={
            "maxProperties": MAX_REGIONS, "propertyNames": {"pattern": anchored(REGION)}},
        description="region name -> latency in ms; empty: any region. A queue that lists its "
        "regions takes only those")
    attributes: JsonObject = Field(
        default_factory=dict, description=f"at most {MAX_ATTRIBUTES_BYTES} bytes as JSON")
    party_token: str | None = Field(
        None, max_length=tokens.MAX_TOKEN_LENGTH, description="with a player token and a "
        "party: a party token (kind party) of this player as leader, naming every member")


class SeatIn(BaseModel):
    model_config = ConfigDict(strict=True)

    player: str | None = Field(None, max_length=64, json_schema_extra=_PLAYER_ID,
                               description="whose seat: the token's player when left out; "
                               "required with the server key")


class PlayerTokenIn(BaseModel):
    model_config = ConfigDict(strict=True)

    player: str = Field(max_length=64, json_schema_extra=_PLAYER_ID)


class PlayerToken(BaseModel):
    player: str
    token: str | None = Field(description="null when the matchmaker checks no player tokens")
    expires: float | None


class ResultIn(BaseModel):
    model_config = ConfigDict(strict=True)

    ranks: list[Annotated[JsonInt, Field(json_schema_extra={"minimum": 1})]] = Field(
        min_length=2, max_length=MAX_PLAYERS,
        description="one rank per team, in the match's team order: 1 won; equal ranks drew")


# What the routes answer, for the document (the routes build their JSON themselves).
class QueueView(BaseModel):
    name: str
    teams: int
    team_size: int
    rating_window: float
    widen_per_second: float
    max_wait: float
    max_region_latency_ms: float
    room_type: str
    regions: list[str]
    bots: bool


class Queues(BaseModel):
    queues: list[QueueView]


class Seat(BaseModel):
    player: str
    team: int
    match_id: str
    room_type: str
    room_id: str
    url: str
    token: str | None = Field(description="null when the matchmaker has no --secret")
    expires: float


class TicketView(BaseModel):
    id: str
    queue: str
    status: Literal["waiting", "matched", "cancelled", "failed", "no_show"]
    players: list[str]
    created: float
    regions: dict[str, float]
    attributes: dict[str, JsonValue]
    match_id: str | None = Field(None, description="once matched")
    seats: dict[str, Seat] | None = Field(None, description="once matched: player -> seat")
    reason: str | None = Field(None, description="why it failed")
    no_shows: list[str] | None = Field(None, description="its players who never joined")


class MatchView(BaseModel):
    id: str
    queue: str
    room_type: str
    room_id: str
    relay: str
    teams: list[list[str]]
    created: float
    region: str | None = None
    worst_latency_ms: float | None = None
    rating_spread: float | None = None
    win_probability: list[float] | None = None
    with_bots: bool | None = None
    bots: list[list[dict[str, JsonValue]]] | None = None
    seats: dict[str, JsonValue] = Field(description="who took their seat")
    result: dict[str, JsonValue] | None


class NewRating(BaseModel):
    mu: float
    sigma: float
    games: int


class Reported(BaseModel):
    match_id: str
    ranks: list[int]
    ratings: dict[str, NewRating]


class PlayerRating(NewRating):
    player: str
    ordinal: float


_NO_KEY = "results need the server API key (X-API-Key)"
_UNAVAILABLE = "the matchmaker's Redis is not answering; try again later"


def check_key(api_key: str | None, x_api_key: str | None, authorization: str | None) -> None:
    if not key_matches(api_key, x_api_key, authorization):
        raise MatchmakerError(401, "bad_api_key", _NO_KEY)


_error = error_response


def caller_of(auth: Auth) -> Callable[..., Any]:
    """A route dependency giving who calls (see Auth); the document says the operation takes
    the server key or a player token, when this matchmaker checks them."""
    if not auth.checks_players:
        async def anyone(request: Request) -> Caller:
            return auth.caller(request.headers)  # the server key, or anyone at all
        return anyone

    async def caller(request: Request,
                     _key: Annotated[str | None, Security(SERVER_KEY)] = None,
                     _token: Annotated[HTTPAuthorizationCredentials | None,
                                       Security(PLAYER_TOKEN)] = None) -> Caller:
        return auth.caller(request.headers)

    return caller


PLAYER_TOKEN_TTL = 3600.0  # seconds a player token from POST /dev/player-token lasts
FRESH_SEAT_WINDOW = 60.0  # seconds: fresh seats are counted per player and minute


def create_app(store: Store, metrics: Metrics, api_key: str | None, waiters: TicketWaiters,
               max_long_poll: float = 30.0, cors_origins: Sequence[str] = (), *,
               auth: Auth | None = None, signer: SigningKey | None = None,
               seat_ttl: float = 60.0, dev_tokens: SigningKey | None | bool = False,
               fresh_seats_per_minute: int = 0) -> Any:
    """The app. `auth` checks who calls the ticket and seat routes (default: anyone may);
    `signer` and `seat_ttl` make fresh seats, at most `fresh_seats_per_minute` per player
    asking with their player token (0: no limit); `dev_tokens` (a key, or None to answer
    null tokens) turns on POST /dev/player-token, for development only."""
    app = FastAPI(title="Stadium matchmaker", version=__version__,
                  description="Tickets wait in queues until the matcher seats them in a room "
                  "on a relay. Results (server key) update OpenSkill ratings. Tickets and "
                  "seats belong to their player: with a player token (Authorization: Bearer) "
                  "a client acts for its own player, with the server key for any.")
    if api_key is None:
        log.warning("no --api-key: anyone may post match results")
    auth = auth or Auth(api_key, None, tokens.DEFAULT_LEEWAY)
    who = Depends(caller_of(auth))
    # 401 for the routes that take a caller, when this process checks them
    unauthorized: dict[int, list[str]] = {401: UNAUTHORIZED} if auth.checks_players else {}
    forbidden: dict[int, list[str]] = {403: FORBIDDEN_TICKET} if auth.checks_players else {}

    key = [Depends(server_key(api_key, lambda: MatchmakerError(401, "bad_api_key", _NO_KEY)))]
    # Each route's error statuses and codes, for the document.
    keyed: dict[int, list[str]] = {} if api_key is None else {401: ["bad_api_key"]}
    down = {503: ["redis_unavailable"]}

    @app.exception_handler(MatchmakerError)
    async def matchmaker_error(_: Request, e: MatchmakerError) -> JSONResponse:
        log.info("%d %s: %s", e.status, e.code, e.logged)
        response = _error(e.status, e.code, e.message)
        response.headers.update(dict(e.headers))
        return response

    async def owned_ticket(caller: Caller, ticket_id: str) -> dict[str, Any]:
        """The ticket, if the caller may see it; else the same 404 as for no ticket."""
        view = await store.ticket(ticket_id)
        if not caller.owns(view["players"][0]):
            raise MatchmakerError(404, "unknown_ticket", NO_TICKET)
        return view

    async def check_owner(caller: Caller, ticket_id: str) -> None:
        """404 as for no ticket unless the caller may act on it (reads its owner only)."""
        owner = await store.owner(ticket_id)
        if owner is None or not caller.owns(owner):
            raise MatchmakerError(404, "unknown_ticket", NO_TICKET)

    add_error_handlers(app, _UNAVAILABLE)

    add_operations_routes(app, store.redis, metrics.registry)
    refine_openapi(app, _name_the_queues(sorted(store.queues)))

    @app.get("/queues", tags=["queues"], response_model=Queues)
    async def queues() -> JSONResponse:
        return JSONResponse({"queues": [
            {"name": q.name, "teams": q.teams, "team_size": q.team_size,
             "rating_window": q.rating_window, "widen_per_second": q.widen_per_second,
             "max_wait": q.max_wait, "max_region_latency_ms": q.max_region_latency_ms,
             "room_type": q.room_type, "regions": list(q.regions), "bots": q.bots}
            for q in store.queues.values()]})

    @app.post("/tickets", tags=["tickets"], status_code=201, response_model=TicketView,
              responses=error_responses({
                  400: ["bad_player"], **unauthorized, **forbidden,
                  404: ["unknown_queue", "unknown_ticket"], 409: ["already_queued"],
                  422: ["invalid_request", "duplicate_player", "party_too_large",
                        "too_many_regions", "unknown_region", "bad_latency",
                        "attributes_too_large", once.REUSED],
                  503: ["queue_full", "busy", "redis_unavailable"]}))
    async def create_ticket(body: TicketIn, caller: Caller = who,
                            idempotency_key: IdempotencyKey = None) -> JSONResponse:
        """Queue a player (and their party). The rating is the player's stored one. A player
        token queues its own player only, and a party with a party token of theirs; the
        server key queues anyone. With an `Idempotency-Key`, a retry of a request that
        created a ticket (also one answered 503 whose ticket was created) creates nothing and
        answers that ticket as it is now (404 `unknown_ticket` once it has expired); keys
        are the player's own, per queue."""
        regions, attributes = dict(body.regions), dict(body.attributes)
        store.check_ticket(body.queue, body.player, body.party, regions, attributes)
        auth.check_party(caller, body.player, body.party, body.party_token)
        try:
            ticket, created = await store.create_ticket(
                body.queue, body.player, body.party, regions, attributes, idempotency_key)
        except AlreadyQueued as e:
            # the caller learns the id of a ticket they could read anyway, and no other
            if e.owned and e.ticket_id and caller.known and caller.owns(e.player):
                raise e.naming() from None
            raise
        if created:
            metrics.tickets.labels(ticket.queue, "created").inc()
        return JSONResponse(await store.ticket(ticket.id), status_code=201)

    @app.get("/tickets/{ticket_id}", tags=["tickets"], response_model=TicketView,
             responses=error_responses({**unauthorized, 404: ["unknown_ticket"], **down}))
    async def get_ticket(ticket_id: TicketId, caller: Caller = who) -> JSONResponse:
        """The ticket, to its player (or the server key): another's answers 404 as a ticket
        that does not exist."""
        return JSONResponse(await owned_ticket(caller, ticket_id))

    @app.get("/tickets/{ticket_id}/wait", tags=["tickets"], response_model=TicketView,
             responses=error_responses({**unauthorized, 404: ["unknown_ticket"],
                                        422: ["invalid_request", "bad_timeout"], **down}))
    async def wait_ticket(ticket_id: TicketId, caller: Caller = who, timeout: float = Query(
            min(25.0, max_long_poll), gt=0, json_schema_extra={"maximum": max_long_poll},
            description="seconds, at most the matchmaker's --max-long-poll")) -> JSONResponse:
        """Answer once the ticket is no longer waiting, or after `timeout` seconds with its
        status still `waiting` (then ask again)."""
        if timeout > max_long_poll:
            raise MatchmakerError(422, "bad_timeout", f"timeout is at most {max_long_poll:g}s")
        deadline = time.monotonic() + timeout
        await check_owner(caller, ticket_id)  # its players never change
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

    @app.delete("/tickets/{ticket_id}", tags=["tickets"], response_model=TicketView,
                responses=error_responses({
                    **unauthorized, 404: ["unknown_ticket"],
                    409: ["already_matched", "already_failed"], **down}))
    async def cancel_ticket(ticket_id: TicketId, caller: Caller = who) -> JSONResponse:
        """Cancel: once this answers 200 the ticket is never matched; 409 `already_matched`
        when the matcher was first (the seats are in the ticket)."""
        await check_owner(caller, ticket_id)
        view = await store.cancel(ticket_id)
        metrics.tickets.labels(view["queue"], "cancelled").inc()
        return JSONResponse(view)

    @app.get("/matches/{match_id}", tags=["matches"], response_model=MatchView,
             responses=error_responses({404: ["unknown_match"], **down}))
    async def get_match(match_id: MatchId) -> JSONResponse:
        return JSONResponse(await store.match(match_id))

    # Without player tokens to check, a fresh signed seat goes to the server key only.
    seat_unauthorized = unauthorized or ({401: [MISSING]} if signer is not None else {})
    # Only a player token's requests are counted: the server key acts for every player.
    limited = auth.checks_players and fresh_seats_per_minute > 0
    rate_limited: dict[int, list[str]] = {429: ["rate_limited"]} if limited else {}

    async def count_fresh_seat(player: str) -> None:
        """429 `rate_limited` once `player` asked for more fresh seats this minute than
        allowed, whichever process they asked (the count is in Redis)."""
        asked, left = await store.count_fresh_seat(player, FRESH_SEAT_WINDOW)
        if asked > fresh_seats_per_minute:
            wait = max(1, math.ceil(left))
            raise MatchmakerError(429, "rate_limited", f"{player} asked for more than "
                                  f"{fresh_seats_per_minute} fresh seats in a minute; try "
                                  f"again in {wait} s", headers=(("Retry-After", str(wait)),))

    @app.post("/matches/{match_id}/seat", tags=["matches"], response_model=Seat,
              responses=error_responses({
                  400: ["bad_player"], **seat_unauthorized, 403: ["wrong_player"],
                  404: ["unknown_match"],
                  409: ["match_over", "seat_released"],
                  422: ["invalid_request", "player_required"], **rate_limited, **down}))
    async def fresh_seat(match_id: MatchId, body: SeatIn | None = None,
                         caller: Caller = who) -> JSONResponse:
        """A player's seat in the match with a fresh join token (same room, seat and team),
        for a player back after their token expired: until the match's result is posted,
        unless the seat was released as not taken in time. A player token gets at most
        --fresh-seats-per-minute of them per minute (429 `rate_limited`, with Retry-After)."""
        if not caller.known and signer is not None:
            raise MatchmakerError(401, MISSING, "a fresh join token needs the server key "
                                  "(this matchmaker checks no player tokens)")
        player = body.player if body is not None and body.player is not None else caller.player
        if player is None:
            raise MatchmakerError(422, "player_required", "name the player whose seat it is")
        check_player(player)
        if not caller.owns(player):
            raise MatchmakerError(403, "wrong_player", "the player token is not this player's")
        if limited and caller.player is not None:  # their own token, checked
            await count_fresh_seat(player)
        record, report, over = await store.seat_record(match_id)
        seat = reseat(record, player, signer, ttl=seat_ttl)
        if seat is None:  # no seat of theirs: as if there were no such match
            raise MatchmakerError(404, "unknown_match", f"no match {match_id[:80]!r}")
        if over:
            raise MatchmakerError(409, "match_over", "the match's result is in: its seats "
                                  "are closed")
        if report is not None and player in report.get("no_shows", ()):
            raise MatchmakerError(409, "seat_released", f"{player} did not take the seat "
                                  "before it expired; it was released")
        return JSONResponse(seat)

    if dev_tokens is not False:
        dev_key = dev_tokens if isinstance(dev_tokens, SigningKey) else None
        log.warning("--dev-auth: POST /dev/player-token mints a player token for whoever "
                    "asks (development only; never in production)")

        @app.post("/dev/player-token", tags=["development"], response_model=PlayerToken,
                  responses=error_responses({
                      400: ["bad_player"], 422: ["invalid_request"]}))
        async def dev_player_token(body: PlayerTokenIn) -> JSONResponse:
            """Development only (`stadium dev`, `--dev-auth`): a player token for any player,
            as a game's own backend would mint after its login. Null without --secret."""
            check_player(body.player)
            if dev_key is None:
                return JSONResponse({"player": body.player, "token": None, "expires": None})
            now = time.time()
            token = tokens.sign_player(dev_key, player=body.player, ttl=PLAYER_TOKEN_TTL,
                                       now=now)
            return JSONResponse({"player": body.player, "token": token,
                                 "expires": math.ceil(now + PLAYER_TOKEN_TTL)})

    @app.post("/matches/{match_id}/result", tags=["matches"], dependencies=key,
              response_model=Reported, responses=error_responses({
                  **keyed, 404: ["unknown_match"], 409: ["result_reported"],
                  422: ["invalid_request", "bad_ranks", once.REUSED],
                  503: ["busy", "redis_unavailable"]}))
    async def post_result(match_id: MatchId, body: ResultIn,
                          idempotency_key: IdempotencyKey = None) -> JSONResponse:
        """Record the result once; every player's rating is updated. Another result for the
        match is 409 `result_reported`, except a retry under the first one's
        `Idempotency-Key`, which gets the first answer and writes nothing (also after a 503
        whose result landed: the ratings are finished then if they were not)."""
        return JSONResponse(await store.report(match_id, body.ranks, idempotency_key))

    @app.get("/players/{player}", tags=["players"], response_model=PlayerRating,
             responses=error_responses({400: ["bad_player"], **down}))
    async def get_player(player: PlayerName) -> JSONResponse:
        check_player(player)
        r: Rating = (await store.ratings([player]))[0]
        return JSONResponse({"player": player, "mu": r.mu, "sigma": r.sigma,
                             "ordinal": r.ordinal, "games": r.games})

    def record(route: str, status: int, _: float) -> None:
        metrics.requests.labels(route, str(status)).inc()

    return add_cors(MeasureRequests(app, record), cors_origins)



def _name_the_queues(names: list[str]) -> Callable[[dict[str, Any]], None]:
    """The document's TicketIn.queue lists this process's queues (the model is shared by every
    app, the queues are not); a ticket for any other answers 404 unknown_queue."""

    def patch(doc: dict[str, Any]) -> None:
        doc["components"]["schemas"]["TicketIn"]["properties"]["queue"]["enum"] = names

    return patch
