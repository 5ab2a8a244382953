// The SDK against a real relay: messages, the state mirror, reconnect and typed errors.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import net from "node:net";
import WebSocket from "ws";
import { Client, MessageTooLargeError, RelayUnreachableError, TokenRefusedError, unpack } from "../src/index.js";
import { next, signToken, startRelay, untilState } from "../harness/relay.js";
import { dump, referenceDumps } from "../harness/reference.js";

const ROOMS = ["--room", "tick=tests.rooms:TickRoom", "--room", "faulty=tests.rooms:FaultyRoom",
  "--room", "echo=tests.rooms:EchoRoom"];
const FAST = { minDelay: 50, maxDelay: 400 };

function freePort() {
  return new Promise((resolve) => {
    const srv = net.createServer().listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

describe("open relay", () => {
  let relay;
  let client;
  before(async () => {
    relay = await startRelay(ROOMS);
    client = new Client(relay.http, { WebSocket, ...FAST });
  });
  after(() => relay.stop());

  test("messages go through the broadcast room as sent, and sends before the join wait", async () => {
    const b = client.joinRoom("broadcast", "msgs");
    await b.joined;
    const got = [];
    b.on("message", (m) => got.push(m));
    const a = client.joinRoom("broadcast", "msgs");
    assert.equal(a.connected, false);
    a.send("héllo");
    a.send({ move: [1, 2], name: "p1" });
    a.send(new Uint8Array([0, 1, 2, 255]));
    await a.joined;
    while (got.length < 3) await next(b, "message");
    assert.equal(got[0], "héllo");
    assert.deepEqual(unpack(got[1]), { move: [1, 2], name: "p1" });
    assert.deepEqual(Array.from(got[2]), [0, 1, 2, 255]);
    const left = next(a, "leave");
    const closed = next(a, "close");
    await a.leave();
    await left;
    assert.equal((await closed).code, 1000);
    assert.throws(() => a.send("late"), /closed/);
    await b.leave();
  });

  test("two clients' mirrors agree at common ticks, match the Python decoder, and a dot moves", async () => {
    const a = client.joinRoom("tick", "mirror");
    const b = client.joinRoom("tick", "mirror");
    const seen = { a: new Map(), b: new Map() };
    const raw = [];
    const origApply = a.state.apply.bind(a.state);
    a.state.apply = (payload) => {
      raw.push(payload.slice());
      return origApply(payload);
    };
    a.on("state", (s) => seen.a.set(s.tick, JSON.stringify(dump(s).tables)));
    b.on("state", (s) => seen.b.set(s.tick, JSON.stringify(dump(s).tables)));
    const you = unpack(await next(a, "message")).you;
    await Promise.all([a.joined, b.joined]);
    await untilState(b, () => b.state.tables.dots?.has(you));
    const x0 = a.state.table("dots").values("x")[you];
    for (let i = 0; i < 5; i++) a.send("1,0.5");
    const moved = (r) => () => Math.abs(r.state.table("dots").values("x")[you] - (x0 + 5)) < 1e-9;
    await Promise.all([untilState(a, moved(a)), untilState(b, moved(b))]);
    assert.ok(Math.abs(b.state.table("dots").values("y")[you] - 2.5) < 1e-9);
    for (let i = 0; i < 5; i++) await next(b, "state");
    await next(a, "state");
    const common = [...seen.a.keys()].filter((t) => seen.b.has(t));
    assert.ok(common.length >= 3, `only ${common.length} common ticks`);
    for (const t of common) assert.equal(seen.a.get(t), seen.b.get(t), `mirrors differ at tick ${t}`);
    // the same payloads through the Python SDK's StateMirror give the same mirror
    const mine = [];
    const replay = new (a.state.constructor)();
    for (const p of raw) if (replay.apply(p)) mine.push(dump(replay));
    assert.deepEqual(JSON.parse(JSON.stringify(mine)), referenceDumps(raw));
    await Promise.all([a.leave(), b.leave()]);
  });

  test("arena session: spawns, despawns and coins decode as the Python SDK does", async () => {
    const watcher = client.joinRoom("arena", "ref");
    const raw = [];
    const origApply = watcher.state.apply.bind(watcher.state);
    watcher.state.apply = (payload) => {
      raw.push(payload.slice());
      return origApply(payload);
    };
    await watcher.joined;
    await next(watcher, "state");
    const players = [0, 1, 2].map(() => client.joinRoom("arena", "ref"));
    await Promise.all(players.map((p) => p.joined));
    players.forEach((p, i) => p.send({ turn: i - 1, thrust: 1 }));
    await untilState(watcher, () => watcher.state.table("ships").size === 4);
    for (let i = 0; i < 10; i++) await next(watcher, "state");
    await players[1].leave();
    await untilState(watcher, () => watcher.state.table("ships").size === 3);
    await next(watcher, "state");
    const mine = [];
    const replay = new (watcher.state.constructor)();
    for (const p of raw) if (replay.apply(p)) mine.push(dump(replay));
    assert.deepEqual(JSON.parse(JSON.stringify(mine)), referenceDumps(raw));
    const ships = watcher.state.table("ships");
    assert.deepEqual(Object.keys(watcher.state.doc.players).map(Number).sort(), ships.ids);
    await Promise.all([watcher.leave(), players[0].leave(), players[2].leave()]);
  });

  test("a room's handler failing (1011) reconnects and the room works again", async () => {
    const a = client.joinRoom("faulty", "f");
    const b = client.joinRoom("faulty", "f");
    await Promise.all([a.joined, b.joined]);
    const reconnecting = next(a, "reconnecting");
    const reconnected = next(a, "reconnected");
    a.send("boom");
    assert.equal((await reconnecting).code, 1011);
    await reconnected;
    const got = next(b, "message");
    a.send("after");
    assert.equal(await got, "after");
    await Promise.all([a.leave(), b.leave()]);
  });

  test("a room's own close code (4001) is final: close event, no reconnect", async () => {
    const a = client.joinRoom("echo", "e");
    await a.joined;
    let retried = false;
    a.on("reconnecting", () => {
      retried = true;
    });
    const closed = next(a, "close");
    a.send("close");
    const ev = await closed;
    assert.equal(ev.code, 4001);
    assert.equal(ev.reason, "asked to close");
    assert.equal(retried, false);
    assert.equal(a.status, "closed");
  });

  test("a message over the relay's size limit gives a typed error, then the room reconnects", async () => {
    const a = client.joinRoom("broadcast", "big");
    await a.joined;
    const error = next(a, "error");
    const reconnected = next(a, "reconnected");
    a.send(new Uint8Array(70000)); // the relay's default --max-message-size is 65536
    const e = await error;
    assert.ok(e instanceof MessageTooLargeError);
    assert.equal(e.code, "message_too_large");
    assert.equal(e.closeCode, 1009);
    await reconnected;
    await a.leave();
  });
});

test("reconnect after the relay restarts: same token, buffered sends, state again", async () => {
  let relay = await startRelay(ROOMS);
  const port = relay.port;
  const client = new Client(relay.http, { WebSocket, minDelay: 100, maxDelay: 500, maxRetries: 30 });
  const room = client.joinRoom("tick", "again");
  let you = null;
  room.on("message", (m) => {
    you = unpack(m).you;
  });
  await room.joined;
  await untilState(room, () => room.state.tick > 2);
  const reconnecting = next(room, "reconnecting");
  await relay.stop(); // drains: closes every socket with 1001
  assert.equal((await reconnecting).code, 1001);
  room.send("3,0"); // buffered while the relay is down
  const reconnected = next(room, "reconnected", 20000);
  relay = await startRelay(ROOMS, { port });
  try {
    assert.ok((await reconnected).attempts >= 1);
    const first = await next(room, "state");
    assert.ok(first.tick >= 1);
    await untilState(room, () => you !== null && room.state.tables.dots?.has(you)
      && Math.abs(room.state.table("dots").values("x")[you] - 3) < 1e-9);
    await room.leave();
  } finally {
    await relay.stop();
  }
});

test("a relay that is down: typed error, retries, then a close event with the reason", async () => {
  const port = await freePort();
  const client = new Client(`http://127.0.0.1:${port}`, { WebSocket, minDelay: 20, maxDelay: 50, maxRetries: 3 });
  const room = client.joinRoom("broadcast", "down", "secret-join-token");
  const errors = [];
  const attempts = [];
  room.on("error", (e) => errors.push(e));
  room.on("reconnecting", (r) => attempts.push(r.attempt));
  const closed = await next(room, "close");
  assert.ok(errors[0] instanceof RelayUnreachableError);
  assert.equal(errors.length, 1, "one error per kind of failure, not one per attempt");
  assert.ok(!errors[0].message.includes("secret-join-token"), errors[0].message);
  assert.match(errors[0].message, /token=\[redacted\]/);
  assert.deepEqual(attempts, [1, 2, 3]);
  assert.match(closed.reason, /gave up after 3 attempts \(relay_unreachable/);
  await assert.rejects(room.joined, RelayUnreachableError);
  assert.throws(() => room.send("x"), /closed/);
});

describe("relay with --secret", () => {
  let relay;
  before(async () => {
    relay = await startRelay(["--secret", "s3cret", ...ROOMS]);
  });
  after(() => relay.stop());

  test("a good token joins; a bad or wrong-room token is a typed, final error", async () => {
    const client = new Client(relay.http, { WebSocket, ...FAST });
    const good = client.joinRoom("broadcast", "vip", signToken("s3cret", "broadcast/vip", "p1"));
    await good.joined;

    for (const [token, code] of [
      [signToken("other", "broadcast/vip", "p2"), "bad_signature"],
      [signToken("s3cret", "broadcast/elsewhere", "p2"), "wrong_room"],
      [null, "missing_token"],
    ]) {
      const room = client.joinRoom("broadcast", "vip", token);
      let retried = false;
      room.on("reconnecting", () => {
        retried = true;
      });
      const error = next(room, "error");
      const closed = next(room, "close");
      const e = await error;
      assert.ok(e instanceof TokenRefusedError, `${code}: got ${e}`);
      assert.equal(e.code, code);
      assert.equal(e.status, 401);
      assert.equal((await closed).error, e);
      assert.equal(retried, false);
      await assert.rejects(room.joined, TokenRefusedError);
    }
    await good.leave();
  });
});
