// matchmake, join(seat) and leaderboard against a real `stadium dev` (matchmaker, leaderboard, relay).
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import net from "node:net";
import WebSocket from "ws";
import { Client, LeaderboardError, MatchmakerError, unpack } from "../src/index.js";
import { startDev } from "../harness/dev.js";
import { next, untilState } from "../harness/relay.js";

function closedPort() {
  return new Promise((resolve) => {
    const srv = net.createServer().listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

async function post(url, method, body) {
  const res = await fetch(url, { method, headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
  const text = await res.text();
  assert.ok(res.status < 300, `${method} ${url}: ${res.status} ${text}`);
  return JSON.parse(text);
}

describe("stadium dev", () => {
  let dev;
  let client;
  before(async () => {
    dev = await startDev();
    client = new Client(dev.relay, { WebSocket, matchmakerUrl: dev.matchmaker, leaderboardUrl: dev.leaderboard,
      minDelay: 50, maxDelay: 400 });
  });
  after(() => dev.stop());

  test("two players matchmade in the arena queue get seats in one room and both ships appear", async () => {
    const [a, b] = await Promise.all([
      client.matchmake("arena", { player: "ann", timeout: 20000 }),
      client.matchmake("arena", { player: "bob", timeout: 20000 }),
    ]);
    assert.equal(a.match_id, b.match_id);
    assert.equal(a.room_type, "arena");
    assert.equal(a.room_id, b.room_id);
    assert.notEqual(a.team, b.team);
    assert.equal(a.player, "ann");
    assert.match(a.url, /^ws:\/\/127\.0\.0\.1:\d+\/rooms\/arena\//);
    const ra = client.join(a);
    const rb = client.join(b, { query: { name: "bobby" } }); // without --secret the seat has no token
    const [shipA, shipB] = (await Promise.all([next(ra, "message"), next(rb, "message")])).map((m) => unpack(m).ship);
    assert.notEqual(shipA, shipB);
    await untilState(ra, () => ra.state.table("ships").has(shipA) && ra.state.table("ships").has(shipB));
    assert.equal(ra.state.doc.players[String(shipB)], "bobby"); // arena names untokened ships by ?name=
    await Promise.all([ra.leave(), rb.leave()]);
  });

  test("an unknown queue is a MatchmakerError with the service's code", async () => {
    await assert.rejects(client.matchmake("no-such-queue", { player: "cy" }), (e) => {
      assert.ok(e instanceof MatchmakerError);
      assert.equal(e.status, 404);
      assert.equal(e.code, "unknown_queue");
      return true;
    });
    await assert.rejects(client.matchmake("arena", {}), /needs \{ player \}/);
  });

  test("matchmake's own timeout cancels the ticket", async () => {
    let ticket;
    await assert.rejects(client.matchmake("2v2", { player: "lonely", timeout: 300 }), (e) => {
      assert.ok(e instanceof MatchmakerError);
      assert.equal(e.code, "matchmake_timeout");
      ticket = e.ticket;
      return true;
    });
    const view = await (await fetch(`${dev.matchmaker}/tickets/${ticket}`)).json();
    assert.equal(view.status, "cancelled");
  });

  test("a ticket request whose answer was lost is retried under its Idempotency-Key: one ticket", async () => {
    // in front of the matchmaker: the first POST /tickets reaches it, its answer is replaced by a 503
    const seen = [];
    const front = http.createServer(async (req, res) => {
      const chunks = [];
      for await (const c of req) chunks.push(c);
      const headers = { ...req.headers };
      delete headers.host;
      delete headers["content-length"];
      const answer = await fetch(dev.matchmaker + req.url, { method: req.method, headers,
        body: chunks.length ? Buffer.concat(chunks) : undefined });
      const text = await answer.text();
      if (req.method === "POST" && req.url === "/tickets") {
        seen.push({ key: req.headers["idempotency-key"], id: JSON.parse(text).id });
        if (seen.length === 1) {
          res.writeHead(503, { "content-type": "application/json" });
          return res.end(JSON.stringify({ error: { code: "redis_unavailable", message: "lost" } }));
        }
      }
      res.writeHead(answer.status, { "content-type": "application/json" });
      res.end(text);
    });
    await new Promise((resolve) => front.listen(0, "127.0.0.1", resolve));
    const lossy = new Client(dev.relay, { WebSocket, matchmakerUrl: `http://127.0.0.1:${front.address().port}` });
    try {
      let ticket;
      await assert.rejects(lossy.matchmake("2v2", { player: "retrying", timeout: 600 }), (e) => {
        ticket = e.ticket;
        return e.code === "matchmake_timeout";
      });
      assert.equal(seen.length, 2);
      assert.match(seen[0].key, /^[0-9a-f]{32}$/);
      assert.equal(seen[1].key, seen[0].key);
      assert.equal(seen[1].id, seen[0].id); // the retry got the ticket the first request made
      assert.equal(ticket, seen[0].id);
      const view = await (await fetch(`${dev.matchmaker}/tickets/${ticket}`)).json();
      assert.equal(view.status, "cancelled");
    } finally {
      front.close();
    }
  });

  test("leaderboard top(limit) and rank(player) read what the game server posted", async () => {
    await post(`${dev.leaderboard}/boards/js-board`, "PUT", {});
    await post(`${dev.leaderboard}/boards/js-board/scores`, "POST",
      { scores: [{ player: "ann", score: 30 }, { player: "bob", score: 50 }, { player: "cy", score: 10 }] });
    const board = client.leaderboard("js-board");
    const top = await board.top(2);
    assert.deepEqual(top.entries.map((e) => [e.rank, e.player, e.score]), [[1, "bob", 50], [2, "ann", 30]]);
    const ann = await board.rank("ann");
    assert.equal(ann.rank, 2);
    assert.equal(ann.score, 30);
    await assert.rejects(board.rank("nobody"), (e) => e instanceof LeaderboardError && e.status === 404
      && e.code === "unknown_player");
    await assert.rejects(client.leaderboard("no-board").top(), (e) => e instanceof LeaderboardError
      && e.code === "unknown_board");
  });

  test("the services answer the demo page's origin with CORS headers", async () => {
    const origin = dev.page.replace(/\/$/, "");
    for (const base of [dev.matchmaker, dev.leaderboard]) {
      const res = await fetch(`${base}/healthz`, { headers: { origin } });
      assert.equal(res.headers.get("access-control-allow-origin"), origin, base);
      const pre = await fetch(`${base}/healthz`, { method: "OPTIONS", headers: { origin,
        "access-control-request-method": "POST", "access-control-request-headers": "content-type" } });
      assert.equal(pre.status, 200, base);
      assert.equal(pre.headers.get("access-control-allow-origin"), origin, base);
      const other = await fetch(`${base}/healthz`, { headers: { origin: "http://evil.example" } });
      assert.equal(other.headers.get("access-control-allow-origin"), null, base);
    }
  });
});

describe("stadium dev --secret: player tokens", () => {
  let dev;
  before(async () => {
    // seats' join tokens last 2 s and the relay allows no leeway: a reconnect soon needs a fresh one
    dev = await startDev(["--secret", "js-player-secret"], { env: { STADIUM_SEAT_TTL: "2", STADIUM_TOKEN_LEEWAY: "0" } });
  });
  after(() => dev.stop());

  const playerToken = async (player) => (await post(`${dev.matchmaker}/dev/player-token`, "POST", { player })).token;
  const clientOf = (token) => new Client(dev.relay, { WebSocket, matchmakerUrl: dev.matchmaker, playerToken: token,
    minDelay: 50, maxDelay: 200 });

  test("the dev log says player tokens are minted for anyone", () => {
    assert.match(dev.log(), /dev auth\s+POST \S+\/dev\/player-token mints player tokens/);
  });

  test("matchmake sends the player's token; without one, or as another player, it is refused", async () => {
    await assert.rejects(clientOf(null).matchmake("arena", { player: "vi" }), (e) => e instanceof MatchmakerError
      && e.status === 401 && e.code === "missing_token");
    await assert.rejects(clientOf(await playerToken("mallory")).matchmake("arena", { player: "vi" }),
      (e) => e.status === 403 && e.code === "wrong_player");
  });

  test("a reconnect refused as expired gets a fresh join token for the same seat by itself", async () => {
    const tia = clientOf(await playerToken("tia"));
    const uma = clientOf(() => playerToken("uma")); // a function that gives the token works too
    const [a, b] = await Promise.all([tia.matchmake("arena", { player: "tia", timeout: 20000 }),
      uma.matchmake("arena", { player: "uma", timeout: 20000 })]);
    assert.equal(a.match_id, b.match_id);
    const room = tia.join(a);
    await room.joined;
    await new Promise((r) => setTimeout(r, a.expires * 1000 - Date.now() + 1200)); // the seat's token expired
    const errors = [];
    room.on("error", (e) => errors.push(e));
    const reconnected = next(room, "reconnected", 15000);
    room._ws.terminate(); // the connection drops
    await reconnected;
    assert.equal(room.status, "open");
    assert.deepEqual(errors, [], "the expired token is replaced, not reported");
    assert.ok(!room.url.includes(a.token));
    const fresh = await tia.freshSeat(a);
    assert.equal(fresh.room_id, a.room_id);
    assert.equal(fresh.team, a.team);
    await room.leave();
    // without a player token the refusal is final, as before
    const bare = clientOf(null).join(a, { maxRetries: 2 });
    const closed = await next(bare, "close", 15000);
    assert.equal(closed.error?.name, "TokenRefusedError");
    assert.equal(closed.error?.code, "expired");
  });
});

test("services that do not answer are a typed error with status 0", async () => {
  const port = await closedPort();
  const client = new Client("http://127.0.0.1:1", { WebSocket, matchmakerUrl: `http://127.0.0.1:${port}`,
    leaderboardUrl: `http://127.0.0.1:${port}/` });
  await assert.rejects(client.matchmake("1v1", { player: "p" }), (e) => e instanceof MatchmakerError
    && e.status === 0 && e.code === "unreachable");
  await assert.rejects(client.leaderboard("b").top(), (e) => e instanceof LeaderboardError && e.code === "unreachable");
});

test("service URLs default to the relay's host on ports 8081 and 8082", () => {
  const client = new Client("wss://play.example.com:8443/", { WebSocket });
  assert.equal(client.matchmakerUrl, "https://play.example.com:8081");
  assert.equal(client.leaderboardUrl, "https://play.example.com:8082");
  assert.throws(() => client.join({}), /needs a seat/);
});
