// The package's OPFS weights cache, driven through `Qwen3VL.load` in Chromium with the test
// server's request log as the witness: a second load fetches no weights; a download cut half-way
// resumes without re-fetching finished shards; a corrupted cached shard is re-fetched; a quota
// too small for the model fails with a QuotaExceededError naming the bytes needed and leaves no
// entry a later load would trust; quantizing the original safetensors in the browser stores the
// same shards as `qwen3-vl quantize` and answers with the same ids.
import { beforeEach, test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { assertNoErrors, openPage, repoRoot, serverAndBrowser } from "./harness.mjs";
import { imageFile, packageEntry, shardMiB, tinyModel } from "./pieces.mjs";

const prompt = "Describe this picture.";
const maxNewTokens = 8;
// Chromium logs every failed fetch (the cut response, the probe for a missing manifest.json).
const expectedErrors = [/Failed to load resource/, /ERR_/];

let page, tiny, entry;

const env = serverAndBrowser(async () => {
  entry = packageEntry();
  tiny = tinyModel();
  assert.ok(tiny.manifest.files.length + tiny.manifest.shards.length >= 3, "the tiny model needs several files to cut between");
  page = await openPage(env.browser.context, env.server.url + "tests/browser/blank.html", { ignore: expectedErrors });
  await page.evaluate(async (entry) => {
    const { Qwen3VL } = await import(entry);
    // Loads, optionally answers greedily about the test image, unloads; never throws (the test
    // wants the error's name and message as the main thread received them).
    // `abortAt`: abort the load once the quantization has read that fraction of its bytes.
    window.loadAndAsk = async (model, { ask = false, image, prompt, maxNewTokens, options = {}, abortAt } = {}) => {
      const phases = new Set();
      const controller = new AbortController();
      const onProgress = (p) => {
        phases.add(p.phase);
        if (abortAt != null && p.phase === "quantize" && p.loaded >= abortAt * p.total) controller.abort();
      };
      let m;
      try {
        m = await Qwen3VL.load(model, { ...options, onProgress, signal: controller.signal });
        let answer = null;
        if (ask) {
          const chat = m.chat([{ role: "user", content: [{ type: "image", image }, { type: "text", text: prompt }] }], { greedy: true, maxNewTokens });
          for await (const _ of chat);
          answer = await chat.result;
        }
        return { ok: true, phases: [...phases], answer };
      } catch (e) {
        return { ok: false, phases: [...phases], error: { isError: e instanceof Error, name: e.name, message: e.message } };
      } finally {
        await m?.unload();
      }
    };
    // Every file of the single cache entry, name → { size, sha256 } (read on the main thread).
    window.cacheListing = async () => {
      const root = await (await navigator.storage.getDirectory()).getDirectoryHandle("qwen3-vl-webgpu");
      const dirs = [];
      for await (const h of root.values()) if (h.kind === "directory") dirs.push(h);
      const out = {};
      for (const dir of dirs) {
        for await (const h of dir.values()) {
          const bytes = await (await h.getFile()).arrayBuffer();
          const hash = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
          out[`${dir.name}/${h.name}`] = { size: bytes.byteLength, sha256: Array.from(hash, (b) => b.toString(16).padStart(2, "0")).join("") };
        }
      }
      return out;
    };
    window.corrupt = async (name) => {
      const root = await (await navigator.storage.getDirectory()).getDirectoryHandle("qwen3-vl-webgpu");
      for await (const dir of root.values()) {
        const h = await dir.getFileHandle(name);
        const w = await h.createWritable({ keepExistingData: true });
        await w.write({ type: "write", position: 100, data: new Uint8Array([1, 2, 3, 4]) });
        await w.close();
      }
    };
    window.clearCache = () => Qwen3VL.clearCache();
    window.cacheSize = () => Qwen3VL.cacheSize();
  }, env.server.url + entry);
});


beforeEach(async () => {
  await page.evaluate(() => window.clearCache());
  env.server.resetLog();
});

const url = (rel) => env.server.url + rel;
// No warm-up: it compiles the pipelines, which these tests do not measure (an answer compiles them).
const load = (model, opts = {}) => page.evaluate(([m, o]) => window.loadAndAsk(m, o), [url(model), { ...opts, options: { warmUp: false, ...opts.options } }]);
const ask = (model, options) => load(model, { ask: true, image: url(imageFile), prompt, maxNewTokens, options });
const entries = () => [...tiny.manifest.files, ...tiny.manifest.shards];
/** GETs of the model's files (anything but manifest.json) since the last resetLog. */
const weightGets = (folder) => env.server.requests(folder).filter((r) => r.method === "GET" && !r.path.endsWith("/manifest.json"));
/** The cache listing with the entry folder stripped: name → { size, sha256 }. */
const listing = async () => Object.fromEntries(Object.entries(await page.evaluate(() => window.cacheListing())).map(([k, v]) => [k.split("/")[1], v]));

function assertCacheHolds(files, manifest) {
  for (const e of [...manifest.files, ...manifest.shards]) {
    assert.deepEqual(files[e.name], { size: e.bytes, sha256: e.sha256 }, `cached ${e.name} differs from the manifest`);
  }
  assert.ok(files["manifest.json"], "a complete entry has its manifest.json");
  assert.deepEqual(Object.keys(files).filter((n) => n.endsWith(".part")), [], "no .part left behind");
}

test("a second load makes no weight requests", { timeout: 300_000 }, async () => {
  const first = await load(tiny.q4);
  assert.ok(first.ok, JSON.stringify(first.error));
  assert.ok(first.phases.includes("download"), "the first load reports download progress");
  assert.equal(weightGets(tiny.q4).length, entries().length, "the first load fetches every file once");
  const files = await listing();
  assertCacheHolds(files, tiny.manifest);
  const bytes = Object.values(files).reduce((s, f) => s + f.size, 0);
  assert.equal(await page.evaluate(() => window.cacheSize()), bytes, "cacheSize() counts the entry's files");

  env.server.resetLog();
  const second = await load(tiny.q4);
  assert.ok(second.ok, JSON.stringify(second.error));
  assert.deepEqual(weightGets(tiny.q4).map((r) => r.path), [], "the second load fetched weights");
  assert.ok(second.phases.includes("verify") && !second.phases.includes("download"), `checking the cache is phase "verify": ${second.phases}`);
  assertNoErrors(page);
});

test("a folder that is not there: the error says which URLs answered what, and nothing is left in the cache", { timeout: 300_000 }, async () => {
  const missing = "target/browser/no-such-model/";
  const r = await load(missing);
  assert.equal(r.ok, false);
  assert.ok(r.error.isError);
  for (const file of ["manifest.json", "config.json"]) {
    assert.ok(r.error.message.includes(`${url(missing)}${file} answered HTTP 404`), `the message names ${file}'s answer: ${r.error.message}`);
  }
  assert.deepEqual(await listing(), {}, "no cache entry is left");
  assert.equal(await page.evaluate(() => window.cacheSize()), 0);
  assertNoErrors(page);
});

test("a download cut half-way resumes from the kept bytes and re-fetches no finished file", { timeout: 300_000 }, async () => {
  // The largest shard is cut: it is queued after the small files, which finish before the cut.
  const victim = tiny.manifest.shards.reduce((a, b) => (b.bytes > a.bytes ? b : a));
  env.server.cutAfter("/" + tiny.q4 + victim.name, Math.floor(victim.bytes / 2));
  const cut = await load(tiny.q4);
  assert.equal(cut.ok, false, "the load over a cut response must fail");
  assert.ok(cut.error.isError && cut.error.message.includes(victim.name), `the error names the cut shard: ${cut.error.message}`);
  const before = await listing();
  assert.equal(before["manifest.json"], undefined, "an interrupted entry has no manifest.json");
  const finished = new Set(Object.keys(before).filter((n) => !n.endsWith(".part")).map((n) => "/" + tiny.q4 + n));
  assert.ok(finished.size > 0, "some files were committed before the cut");

  env.server.resetLog();
  const resumed = await load(tiny.q4);
  assert.ok(resumed.ok, JSON.stringify(resumed.error));
  const again = weightGets(tiny.q4);
  for (const r of again) assert.ok(!finished.has(r.path), `${r.path} was committed before the cut and fetched again after`);
  const victimGets = again.filter((r) => r.path.endsWith(victim.name));
  assert.equal(victimGets.length, 1, "the cut shard is fetched once more");
  // Whatever of the cut response reached storage is kept and resumed from (Chromium may drop the
  // last bytes before the network error, so the kept part can be empty).
  const kept = before[`${victim.name}.part`]?.size ?? 0;
  assert.equal(victimGets[0].range, kept > 0 ? `bytes=${kept}-` : null, `the cut shard resumes after the ${kept} kept bytes`);
  assertCacheHolds(await listing(), tiny.manifest);
  assertNoErrors(page);
});

test("a corrupted cached shard is detected and re-fetched", { timeout: 300_000 }, async () => {
  const reference = await ask(tiny.q4);
  assert.ok(reference.ok, JSON.stringify(reference.error));
  const victim = tiny.manifest.shards[tiny.manifest.shards.length - 1];
  await page.evaluate((name) => window.corrupt(name), victim.name);
  assert.notEqual((await listing())[victim.name].sha256, victim.sha256, "the corruption took");

  env.server.resetLog();
  const again = await ask(tiny.q4);
  assert.ok(again.ok, JSON.stringify(again.error));
  assert.deepEqual(weightGets(tiny.q4).map((r) => r.path), ["/" + tiny.q4 + victim.name], "only the corrupted shard is fetched again");
  assertCacheHolds(await listing(), tiny.manifest);
  assert.deepEqual(again.answer.ids, reference.answer.ids, "the answer after the repair differs");
  assertNoErrors(page);
});

test("a quota too small gives an Error naming the bytes needed and no trusted entry", { timeout: 300_000 }, async () => {
  const cdp = await env.browser.context.newCDPSession(page);
  const origin = env.server.url.slice(0, -1);
  try {
    await cdp.send("Storage.overrideQuotaForOrigin", { origin, quotaSize: Math.floor(tiny.manifest.total_bytes / 3) });
    const r = await load(tiny.q4);
    assert.equal(r.ok, false, "a load over quota must fail");
    assert.equal(r.error.name, "QuotaExceededError");
    assert.ok(r.error.isError, "the rejection is an Error");
    const needed = Number(/(\d+) bytes \([\d.]+ MiB\) more are needed/.exec(r.error.message)?.[1]);
    assert.ok(needed > 0 && needed <= tiny.manifest.total_bytes, `the message names the bytes needed: ${r.error.message}`);
    const files = await listing();
    assert.equal(files["manifest.json"], undefined, "no manifest.json: the entry is not trusted");
    assert.deepEqual(Object.keys(files).filter((n) => n.endsWith(".part")), [], "no partial shard kept");
    for (const [name, f] of Object.entries(files)) {
      const e = entries().find((x) => x.name === name);
      assert.ok(e && e.sha256 === f.sha256, `${name} in the cache is not a verified file`);
    }
  } finally {
    await cdp.send("Storage.overrideQuotaForOrigin", { origin });
  }
  const ok = await load(tiny.q4);
  assert.ok(ok.ok, `with the quota back, the load succeeds: ${JSON.stringify(ok.error)}`);
  assertNoErrors(page);
});

test("in-browser quantization stores the shards `qwen3-vl quantize` makes and answers with the same ids", { timeout: 600_000 }, async () => {
  const pre = await ask(tiny.q4);
  assert.ok(pre.ok, JSON.stringify(pre.error));
  await page.evaluate(() => window.clearCache());

  env.server.resetLog();
  const quantized = await ask(tiny.dir, { shardMiB });
  assert.ok(quantized.ok, JSON.stringify(quantized.error));
  assert.ok(quantized.phases.includes("quantize"), "the original folder goes through quantize");
  assert.ok(env.server.requests(tiny.dir).some((r) => r.range), "the safetensors are read by range requests");
  assertCacheHolds(await listing(), tiny.manifest);
  assert.deepEqual(quantized.answer.ids, pre.answer.ids, "ids from in-browser quantization differ from pre-quantized shards");

  env.server.resetLog();
  const cached = await ask(tiny.dir, { shardMiB });
  assert.ok(cached.ok, JSON.stringify(cached.error));
  assert.deepEqual(env.server.requests(tiny.dir).filter((r) => !r.path.endsWith("/manifest.json")).map((r) => r.path), [],
    "the next visit reads the quantized cache only");
  assert.deepEqual(cached.answer.ids, pre.answer.ids);
  assertNoErrors(page);
});

/** A safetensors file's header: tensor name → [start, end) in the file. */
function tensorRanges(bytes) {
  const n = Number(bytes.readBigUInt64LE(0));
  const header = JSON.parse(bytes.subarray(8, 8 + n).toString("utf8"));
  return Object.fromEntries(Object.entries(header).filter(([k]) => k !== "__metadata__").map(([k, v]) => [k, [8 + n + v.data_offsets[0], 8 + n + v.data_offsets[1]]]));
}

test("in-browser quantization over a slow, lossy, redirecting network: the same shards, and an interrupted one resumes without reading finished tensors", { timeout: 600_000 }, async () => {
  const pre = await ask(tiny.q4);
  assert.ok(pre.ok, JSON.stringify(pre.error));
  await page.evaluate(() => window.clearCache());
  const source = "redirect/" + tiny.dir;
  // The weights file, straight or through the redirect (not model.safetensors.index.json).
  const weights = new RegExp(`^(/redirect)?/${tiny.dir}model\\.safetensors$`);
  const ranged = () => env.server.requests(weights).filter((r) => r.method === "GET" && r.range);
  env.server.setLatency(50);
  try {
    // The fourth range request is dropped: the quantization retries it and goes on.
    env.server.resetLog();
    env.server.dropRequest(`/${tiny.dir}model.safetensors`, { skip: 3, ranged: true });
    const cut = await load(source, { options: { shardMiB }, abortAt: 0.5 });
    assert.equal(cut.ok, false, "the aborted quantization must fail");
    assert.equal(cut.error.name, "AbortError", JSON.stringify(cut.error));
    const dropped = ranged().find((r) => r.dropped);
    assert.ok(dropped, "a range request was dropped");
    assert.ok(ranged().filter((r) => r.range === dropped.range).length >= 2, `the dropped range ${dropped.range} was asked again`);
    const firstRun = env.server.bytesServed(weights);

    const kept = await listing();
    assert.equal(kept["manifest.json"], undefined, "an interrupted entry has no manifest.json");
    assert.ok(kept["quantize.json"], "the quantization's progress is kept");
    const committed = tiny.manifest.shards.filter((s) => kept[s.name]);
    assert.ok(committed.length >= 1 && committed.length < tiny.manifest.shards.length, `some shards were committed: ${Object.keys(kept)}`);
    for (const [i, s] of committed.entries()) {
      assert.equal(s.name, tiny.manifest.shards[i].name, "the committed shards are the first ones");
      assert.deepEqual(kept[s.name], { size: s.bytes, sha256: s.sha256 }, `${s.name} is committed as \`qwen3-vl quantize\` wrote it`);
    }

    env.server.resetLog();
    const resumed = await ask(source, { shardMiB });
    assert.ok(resumed.ok, JSON.stringify(resumed.error));
    assertCacheHolds(await listing(), tiny.manifest);
    assert.deepEqual(resumed.answer.ids, pre.answer.ids, "ids from the resumed quantization differ from pre-quantized shards'");
    const redirects = env.server.requests(`/redirect/${tiny.dir}model.safetensors`).filter((r) => r.path.endsWith("/model.safetensors"));
    assert.equal(redirects.length, 1, `the weights' redirect is followed once: ${JSON.stringify(redirects)}`);
    assert.ok(ranged().length > 0 && ranged().every((r) => !r.path.startsWith("/redirect/")), "ranges go to the redirect's target");

    // Bytes served on resume: the header (read as its length, then whole) and every tensor whose
    // output reaches past the committed shards; never one that lies wholly inside them.
    const resumedAt = committed.reduce((s, e) => s + e.bytes, 0);
    const q4 = tensorRanges(Buffer.concat(tiny.manifest.shards.map((s) => readFileSync(join(repoRoot, tiny.q4, s.name)))));
    const src = readFileSync(join(repoRoot, tiny.dir, "model.safetensors"));
    const srcTensors = tensorRanges(src);
    const finished = new Set(Object.keys(srcTensors).filter((name) => {
      const outs = Object.entries(q4).filter(([k]) => k === name || k === `${name}.q4_data` || k === `${name}.q4_scales`);
      return outs.length > 0 && outs.every(([, [, end]]) => end <= resumedAt);
    }));
    assert.ok(finished.size > 0, "the committed shards hold whole tensors");
    const headerEnd = 8 + Number(src.readBigUInt64LE(0));
    const allowed = 8 + headerEnd + Object.entries(srcTensors).filter(([k]) => !finished.has(k)).reduce((s, [, [a, b]]) => s + (b - a), 0);
    const served = env.server.bytesServed(weights);
    console.log(`model.safetensors: ${src.length} bytes; served ${firstRun} before the abort, ${served} to resume (at most ${allowed}); ${finished.size} tensors finished`);
    assert.ok(served <= allowed, `the resume read ${served} bytes, more than the ${allowed} of unfinished tensors and the header`);
    for (const r of ranged()) {
      const [, a, b] = /bytes=(\d+)-(\d+)/.exec(r.range).map(Number);
      for (const name of finished) {
        const [s, e] = srcTensors[name];
        assert.ok(b < s || a >= e, `${name} lies in a committed shard and was read again (${r.range})`);
      }
    }
  } finally {
    env.server.setLatency(0);
  }
  assertNoErrors(page);
});
