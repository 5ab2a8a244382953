"""Seats: a room on the least-loaded live relay and one signed join token per player."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from stadium import tokens
from stadium.keys import SigningKey, load_signing_key


@dataclass
class Relay:
    url: str
    load: int  # open connections it reported, plus players seated on it since


def live_relays(directory: dict[str, Any], now: float | None = None) -> tuple[list[Relay],
                                                                             list[str]]:
    """Relays whose entry has not expired, and the URLs of those that have."""
    now = time.time() if now is None else now
    live, dead = [], []
    for url, entry in directory.items():
        try:
            fresh = float(entry["expires"]) > now
            load = int(entry["load"])
        except (KeyError, TypeError, ValueError):
            fresh, load = False, 0
        if fresh:
            live.append(Relay(url, load))
        else:
            dead.append(url)
    return live, dead


def join_token_signer(secret: str | None, signing_key: str | None,
                      kid: str | None = None) -> SigningKey | None:
    """What seats' join tokens are signed with: the private key file (ES256, RS256) when
    one is given, else the shared secret (HS256); `kid` goes in their header."""
    if signing_key is not None:
        return load_signing_key(signing_key, kid)
    if secret is not None:
        return SigningKey.from_secret(secret, kid)
    return None


def pick(relays: list[Relay]) -> Relay | None:
    """The least-loaded relay (ties: the first URL in order), or None when there is none."""
    if not relays:
        return None
    return min(relays, key=lambda r: (r.load, r.url))


def seat_players(relay: Relay, secret: str | SigningKey | None, *, room_type: str,
                 room_id: str, match_id: str, teams: list[list[str]], ttl: float,
                 now: float | None = None) -> dict[str, dict[str, Any]]:
    """player -> seat: where to connect and the token that lets exactly them in (signed
    with `secret`, the shared secret or a signing key; no token without one)."""
    issued = time.time() if now is None else now
    url = f"{relay.url}/rooms/{room_type}/{room_id}"
    seats: dict[str, dict[str, Any]] = {}
    for team, players in enumerate(teams):
        for player in players:
            token = None if secret is None else tokens.sign(
                secret, room_type=room_type, room_id=room_id, player=player, ttl=ttl,
                now=issued, team=team, match=match_id)
            seats[player] = {"player": player, "team": team, "match_id": match_id,
                             "room_type": room_type, "room_id": room_id, "url": url,
                             "token": token, "expires": issued + ttl}
    relay.load += sum(len(p) for p in teams)
    return seats


def reseat(match: dict[str, Any], player: str, secret: str | SigningKey | None, *, ttl: float,
           now: float | None = None) -> dict[str, Any] | None:
    """`player`'s seat in a stored match with a fresh join token (the same room, seat, team
    and match claims as the first one), valid `ttl` s from `now`; None when they have no
    seat in it (a bot's place, or another match's player)."""
    for team, players in enumerate(match["teams"]):
        if player in players:
            return seat_players(Relay(match["relay"], 0), secret,
                                room_type=match["room_type"], room_id=match["room_id"],
                                match_id=match["id"], teams=[[]] * team + [[player]], ttl=ttl,
                                now=now)[player]
    return None
