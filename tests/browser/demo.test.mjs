// The demo (www/) as a person meets it, in one Chromium profile: `?model=` the tiny checkpoint
// served from 127.0.0.1, a frame of Chromium's fake camera → an answer, a screenshot through
// getDisplayMedia → an answer, a grounding box drawn over the picture (screenshot written to
// target/browser/demo.png), then with the server stopped a reload opens the page from the
// service worker and answers from the weights cached in OPFS. Hooks: the top of www/app.js.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { assertNoErrors, openPage, repoRoot, serverAndBrowser } from "./harness.mjs";
import { demoPage, packageEntry, tinyModel } from "./pieces.mjs";

const env = serverAndBrowser();
let page, url;

/** Waits until the demo's test hook says the model is loaded and idle (fails at once on "error"). */
async function ready(page) {
  await page.waitForFunction(() => ["ready", "error", "no-webgpu"].includes(window.qwenDemo?.state), null, { timeout: 300_000 });
  const { state, error } = await page.evaluate(() => ({ state: window.qwenDemo.state, error: window.qwenDemo.error }));
  assert.equal(state, "ready", `the demo is "${state}": ${error}`);
}

/** Sends `prompt` through the chat box with the pending picture; resolves to the demo's ChatResult. */
async function ask(page, prompt, what) {
  await page.waitForSelector("#attachments figure canvas");
  await page.evaluate(() => { window.qwenDemo.lastResult = null; });
  // A short answer: the tiny random model would otherwise run to the page's 512 tokens.
  await page.fill("#max-tokens", "24");
  await page.fill("#prompt", prompt);
  await page.click("#send");
  // send() moves the state to "generating" synchronously within the click.
  await page.waitForFunction(() => window.qwenDemo.state !== "generating", null, { timeout: 300_000 });
  const r = await page.evaluate(() => ({
    error: window.qwenDemo.error,
    result: window.qwenDemo.lastResult,
    answer: window.qwenDemo.lastAnswer,
    picture: !!document.querySelector("#log .turn.user:last-of-type canvas"),
  }));
  assert.ok(r.result, `${what}: no answer (${r.error})`);
  console.log(`${what}: ${JSON.stringify(r.result.ids)} ${JSON.stringify(r.answer)}`);
  assert.ok(r.picture, `${what}: the question's turn shows no picture`);
  assert.ok(r.result.ids.length > 0, `${what}: the answer holds no generated token`);
  assert.equal(r.answer, r.result.text, `${what}: the page shows other text than the result's`);
  return r.result;
}

/** Starts the fake camera and puts one frame into the pending attachments. */
async function captureCamera(page) {
  await page.click("#camera-toggle");
  await page.waitForFunction(() => !document.querySelector("#capture").disabled);
  await page.click("#capture");
}

test("the demo loads the tiny model from ?model=", { timeout: 600_000 }, async () => {
  packageEntry();
  const tiny = tinyModel();
  url = `${env.server.url}${demoPage()}?model=${encodeURIComponent(env.server.url + tiny.q4)}`;
  page = await openPage(env.browser.context, url);
  await ready(page);
  assertNoErrors(page);
});

test("camera: a frame of the fake camera is captured and answered", { timeout: 600_000 }, async () => {
  assert.ok(page, "the demo did not load");
  await captureCamera(page);
  await ask(page, "What do you see?", "camera");
  await page.click("#camera-toggle");
  assertNoErrors(page);
});

/** The tiny model's prompt ids as text (its byte-level BPE vocabulary plus added tokens). */
function decode(ids) {
  const tok = JSON.parse(readFileSync(join(repoRoot, tinyModel().dir, "tokenizer.json"), "utf8"));
  const byId = new Map([...Object.entries(tok.model.vocab).map(([t, i]) => [i, t]), ...tok.added_tokens.map((a) => [a.id, a.content])]);
  return ids.map((i) => byId.get(i) ?? `[${i}]`).join("").replaceAll("Ġ", " ").replaceAll("Ċ", "\n");
}

test("clip: the camera's last seconds go to the model as one video part and are answered", { timeout: 600_000 }, async () => {
  assert.ok(page, "the demo did not load");
  await page.click("#reset");
  await page.selectOption("#camera-mode", "clip");
  await page.fill("#clip-seconds", "2");
  await page.fill("#clip-fps", "2");
  await page.click("#camera-toggle");
  await page.waitForFunction(() => window.qwenDemo.clipFrames() >= 4, null, { timeout: 120_000 });
  await page.click("#capture");
  const result = await ask(page, "What just happened?", "clip");
  const config = JSON.parse(readFileSync(join(repoRoot, tinyModel().dir, "config.json"), "utf8"));
  const count = (id) => result.promptIds.filter((x) => x === id).length;
  assert.ok(count(config.video_token_id) > 0, "the prompt holds no video pads");
  assert.equal(count(config.image_token_id), 0, "the clip went as images, not as a video");
  const text = decode(result.promptIds);
  const stamps = [...text.matchAll(/<(\d+\.\d) seconds><\|vision_start\|>(?:<\|video_pad\|>)+<\|vision_end\|>/g)].map((m) => Number(m[1]));
  console.log(`clip prompt: ${stamps.length} frame pairs at ${JSON.stringify(stamps)} s`);
  assert.equal(stamps.length, 2, `4 frames are 2 frame pairs, each with its time: ${text}`);
  assert.ok(stamps[0] < stamps[1] && stamps[1] <= 2, `the times rise within the 2 s clip: ${stamps}`);
  await page.click("#camera-toggle");
  await page.selectOption("#camera-mode", "frame");
  assertNoErrors(page);
});

test("screenshot: getDisplayMedia's frame is answered", { timeout: 600_000 }, async () => {
  assert.ok(page, "the demo did not load");
  await page.click("#reset");
  await page.click("#screenshot");
  await ask(page, "What is on the screen?", "screenshot");
  assertNoErrors(page);
});

test("a grounding box in an answer is drawn over the picture; target/browser/demo.png", { timeout: 600_000 }, async () => {
  assert.ok(page, "the demo did not load");
  // A random tiny model emits no grounding output, so a canned answer text goes through the
  // demo's test hook drawGrounding, the same drawing a streamed answer gets.
  const canned = 'The cat: ```json\n[{"bbox_2d": [120, 200, 640, 880], "label": "cat"}]\n```';
  const grounding = await page.evaluate((text) => window.qwenDemo.drawGrounding(text), canned);
  assert.deepEqual(grounding.map((g) => [g.type, g.box]), [["box", [120, 200, 640, 880]]]);
  // The first box colour (#ff3b30) must be on the answer's canvas, along the box's edges.
  const boxPixels = await page.evaluate(() => {
    const c = document.querySelector("#log .turn.assistant:last-of-type canvas.grounding");
    if (!c) return -1;
    const px = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
    let n = 0;
    for (let i = 0; i < px.length; i += 4) {
      if (Math.abs(px[i] - 0xff) < 16 && Math.abs(px[i + 1] - 0x3b) < 16 && Math.abs(px[i + 2] - 0x30) < 16) n++;
    }
    return n;
  });
  assert.ok(boxPixels > 100, `no box drawn on the answer's canvas.grounding (${boxPixels} pixels of its colour)`);
  const out = join(repoRoot, "target/browser");
  mkdirSync(out, { recursive: true });
  await page.screenshot({ path: join(out, "demo.png"), fullPage: true });
  console.log(`wrote ${join(out, "demo.png")}`);
  assertNoErrors(page);
});

test("offline: with the server stopped, a reload opens the demo and answers from OPFS", { timeout: 600_000 }, async () => {
  assert.ok(page, "the demo did not load");
  assert.equal(await page.evaluate(() => window.qwenDemo.offlineReady), true, "the service worker did not cache the app shell");
  await page.close();
  await env.server.offline();
  try {
    // Requests that reach for the network (the service worker's network-first tries) now fail.
    const offline = await openPage(env.browser.context, null, { ignore: [/ERR_CONNECTION_REFUSED|Failed to fetch/] });
    const started = Date.now();
    await offline.goto(url);
    await ready(offline);
    console.log(`offline: page open → ready in ${Date.now() - started} ms (weights from OPFS)`);
    await captureCamera(offline);
    await ask(offline, "What do you see?", "offline");
    assertNoErrors(offline);
  } finally {
    await env.server.online();
  }
});
