// The package in a Vite 8 production build under a controlling service worker (issue 10: the
// blob-URL worker shim broke exactly there). The app in tests/browser/vite-app/ is copied to
// target/browser/vite-app/, the `npm pack` tarball installed into its node_modules, built with
// `vite build` (tests/browser's pinned vite), served from dist/, and must answer with the CLI's ids.
import { test } from "node:test";
import assert from "node:assert/strict";
import { cpSync, rmSync } from "node:fs";
import { join } from "node:path";
import { assertNoErrors, openPage, repoRoot, serverAndBrowser } from "./harness.mjs";
import { imageFile, nativeGreedy, packedPackage, testTool, tinyModel } from "./pieces.mjs";

const prompt = "Describe this picture.";
const maxNewTokens = 8;
const env = serverAndBrowser();

test("a Vite production build under a service worker loads the model and answers with the CLI's ids", { timeout: 600_000 }, async () => {
  testTool("vite");
  const tiny = tinyModel();
  const app = join(repoRoot, "target/browser/vite-app");
  rmSync(app, { recursive: true, force: true });
  cpSync(join(repoRoot, "tests/browser/vite-app"), app, { recursive: true });
  packedPackage().install(app);
  const { build } = await import("vite");
  const started = Date.now();
  await build({ root: app, base: "./", configFile: false, logLevel: "warn", build: { outDir: "dist", emptyOutDir: true } });
  console.log(`vite build: ${Date.now() - started} ms`);

  const native = nativeGreedy(tiny.q4, prompt, maxNewTokens);
  const page = await openPage(env.browser.context, `${env.server.url}target/browser/vite-app/dist/index.html`);
  assert.equal(await page.evaluate(() => window.controlled), true);
  assert.ok(await page.evaluate(() => !!navigator.serviceWorker.controller), "the service worker controls the page");
  const got = await page.evaluate(([m, i, p, n]) => window.ask(m, i, p, n), [env.server.url + tiny.q4, env.server.url + imageFile, prompt, maxNewTokens]);
  console.log(`vite app: ${JSON.stringify(got.ids)} ${JSON.stringify(got.text)}`);
  assert.deepEqual(got.ids, native.ids, "the built app's ids differ from the CLI's");
  assertNoErrors(page);
  await page.close();
});
