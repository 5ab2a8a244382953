// Fan-out peer: Node `ws`, one broadcast room per URL path. A message is framed once with
// ws.Sender.frame and the same buffer is written to every other socket in the room.
// Usage: node node_ws_room.js PORT WS_MODULE_DIR
const http = require("http");
const { WebSocketServer, Sender } = require(process.argv[3] ?? "ws");

const rooms = new Map();
const server = http.createServer((req, res) => {
  res.writeHead(426).end("WebSocket upgrade required\n");
});
const wss = new WebSocketServer({ server, perMessageDeflate: false, maxPayload: 1 << 20 });

wss.on("connection", (ws, req) => {
  let room = rooms.get(req.url);
  if (room === undefined) rooms.set(req.url, (room = new Set()));
  room.add(ws);
  ws.on("message", (data, isBinary) => {
    const frame = Buffer.concat(Sender.frame(data, {
      fin: true, rsv1: false, opcode: isBinary ? 2 : 1, mask: false, readOnly: false,
    }));
    for (const other of room) {
      if (other !== ws && other.readyState === 1) other._socket.write(frame);
    }
  });
  ws.on("close", () => {
    room.delete(ws);
    if (room.size === 0) rooms.delete(req.url);
  });
  ws.on("error", () => {});
});

server.listen(Number(process.argv[2] ?? 0), "127.0.0.1", 4096, () => {
  console.log(`listening on ws://127.0.0.1:${server.address().port}`);
});
