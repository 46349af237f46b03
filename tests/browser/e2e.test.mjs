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
;

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
