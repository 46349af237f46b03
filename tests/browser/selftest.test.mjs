// Every WGSL kernel, compiled by Chromium's Tint and run on SwiftShader (no f16, no subgroups, 256
// invocations per workgroup: the WebGPU minimum-ish profile), against its CPU reference through
// the wasm build's `selftest()` — on the page and inside a dedicated Worker.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readdirSync } from "node:fs";
import { join } from "node:path";
import { assertNoErrors, need, openPage, repoRoot, serverAndBrowser } from "./harness.mjs";
import { wasmGlue } from "./pieces.mjs";

const env = serverAndBrowser();
;

// SwiftShader exposes `subgroups` to JS, but wgpu on the web does not use them (gfx-rs/wgpu #10146):
// the wasm engine's own caps are checked in the selftest below.
test("Chromium's adapter is SwiftShader's minimum-ish profile: no f16, 256 invocations", async () => {
  const page = await openPage(env.browser.context, env.server.url + "tests/browser/blank.html");
  const a = await page.evaluate(async () => {
    const adapter = await navigator.gpu?.requestAdapter();
    if (!adapter) return null;
    return {
      features: [...adapter.features],
      invocations: adapter.limits.maxComputeInvocationsPerWorkgroup,
      info: { vendor: adapter.info.vendor, architecture: adapter.info.architecture, fallback: adapter.info.isFallbackAdapter },
    };
  });
  assert.ok(a, "navigator.gpu.requestAdapter() gave no adapter (is --enable-unsafe-webgpu passed?)");
  console.log("adapter:", JSON.stringify(a.info), "features:", a.features.join(" "));
  assert.ok(!a.features.includes("shader-f16"), "this adapter has shader-f16: the no-f16 paths would not be the ones tested");
  assert.equal(a.invocations, 256);
  assertNoErrors(page);
  await page.close();
});

/** Each shaders/*.wgsl stem must name at least one selftest entry ("norm…", "matmul…"). */
function assertCovers(entries) {
  assert.ok(entries.length > 0, "selftest() returned no entries");
  const failed = entries.filter((e) => !e.ok);
  assert.deepEqual(failed, [], `kernels over tolerance:\n${failed.map((e) => JSON.stringify(e)).join("\n")}`);
  for (const e of entries) assert.ok(e.maxErr <= e.tol, `${e.name}: maxErr ${e.maxErr} > tol ${e.tol} but ok`);
  const stems = readdirSync(join(repoRoot, "shaders")).filter((f) => f.endsWith(".wgsl")).map((f) => f.slice(0, -5));
  const missing = stems.filter((s) => !entries.some((e) => e.name.startsWith(s)));
  assert.deepEqual(missing, [], `WGSL files with no selftest entry (entry names must start with the file stem): ${missing}`);
}

test("selftest(): wgpu's caps are the fallback profile and every WGSL file matches its CPU reference in the page", { timeout: 600_000 }, async () => {
  const glue = wasmGlue();
  const page = await openPage(env.browser.context, env.server.url + "tests/browser/blank.html");
  const { caps, entries } = await page.evaluate(async (url) => {
    const m = await import(url);
    await m.default();
    return { caps: await m.adapterInfo(), entries: await m.selftest() };
  }, env.server.url + glue);
  console.log(`wgpu sees: ${JSON.stringify(caps)}`);
  // What the engine itself will use: the fallback paths, not only what the adapter lists in JS.
  assert.equal(caps.f16, false, "wgpu reports shader-f16 on SwiftShader");
  assert.equal(caps.subgroups, false, "wgpu reports subgroups on SwiftShader");
  assert.equal(caps.limits.maxComputeInvocationsPerWorkgroup, 256);
  // maxErr is null where the kernel produced NaN (JSON has no NaN).
  console.log(entries.map((e) => `  ${e.ok ? "ok " : "BAD"} ${e.name}: ${e.maxErr?.toExponential(2) ?? "NaN"} (tol ${e.tol})`).join("\n"));
  assertCovers(entries);
  assertNoErrors(page);
  await page.close();
});

test("selftest(): the same inside a dedicated Worker", { timeout: 600_000 }, async () => {
  const glue = wasmGlue();
  const page = await openPage(env.browser.context, env.server.url + "tests/browser/blank.html");
  const entries = await page.evaluate(async (url) => {
    const src = `import init, { selftest } from ${JSON.stringify(url)};
      try { await init(); postMessage({ entries: await selftest() }); }
      catch (e) { postMessage({ error: String(e?.stack ?? e) }); }`;
    const w = new Worker(URL.createObjectURL(new Blob([src], { type: "text/javascript" })), { type: "module" });
    const r = await new Promise((ok, fail) => {
      w.onmessage = (e) => ok(e.data);
      w.onerror = (e) => fail(new Error(`worker: ${e.message}`));
    });
    w.terminate();
    if (r.error) throw new Error(r.error);
    return r.entries;
  }, env.server.url + glue);
  assertCovers(entries);
  assertNoErrors(page);
  await page.close();
});
