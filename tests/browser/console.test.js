// The operator console in headless Chromium (Debian's package, driven by playwright-core):
// `stadium dev` with players in rooms, tickets waiting in matchmaker queues and a board with
// scores; the console shows them, charts the relay's traffic, and a room's members and closes.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { chromium } from "playwright-core";
import { startDev } from "../../sdk/js/harness/dev.js";
import { ROOT, startRelay } from "../../sdk/js/harness/relay.js";

const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";
const ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
  "--disable-component-update", "--disable-sync"];
const ARTIFACTS = path.join(ROOT, "tests", "artifacts");
const WAIT = 20000;

async function until(page, predicate, what, ms = WAIT) {
  const deadline = Date.now() + ms;
  let last;
  while (Date.now() < deadline) {
    last = await page.evaluate(() => window.stadiumConsole);
    if (last && predicate(last)) return last;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`timed out waiting for ${what}; last: ${JSON.stringify(last)?.slice(0, 2000)}\n${page.consoleLog.join("\n")}`);
}

async function post(url, body, method = "POST") {
  const res = await fetch(url, { method, headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
  if (!res.ok) throw new Error(`${method} ${url}: ${res.status} ${await res.text()}`);
  return res.json();
}

describe("operator console under stadium dev", () => {
  let dev;
  let context;
  let profile;
  before(async () => {
    await mkdir(ARTIFACTS, { recursive: true });
    if (!existsSync(CHROMIUM)) {
      throw new Error(`no Chromium at ${CHROMIUM}: install Debian's package (apt-get install chromium, as ` +
        "make test does when run as root) or point CHROMIUM at one");
    }
    dev = await startDev();
    profile = await mkdtemp(path.join(os.tmpdir(), "stadium-chromium-"));
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM, headless: true, args: ARGS, viewport: { width: 1280, height: 900 },
    });
  });
  after(async () => {
    await context?.close();
    if (profile) await rm(profile, { recursive: true, force: true });
    await dev?.stop();
  });

  test("rooms, members, closes, queues, boards and live charts of a running stadium dev", async () => {
    assert.match(dev.log(), /console: open without an operator key/);
    assert.match(dev.log(), /console\s+http:\/\/127\.0\.0\.1:\d+\/console\s+\(open, no --admin-key\)/);
    const ws = dev.relay.replace(/^http/, "ws");

    // players: sockets opened from a page, chatting in the lobby so the message chart moves
    const players = await context.newPage();
    await players.goto(`${dev.relay}/healthz`);
    await players.evaluate(async (base) => {
      const open = (room) => new Promise((resolve, reject) => {
        const s = new WebSocket(`${base}/rooms/${room}`);
        s.onopen = () => resolve(s);
        s.onerror = () => reject(new Error(`no socket to ${room}`));
      });
      const lobby = await Promise.all([1, 2, 3, 4].map(() => open("broadcast/lobby")));
      const arena = await Promise.all([1, 2].map(() => open("arena/practice")));
      lobby[3].close(1000, "bye"); // a recent close for the room's panel
      window.sockets = [...lobby.slice(0, 3), ...arena];
      window.chat = setInterval(() => lobby[0].send("hello"), 50);
    }, ws);

    // tickets: two wait in 2v2 (four needed), one in arena (two needed); a board with scores
    for (const player of ["ann", "bob"]) await post(`${dev.matchmaker}/tickets`, { player, queue: "2v2" });
    await post(`${dev.matchmaker}/tickets`, { player: "cyd", queue: "arena" });
    await post(`${dev.leaderboard}/boards/season-1`, { order: "desc", operator: "best" }, "PUT");
    await post(`${dev.leaderboard}/boards/season-1/scores`, { scores: [
      { player: "ann", score: 4200 }, { player: "bob", score: 3100 }, { player: "cyd", score: 2500 }] });

    const page = await context.newPage();
    page.consoleLog = [];
    page.on("console", (m) => page.consoleLog.push(`${m.type()}: ${m.text()}`));
    page.on("pageerror", (e) => page.consoleLog.push(`pageerror: ${e.message}`));
    await page.goto(`${dev.relay}/console`);

    const seen = await until(page, (c) => c.access === "open"
      && c.rooms?.rooms.some((r) => r.type === "broadcast" && r.id === "lobby" && r.members === 3)
      && c.rooms?.rooms.some((r) => r.type === "arena" && r.id === "practice" && r.members === 2 && r.tick > 0)
      && c.queues?.queues.some((q) => q.name === "2v2" && q.waiting === 2)
      && c.queues?.queues.some((q) => q.name === "arena" && q.waiting === 1)
      && c.boards?.boards.some((b) => b.board === "season-1" && b.entries === 3)
      && c.nodes?.nodes.some((n) => n.self)
      && c.samples.length >= 10 && c.samples[c.samples.length - 1].out > 0,
    "rooms, queues, boards and a few seconds of traffic");
    assert.deepEqual(seen.errors, []);
    assert.equal(await page.locator("#key-form").isVisible(), false, "no key asked for under stadium dev");

    const rooms = await page.locator("#rooms").innerText();
    assert.match(rooms, /broadcast\s+lobby\s+awake\s+3/);
    assert.match(rooms, /arena\s+practice\s+awake\s+2/);
    const queues = await page.locator("#queues").innerText();
    assert.match(queues, /2v2\s+2v2\s+broadcast\s+2\s+0/);
    assert.match(queues, /arena\s+1v1\s+arena\s+1\s+0/);
    assert.match(await page.locator("#boards").innerText(), /season-1\s+desc\s+best\s+all-time\s+3\s+ann 4200 · bob 3100 · cyd 2500/);
    assert.match(await page.locator("#ticks").innerText(), /arena\s+\d+/);
    assert.ok(Number(await page.locator("#chart-messages").getAttribute("data-max")) > 1, "the message chart has a scale");
    assert.equal(await page.locator("#chart-messages polyline").count(), 2);

    // a room's members and its recent close
    await page.locator("#rooms tr", { hasText: "lobby" }).click();
    await until(page, (c) => c.room?.id === "lobby" && c.room.closes.length === 1, "the lobby's panel");
    assert.equal(await page.locator("#members tbody tr").count(), 3);
    assert.match(await page.locator("#closes").innerText(), /s ago\s+\d+\s+–\s+1000/);

    await page.screenshot({ path: path.join(ARTIFACTS, "console.png"), fullPage: true });
    assert.deepEqual(page.consoleLog.filter((l) => /error/i.test(l)), []);
    await players.evaluate(() => { clearInterval(window.chat); for (const s of window.sockets) s.close(); });
  });
});

describe("operator console behind --admin-key", () => {
  test("the page asks for the key, refuses a wrong one, and shows the relay with the right one", async () => {
    const relay = await startRelay(["--admin-key", "console-test-key"]);
    const profile = await mkdtemp(path.join(os.tmpdir(), "stadium-chromium-"));
    const context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM, headless: true, args: ARGS, viewport: { width: 1280, height: 900 },
    });
    try {
      const page = await context.newPage();
      page.consoleLog = [];
      await page.goto(`${relay.http}/console`);
      await until(page, (c) => c.needKey, "the key form");
      assert.equal(await page.locator("#key-form").isVisible(), true);
      assert.equal(await page.evaluate(() => window.stadiumConsole.relay), null, "nothing shown without the key");
      await page.fill("#key", "not-it");
      await page.click("#key-form button");
      await until(page, (c) => c.needKey, "the form again after a wrong key");
      await page.fill("#key", "console-test-key");
      await page.click("#key-form button");
      const c = await until(page, (s) => s.relay !== null && s.rooms !== null, "the relay's numbers");
      assert.equal(c.access, "key");
      assert.equal(await page.locator("#key-form").isVisible(), false);
      assert.match(await page.locator("#access").innerText(), /operator key/);
      assert.match(relay.log(), /bad_admin_key/);
    } finally {
      await context.close();
      await rm(profile, { recursive: true, force: true });
      await relay.stop();
    }
  });
});
