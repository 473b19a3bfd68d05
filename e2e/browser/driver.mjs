// A small line-protocol driver of headless Chromium for the Rust end-to-end tests
// (e2e/src/browser.rs): one JSON command per line on stdin, one JSON answer per line on stdout.
// Commands: {"cmd":"open","url"}, {"cmd":"eval","js"} (an expression, awaited),
// {"cmd":"screenshot","path"}, {"cmd":"console"} (errors and failed requests so far), {"cmd":"close"}.
// Playwright-core drives the machine's Chromium (CHROMIUM, default /usr/bin/chromium); it never
// downloads a browser.
import { createInterface } from "node:readline";
import { chromium } from "playwright-core";

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  // No sandbox as root; no background traffic (the machine reaches only loopback).
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-default-apps", "--disable-extensions"],
});
const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
const problems = [];
page.on("console", (message) => {
  if (message.type() === "error" || message.type() === "warning") {
    problems.push(message.type() + ": " + message.text());
  }
});
page.on("pageerror", (error) => problems.push("page error: " + error.message));
page.on("requestfailed", (request) => {
  // A live stream cut by the next navigation is not a failure of the page.
  if (!request.url().endsWith("/events")) {
    problems.push("request failed: " + request.url() + " " + (request.failure()?.errorText ?? ""));
  }
});

const reply = (value) => process.stdout.write(JSON.stringify(value) + "\n");
const lines = createInterface({ input: process.stdin });
for await (const line of lines) {
  if (!line.trim()) continue;
  let command;
  try {
    command = JSON.parse(line);
    switch (command.cmd) {
      case "open": {
        const response = await page.goto(command.url, { waitUntil: "load", timeout: 30000 });
        reply({ ok: true, status: response ? response.status() : null });
        break;
      }
      case "eval":
        reply({ ok: true, value: (await page.evaluate(command.js)) ?? null });
        break;
      case "screenshot":
        await page.screenshot({ path: command.path, fullPage: true });
        reply({ ok: true });
        break;
      case "console":
        reply({ ok: true, value: problems.slice() });
        break;
      case "close":
        await browser.close();
        reply({ ok: true });
        process.exit(0);
        break;
      default:
        reply({ ok: false, error: "unknown command " + command.cmd });
    }
  } catch (error) {
    reply({ ok: false, error: String(error && error.stack || error) });
  }
}
await browser.close();
