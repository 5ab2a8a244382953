"""Python client for Stadium: `room = await Room.connect(url)`, `await room.send(...)`,
`async for message in room`."""

from stadium_client.leaderboard import LeaderboardClient, LeaderboardError
from stadium_client.matchmaker import MatchmakerClient, MatchmakerError, Seat
from stadium_client.room import Room, RoomClosed
from stadium_client.state import MirrorTable, StateError, StateMirror

__all__ = ["LeaderboardClient", "LeaderboardError", "MatchmakerClient", "MatchmakerError",
           "Seat", "MirrorTable", "Room", "RoomClosed",
           "StateError", "StateMirror"]
