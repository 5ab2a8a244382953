"""Applies state payloads with the Python SDK's StateMirror (the reference decoder) and
prints each applied tick as JSON, for the JS tests to compare with their own mirror."""

from __future__ import annotations

import json
import sys
from typing import Any

import msgpack

from stadium_client.state import StateMirror


def dump(mirror: StateMirror) -> dict[str, Any]:
    tables = {}
    for name, table in mirror.tables.items():
        ids = table.ids
        tables[name] = {
            "ids": ids.tolist(),
            "values": {f: table.values(f)[ids].tolist() for f in table.names},
            "lerp": {f: mirror.lerp(name, f, 0.25)[ids].tolist() for f in table.names},
        }
    return {"tick": mirror.tick, "tables": tables, "doc": mirror.doc}


def main() -> None:
    payloads = msgpack.unpackb(sys.stdin.buffer.read())
    mirror = StateMirror()
    out = []
    for payload in payloads:
        if mirror.apply(payload):
            out.append(dump(mirror))
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
