// Fan-out peer: Bun.serve, one broadcast room per URL path, ws.subscribe / ws.publish.
// ws.publish skips the sender, as Stadium's `broadcast` room does. uWebSockets' topic tree
// joins everything published to one subscriber in a loop pass into one write.
const server = Bun.serve({
  hostname: "127.0.0.1",
  port: Number(process.argv[2] ?? 0),
  fetch(req, server) {
    const room = new URL(req.url).pathname;
    if (server.upgrade(req, { data: { room } })) return undefined;
    return new Response("WebSocket upgrade required\n", { status: 426 });
  },
  websocket: {
    perMessageDeflate: false,
    idleTimeout: 960, // the largest Bun allows: idle receivers must not be dropped mid-run
    maxPayloadLength: 1 << 20,
    open(ws) {
      ws.subscribe(ws.data.room);
    },
    message(ws, message) {
      ws.publish(ws.data.room, message);
    },
  },
});
console.log(`listening on ws://127.0.0.1:${server.port}`);
