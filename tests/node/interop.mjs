// Two Node `ws` clients in one broadcast room: text, binary, a fragmented message,
// ping/pong and the close handshake. Prints a JSON report for the Python test.
import WebSocket from "ws";

const url = process.argv[2];
const open = (ws) => new Promise((resolve, reject) => {
  ws.once("open", resolve);
  ws.once("error", reject);
});
const next = (ws) => new Promise((resolve) => ws.once("message", (data, isBinary) => resolve({ data, isBinary })));

const a = new WebSocket(url, { perMessageDeflate: true });
const b = new WebSocket(url);
await Promise.all([open(a), open(b)]);
const report = {};

let p = next(b);
a.send("héllo from node");
let m = await p;
report.textToB = m.isBinary ? null : m.data.toString("utf8");

p = next(a);
b.send(Buffer.from([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]));
m = await p;
report.binaryToA = m.isBinary ? [...m.data] : null;

p = next(b);
const big = "x".repeat(60000);
a.send(big.slice(0, 25000), { fin: false });
a.send(big.slice(25000), { fin: true });
m = await p;
report.fragmentedToB = m.data.toString("utf8");

report.pong = await new Promise((resolve) => {
  a.once("pong", (data) => resolve(data.toString() === "ping!"));
  a.ping("ping!");
});

report.closeCode = await new Promise((resolve) => {
  a.once("close", (code) => resolve(code));
  a.close(4000, "bye");
});
b.terminate();
process.stdout.write(JSON.stringify(report));
