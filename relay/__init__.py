"""The Stadium relay: WebSocket rooms for very many players, run on uvloop."""

from relay.config import RelayConfig
from relay.conntable import Connection
from relay.room import BroadcastRoom, ConnectContext, Response, Room, RoomStorage
from relay.server import Relay
from relay.state import Angle, Fixed, Flags, Float, Grid, Int, State, Table
from relay.ws.handshake import Request

__all__ = ["Angle", "BroadcastRoom", "ConnectContext", "Connection", "Fixed", "Flags", "Float",
           "Grid", "Int", "Relay", "RelayConfig", "Request", "Response", "Room", "RoomStorage",
           "State", "Table"]
