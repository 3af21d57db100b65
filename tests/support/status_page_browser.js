// Drives Debian's chromium (never a downloaded browser) through playwright-core for
// tests/interop/test_status_page.py.
//
//   node status_page_browser.js URL PROFILE_DIR SCREENSHOT_PNG
//
// Protocol on stdin/stdout, one JSON object a line:
//   -> {"ready": {...numbers on the page...}}   once the page shows a live snapshot
//   <- "go <requests> <tunnels>"                after the test drove its traffic
//   -> {"final": {...}, "reloaded": false}      once the page shows at least those numbers
// Every wait polls the DOM against a deadline; any failure prints {"error": ...}, exits 1.
"use strict";

const { chromium } = require("playwright-core");
const readline = require("readline");

const [url, profile, screenshot] = process.argv.slice(2);
const DEADLINE_MS = 20000;

function numbers() {
  const n = (id) => {
    const v = Number(document.getElementById(id).textContent);
    return Number.isFinite(v) ? v : null;
  };
  return {
    live: document.getElementById("live").textContent,
    requests: n("requests"),
    tunnels: n("tunnels"),
    active: n("active"),
    peers: document.querySelectorAll("#upstreams tr").length - 1,
    peerTunnels: [...document.querySelectorAll("#upstreams td:nth-child(3)")].map((td) =>
      Number(td.textContent)
    ),
    marker: window.__statusTestMarker === 1,
  };
}

async function main() {
  const browser = await chromium.launchPersistentContext(profile, {
    executablePath: "/usr/bin/chromium",
    headless: true,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--no-first-run",
    ],
  });
  try {
    const page = browser.pages()[0] || (await browser.newPage());
    await page.setViewportSize({ width: 900, height: 760 });
    await page.goto(url, { waitUntil: "load", timeout: DEADLINE_MS });
    await page.evaluate(() => {
      window.__statusTestMarker = 1; // gone if the page reloads
    });
    await page.waitForFunction(
      () =>
        document.getElementById("live").textContent === "live" &&
        Number.isFinite(Number(document.getElementById("requests").textContent)),
      null,
      { timeout: DEADLINE_MS, polling: 100 }
    );
    console.log(JSON.stringify({ ready: await page.evaluate(numbers) }));
    const lines = readline.createInterface({ input: process.stdin });
    const command = await new Promise((resolve, reject) => {
      lines.once("line", resolve);
      lines.once("close", () => reject(new Error("stdin closed before go")));
    });
    const [, wantRequests, wantTunnels] = command.split(" ").map(Number);
    await page.waitForFunction(
      ([r, t]) =>
        Number(document.getElementById("requests").textContent) >= r &&
        Number(document.getElementById("tunnels").textContent) >= t,
      [wantRequests, wantTunnels],
      { timeout: DEADLINE_MS, polling: 100 }
    );
    // Four points of each line in the chart, so that the screenshot shows it.
    await page.waitForFunction(
      () => [...document.querySelectorAll("#chart path")].filter((p) => p.dataset.n >= 4)
        .length === 2,
      null,
      { timeout: DEADLINE_MS, polling: 100 }
    );
    const final = await page.evaluate(numbers);
    await page.screenshot({ path: screenshot, fullPage: true });
    console.log(JSON.stringify({ final, reloaded: !final.marker }));
    lines.close();
  } finally {
    await browser.close();
  }
}

main().catch((err) => {
  console.log(JSON.stringify({ error: String((err && err.stack) || err) }));
  process.exit(1);
});
