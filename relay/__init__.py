"""The Stadium relay: WebSocket rooms for very many players, run on uvloop."""

from relay.config import RelayConfig
from relay.conntable import Connection
from relay.room import BroadcastRoom, ConnectContext, Response, Room, RoomStorage
from relay.server import Relay
from relay.ws.handshake import Request

__all__ = ["BroadcastRoom", "ConnectContext", "Connection", "Relay", "RelayConfig", "Request",
           "Response", "Room", "RoomStorage"]
