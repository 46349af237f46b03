// Inputs a user brings (issue 8), through the npm package in Chromium on SwiftShader with the
// tiny checkpoint: a new conversation about another camera frame of the same size, without
// reset, answers about that frame (the prefix cache is keyed by content) while a follow-up
// question reuses the frame; a 4000×3000 photo at the default pixel budget answers as the
// native CLI does; and after the GPU device is lost, an Error, then a new load in the same
// worker answers again.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { assertNoErrors, openPage, repoRoot, serverAndBrowser } from "./harness.mjs";
import { imageFile, nativeGreedy, packageEntry, tinyModel } from "./pieces.mjs";

const prompt = "Describe this picture.";
const maxNewTokens = 8;
const env = serverAndBrowser();

test("two same-size frames without reset give each frame's ids; a 4000×3000 photo answers as the CLI does", { timeout: 600_000 }, async () => {
  const page = await openPage(env.browser.context, env.server.url + "tests/browser/blank.html");
  const got = await page.evaluate(async ({ entry, model, prompt, maxNewTokens }) => {
    const { Qwen3VL } = await import(entry);
    // Two 64×48 frames: a horizontal ramp and a vertical one.
    const frame = (f) => {
      const data = new Uint8ClampedArray(64 * 48 * 4);
      for (let y = 0; y < 48; y++) for (let x = 0; x < 64; x++) data.set([...f(x, y), 255], (y * 64 + x) * 4);
      return { width: 64, height: 48, data };
    };
    const a = frame((x) => [x * 4, 255 - x * 4, 0]);
    const b = frame((x, y) => [0, y * 5, 255 - y * 5]);
    // A 12 MP photo as a PNG Blob (the CLI reads the same file).
    const canvas = new OffscreenCanvas(4000, 3000);
    const ctx = canvas.getContext("2d");
    const g = ctx.createLinearGradient(0, 0, 4000, 3000);
    g.addColorStop(0, "#d02020");
    g.addColorStop(1, "#2040e0");
    ctx.fillStyle = g;
    ctx.fillRect(0, 0, 4000, 3000);
    ctx.fillStyle = "#f0f0f0";
    ctx.fillRect(1200, 900, 1600, 1200);
    const png = await canvas.convertToBlob({ type: "image/png" });

    const m = await Qwen3VL.load(model);
    const about = (image) => [{ role: "user", content: [{ type: "image", image }, { type: "text", text: prompt }] }];
    const ask = async (messages, options = {}) => {
      const chat = m.chat(messages, { greedy: true, maxNewTokens, ...options });
      for await (const _ of chat);
      const { ids, text, promptTokens, timings } = await chat.result;
      return { ids, text, promptTokens, timings };
    };
    const first = await ask(about(a));
    const second = await ask(about(b)); // a new conversation, no reset
    const followUp = await ask([...about(b), { role: "assistant", content: second.text }, { role: "user", content: "And the colours?" }]);
    await m.reset();
    const alone = await ask(about(b));
    await m.reset();
    const photo = await ask(about(png));
    // Smaller budgets (the tiny processor allows 1024 to 16384 pixels): the chat's, an image
    // part's own over the chat's, and one under the minimum.
    const budgets = {
      chat: (await ask(about(png), { maxPixels: 4096 })).promptTokens,
      part: (await ask([{ role: "user", content: [{ type: "image", image: png, maxPixels: 4096 }, { type: "text", text: prompt }] }], { maxPixels: 16384 })).promptTokens,
      under: await ask(about(png), { maxPixels: 100 }).then(() => "answered", (e) => e.message),
    };
    await m.unload();
    const bytes = new Uint8Array(await png.arrayBuffer());
    let binary = "";
    for (let i = 0; i < bytes.length; i += 0x8000) binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
    return { frames: { first, second, followUp, alone }, photo, budgets, png: btoa(binary) };
  }, { entry: env.server.url + packageEntry(), model: env.server.url + tinyModel().q4, prompt, maxNewTokens });
  for (const [k, r] of Object.entries(got.frames)) console.log(`${k}: ${JSON.stringify(r.ids)} ${JSON.stringify(r.timings)}`);
  const { first, second, followUp, alone } = got.frames;
  assert.notDeepEqual(first.ids, alone.ids, "the two frames give the same answer: the test cannot tell them apart");
  assert.deepEqual(second.ids, alone.ids, "frame B after frame A without reset differs from frame B alone");
  // The template's head before the image came from the cache, B's 4 image tokens and what
  // follows were computed again; the follow-up reused all of them.
  assert.equal(second.timings.cachedTokens + second.timings.computedTokens, second.promptTokens);
  assert.ok(second.timings.cachedTokens > 0 && second.timings.computedTokens > 4, JSON.stringify(second.timings));
  assert.equal(first.timings.cachedTokens, 0);
  assert.ok(followUp.timings.cachedTokens >= second.promptTokens, `follow-up: ${JSON.stringify(followUp.timings)}`);

  const file = "target/browser/photo_4000x3000.png";
  mkdirSync(join(repoRoot, "target/browser"), { recursive: true });
  writeFileSync(join(repoRoot, file), Buffer.from(got.png, "base64"));
  const native = nativeGreedy(tinyModel().q4, prompt, maxNewTokens, file);
  console.log(`photo: browser ${JSON.stringify(got.photo.ids)}, native ${JSON.stringify(native.ids)}`);
  assert.ok(got.photo.ids.length > 0);
  assert.deepEqual(got.photo.ids, native.ids, "the 4000×3000 photo: browser ids differ from the CLI's");
  // smart_resize of 4000×3000: 96×128 (12 tokens) at the tiny processor's own 16384 pixels,
  // 32×64 (2 tokens) at 4096.
  const under = "a budget of 100 pixels is below the processor's minimum of 1024";
  assert.deepEqual(got.budgets, { chat: got.photo.promptTokens - 10, part: got.photo.promptTokens - 10, under });
  assertNoErrors(page);
  await page.close();
});

test("after the GPU device is lost the engine fails with an Error, and loads again in the same worker", { timeout: 600_000 }, async () => {
  const page = await openPage(env.browser.context, env.server.url + "tests/browser/blank.html");
  const got = await page.evaluate(async (args) => {
    const worker = new Worker("/tests/browser/device-loss.worker.mjs", { type: "module" });
    const reply = new Promise((resolve, reject) => {
      worker.onmessage = (e) => resolve(e.data);
      worker.onerror = (e) => reject(new Error(e.message));
    });
    worker.postMessage(args);
    try {
      return await reply;
    } finally {
      worker.terminate();
    }
  }, { entry: env.server.url + "pkg/src/engine.js", model: env.server.url + tinyModel().q4, image: env.server.url + imageFile, prompt });
  console.log(JSON.stringify(got));
  assert.equal(got.error, undefined, got.error);
  assert.ok(got.before.length > 0);
  assert.match(got.lostError, /lost/, "the chat after the loss");
  assert.match(got.again, /load the model again/, "a chat on the lost engine");
  assert.equal(got.devices, 2, "the second load made a new device");
  assert.deepEqual(got.after, got.before, "the reloaded engine answers as before the loss");
  await page.close();
});
