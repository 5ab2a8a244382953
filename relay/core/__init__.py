"""The room host: members, rooms and their runtime, fan-out, admission. No sockets here:
transports adapt their connections to `Member` and hand them to the `RoomHost`."""
