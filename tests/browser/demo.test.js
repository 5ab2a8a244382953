// The demo page in headless Chromium (Debian's package, driven by playwright-core): two pages
// play one arena match, a relay restart is survived, and bad input shows a clear message.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { chromium } from "playwright-core";
import { startDev } from "../../sdk/js/harness/dev.js";
import { ROOT, signToken, startRelay } from "../../sdk/js/harness/relay.js";

const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";
// Without the background-networking flags Chromium stalls on connections a closed network refuses.
const ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
  "--disable-component-update", "--disable-sync"];
const ARTIFACTS = path.join(ROOT, "tests", "artifacts");
const WAIT = 20000;

function freePort() {
  return new Promise((resolve) => {
    const srv = net.createServer().listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/** A fresh Chromium profile; `close()` ends the browser and removes the profile. */
async function browser() {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`no Chromium at ${CHROMIUM}: install Debian's package (apt-get install chromium, as ` +
      "make test does when run as root) or point CHROMIUM at one");
  }
  const dir = await mkdtemp(path.join(os.tmpdir(), "stadium-chromium-"));
  const context = await chromium.launchPersistentContext(dir, {
    executablePath: CHROMIUM, headless: true, args: ARGS, viewport: { width: 1100, height: 760 },
  });
  return {
    context,
    async page(url) {
      const page = await context.newPage();
      const log = [];
      page.on("console", (m) => log.push(`${m.type()}: ${m.text()}`));
      page.on("pageerror", (e) => log.push(`pageerror: ${e.message}`));
      page.consoleLog = log;
      await page.goto(url);
      return page;
    },
    async close() {
      await context.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

const demo = (page) => page.evaluate(() => {
  const d = window.stadiumDemo;
  return { status: d.status, ship: d.ship, banner: d.banner, tick: d.room?.state.tick ?? 0,
    seat: d.seat, drawn: d.drawnShips.map((s) => s.id), board: d.board, metrics: d.metrics, errors: d.errors };
});

/** Waits until the page's demo state satisfies `predicate` (a function of `demo(page)`'s result). */
async function until(page, predicate, what, ms = WAIT) {
  const deadline = Date.now() + ms;
  let last;
  while (Date.now() < deadline) {
    last = await demo(page);
    if (predicate(last)) return last;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out waiting for ${what}; last: ${JSON.stringify(last)}\n${page.consoleLog.join("\n")}`);
}

/** A ship's position in the page's state mirror (game units). */
const shipAt = (page, id) => page.evaluate((ship) => {
  const t = window.stadiumDemo.room.state.table("ships");
  return t.has(ship) ? { x: t.values("x")[ship], y: t.values("y")[ship], angle: t.values("angle")[ship] } : null;
}, id);

function wrapDistance(a, b, world = 100) {
  const d = (u, v) => {
    const x = Math.abs(u - v) % world;
    return Math.min(x, world - x);
  };
  return Math.hypot(d(a.x, b.x), d(a.y, b.y));
}

describe("stadium dev --secret demo page", () => {
  let dev;
  let chrome;
  before(async () => {
    dev = await startDev(["--secret", "demo-page-secret"]);
    chrome = await browser();
  });
  after(async () => {
    await chrome?.close();
    await dev?.stop();
  });

  test("the page gets player tokens from the dev matchmaker and plays a match with them", async () => {
    const refused = await fetch(`${dev.matchmaker}/tickets`, { method: "POST", headers: { "content-type": "application/json" },
      body: JSON.stringify({ player: "eve", queue: "arena" }) });
    assert.equal(refused.status, 401, "the matchmaker wants a player token");
    const a = await chrome.page(`${dev.page}?mode=match&name=ann`);
    const b = await chrome.page(`${dev.page}?mode=match&name=bob`);
    const ready = (d) => d.status === "open" && d.ship !== null && d.tick > 0;
    const [da, db] = [await until(a, ready, "page A to join"), await until(b, ready, "page B to join")];
    assert.equal(da.seat.match_id, db.seat.match_id, "both pages matchmade into one match");
    assert.ok(da.seat.token && db.seat.token, "seats carry join tokens");
    const names = await b.evaluate(() => window.stadiumDemo.room.state.doc.players);
    assert.equal(names[String(da.ship)], "ann"); // the token's player names the ship
    assert.equal(names[String(db.ship)], "bob");
    await a.close();
    await b.close();
  });
});

describe("stadium dev demo page", () => {
  let dev;
  let chrome;
  before(async () => {
    await mkdir(ARTIFACTS, { recursive: true });
    dev = await startDev();
    chrome = await browser();
  });
  after(async () => {
    await chrome?.close();
    await dev?.stop();
  });

  test("two pages matchmade into one arena: A's keys move A's ship in B's mirror, both drawn on both canvases", async () => {
    assert.match(dev.page, /^http:\/\/127\.0\.0\.1:\d+\/$/);
    const a = await chrome.page(`${dev.page}?mode=match&name=ann`);
    const b = await chrome.page(`${dev.page}?mode=match&name=bob`);
    const ready = (d) => d.status === "open" && d.ship !== null && d.tick > 0;
    const [da, db] = [await until(a, ready, "page A to join"), await until(b, ready, "page B to join")];
    assert.equal(da.seat.match_id, db.seat.match_id, "both pages matchmade into one match");
    assert.equal(da.seat.room_type, "arena");
    assert.notEqual(da.ship, db.ship);

    const startA = await shipAt(b, da.ship);
    const startB = await shipAt(b, db.ship);
    assert.ok(startA && startB, "B's mirror has both ships");
    const names = await b.evaluate(() => window.stadiumDemo.room.state.doc.players);
    assert.equal(names[String(da.ship)], "ann");
    assert.equal(names[String(db.ship)], "bob");
    await a.bringToFront();
    await a.keyboard.down("ArrowUp");
    await a.keyboard.down("KeyA");
    await new Promise((r) => setTimeout(r, 1200));
    await a.keyboard.up("KeyA");
    await a.keyboard.up("ArrowUp");
    const moved = await until(b, () => true, "B");
    const nowA = await shipAt(b, da.ship);
    const nowB = await shipAt(b, db.ship);
    // 12 m/s at full thrust for ~1.2 s; B pressed nothing, so its ship stays where it was
    assert.ok(wrapDistance(startA, nowA) > 5, `A's ship moved in B's mirror: ${JSON.stringify([startA, nowA])}`);
    assert.notEqual(nowA.angle, startA.angle, "A's ship turned");
    assert.ok(wrapDistance(startB, nowB) < 1e-6, `B's ship stayed: ${JSON.stringify([startB, nowB])}`);
    assert.ok(moved.tick > db.tick);
    // The key-up reaches the room a tick or more after it was pressed: A's ship stops then.
    // Once it stands still in A's mirror for two ticks, B's mirror must show it there too.
    let mirrorA = await shipAt(a, da.ship);
    let stillAt = moved.tick;
    for (let still = false, tries = 0; !still && tries < 40; tries++) {
      const at = (await demo(a)).tick;
      stillAt = (await until(a, (d) => d.tick >= at + 2, "two more ticks on A")).tick;
      const again = await shipAt(a, da.ship);
      still = wrapDistance(mirrorA, again) < 1e-6;
      mirrorA = again;
    }
    await until(b, (d) => d.tick >= Math.max(stillAt, moved.tick + 2), "B at that tick");
    assert.ok(wrapDistance(mirrorA, await shipAt(b, da.ship)) < 1e-6, "A's and B's mirrors agree on A's ship");

    for (const page of [a, b]) {
      await until(page, (d) => [da.ship, db.ship].every((id) => d.drawn.includes(id)), "both ships drawn");
    }
    await a.screenshot({ path: path.join(ARTIFACTS, "demo-page-a.png") });
    await b.screenshot({ path: path.join(ARTIFACTS, "demo-page-b.png") });
    await a.close();
    await b.close();
  });

  test("the leaderboard beside the canvas shows the board's top entries, and the live panel the relay's numbers", async () => {
    const res = await fetch(`${dev.leaderboard}/boards/arena/scores`, { method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ scores: [{ player: "top-gun", score: 60000 }] }) });
    if (res.status === 404) { // the arena room has not created the board yet
      await fetch(`${dev.leaderboard}/boards/arena`, { method: "PUT", headers: { "content-type": "application/json" },
        body: JSON.stringify({ order: "desc", operator: "best" }) });
      await fetch(`${dev.leaderboard}/boards/arena/scores`, { method: "POST", headers: { "content-type": "application/json" },
        body: JSON.stringify({ scores: [{ player: "top-gun", score: 60000 }] }) });
    }
    const page = await chrome.page(`${dev.page}?name=carol`);
    const d = await until(page, (s) => s.board.some((e) => e.player === "top-gun") && s.metrics.outPerSecond > 0,
      "the leaderboard panel and the message rate");
    assert.deepEqual([d.board[0].player, d.board[0].score], ["top-gun", 60000]);
    assert.ok(d.metrics.connections >= 1 && d.metrics.rooms >= 1, JSON.stringify(d.metrics));
    const text = await page.locator("#board").innerText();
    assert.match(text, /top-gun — 60000/);
    await page.close();
  });
});

describe("relay restarts and refusals", () => {
  let chrome;
  before(async () => {
    await mkdir(ARTIFACTS, { recursive: true });
    chrome = await browser();
  });
  after(() => chrome?.close());

  test("the page reconnects after the relay is killed and restarted, and play resumes", async () => {
    const port = await freePort();
    let relay = await startRelay(["--demo"], { port });
    try {
      const page = await chrome.page(`http://127.0.0.1:${port}/?name=dora`);
      const first = await until(page, (d) => d.status === "open" && d.ship !== null && d.tick > 0, "join");
      await relay.stop("SIGKILL"); // the socket is gone without a close frame (1006)
      const down = await until(page, (d) => d.status === "reconnecting", "the page to notice");
      assert.match(down.banner, /reconnect|Next try/i);
      relay = await startRelay(["--demo"], { port });
      const back = await until(page, (d) => d.status === "open" && d.ship !== null && d.tick > 5, "the rejoin");
      assert.equal(back.banner, "");
      // a new relay process: a new ship, whose input goes through
      const start = await shipAt(page, back.ship);
      assert.ok(start, "the new ship is in the mirror");
      await page.bringToFront();
      await page.keyboard.down("KeyW");
      await new Promise((r) => setTimeout(r, 800));
      await page.keyboard.up("KeyW");
      await until(page, () => true, "page");
      assert.ok(wrapDistance(start, await shipAt(page, back.ship)) > 3, "thrust moves the ship after the reconnect");
      assert.ok(first.tick > 0);
      await until(page, (d) => d.drawn.includes(back.ship), "the ship drawn");
      await page.screenshot({ path: path.join(ARTIFACTS, "demo-page-reconnected.png") });

      // a message over --max-message-size: a clear message, then the page plays again. The relay
      // closes TCP right after its 1009 frame, so with payload still unread Chromium may see a
      // reset (1006) instead: then the page just reconnects, and the test sends again.
      let big = null;
      for (let attempt = 0; attempt < 5 && !big; attempt++) {
        await until(page, (d) => d.status === "open", "the room open before the oversize send");
        await page.evaluate(() => window.stadiumDemo.room.send(new Uint8Array(70000)));
        big = await until(page, (d) => d.errors.some((e) => e.code === "message_too_large"), "the 1009 error", 3000)
          .catch(() => null);
      }
      assert.ok(big, "the page reported a MessageTooLargeError");
      assert.match(big.banner, /size limit/);
      await until(page, (d) => d.status === "open" && d.banner === "", "the reconnect after 1009");
      await page.close();
    } finally {
      await relay.stop("SIGKILL");
    }
  });

  test("a relay that refuses the join token says so on the page, and stops retrying", async () => {
    const relay = await startRelay(["--demo", "--secret", "s3cret"]);
    try {
      const page = await chrome.page(`${relay.http}/?token=not-a-token`);
      const d = await until(page, (s) => s.status === "closed", "the refusal");
      assert.match(d.banner, /refused the join token \(malformed\)/);
      assert.equal(await page.locator("#banner").isVisible(), true);
      const good = signToken("s3cret", "arena/lobby", "erin");
      await page.goto(`${relay.http}/?token=${encodeURIComponent(good)}`);
      await until(page, (s) => s.status === "open" && s.ship !== null, "a good token to join");
      await page.close();
    } finally {
      await relay.stop("SIGKILL");
    }
  });
});
