"""The `stadium` command: `relay`, `matchmaker`, `leaderboard`, `dev` (everything at once),
`token` (join and player tokens for development)."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

import uvloop

from leaderboard.config import LeaderboardConfig
from leaderboard.service import LeaderboardService
from matchmaker.config import MatchmakerConfig
from matchmaker.queues import Queue
from matchmaker.service import MatchmakerService
from relay.config import RelayConfig
from relay.core.host import check_room_types
from relay.core.room import Room
from relay.demo import DemoSite
from relay.games.arena import arena_room
from relay.games.scores import ScoreBoards
from relay.server import Relay
from stadium import __version__, config, logs, scaffold, tokens
from stadium.keys import SigningKey, load_signing_key
from stadium.redis_server import EmbeddedRedis

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
        try:  # the relay's own checks: name, Room subclass, tick rate, seats
            types[name] = check_room_types({name: obj})[name]
        except (TypeError, ValueError) as e:
            raise config.ConfigError(f"--room {spec!r}: {e}") from None
    return types


def _stop_event(reloads: list[Callable[[], None]] | None = None) -> asyncio.Event:
    """Set by SIGTERM or SIGINT (Ctrl-C). SIGHUP calls each of `reloads` (services read
    their token keys again; the list may grow once they have started); with none, it is
    logged and ignored rather than ending the process."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    reloads = [] if reloads is None else reloads

    def hangup() -> None:
        if not reloads:
            log.info("SIGHUP: nothing to reload")
        for reload in reloads:
            try:
                reload()
            except Exception:  # one failing reload neither ends the process nor the others
                log.exception("SIGHUP: reload failed")

    loop.add_signal_handler(signal.SIGHUP, hangup)
    return stop


class _RelayApp:
    """A relay with the games and pages that ship with Stadium: the `arena` room (scores to
    the leaderboard when the config names one) and, with --demo, the demo page; under
    `stadium dev` (`dev`) its console is open without an operator key."""

    def __init__(self, cfg: RelayConfig, dev: bool = False) -> None:
        self.boards = ScoreBoards(cfg)
        self.demo = DemoSite(cfg) if cfg.demo else None
        self.relay = Relay(cfg, {"arena": arena_room(self.boards), **load_room_types(cfg.rooms)},
                           site=self.demo, dev=dev)

    async def start(self) -> Relay:
        relay = self.relay
        await relay.start()
        log.info("relay listening on %s (rooms: %s)", relay.url,
                 ", ".join(sorted(relay.room_types)))
        return relay

    async def drain(self) -> None:
        log.info("draining: closing %d connections with 1001", self.relay.ws.open_count)
        await self.relay.drain()
        await self.boards.close()


async def serve_relay(cfg: RelayConfig) -> None:
    """Run one relay until SIGTERM or SIGINT, then drain it; SIGHUP reloads its token keys."""
    reloads: list[Callable[[], None]] = []
    stop = _stop_event(reloads)
    app = _RelayApp(cfg)
    await app.start()
    reloads.append(app.relay.reload_keys)
    await stop.wait()
    await app.drain()


def _embedded_redis() -> EmbeddedRedis:
    server = EmbeddedRedis().start()
    log.warning("no --redis-url: started an embedded Redis at %s (its data goes when it stops)",
                server.url)
    return server


class _Service(Protocol):
    async def start(self) -> None: ...
    async def stop(self) -> None: ...


async def _serve(make: Callable[[str], _Service], redis_url: str | None) -> None:
    """Run one HTTP service until SIGINT/SIGTERM, on an embedded Redis unless given a URL."""
    reloads: list[Callable[[], None]] = []
    stop = _stop_event(reloads)
    embedded = None if redis_url else _embedded_redis()
    service = make(redis_url or (embedded.url if embedded else ""))
    try:
        await service.start()
        reload = getattr(service, "reload_keys", None)  # services that check tokens
        if reload is not None:
            reloads.append(reload)
        await stop.wait()
        await service.stop()
    finally:
        if embedded is not None:
            embedded.stop()


async def serve_leaderboard(cfg: LeaderboardConfig) -> None:
    await _serve(lambda url: LeaderboardService(cfg, url), cfg.redis_url)


async def serve_matchmaker(cfg: MatchmakerConfig) -> None:
    await _serve(lambda url: MatchmakerService(cfg, url), cfg.redis_url)


def _page_origins(cfg: RelayConfig, port: int) -> list[str]:
    """Origins a browser shows for pages the relay serves: what the services' CORS allows."""
    http = "https" if cfg.cert else "http"
    if cfg.host in ("0.0.0.0", "::", ""):  # any address of the machine may be in the URL bar
        return ["*"]
    origins = [f"{http}://{cfg.host}:{port}"]
    if cfg.host in ("127.0.0.1", "::1"):
        origins.append(f"{http}://localhost:{port}")
    return origins


# The demo page's queue when no --queues file is given: 1v1 in the built-in arena room.
DEMO_QUEUE = Queue(name="arena", teams=2, team_size=1, rating_window=50.0, max_wait=300.0,
                   room_type="arena")


async def serve_dev(relay_cfg: RelayConfig, board_cfg: LeaderboardConfig,
                    mm_cfg: MatchmakerConfig | None = None) -> None:
    """Embedded Redis (unless --redis-url), the relay, the matchmaker and the leaderboard,
    in one process."""
    reloads: list[Callable[[], None]] = []
    stop = _stop_event(reloads)
    embedded = None if relay_cfg.redis_url else _embedded_redis()
    redis_url = relay_cfg.redis_url or (embedded.url if embedded else "")
    mm_cfg = mm_cfg or MatchmakerConfig()
    relay_cfg.redis_url = redis_url  # the relay registers in the directory the matchmaker reads
    mm_cfg.secret = relay_cfg.secret
    mm_cfg.dev_auth = True  # the demo page asks it for a player token
    try:
        app = _RelayApp(relay_cfg, dev=True)
        relay = await app.start()
        demo = app.demo
        if demo is not None:  # the page calls both services from the relay's origin
            origins = _page_origins(relay_cfg, relay.port)
            board_cfg.cors_origins = [*board_cfg.cors_origins, *origins]
            mm_cfg.cors_origins = [*mm_cfg.cors_origins, *origins]
        board_cfg.port = 0 if relay_cfg.port == 0 else board_cfg.port
        boards = LeaderboardService(board_cfg, redis_url)
        await boards.start()
        if not relay_cfg.leaderboard_url:  # the arena room posts its scores here
            relay.config.leaderboard_url = boards.url
            relay.config.leaderboard_api_key = board_cfg.api_key
        mm_cfg.port = 0 if relay_cfg.port == 0 else mm_cfg.port
        matchmaker = MatchmakerService(mm_cfg, redis_url)
        if demo is not None and mm_cfg.queues is None:
            matchmaker.queues.setdefault(DEMO_QUEUE.name, DEMO_QUEUE)
        await matchmaker.start()
        reloads += [relay.reload_keys, matchmaker.reload_keys]
        if not relay_cfg.matchmaker_url:  # the console shows its queues
            relay.config.matchmaker_url = matchmaker.url
        if demo is not None:
            demo.links.update(matchmaker=matchmaker.url, leaderboard=boards.url)
            queue = matchmaker.queues.get(DEMO_QUEUE.name)
            if queue is not None and queue.room_type == "arena":
                demo.links["queue"] = queue.name
        http = "https" if relay_cfg.cert else "http"
        base = f"{relay_cfg.host}:{relay.port}"
        print(f"Stadium {__version__} dev")
        print(f"  relay        {relay.url}/rooms/broadcast/lobby")
        if demo is not None:
            print(f"  demo page    {http}://{base}/   (open it in two tabs)")
        console = ("open, no --admin-key" if relay.console.access == "open"
                   else "operator key required")
        print(f"  console      {http}://{base}/console   ({console})")
        print(f"  matchmaker   {matchmaker.url}/docs   (queues: {', '.join(matchmaker.queues)})")
        tokens_are = "checked" if mm_cfg.secret else "not checked: no --secret"
        print(f"  dev auth     POST {matchmaker.url}/dev/player-token mints player tokens "
              f"for anyone (development only; player tokens {tokens_are})")
        print(f"  leaderboard  {boards.url}/docs")
        print(f"  redis        {redis_url}")
        print(f"  health       {http}://{base}/healthz   metrics {http}://{base}/metrics")
        print("Ctrl-C stops everything.", flush=True)
        await stop.wait()
        await app.drain()
        await matchmaker.stop()
        await boards.stop()
    finally:
        if embedded is not None:
            embedded.stop()


def _log_flags(p: argparse.ArgumentParser, default: bool) -> None:
    """--log-level and --log-format; given after the command they override those before it."""
    keep = argparse.SUPPRESS
    p.add_argument("--log-level", default="INFO" if default else keep,
                   help="DEBUG, INFO, WARNING or ERROR")
    p.add_argument("--log-format", choices=logs.FORMATS,
                   default=os.environ.get("STADIUM_LOG_FORMAT", "text") if default else keep,
                   help="text lines, or one JSON object per line (env STADIUM_LOG_FORMAT)")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="stadium", description="Stadium realtime game backend")
    p.add_argument("--version", action="version", version=f"stadium {__version__}")
    p.add_argument("--config", help="TOML file (default: ./stadium.toml when it exists)")
    _log_flags(p, default=True)
    # The log flags also go after the command (`stadium relay --log-format json`).
    logging_flags = argparse.ArgumentParser(add_help=False)
    _log_flags(logging_flags, default=False)
    sub = p.add_subparsers(dest="command", required=True)
    relay_p = sub.add_parser("relay", help="run a relay", parents=[logging_flags])
    config.add_flags(relay_p, RelayConfig)
    board_p = sub.add_parser("leaderboard", help="run the leaderboard HTTP API",
                             parents=[logging_flags])
    config.add_flags(board_p, LeaderboardConfig)
    mm_p = sub.add_parser("matchmaker", help="run the matchmaker HTTP API and matcher",
                          parents=[logging_flags])
    config.add_flags(mm_p, MatchmakerConfig)
    dev_p = sub.add_parser("dev", help="run every service in one process tree for development",
                           parents=[logging_flags])
    config.add_flags(dev_p, RelayConfig)
    dev_p.add_argument("--leaderboard-port", type=int, default=8082,
                       help="port of the leaderboard API (default: 8082)")
    dev_p.add_argument("--matchmaker-port", type=int, default=8081,
                       help="port of the matchmaker API (default: 8081)")
    new = sub.add_parser("new", help="create a game project (a room, its test, a Makefile)")
    new.add_argument("name", help="project and Python package name (a-z 0-9 _)")
    new.add_argument("--dir", default=".", help="where to create it (default: here)")
    tok = sub.add_parser(
        "token", help="print a join token (with --room) or a player token, for development",
        description="Print a join token for --room, or without --room a player token: "
        "JWTs signed with --secret (HS256) or --signing-key (ES256, RS256).")
    key = tok.add_mutually_exclusive_group(required=True)
    key.add_argument("--secret", help="shared secret (HS256)")
    key.add_argument("--signing-key", metavar="FILE",
                     help="PEM private key: EC P-256 (ES256) or RSA (RS256)")
    tok.add_argument("--kid", help="key id written in the token's header")
    tok.add_argument("--player", required=True, help="player id (the sub claim)")
    tok.add_argument("--room", help="TYPE/ROOM_ID: a join token for that room")
    tok.add_argument("--seat", help="seat claim of a join token (default: the player)")
    tok.add_argument("--ttl", type=float, default=None,
                     help="seconds the token is valid (default: 300 for a join token, 3600 "
                     "for a player token)")
    return p


def mint_token(args: argparse.Namespace) -> str:
    """The token `stadium token` prints."""
    if args.signing_key is not None:
        key: tokens.Signer = load_signing_key(args.signing_key, args.kid)
    else:
        key = SigningKey.from_secret(args.secret, args.kid)
    if args.room is None:
        if args.seat is not None:
            raise config.ConfigError("--seat goes with --room (a join token)")
        return tokens.sign_player(key, player=args.player,
                                  ttl=3600.0 if args.ttl is None else args.ttl)
    room_type, slash, room_id = args.room.partition("/")
    if not slash:
        raise config.ConfigError("--room must be TYPE/ROOM_ID")
    return tokens.sign(key, room_type=room_type, room_id=room_id, player=args.player,
                       seat=args.seat, ttl=300.0 if args.ttl is None else args.ttl)


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        logs.configure(args.log_level, args.log_format)
    except ValueError as e:  # a bad STADIUM_LOG_FORMAT or --log-level
        print(f"stadium: {e}", file=sys.stderr)
        return 2
    try:
        if args.command == "new":
            try:
                root = scaffold.create(args.name, Path(args.dir))
            except ValueError as e:
                raise config.ConfigError(str(e)) from None
            print(f"created {root}: cd {root} && make test (then make run)")
            return 0
        if args.command == "token":
            print(mint_token(args))
            return 0
        if args.command == "leaderboard":
            board_cfg = config.load(LeaderboardConfig, args, section="leaderboard",
                                    toml_path=args.config)
            uvloop.run(serve_leaderboard(board_cfg))
            return 0
        if args.command == "matchmaker":
            mm_cfg = config.load(MatchmakerConfig, args, section="matchmaker",
                                 toml_path=args.config)
            uvloop.run(serve_matchmaker(mm_cfg))
            return 0
        cfg = config.load(RelayConfig, args, section="relay", toml_path=args.config)
        if args.command == "dev":
            if args.demo is None:  # dev serves the demo page unless told --no-demo
                cfg.demo = True
            board_cfg = config.load(LeaderboardConfig, None, section="leaderboard",
                                    toml_path=args.config)
            board_cfg.port = args.leaderboard_port
            mm_cfg = config.load(MatchmakerConfig, None, section="matchmaker",
                                 toml_path=args.config)
            mm_cfg.port = args.matchmaker_port
            uvloop.run(serve_dev(cfg, board_cfg, mm_cfg))
        else:
            uvloop.run(serve_relay(cfg))
    except config.ConfigError as e:
        print(f"stadium: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"stadium: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
