"""The ``wsgate_status`` page: its HTML and the JSON snapshot it is fed with. No I/O.

A location with ``wsgate_status;`` answers a plain GET with :data:`PAGE` (one
self-contained HTML document: inline CSS and JavaScript, no external assets) and a
WebSocket upgrade with a stream of :func:`snapshot_json` texts, one a second (the I/O is
in ``proxy/status.py``). The page computes the rates and keeps the chart's history itself,
from the snapshots it receives since it was opened.

Where the numbers come from:

* ``connections``: the ``stub_status`` counters, summed over every worker (shared table,
  ``proxy/stats.py``);
* ``upstreams`` and ``tunnels``: the state of the one worker that serves the WebSocket
  (balancer state is per worker, as in nginx without ``zone``); ``pid`` says which.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence

from wsgate.balancer.state import PeerView

__all__ = ["PAGE", "snapshot_json"]


def _peer(p: PeerView, now: float) -> dict[str, object]:
    return {
        "name": p.name,
        "server": p.server,
        "backup": p.backup,
        "state": p.state.value,
        # seconds until a failed peer is tried again (the loop clock is not wall time)
        "retry_in": None if p.failed_until is None else max(p.failed_until - now, 0.0),
        "full": p.full,
        "conns": p.conns,
        "tunnels": p.tunnels,
        "fails": p.fails,
        "weight": p.weight,
        "effective_weight": p.effective_weight,
        "max_conns": p.max_conns,
    }


def snapshot_json(
    *,
    totals: Sequence[int],
    upstreams: Iterable[tuple[str, Sequence[PeerView]]],
    now: float,
    wall: float,
    pid: int,
    tunnels: int,
    tunnels_opened: int,
) -> str:
    """One snapshot as the page expects it; send it as one WebSocket text message.

    ``totals`` is :meth:`wsgate.proxy.stats.StatsTable.totals` (every worker summed);
    ``upstreams`` pairs each upstream name with ``balancer.state.snapshot(balancer, now)``
    taken at the loop time ``now``; ``wall`` is ``time.time()``; ``pid``, ``tunnels`` (open
    now) and ``tunnels_opened`` (since the worker started) describe the serving worker.
    """
    accepts, handled, requests, active, reading, writing = totals
    doc = {
        "time": wall,
        "pid": pid,
        "connections": {
            "accepts": accepts,
            "handled": handled,
            "requests": requests,
            "active": active,
            "reading": reading,
            "writing": writing,
            "waiting": max(active - reading - writing, 0),
        },
        "worker": {"tunnels": tunnels, "tunnels_opened": tunnels_opened},
        "upstreams": [
            {"name": name, "peers": [_peer(p, now) for p in peers]} for name, peers in upstreams
        ],
    }
    return json.dumps(doc, separators=(",", ":"))


PAGE = b"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>wsgate status</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222;background:#fafafa}
h1{font-size:1.4em;margin:0 0 .2em}
h2{font-size:1.1em;margin:1.2em 0 .4em}
.note{color:#666;font-size:.9em}
#conn{display:flex;flex-wrap:wrap;gap:.6em}
.box{background:#fff;border:1px solid #ddd;border-radius:6px;padding:.5em .8em;min-width:7em}
.box b{display:block;font-size:1.5em}
table{border-collapse:collapse;background:#fff;margin-bottom:.8em}
th,td{border:1px solid #ddd;padding:.25em .6em;text-align:right}
th:first-child,td:first-child{text-align:left}
.up{color:#18794e}.down{color:#888}.failed,.unhealthy{color:#c62828;font-weight:bold}
#live.on{color:#18794e}#live.off{color:#c62828}
svg{background:#fff;border:1px solid #ddd;border-radius:6px}
.legend span{margin-right:1.2em}
</style>
</head>
<body>
<h1>wsgate status <small id="live" class="off">connecting&hellip;</small></h1>
<p class="note">Connection counters are summed over all workers. Upstreams, peers and
tunnels are those of the one worker serving this page (pid <span id="pid">?</span>);
rates and the chart cover the time since this page was opened.</p>
<h2>Connections</h2>
<div id="conn">
<div class="box">active<b id="active">-</b></div>
<div class="box">reading<b id="reading">-</b></div>
<div class="box">writing<b id="writing">-</b></div>
<div class="box">waiting<b id="waiting">-</b></div>
<div class="box">accepts<b id="accepts">-</b></div>
<div class="box">handled<b id="handled">-</b></div>
<div class="box">requests<b id="requests">-</b></div>
<div class="box">requests/s<b id="req-rate">-</b></div>
<div class="box">open tunnels<b id="tunnels">-</b></div>
<div class="box">tunnels/s<b id="tun-rate">-</b></div>
</div>
<h2>Last minutes</h2>
<svg id="chart" width="640" height="160" viewBox="0 0 640 160" role="img"
 aria-label="requests per second and open tunnels"></svg>
<div class="legend note"><span style="color:#1f6feb">&#9632; requests/s</span>
<span style="color:#d97706">&#9632; open tunnels</span></div>
<h2>Upstreams</h2>
<div id="upstreams"><p class="note">waiting for the first snapshot&hellip;</p></div>
<script>
"use strict";
const HISTORY = 300;  // seconds kept for the chart
const hist = [];
let prev = null;
const $ = (id) => document.getElementById(id);
function esc(s) {
  return String(s).replace(/[&<>"]/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;",
    '"': "&quot;"}[c]));
}
function rate(now, before, key, sub) {
  if (!before) return null;
  const dt = now.time - before.time;
  if (dt <= 0) return null;
  return Math.max(now[sub][key] - before[sub][key], 0) / dt;
}
function line(points, span, max, color) {
  if (points.length < 2) return "";
  const w = 640, h = 140, step = w / (span - 1), x0 = w - step * (points.length - 1);
  const d = points.map((v, i) => (i ? "L" : "M") + (x0 + i * step).toFixed(1) + " " +
    (h + 5 - (v / max) * h).toFixed(1)).join(" ");
  return '<path data-n="' + points.length + '" d="' + d + '" fill="none" stroke="' +
    color + '" stroke-width="2"/>';
}
function chart() {
  // The x axis grows with the history until it holds HISTORY seconds, then scrolls.
  const reqs = hist.map((p) => p.req), tuns = hist.map((p) => p.tun);
  const span = Math.min(HISTORY, Math.max(10, hist.length));
  const max = Math.max(1, ...reqs, ...tuns);
  $("chart").innerHTML =
    '<text x="4" y="14" font-size="11" fill="#666">' + max.toFixed(max < 10 ? 1 : 0) +
    '</text><line x1="0" y1="145" x2="640" y2="145" stroke="#ccc"/>' +
    '<text x="4" y="158" font-size="11" fill="#666">last ' + span + " s</text>" +
    line(reqs, span, max, "#1f6feb") + line(tuns, span, max, "#d97706");
}
function upstreams(list) {
  if (!list.length) return '<p class="note">no upstream blocks</p>';
  return list.map((u) => {
    const rows = u.peers.map((p) => {
      let state = p.state;
      if (p.retry_in !== null) state += " (retry in " + Math.ceil(p.retry_in) + " s)";
      if (p.full) state += " full";
      return '<tr><td>' + esc(p.name) + (p.backup ? " (backup)" : "") +
        '</td><td class="' + p.state + '">' + esc(state) + "</td><td>" + p.tunnels +
        "</td><td>" + p.conns + (p.max_conns ? "/" + p.max_conns : "") + "</td><td>" +
        p.fails + "</td><td>" + p.effective_weight + "/" + p.weight + "</td></tr>";
    }).join("");
    return "<h3>" + esc(u.name) + "</h3><table><tr><th>peer</th><th>state</th>" +
      "<th>open tunnels</th><th>conns</th><th>failures</th><th>weight</th></tr>" +
      rows + "</table>";
  }).join("");
}
function show(s) {
  $("pid").textContent = s.pid;
  for (const k of Object.keys(s.connections)) {
    const el = $(k);
    if (el) el.textContent = s.connections[k];
  }
  $("tunnels").textContent = s.worker.tunnels;
  const rr = rate(s, prev, "requests", "connections");
  const tr = rate(s, prev, "tunnels_opened", "worker");
  $("req-rate").textContent = rr === null ? "-" : rr.toFixed(1);
  $("tun-rate").textContent = tr === null ? "-" : tr.toFixed(1);
  if (rr !== null) {
    hist.push({req: rr, tun: s.worker.tunnels});
    if (hist.length > HISTORY) hist.shift();
    chart();
  }
  $("upstreams").innerHTML = upstreams(s.upstreams);
  prev = s;
}
function connect() {
  const ws = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") +
    location.host + location.pathname + location.search);
  ws.onopen = () => { $("live").textContent = "live"; $("live").className = "on"; };
  ws.onmessage = (e) => show(JSON.parse(e.data));
  ws.onclose = () => {
    $("live").textContent = "disconnected, retrying";
    $("live").className = "off";
    setTimeout(connect, 2000);
  };
}
connect();
</script>
</body>
</html>
"""
"""The page a plain GET of a ``wsgate_status`` location gets (``text/html``)."""
