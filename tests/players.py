"""Matchmaker requests made as the players they are about would make them: each ticket
request carries its player's token (and a party's, its party token), signed with the
secret the matchmaker under test checks them with."""

from __future__ import annotations

import json
from collections.abc import Generator

import httpx

from stadium.tokens import sign_party, sign_player

STRANGER = "stranger"  # whose token goes with a ticket id no request here created


class PlayerTokens(httpx.Auth):
    """httpx auth: `POST /tickets` with the token of the body's player (and a party token
    for its party), `/tickets/{id}...` with the token of the player who created that ticket.
    A request that already carries a credential, and every other path, goes as it is."""

    requires_response_body = True

    def __init__(self, secret: str) -> None:
        self.secret = secret
        self.owners: dict[str, str] = {}  # ticket id -> player

    def token(self, player: str) -> str:
        return sign_player(self.secret, player=player)

    def headers(self, player: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(player)}"}

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response,
                                                             None]:
        if "authorization" in request.headers or "x-api-key" in request.headers:
            yield request
            return
        path = request.url.path
        if request.method == "POST" and path == "/tickets":
            yield from self._create(request)
        elif path.startswith("/tickets/"):
            owner = self.owners.get(path.split("/")[2], STRANGER)
            request.headers["Authorization"] = f"Bearer {self.token(owner)}"
            yield request
        else:
            yield request

    def _create(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        try:
            body = json.loads(request.content or b"null")
        except ValueError:
            body = None
        player = body.get("player") if isinstance(body, dict) else None
        if not isinstance(player, str):  # a client sends its own token whatever its body
            request.headers["Authorization"] = f"Bearer {self.token(STRANGER)}"
            yield request
            return
        party = body.get("party")
        if isinstance(party, list) and party and "party_token" not in body:
            try:
                body["party_token"] = sign_party(self.secret, leader=player, members=party)
            except (TypeError, ValueError):
                pass  # no such party can agree: the matchmaker says what is wrong
            else:
                request = httpx.Request(request.method, request.url, json=body,
                                        headers={k: v for k, v in request.headers.items()
                                                 if k.lower() != "content-length"})
        request.headers["Authorization"] = f"Bearer {self.token(player)}"
        response = yield request
        if response.status_code == 201:
            self.owners[response.json()["id"]] = player
