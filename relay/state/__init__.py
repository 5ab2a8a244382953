"""A room's replicated state for game code: tables of typed fields, the document, the
snapshot ring, and the interest grid that sends each viewer only the cells it sees."""

from relay.state.codec import STATE_EXT
from relay.state.core import RING_SIZE, State, Table
from relay.state.fields import Angle, Field, Fixed, Flags, Float, Int
from relay.state.interest import Grid

__all__ = ["Angle", "Field", "Fixed", "Flags", "Float", "Grid", "Int", "RING_SIZE", "State",
           "Table", "STATE_EXT"]
