"""Who calls the matchmaker: the server key (a game backend), a player with their player token,
or anyone when the matchmaker has no key to check player tokens with; and what each may do."""

from __future__ import annotations

import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from matchmaker.store import MatchmakerError
from stadium import tokens
from stadium.keys import KeySet

# 401 codes besides the token refusals: no credential at all, or a wrong X-API-Key.
MISSING = "missing_token"
BAD_KEY = "bad_api_key"
UNAUTHORIZED = [MISSING, BAD_KEY, *(r for r in tokens.REASONS if r != "wrong_room")]
FORBIDDEN_TICKET = ["wrong_player", "party_not_agreed"]


@dataclass(frozen=True, slots=True)
class Caller:
    """`player` is the player a token proved (None for the server key); `server` may act for
    any player; `known` is False for anyone at all, when player tokens are not checked."""

    player: str | None
    server: bool
    known: bool = True

    def owns(self, player: str) -> bool:
        """Whether this caller may act as `player`: read their tickets, take their seat."""
        return self.server or self.player == player


SERVER = Caller(None, True)
ANYONE = Caller(None, True, known=False)


def _same(given: str, key: str) -> bool:
    return hmac.compare_digest(given.encode(), key.encode())


class Auth:
    """Checks the credential of a request to a ticket or seat route.

    With `keys` (--secret, --token-key) a caller shows the server key (`X-API-Key`, or as a
    bearer token) or a player token (`Authorization: Bearer`); without, player tokens cannot
    be checked and every caller may act for any player, as before tickets were tied to
    players (the matchmaker warns at start).
    """

    def __init__(self, api_key: str | None, keys: KeySet | None, leeway: float) -> None:
        self.api_key = api_key
        self.keys = keys
        self.leeway = leeway

    @property
    def checks_players(self) -> bool:
        return self.keys is not None

    def caller(self, headers: Mapping[str, str]) -> Caller:
        """Who is calling; raises 401 with the reason (missing_token, bad_api_key, or the
        token refusal's reason). The message never quotes what was sent."""
        api_key = self.api_key
        if self.keys is None:
            given = headers.get("x-api-key") or tokens.bearer(headers.get("authorization"))
            known = api_key is not None and given is not None and _same(given, api_key)
            return SERVER if known else ANYONE
        given_key = headers.get("x-api-key")
        if given_key:
            if api_key is not None and _same(given_key, api_key):
                return SERVER
            raise MatchmakerError(401, BAD_KEY, "X-API-Key is not the server key")
        token = tokens.bearer(headers.get("authorization"))
        if not token:
            raise MatchmakerError(401, MISSING, "send the player's token (Authorization: "
                                  "Bearer <player token>) or the server key (X-API-Key)")
        if api_key is not None and _same(token, api_key):
            return SERVER
        try:
            claims = tokens.verify_player(self.keys, token, leeway=self.leeway)
        except tokens.TokenError as e:
            raise MatchmakerError(401, e.reason, f"player token refused: {e.message}") from None
        return Caller(claims.player, False)

    def check_party(self, caller: Caller, player: str, party: Sequence[str],
                    party_token: str | None) -> None:
        """Refuse (403) a ticket `caller` may not create: one for another player, or a party
        whose members' agreement no party token of this leader shows (the server key needs
        none: a game backend says who plays together)."""
        if caller.server:
            return
        if caller.player != player:
            raise MatchmakerError(403, "wrong_player", "the player token is not this ticket's "
                                  "player's")
        if not party:
            return
        if party_token is None:
            raise MatchmakerError(403, "party_not_agreed", "a party needs a party token "
                                  "(party_token) naming its leader and members")
        assert self.keys is not None  # a caller with a player is only made with keys
        try:
            claims = tokens.verify_party(self.keys, party_token, leeway=self.leeway)
        except tokens.TokenError as e:
            raise MatchmakerError(403, "party_not_agreed",
                                  f"party token refused ({e.reason}): {e.message}") from None
        absent = [p for p in party if p not in claims.members]
        if claims.leader != player or absent:
            raise MatchmakerError(403, "party_not_agreed", "the party token is not for this "
                                  "leader, or does not name every member of the party")
