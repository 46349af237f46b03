// Two tabs of one app (two pages of one Chromium profile: one OPFS, one origin) load the same
// model at the same moment from an empty cache: the entry's Web Lock lets one download while the
// other waits and then finds the entry complete (each file fetched once), both hold it open at
// once through read-only access handles, and both answer with the same ids.
import { test } from "node:test";
import assert from "node:assert/strict";
import { assertNoErrors, openPage, serverAndBrowser } from "./harness.mjs";
import { imageFile, packageEntry, tinyModel } from "./pieces.mjs";

const env = serverAndBrowser();

test("two tabs load the same cached model at once and both answer", { timeout: 600_000 }, async () => {
  const entry = packageEntry();
  const tiny = tinyModel();
  const open = async () => {
    const page = await openPage(env.browser.context, env.server.url + "tests/browser/blank.html");
    await page.evaluate(async (entry) => {
      const { Qwen3VL } = await import(entry);
      window.Qwen3VL = Qwen3VL;
      window.phases = [];
      window.load = async (model) => {
        window.model = await Qwen3VL.load(model, { warmUp: false, onProgress: (p) => window.phases.push(p.phase) });
      };
      window.ask = async (image) => {
        const chat = window.model.chat([{ role: "user", content: [{ type: "image", image }, { type: "text", text: "Describe this picture." }] }], { greedy: true, maxNewTokens: 6 });
        for await (const _ of chat);
        return (await chat.result).ids;
      };
    }, env.server.url + entry);
    return page;
  };
  const [a, b] = [await open(), await open()];
  await a.evaluate(() => window.Qwen3VL.clearCache());
  env.server.resetLog();
  const model = env.server.url + tiny.q4;
  await Promise.all([a.evaluate((m) => window.load(m), model), b.evaluate((m) => window.load(m), model)]);
  const gets = env.server.requests(tiny.q4).filter((r) => r.method === "GET" && !r.path.endsWith("/manifest.json"));
  const entries = [...tiny.manifest.files, ...tiny.manifest.shards];
  assert.equal(gets.length, entries.length, `each file is fetched once for both tabs: ${gets.map((r) => r.path).join(", ")}`);
  const phases = [await a.evaluate(() => window.phases), await b.evaluate(() => window.phases)];
  assert.ok(phases.some((p) => p.includes("download")) && phases.some((p) => p.includes("verify") && !p.includes("download")),
    `one tab downloads, the other verifies what it finds: ${JSON.stringify(phases.map((p) => [...new Set(p)]))}`);

  // The second tab opened the entry while the first held it open; both answer at once.
  const image = env.server.url + imageFile;
  const [idsA, idsB] = await Promise.all([a.evaluate((i) => window.ask(i), image), b.evaluate((i) => window.ask(i), image)]);
  assert.ok(idsA.length > 0);
  assert.deepEqual(idsB, idsA, "the two tabs answer differently");
  for (const p of [a, b]) {
    await p.evaluate(() => window.model.unload());
    assertNoErrors(p);
  }
});
