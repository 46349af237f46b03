// End to end through the npm package: the tiny checkpoint's pre-quantized shards served from
// 127.0.0.1, loaded by `Qwen3VL.load(url)` in Chromium (WebGPU on SwiftShader), asked about an
// image given as a URL and as a Blob; the greedy ids must equal the native CLI's on the same folder.
import { test } from "node:test";
import assert from "node:assert/strict";
import { assertNoErrors, openPage, serverAndBrowser } from "./harness.mjs";
import { imageFile, nativeGreedy, packageEntry, tinyModel } from "./pieces.mjs";

const prompt = "Describe this picture.";
const maxNewTokens = 12;

const env = serverAndBrowser();

test("package chat ids equal `qwen3-vl run --greedy --json` on the tiny checkpoint", { timeout: 600_000 }, async () => {
  const entry = packageEntry();
  const tiny = tinyModel();
  const native = nativeGreedy(tiny.q4, prompt, maxNewTokens);
  console.log(`native: ${JSON.stringify(native.ids)} ${JSON.stringify(native.text)}`);
  assert.ok(native.ids.length > 0, "the CLI generated no token");

  const page = await openPage(env.browser.context, env.server.url + "tests/browser/blank.html");
  const got = await page.evaluate(async ({ entry, model, image, prompt, maxNewTokens }) => {
    const { Qwen3VL } = await import(entry);
    const ask = async (m, img) => {
      const chat = m.chat([{ role: "user", content: [{ type: "image", image: img }, { type: "text", text: prompt }] }],
        { greedy: true, maxNewTokens });
      let streamed = "";
      for await (const delta of chat) streamed += delta;
      const r = await chat.result;
      await m.reset();
      return { ids: r.ids, text: r.text, streamed, stop: r.stop, timings: r.timings };
    };
    const phases = [];
    const m = await Qwen3VL.load(model, { onProgress: (p) => phases.push(p.phase) });
    const byUrl = await ask(m, image);
    const byBlob = await ask(m, await (await fetch(image)).blob());
    await m.unload();
    // The warm-up (phase "compile") answers a question and forgets it: a cold engine agrees.
    const cold = await Qwen3VL.load(model, { warmUp: false });
    const coldEngine = await ask(cold, image);
    await cold.unload();
    return { byUrl, byBlob, coldEngine, compiled: phases.includes("compile") };
  }, { entry: env.server.url + entry, model: env.server.url + tiny.q4, image: env.server.url + imageFile, prompt, maxNewTokens });

  const { compiled, ...answers } = got;
  assert.ok(compiled, "the load reported no compile phase");
  for (const [how, r] of Object.entries(answers)) {
    console.log(`browser (${how}): ${JSON.stringify(r.ids)} ${JSON.stringify(r.text)} ${JSON.stringify(r.timings)}`);
    assert.deepEqual(r.ids, native.ids, `image ${how}: browser greedy ids differ from the CLI's`);
    assert.equal(r.text, native.text, `image ${how}: text differs from the CLI's`);
    assert.equal(r.streamed, r.text, `image ${how}: the streamed deltas do not add up to the final text`);
  }
  assertNoErrors(page);
  await page.close();
});

test("chat.completions.create (streaming and not) gives chat's ids; image_url takes data: and http URLs; unknown options are Errors naming them", { timeout: 600_000 }, async () => {
  const entry = packageEntry();
  const tiny = tinyModel();
  const page = await openPage(env.browser.context, env.server.url + "tests/browser/blank.html");
  const got = await page.evaluate(async ({ entry, model, image, prompt, maxNewTokens }) => {
    const { Qwen3VL } = await import(entry);
    const errorOf = async (f) => {
      try {
        await f();
        return null;
      } catch (e) {
        return { isError: e instanceof Error, message: e.message };
      }
    };
    const blob = await (await fetch(image)).blob();
    const dataUrl = await new Promise((ok) => {
      const r = new FileReader();
      r.onload = () => ok(r.result);
      r.readAsDataURL(blob);
    });
    const m = await Qwen3VL.load(model, { warmUp: false });
    const chat = m.chat([{ role: "user", content: [{ type: "image", image }, { type: "text", text: prompt }] }], { greedy: true, maxNewTokens });
    for await (const _ of chat);
    const reference = await chat.result;
    await m.reset();
    const body = (url) => ({
      model: "tiny", max_tokens: maxNewTokens, temperature: 0,
      messages: [{ role: "user", content: [{ type: "image_url", image_url: { url } }, { type: "text", text: prompt }] }],
    });
    const whole = await m.chat.completions.create(body(dataUrl));
    await m.reset();
    const chunks = [];
    for await (const c of await m.chat.completions.create({ ...body(image), stream: true, stream_options: { include_usage: true } })) chunks.push(c);
    await m.reset();
    const unknownChat = await errorOf(async () => {
      const c = m.chat([{ role: "user", content: "hi" }], { greedy: true, maxNewTokens: 4, maxTokens: 4 });
      for await (const _ of c);
      await c.result;
    });
    const unknownLoad = await errorOf(() => Qwen3VL.load(model, { warmup: false }));
    const unknownCreate = await errorOf(() => m.chat.completions.create({ ...body(image), max_token: 3 }));
    // Images cut in half (a broken download): browsers decode them silently, the package refuses.
    const askAbout = async (img) => {
      const c = m.chat([{ role: "user", content: [{ type: "image", image: img }, { type: "text", text: "?" }] }], { greedy: true, maxNewTokens: 1 });
      for await (const _ of c);
      await c.result;
      await m.reset();
    };
    const canvas = new OffscreenCanvas(64, 48);
    canvas.getContext("2d").fillRect(8, 8, 32, 16);
    const jpeg = await canvas.convertToBlob({ type: "image/jpeg" });
    const truncated = {
      png: await errorOf(() => askAbout(blob.slice(0, blob.size >> 1, "image/png"))),
      jpeg: await errorOf(() => askAbout(jpeg.slice(0, jpeg.size >> 1, "image/jpeg"))),
      wholeJpeg: await errorOf(() => askAbout(jpeg)),
    };
    await m.unload();
    return { reference, whole, chunks, unknownChat, unknownLoad, unknownCreate, truncated };
  }, { entry: env.server.url + entry, model: env.server.url + tiny.q4, image: env.server.url + imageFile, prompt, maxNewTokens });

  const { reference, whole, chunks } = got;
  assert.ok(reference.ids.length > 0);
  assert.equal(whole.object, "chat.completion");
  assert.deepEqual(whole.choices[0].token_ids, reference.ids, "non-streaming (data: URL) ids differ from chat's");
  assert.equal(whole.choices[0].message.content, reference.text);
  assert.equal(whole.choices[0].finish_reason, { stop: "stop", length: "length" }[reference.stop]);
  // After a reset nothing of the prompt is cached.
  const usage = { prompt_tokens: reference.promptTokens, completion_tokens: reference.ids.length, total_tokens: reference.promptTokens + reference.ids.length };
  assert.deepEqual(whole.usage, { ...usage, prompt_tokens_details: { cached_tokens: 0 } });
  assert.ok(chunks.every((c) => c.object === "chat.completion.chunk" && c.id === chunks[0].id));
  assert.equal(chunks[0].choices[0].delta.role, "assistant");
  const withChoice = chunks.filter((c) => c.choices.length);
  assert.deepEqual(withChoice.flatMap((c) => c.choices[0].token_ids), reference.ids, "streamed (http URL) ids differ from chat's");
  assert.equal(withChoice.map((c) => c.choices[0].delta.content ?? "").join(""), reference.text);
  assert.equal(withChoice.at(-1).choices[0].finish_reason, whole.choices[0].finish_reason);
  assert.deepEqual(chunks.at(-1).usage, whole.usage, "include_usage ends with a usage chunk");
  assert.equal(got.truncated.wholeJpeg, null, "a whole JPEG is accepted");
  for (const format of ["png", "jpeg"]) {
    const e = got.truncated[format];
    assert.ok(e?.isError && e.message.includes(`truncated ${format.toUpperCase()}`), `a ${format} cut in half: ${JSON.stringify(e)}`);
  }
  for (const [what, key] of [["unknownChat", "maxTokens"], ["unknownLoad", "warmup"], ["unknownCreate", "max_token"]]) {
    assert.ok(got[what]?.isError, `${what}: no Error`);
    assert.ok(got[what].message.includes(key), `${what}: the message does not name ${key}: ${got[what].message}`);
  }
  assertNoErrors(page);
  await page.close();
});
