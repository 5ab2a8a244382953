"""Python client for Stadium: `room = await Room.connect(url)`, `await room.send(...)`,
`async for message in room`."""

from stadium_client.leaderboard import LeaderboardClient, LeaderboardError
from stadium_client.room import Room, RoomClosed

__all__ = ["LeaderboardClient", "LeaderboardError", "Room", "RoomClosed"]
