"""Field types of state tables: how game code stores each column and how it is quantised
for the wire (Fixed, Angle, Int, Flags, Float)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt

from relay.state.codec import SIGNED, UNSIGNED, WIRE_DTYPES

__all__ = ["Angle", "Field", "Fixed", "Flags", "Float", "Int"]


class Field:
    """How one column is stored for game code and quantised for the wire."""

    wire: np.dtype[Any]
    local: np.dtype[Any]

    def quantise(self, column: npt.NDArray[Any]) -> npt.NDArray[Any]:
        return column.astype(self.wire)

    def describe(self) -> list[Any]:
        raise NotImplementedError


class Fixed(Field):
    """A real number (metres, seconds) stored as float64 and sent as an integer count of
    `precision` steps; values outside the wire type's range are clamped."""

    def __init__(self, precision: float, wire: str = "i4") -> None:
        if not (precision > 0 and math.isfinite(precision)):
            raise ValueError("precision must be a positive finite number")
        self.precision = float(precision)
        self.wire = np.dtype("<" + wire)
        if self.wire not in SIGNED:
            raise ValueError("Fixed wire type must be one of i1, i2, i4, i8")
        self.local = np.dtype(np.float64)
        info = np.iinfo(self.wire)
        self._scale = 1.0 / self.precision
        self._lo, self._hi = float(info.min), float(info.max)

    def quantise(self, column: npt.NDArray[Any]) -> npt.NDArray[Any]:
        q = np.rint(column * self._scale)
        np.clip(q, self._lo, self._hi, out=q)
        return q.astype(self.wire)

    def describe(self) -> list[Any]:
        return ["fixed", self.precision, self.wire.str[1:]]


class Angle(Field):
    """An angle in radians sent as one of `steps` equal steps of a turn (256 fits a byte)."""

    def __init__(self, steps: int = 256) -> None:
        if steps not in (256, 65536):
            raise ValueError("Angle steps must be 256 or 65536")
        self.steps = steps
        self.wire = np.dtype("<u1" if steps == 256 else "<u2")
        self.local = np.dtype(np.float64)
        self._scale = steps / (2 * math.pi)

    def quantise(self, column: npt.NDArray[Any]) -> npt.NDArray[Any]:
        q = np.rint(column * self._scale).astype(np.int64)
        q %= self.steps
        return q.astype(self.wire)

    def describe(self) -> list[Any]:
        return ["angle", self.steps]


class Int(Field):
    """An integer column sent as it is (`u1`, `i2`, `u4`, ...)."""

    def __init__(self, dtype: str = "i4") -> None:
        self.wire = self.local = np.dtype("<" + dtype)
        if self.wire not in SIGNED and self.wire not in UNSIGNED:
            raise ValueError(f"Int dtype must be one of {', '.join(WIRE_DTYPES[:8])}")

    def quantise(self, column: npt.NDArray[Any]) -> npt.NDArray[Any]:
        return column  # already the wire type; the ring copies it

    def describe(self) -> list[Any]:
        return ["int", self.wire.str[1:]]


class Flags(Int):
    """Up to 8, 16 or 32 boolean flags packed in one unsigned integer."""

    def __init__(self, bits: int = 8) -> None:
        if bits not in (8, 16, 32):
            raise ValueError("Flags bits must be 8, 16 or 32")
        super().__init__({8: "u1", 16: "u2", 32: "u4"}[bits])

    def describe(self) -> list[Any]:
        return ["flags", self.wire.itemsize * 8]


class Float(Field):
    """A float sent unquantised (`f4` or `f8`); compared bit for bit."""

    def __init__(self, dtype: str = "f4") -> None:
        self.wire = self.local = np.dtype("<" + dtype)
        if dtype not in ("f4", "f8"):
            raise ValueError("Float dtype must be f4 or f8")

    def quantise(self, column: npt.NDArray[Any]) -> npt.NDArray[Any]:
        return column

    def describe(self) -> list[Any]:
        return ["float", self.wire.str[1:]]

