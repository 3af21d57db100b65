// A recording echo server on npm's `ws` for the transparency tests (tests/support/wsservers.py).
// Usage: NODE_PATH=node_modules node tests/support/ws_recording_server.js PORT
//
// WebSocket at /TAG[?close=CODE&reason=TEXT][&ping=TEXT] (permessage-deflate accepted when
// offered): every message is echoed with its type. `close` makes the server send a Close
// right after the handshake; `ping` makes it send a Ping, and answer the Pong with a text
// message "pong:PAYLOAD".
// GET /events/TAG answers, once connection TAG is closed, with JSON {events, raw}: what the
// server saw (messages, pings, pongs, errors, the close) and the bytes it received after
// the request head (base64).
'use strict';
const crypto = require('crypto');
const http = require('http');
const { WebSocketServer } = require('ws');

const port = Number(process.argv[2]);
const records = new Map();

function record(tag) {
  let r = records.get(tag);
  if (r === undefined) {
    r = { events: [], raw: [], closed: false, waiters: [] };
    records.set(tag, r);
  }
  return r;
}

function digest(data) {
  return crypto.createHash('sha256').update(data).digest('hex').slice(0, 16);
}

const server = http.createServer((req, res) => {
  const m = /^\/events\/([^/?]+)$/.exec(req.url);
  if (m === null) {
    res.writeHead(404, { 'Content-Length': 0 });
    res.end();
    return;
  }
  const r = record(m[1]);
  const answer = () => {
    const body = JSON.stringify({
      events: r.events,
      raw: Buffer.concat(r.raw).toString('base64'),
    });
    res.writeHead(200, {
      'Content-Type': 'application/json',
      'Content-Length': Buffer.byteLength(body),
    });
    res.end(body);
  };
  if (r.closed) answer();
  else r.waiters.push(answer);
});

const wss = new WebSocketServer({ noServer: true, perMessageDeflate: true });

server.on('upgrade', (req, socket, head) => {
  const url = new URL(req.url, 'http://localhost');
  const tag = url.pathname.slice(1);
  const query = url.searchParams;
  wss.handleUpgrade(req, socket, head, (ws) => {
    const r = record(tag);
    // First in line: ws unmasks payloads in place. ws unshifts `head` onto the socket,
    // so this listener sees those bytes too.
    socket.prependListener('data', (data) => r.raw.push(Buffer.from(data)));
    ws.on('message', (data, isBinary) => {
      r.events.push([isBinary ? 'binary' : 'text', data.length, digest(data)]);
      ws.send(data, { binary: isBinary });
    });
    ws.on('ping', (data) => r.events.push(['ping', data.toString('hex')]));
    ws.on('pong', (data) => {
      r.events.push(['pong', data.toString('hex')]);
      if (query.has('ping')) ws.send('pong:' + data.toString());
    });
    ws.on('error', (err) => r.events.push(['error', err.code || err.message]));
    ws.on('close', (code, reason) => {
      r.events.push(['close', code, reason.toString('hex')]);
      r.closed = true;
      for (const answer of r.waiters.splice(0)) answer();
    });
    if (query.has('ping')) ws.ping(Buffer.from(query.get('ping')));
    if (query.has('close')) ws.close(Number(query.get('close')), query.get('reason') || '');
  });
});

server.listen(port, '127.0.0.1', () => console.log(`listening on ${port}`));
