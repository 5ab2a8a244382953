"""The `stadium` command: `stadium relay`, `stadium dev`, `stadium token`."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import signal
import sys
import time
from collections.abc import Sequence

import uvloop

from relay.config import RelayConfig
from relay.room import Room
from relay.server import Relay
from stadium import __version__, config, tokens

log = logging.getLogger("stadium")


def load_room_types(specs: Sequence[str]) -> dict[str, type[Room]]:
    """`TYPE=module:Class` strings to room classes, with an error that names the bad one."""
    types: dict[str, type[Room]] = {}
    for spec in specs:
        name, eq, target = spec.partition("=")
        module_name, colon, attr = target.partition(":")
        if not (eq and colon and name and module_name and attr):
            raise config.ConfigError(f"--room {spec!r}: expected TYPE=module:Class")
        try:
            obj = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as e:
            raise config.ConfigError(f"--room {spec!r}: {e}") from None
        if not (isinstance(obj, type) and issubclass(obj, Room)):
            raise config.ConfigError(f"--room {spec!r}: {attr} is not a relay.Room subclass")
        types[name] = obj
    return types


async def serve_relay(cfg: RelayConfig, banner: bool = False) -> None:
    """Run one relay until SIGTERM or SIGINT, then drain it."""
    relay = Relay(cfg, load_room_types(cfg.rooms))
    await relay.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    http = "https" if cfg.cert else "http"
    base = f"{cfg.host}:{relay.port}"
    log.info("relay listening on %s (rooms: %s)", relay.url, ", ".join(sorted(relay.room_types)))
    if banner:
        print(f"Stadium {__version__} dev")
        print(f"  relay      {relay.url}/rooms/broadcast/lobby")
        print(f"  health     {http}://{base}/healthz")
        print(f"  metrics    {http}://{base}/metrics")
        print("Ctrl-C stops everything.", flush=True)
    await stop.wait()
    log.info("draining: closing %d connections with 1001", len(relay.conns))
    await relay.drain()


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="stadium", description="Stadium realtime game backend")
    p.add_argument("--version", action="version", version=f"stadium {__version__}")
    p.add_argument("--config", help="TOML file (default: ./stadium.toml when it exists)")
    p.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR")
    sub = p.add_subparsers(dest="command", required=True)
    relay_p = sub.add_parser("relay", help="run a relay")
    config.add_flags(relay_p, RelayConfig)
    dev_p = sub.add_parser("dev", help="run every service in one process tree for development")
    config.add_flags(dev_p, RelayConfig)
    tok = sub.add_parser("token", help="print a join token for a room")
    tok.add_argument("--secret", required=True)
    tok.add_argument("--room", required=True, help="TYPE/ROOM_ID")
    tok.add_argument("--player", required=True)
    tok.add_argument("--ttl", type=float, default=300.0, help="seconds the token is valid")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.Formatter.converter = time.gmtime
    try:
        if args.command == "token":
            room_type, slash, room_id = args.room.partition("/")
            if not slash:
                raise config.ConfigError("--room must be TYPE/ROOM_ID")
            print(tokens.sign(args.secret, room_type=room_type, room_id=room_id,
                              player=args.player, ttl=args.ttl))
            return 0
        cfg = config.load(RelayConfig, args, section="relay", toml_path=args.config)
        uvloop.run(serve_relay(cfg, banner=args.command == "dev"))
    except config.ConfigError as e:
        print(f"stadium: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"stadium: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
