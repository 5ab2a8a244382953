"""The room host and its outbox without sockets: in-memory members joined to real rooms."""

from __future__ import annotations

import asyncio
from typing import Any

import msgpack
import pytest

from relay import ConnectContext, Connection, Fixed, Room, State
from relay.config import RelayConfig
from relay.core.host import COUNTER_BITS, RoomHost
from relay.core.member import CLOSE_REPLACED
from relay.http import HttpError
from relay.transports.memory import MemoryTransport, encode
from relay.ws.frames import CLOSE_INTERNAL_ERROR, CLOSE_POLICY


class Chat(Room):
    """Echoes to everyone but the sender; "me" answers the sender alone, between
    broadcasts; "all" goes to everyone; "skip N" excludes member N by id."""

    def on_message(self, conn: Connection, message: str | bytes) -> None:
        if message == "me":
            conn.send("just you")
        elif message == "all":
            self.broadcast("to all")
        elif isinstance(message, str) and message.startswith("skip "):
            self.broadcast(message, exclude=[int(message.split()[1])])
        elif message == "boom":
            raise RuntimeError("a handler failed")
        elif message == "pos":
            self.broadcast("pos", droppable=True)
        else:
            self.broadcast(message, exclude=[conn])


class Counter(Room):
    """Keeps a count in its snapshot, so it hibernates."""

    closed: list[Any] = []

    def on_start(self) -> None:
        self.count = self.restored or 0
        self.set_auto_response("ping", "pong")

    def on_message(self, conn: Connection, message: str | bytes) -> None:
        self.count += 1
        conn.send(self.count)

    def on_close(self, conn: Connection) -> None:
        Counter.closed.append(conn.id)

    def snapshot(self) -> int:
        return int(self.count)


class Ships(Room):
    tick_rate = 20

    def on_start(self) -> None:
        self.state = State({"ships": {"x": Fixed(0.01)}})

    def on_connect(self, conn: Connection, ctx: ConnectContext) -> None:
        assert self.state is not None
        conn.state = self.state["ships"].spawn(x=1.0)


def _host(node: int = 0, **cfg: Any) -> RoomHost:
    config = RelayConfig(flush_interval=0, **cfg)
    return RoomHost(config, asyncio.get_running_loop(), encode,
                    {"chat": Chat, "counter": Counter, "ships": Ships}, node=node)


async def _settle() -> None:
    for _ in range(3):
        await asyncio.sleep(0)


async def test_broadcast_reaches_every_member_but_the_excluded_in_one_write_each() -> None:
    host = _host()
    mem = MemoryTransport(host)
    a, b, c = (mem.join("chat", "r") for _ in range(3))
    a.say("hello")
    a.say("again")
    await _settle()
    assert b.writes() == 1 and c.writes() == 1  # two broadcasts, one write per member
    assert b.received() == ["hello", "again"] and c.received() == ["hello", "again"]
    assert a.received() == []


async def test_direct_sends_and_broadcasts_keep_the_order_the_room_made_them() -> None:
    host = _host()
    mem = MemoryTransport(host)
    a, b = mem.join("chat", "r"), mem.join("chat", "r")
    b.say("all")
    a.say("me")
    b.say("all")
    await _settle()
    assert a.received() == ["to all", "just you", "to all"]
    assert b.received() == ["to all", "to all"]


async def test_exclusion_by_id_and_a_member_joining_mid_batch_gets_only_later_broadcasts(
        ) -> None:
    host = _host()
    mem = MemoryTransport(host)
    a, b = mem.join("chat", "r"), mem.join("chat", "r")
    a.say(f"skip {b.id}")
    late = mem.join("chat", "r")
    a.say("all")
    await _settle()
    assert b.received() == ["to all"]
    assert a.received() == [f"skip {b.id}", "to all"]
    assert late.received() == ["to all"]


async def test_a_slow_reader_skips_droppable_updates_and_is_dropped_over_the_limit() -> None:
    host = _host(max_outbound_buffer=1000, slow_reader_bytes=100)
    mem = MemoryTransport(host)
    a, slow = mem.join("chat", "r"), mem.join("chat", "r")
    host.outbox.slow_started(slow)  # what a socket's pause_writing does
    a.say("pos")
    a.say("all")
    await _settle()
    assert slow.received() == ["to all"]
    assert a.received() == ["pos", "to all"]
    slow.mem.unread = 1001
    a.say("all")
    await _settle()
    assert slow.closed_with is not None and slow.closed_with[0] == CLOSE_POLICY
    assert slow.id not in {c.id for c in host.rooms[("chat", "r")].members.values()}
    assert a.received() == ["to all"]


async def test_a_failing_handler_closes_its_member_with_1011_and_spares_the_others() -> None:
    host = _host()
    mem = MemoryTransport(host)
    a, b = mem.join("chat", "r"), mem.join("chat", "r")
    a.say("boom")
    b.say("still here")
    await _settle()
    assert a.closed_with == (CLOSE_INTERNAL_ERROR, "internal error")
    assert b.is_open and a.received() == []
    assert host.stats.handler_errors == 1


async def test_an_idle_room_hibernates_keeps_its_members_and_wakes_from_its_snapshot() -> None:
    host = _host(hibernate_after=5)
    mem = MemoryTransport(host)
    a = mem.join("counter", "c")
    a.say("x")
    a.say("x")
    await _settle()
    assert [msgpack.unpackb(m) for m in a.received()] == [1, 2]
    rt = host.rooms[("counter", "c")]
    host.hibernate_idle(100.0)  # first look: idle from now on
    host.hibernate_idle(106.0)
    assert rt.room is None and host.gauges() == {"rooms": 0, "rooms_hibernated": 1}
    a.say("ping")  # an auto-response does not wake it
    await _settle()
    assert a.received() == ["pong"] and rt.room is None
    a.say("x")
    await _settle()
    assert rt.room is not None and host.stats.wakes == 1
    assert [msgpack.unpackb(m) for m in a.received()] == [3]
    assert host.gauges() == {"rooms": 1, "rooms_hibernated": 0}


async def test_a_room_is_dropped_once_its_last_member_leaves() -> None:
    host = _host()
    mem = MemoryTransport(host)
    a, b = mem.join("counter", "gone"), mem.join("counter", "gone")
    Counter.closed.clear()
    a.leave()
    assert ("counter", "gone") in host.rooms
    b.close(4000, "bye")
    await _settle()
    assert Counter.closed == [a.id, b.id]
    assert ("counter", "gone") not in host.rooms
    assert host.stats.closes[4000] == 1


async def test_a_ticking_room_sends_joiners_a_snapshot_then_everyone_diffs() -> None:
    host = _host()
    mem = MemoryTransport(host)
    a = mem.join("ships", "t")
    rt = host.rooms[("ships", "t")]
    await asyncio.sleep(0.12)  # two ticks at 20 Hz
    first = a.received()
    assert len(first) >= 1 and a.synced == rt.tick
    b = mem.join("ships", "t")
    await asyncio.sleep(0.06)
    assert b.received() and b.synced == rt.tick
    rt.stop_ticking()


async def test_member_ids_carry_the_node_and_stay_exact_in_javascript() -> None:
    one, two = _host(node=1), _host(node=2)
    ids = {MemoryTransport(h).join("chat", "r").id for h in (one, two) for _ in range(3)}
    assert len(ids) == 6
    assert all(i < 2**53 for i in ids)
    assert {i >> COUNTER_BITS for i in ids} == {1, 2}
    with pytest.raises(ValueError):
        _host(node=2**21)


class Seats(Room):
    log: list[str] = []

    def on_connect(self, conn: Connection, ctx: ConnectContext) -> None:
        Seats.log.append(f"+{conn.id}")

    def on_close(self, conn: Connection) -> None:
        Seats.log.append(f"-{conn.id}")


class Refuse(Seats):
    seats = "refuse"


class Shared(Seats):
    seats = "shared"


async def test_a_players_second_connection_replaces_the_first_or_is_refused() -> None:
    config = RelayConfig(flush_interval=0)
    host = RoomHost(config, asyncio.get_running_loop(), encode,
                    {"replace": Seats, "refuse": Refuse, "shared": Shared})
    mem = MemoryTransport(host)
    Seats.log.clear()
    first = mem.join("replace", "r", player="alice")
    second = mem.join("replace", "r", player="alice")
    bob = mem.join("replace", "r", player="bob")
    assert first.closed_with == (CLOSE_REPLACED, "replaced by a newer connection")
    assert Seats.log == [f"+{first.id}", f"-{first.id}", f"+{second.id}", f"+{bob.id}"]
    assert set(host.rooms[("replace", "r")].members) == {second.id, bob.id}
    kept = mem.join("refuse", "r", player="alice")
    with pytest.raises(HttpError) as e:
        mem.join("refuse", "r", player="alice")
    assert e.value.status == 409 and e.value.code == "seat_taken"
    kept.leave()
    assert mem.join("refuse", "r", player="alice").is_open  # the seat is free again
    both = [mem.join("shared", "r", player="alice") for _ in range(2)]
    assert all(m.is_open for m in both) and len(host.rooms[("shared", "r")].members) == 2


class SlowStore:
    """A snapshot store in memory whose writes take the times given, in order, so they
    would finish out of order if the runtime did not chain them."""

    def __init__(self, delays: list[float]) -> None:
        self.data: dict[str, bytes] = {}
        self.delays = delays

    async def put(self, key: str, data: bytes) -> None:
        await asyncio.sleep(self.delays.pop(0) if self.delays else 0)
        self.data[key] = data

    async def take(self, key: str) -> bytes | None:
        return self.data.pop(key, None)

    async def delete(self, key: str) -> None:
        self.data.pop(key, None)


async def test_snapshot_writes_reach_the_store_in_the_order_the_room_slept() -> None:
    config = RelayConfig(flush_interval=0, hibernate_after=5)
    store = SlowStore([0.05, 0.0])
    host = RoomHost(config, asyncio.get_running_loop(), encode, {"counter": Counter},
                    snapshots=store)
    a = MemoryTransport(host).join("counter", "c")
    rt = host.rooms[("counter", "c")]

    def sleep_now(t: float) -> None:
        host.hibernate_idle(t)
        host.hibernate_idle(t + 6)
        assert rt.room is None

    a.say("x")
    sleep_now(100.0)  # its snapshot (1) goes to the store slowly
    a.say("x")  # woken from memory before that write is done
    sleep_now(200.0)  # a newer snapshot (2), written fast
    await asyncio.sleep(0.1)
    assert rt.snapshot is None and len(store.data) == 1
    a.say("x")  # woken from the store: the newer snapshot, not the older one
    await asyncio.sleep(0.01)
    assert [msgpack.unpackb(m) for m in a.received()] == [1, 2, 3]
