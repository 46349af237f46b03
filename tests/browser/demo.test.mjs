// The demo (www/) as a person meets it, in one Chromium profile: `?model=` the tiny checkpoint
// served from 127.0.0.1, a frame of Chromium's fake camera → an answer, a screenshot through
// getDisplayMedia → an answer, a grounding box drawn over the picture (screenshot written to
// target/browser/demo.png), then with the server stopped a reload opens the page from the
// service worker and answers from the weights cached in OPFS.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { assertNoErrors, launch, openPage, repoRoot } from "./harness.mjs";
import { demoPage, packageEntry, tinyModel } from "./pieces.mjs";
import { startServer } from "./server.mjs";

let server, browser, page, url;
before(async () => {
  server = await startServer();
  browser = await launch();
});
after(async () => {
  await browser?.close();
  await server?.close();
});

/** Waits until the demo's test hook says the model is loaded and idle. */
async function ready(page) {
  await page.waitForFunction(() => window.qwenDemo?.state === "ready" && window.qwenDemo.model, null, { timeout: 300_000 });
}

/** Sends `prompt` about the attached picture; resolves to the answer the demo recorded. */
async function ask(page, prompt) {
  const before = await page.evaluate(() => window.qwenDemo.lastAnswer);
  await page.fill("#prompt", prompt);
  await page.click("#send");
  await page.waitForFunction((b) => window.qwenDemo.lastAnswer !== b && window.qwenDemo.state === "ready", before, { timeout: 300_000 });
  return page.evaluate(() => window.qwenDemo.lastAnswer);
}

function assertAnswer(answer, what) {
  assert.ok(answer && typeof answer.text === "string", `${what}: no answer recorded (${JSON.stringify(answer)})`);
  assert.ok(answer.ids.length > 0, `${what}: the answer holds no generated token`);
}

test("the demo loads the tiny model from ?model=", { timeout: 600_000 }, async () => {
  packageEntry();
  const tiny = tinyModel();
  url = `${server.url}${demoPage()}?model=${encodeURIComponent(server.url + tiny.q4)}`;
  page = await openPage(browser.context, url);
  await ready(page);
  assertNoErrors(page);
});

test("camera: a frame of the fake camera is captured and answered", { timeout: 600_000 }, async () => {
  assert.ok(page, "the demo did not load");
  await page.click("#camera-toggle");
  await page.waitForFunction(() => !document.querySelector("#capture").disabled);
  await page.click("#capture");
  assertAnswer(await ask(page, "What do you see?"), "camera");
  await page.click("#camera-toggle");
  assertNoErrors(page);
});

test("screenshot: getDisplayMedia's frame is answered", { timeout: 600_000 }, async () => {
  assert.ok(page, "the demo did not load");
  await page.click("#reset");
  await page.click("#screenshot");
  await page.waitForSelector("#attachments :is(img, canvas)");
  assertAnswer(await ask(page, "What is on the screen?"), "screenshot");
  assertNoErrors(page);
});

test("a grounding box in an answer is drawn over the picture; target/browser/demo.png", { timeout: 600_000 }, async () => {
  assert.ok(page, "the demo did not load");
  // A random tiny model does not emit grounding output, so the answer text is injected through
  // the demo's test hook, which renders it exactly as a streamed answer.
  const canned = 'The cat: ```json\n[{"bbox_2d": [120, 200, 640, 880], "label": "cat"}]\n```';
  const drawn = await page.evaluate((text) => window.qwenDemo.showAnswer(text), canned);
  assert.equal(drawn.boxes, 1, `the demo drew ${JSON.stringify(drawn)} for one bbox_2d`);
  const out = join(repoRoot, "target/browser");
  mkdirSync(out, { recursive: true });
  await page.screenshot({ path: join(out, "demo.png"), fullPage: true });
  console.log(`wrote ${join(out, "demo.png")}`);
  assertNoErrors(page);
});

test("offline: with the server stopped, a reload opens the demo and answers from OPFS", { timeout: 600_000 }, async () => {
  assert.ok(page, "the demo did not load");
  await page.close();
  await server.offline();
  try {
    // Requests the service worker lets through to the network now fail: those are expected.
    const offline = await openPage(browser.context, null, { ignore: [/net::ERR_CONNECTION_REFUSED|Failed to fetch/] });
    const started = Date.now();
    await offline.goto(url);
    await ready(offline);
    console.log(`offline: page open → ready in ${Date.now() - started} ms (cached weights)`);
    await offline.click("#camera-toggle");
    await offline.waitForFunction(() => !document.querySelector("#capture").disabled);
    await offline.click("#capture");
    assertAnswer(await ask(offline, "What do you see?"), "offline");
    assertNoErrors(offline);
  } finally {
    await server.online();
  }
});
