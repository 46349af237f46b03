// Shared pieces of the browser tests: Chromium launched exactly as shared/reference/platform.md
// says (headless=new, unsafe WebGPU → SwiftShader, fake camera and screen capture, a fresh profile),
// pages whose console errors and uncaught exceptions fail the test, and `need` for the pieces
// (wasm build, package, demo, fixtures) a test cannot run without.
import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { after, before } from "node:test";
import { startServer } from "./server.mjs";

export const repoRoot = resolve(fileURLToPath(new URL("../..", import.meta.url)));
export const chromiumPath = process.env.CHROMIUM ?? "/usr/bin/chromium";

export const chromiumArgs = [
  "--headless=new", "--no-sandbox", "--enable-unsafe-webgpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync",
  // Chromium's synthetic camera (640×480 moving pattern) and an auto-accepted whole-screen share.
  "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
  "--auto-select-desktop-capture-source=Entire", "--enable-usermedia-screen-capturing",
];

/** Throws (never skips) when a piece a test needs is absent: `what` says which and who makes it. */
export function need(relPath, what) {
  if (!existsSync(join(repoRoot, relPath))) {
    throw new Error(`missing ${relPath}: ${what}`);
  }
  return join(repoRoot, relPath);
}

async function playwright() {
  need("tests/browser/node_modules/playwright-core", "run `bash tests/setup.sh` (npm ci in tests/browser)");
  if (!existsSync(chromiumPath)) throw new Error(`missing ${chromiumPath}: run \`bash tests/setup.sh\` (apt chromium)`);
  return (await import("playwright-core")).chromium;
}

/**
 * A persistent Chromium context on a fresh profile directory (Playwright refuses --user-data-dir in
 * args). The profile holds OPFS and the service worker, so one context = one "returning visitor".
 */
export async function launch() {
  const chromium = await playwright();
  const userDataDir = await mkdtemp(join(tmpdir(), "qwen3vl-chromium-"));
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: chromiumPath,
    headless: false,
    ignoreDefaultArgs: ["--headless"],
    args: chromiumArgs,
    viewport: { width: 1280, height: 800 },
  });
  return {
    context,
    userDataDir,
    close: async () => {
      await context.close();
      await rm(userDataDir, { recursive: true, force: true });
    },
  };
}

/**
 * Opens `url` in a new page of `context` and records every console error, uncaught exception
 * (page or dedicated worker) and renderer crash in `page.errors`. Messages matching one of
 * `ignore` (RegExps) are expected by the caller and not recorded.
 */
export async function openPage(context, url, { ignore = [], log = !!process.env.BROWSER_LOG } = {}) {
  const page = await context.newPage();
  const errors = [];
  const record = (where, text) => {
    if (!ignore.some((re) => re.test(text))) errors.push(`${where}: ${text}`);
  };
  const onConsole = (where) => (msg) => {
    if (log) console.log(`[${where} ${msg.type()}] ${msg.text()}`);
    if (msg.type() === "error") record(where, msg.text());
  };
  page.on("console", onConsole("page"));
  page.on("pageerror", (e) => record("page exception", e.stack ?? e.message));
  page.on("crash", () => record("page", "renderer crashed"));
  page.on("worker", (w) => {
    // Worker console messages also reach the page's listener in current Playwright; only the
    // optional log needs the worker's own stream.
    if (log) w.on("console", (msg) => console.log(`[worker ${msg.type()}] ${msg.text()}`));
  });
  page.errors = errors;
  page.setDefaultTimeout(60_000);
  if (url) await page.goto(url);
  return page;
}

/** Fails with every recorded console error / exception of `page`. */
export function assertNoErrors(page) {
  if (page.errors.length) throw new Error(`browser errors:\n  ${page.errors.join("\n  ")}`);
}

/**
 * The test file's server and Chromium, started before its first test (then `setup(env)`, the
 * file's own preparation, in the same hook) and closed after its last; tests read `env.server`
 * and `env.browser`.
 */
export function serverAndBrowser(setup) {
  const env = {};
  before(async () => {
    env.server = await startServer();
    env.browser = await launch();
    await setup?.(env);
  });
  after(async () => {
    await env.browser?.close();
    await env.server?.close();
  });
  return env;
}
