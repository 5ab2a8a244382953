"""The Stadium relay's game API: subclass `Room`, keep state in `State`, talk to members.

Light to import: the server (`relay.server.Relay`), its transports and its Redis, HTTP
and metrics clients load only when a relay is started.
"""

from relay.core.member import Member
from relay.core.room import (
    BroadcastRoom,
    ConnectContext,
    Connection,
    Inputs,
    Response,
    Room,
    RoomStorage,
)
from relay.http import Request
from relay.state import Angle, Fixed, Flags, Float, Grid, Int, State, Table

__all__ = ["Angle", "BroadcastRoom", "ConnectContext", "Connection", "Fixed", "Flags", "Float",
           "Grid", "Inputs", "Int", "Member", "Request", "Response", "Room", "RoomStorage",
           "State", "Table"]
