// A scripted client on npm's `ws` for the frame-aware tunnel tests
// (tests/interop/test_websocket_features_node.py).
// Usage: NODE_PATH=node_modules node tests/support/ws_client.js URL [--no-deflate] STEP...
//
// permessage-deflate is offered (ws's default) unless --no-deflate.
// Steps run in order: `send:TEXT`, `sendsize:N` (a text message of N "x"), `recv` (wait
// for the next message), `sleep:MS`, `close:CODE`, `end` (wait for the close). Every event
// is printed as one JSON line: open, message (length and text up to 64 characters), ping
// (hex payload), close (code, reason), error. The process exits after the close.
'use strict';
const WebSocket = require('ws');

const [url, ...args] = process.argv.slice(2);
const deflate = args[0] !== '--no-deflate';
const steps = deflate ? args : args.slice(1);
const ws = new WebSocket(url, { perMessageDeflate: deflate });
const inbox = [];
let waiter = null;
let closed = null;

function print(event) {
  process.stdout.write(JSON.stringify(event) + '\n');
}

function next() {
  return new Promise((resolve) => {
    if (inbox.length > 0) resolve(inbox.shift());
    else if (closed !== null) resolve(null);
    else waiter = resolve;
  });
}

ws.on('message', (data) => {
  const text = data.toString();
  print({ event: 'message', length: data.length, text: text.slice(0, 64) });
  if (waiter !== null) {
    const w = waiter;
    waiter = null;
    w(text);
  } else inbox.push(text);
});
ws.on('ping', (data) => print({ event: 'ping', data: data.toString('hex') }));
ws.on('error', (err) => print({ event: 'error', error: err.code || err.message }));
ws.on('close', (code, reason) => {
  closed = { code, reason: reason.toString() };
  print({ event: 'close', code, reason: reason.toString() });
  if (waiter !== null) waiter(null);
  process.exit(0);
});
ws.on('open', async () => {
  print({ event: 'open' });
  for (const step of steps) {
    const [verb, arg] = step.split(/:(.*)/s);
    if (verb === 'send') ws.send(arg);
    else if (verb === 'sendsize') ws.send('x'.repeat(Number(arg)));
    else if (verb === 'recv') await next();
    else if (verb === 'sleep') await new Promise((r) => setTimeout(r, Number(arg)));
    else if (verb === 'close') ws.close(Number(arg));
    else if (verb === 'end') await new Promise(() => {});
  }
});
setTimeout(() => {
  print({ event: 'timeout' });
  process.exit(1);
}, 20000);
