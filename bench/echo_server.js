// The benchmark's backend: node's `ws` echo (what the reference figures used),
// plus a fixed 200 answer for plain HTTP GETs on the same port.
// Usage: NODE_PATH=node_modules node bench/echo_server.js PORT
'use strict';
const http = require('http');
const { WebSocketServer } = require('ws');

const port = Number(process.argv[2]);
const body = Buffer.from('hello, world\n');
const server = http.createServer((req, res) => {
  res.writeHead(200, { 'Content-Type': 'text/plain', 'Content-Length': body.length });
  res.end(body);
});
// No permessage-deflate: every byte the client sends is echoed as it came.
const wss = new WebSocketServer({ server, perMessageDeflate: false, maxPayload: 16 << 20 });
wss.on('connection', (ws) => {
  ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
  ws.on('error', () => {});
});
server.listen(port, '127.0.0.1', 4096, () => console.log(`listening on ${port}`));
