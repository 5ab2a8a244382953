"""The state wire codec: dtype codes, quantised table copies, and the encoding of snapshot
and diff bodies (format in docs/protocol.md)."""

from __future__ import annotations

from typing import Any

import msgpack
import numpy as np
import numpy.typing as npt

__all__ = ["BoolArray", "CODE", "DELTA_FLAG", "Frozen", "IntArray", "KIND_DIFF",
           "KIND_SNAPSHOT", "SIGNED", "STATE_EXT", "UNSIGNED", "WIRE_DTYPES", "absolute",
           "diff_doc", "diff_table", "encode_ids", "narrowest", "state_message", "values"]

STATE_EXT = 0x53
"""msgpack ext type that marks a state message (snapshot or diff) on the wire."""

KIND_SNAPSHOT = 1
KIND_DIFF = 2

# Wire dtype codes: the index in this tuple. Always little-endian on the wire.
WIRE_DTYPES = ("i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", "f4", "f8")
CODE = {np.dtype("<" + d): i for i, d in enumerate(WIRE_DTYPES)}
DELTA_FLAG = 16  # added to the dtype code when a column holds deltas against the baseline
SIGNED = tuple(np.dtype("<" + d) for d in ("i1", "i2", "i4", "i8"))
UNSIGNED = tuple(np.dtype("<" + d) for d in ("u1", "u2", "u4", "u8"))
_GAPS = tuple((np.iinfo(d).max, d) for d in UNSIGNED[:3])

IntArray = npt.NDArray[np.integer[Any]]
BoolArray = npt.NDArray[np.bool_]


class Frozen:
    """One table as it went into the snapshot ring: liveness, generations and the
    quantised columns, plus each slot's grid cell for tables on an interest grid."""

    __slots__ = ("alive", "gen", "cols", "cells")

    def __init__(self, alive: BoolArray, gen: npt.NDArray[np.uint32],
                 cols: list[npt.NDArray[Any]], cells: npt.NDArray[np.int32] | None = None,
                 ) -> None:
        self.alive = alive
        self.gen = gen
        self.cols = cols
        self.cells = cells  # grid cell of each slot, for tables on an interest grid

    def padded(self, n: int) -> Frozen:
        extra = n - len(self.alive)
        if extra <= 0:
            return self
        return Frozen(np.concatenate([self.alive, np.zeros(extra, np.bool_)]),
                      np.concatenate([self.gen, np.zeros(extra, np.uint32)]),
                      [np.concatenate([c, np.zeros(extra, c.dtype)]) for c in self.cols],
                      None if self.cells is None
                      else np.concatenate([self.cells, np.zeros(extra, np.int32)]))


def state_message(body: list[Any]) -> bytes:
    """A snapshot or diff body as the ext-typed msgpack message clients are sent."""
    data: bytes = msgpack.packb(msgpack.ExtType(STATE_EXT, msgpack.packb(body)))
    return data


def narrowest(lo: int, hi: int, signed: bool = False) -> np.dtype[Any]:
    kinds = UNSIGNED if lo >= 0 and not signed else SIGNED
    for dt in kinds:
        info = np.iinfo(dt)
        if info.min <= lo and hi <= info.max:
            return dt
    return kinds[-1]


def absolute(values: npt.NDArray[Any]) -> list[Any]:
    """Values as [code, bytes], integers in the narrowest type that holds them all."""
    if values.dtype.kind in "iu" and len(values):
        dt = narrowest(int(values.min()), int(values.max()))
        if dt.itemsize < values.dtype.itemsize:
            values = values.astype(dt)
    return [CODE[values.dtype], values.tobytes()]


def encode_ids(ids: IntArray) -> list[Any] | None:
    """Ascending slots as [first, width, bytes]: gaps of `width` bytes, or a bitmap (width 0)
    from `first` when that is smaller; None when there are none."""
    n = len(ids)
    if n == 0:
        return None
    first = int(ids[0])
    span = int(ids[-1]) - first + 1
    bitmap_size = (span + 7) // 8
    if n > 1:
        gaps = np.diff(ids)
        big = int(gaps.max())
        dt = next((d for limit, d in _GAPS if big <= limit), UNSIGNED[3])
        if (n - 1) * dt.itemsize <= bitmap_size:
            return [first, dt.itemsize, gaps.astype(dt).tobytes()]
    elif bitmap_size >= 1:
        return [first, 1, b""]
    bits = np.zeros(span, np.bool_)
    bits[ids - first] = True
    return [first, 0, np.packbits(bits, bitorder="little").tobytes()]


def diff_table(old: Frozen, new: Frozen) -> list[Any] | None:
    """One table's part of a diff body: [gone, born, born's columns, changed, fields];
    None when nothing changed."""
    n = len(new.alive)
    old = old.padded(n)
    same = old.alive[:n] & new.alive & (old.gen[:n] == new.gen)
    gone = np.flatnonzero(old.alive[:n] & ~same)
    born = np.flatnonzero(new.alive & ~same)
    masks = [(oc[:n] != nc) & same for oc, nc in zip(old.cols, new.cols, strict=True)]
    any_change: BoolArray = np.logical_or.reduce(masks) if len(masks) > 1 else masks[0]
    changed = np.flatnonzero(any_change)
    if not (len(gone) or len(born) or len(changed)):
        return None
    spawn_cols = [absolute(c[born]) for c in new.cols] if len(born) else []
    fields: list[Any] = []
    if len(changed):
        for oc, nc, mask in zip(old.cols, new.cols, masks, strict=True):
            rows = np.flatnonzero(mask)
            if not len(rows):
                fields.append(None)
                continue
            sub = None if len(rows) == len(changed) else np.packbits(
                mask[changed], bitorder="little").tobytes()
            fields.append([sub, *values(oc[rows], nc[rows])])
    return [encode_ids(gone), encode_ids(born), spawn_cols, encode_ids(changed), fields]


def values(old: npt.NDArray[Any], new: npt.NDArray[Any]) -> list[Any]:
    """Changed values as [code, bytes]: deltas when they are narrower than the values."""
    whole = absolute(new)
    if new.dtype.kind not in "iu":
        return whole
    delta = new.astype(np.int64) - old.astype(np.int64)
    dt = narrowest(int(delta.min()), int(delta.max()), signed=True)
    if dt.itemsize * len(delta) < len(whole[1]):
        return [DELTA_FLAG + CODE[dt], delta.astype(dt).tobytes()]
    return whole


def diff_doc(old: Any, new: Any, path: list[Any], ops: list[list[Any]]) -> None:
    """Key-path operations turning `old` into `new`: [path, value] sets, [path] deletes."""
    for key in old:
        if key not in new:
            ops.append([[*path, key]])
    for key, value in new.items():
        if key not in old:
            ops.append([[*path, key], value])
            continue
        before = old[key]
        if before == value and type(before) is type(value):
            continue
        if isinstance(before, dict) and isinstance(value, dict):
            diff_doc(before, value, [*path, key], ops)
        else:
            ops.append([[*path, key], value])
