// Drive the example page in headless Chromium (playwright-core, the system's
// Chromium) and print what the page shows as one JSON line on stdout.
//
//   E2E_URL=http://127.0.0.1:8000/?server=ws://127.0.0.1:8080&user=john-doe \
//   E2E_LOGINS='[{"user":"john-doe","password":"..."}]' node e2e.mjs
//
// Each login runs in a fresh browser context: fill the form, click Connect,
// wait until the page says it is done, read the three outputs.
// CHROMIUM (default /usr/bin/chromium) names the browser binary.

import { chromium } from "playwright-core";

const url = process.env.E2E_URL;
const logins = JSON.parse(process.env.E2E_LOGINS ?? "[]");
const timeout = Number(process.env.E2E_TIMEOUT_MS ?? 15000);
if (!url || logins.length === 0) {
  console.error("set E2E_URL and E2E_LOGINS");
  process.exit(2);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  headless: true,
  args: [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
  timeout,
});

const results = [];
try {
  for (const { user, password } of logins) {
    const context = await browser.newContext();
    const page = await context.newPage();
    const consoleLines = [];
    page.on("console", (m) => consoleLines.push(`${m.type()}: ${m.text()}`));
    page.on("pageerror", (e) => consoleLines.push(`pageerror: ${e.message}`));
    try {
      await page.goto(url, { timeout });
      await page.waitForSelector('body[data-phase="ready"]', { timeout });
      await page.fill("#user", user);
      await page.fill("#password", password);
      await page.click("#connect");
      await page.waitForSelector('body[data-phase="done"]', { timeout });
      const read = async (id) => ({
        text: await page.textContent(`#${id}`),
        state: await page.getAttribute(`#${id}`, "data-state"),
      });
      results.push({
        user,
        connection: await read("connection"),
        roundTrip: await read("round-trip"),
        violation: await read("violation"),
        console: consoleLines,
      });
    } catch (err) {
      results.push({ user, failure: String(err), console: consoleLines });
    } finally {
      await context.close();
    }
  }
} finally {
  await browser.close();
}
process.stdout.write(`${JSON.stringify(results)}\n`);
