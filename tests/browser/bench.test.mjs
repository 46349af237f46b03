// www/bench.html as a person with a GPU would run it, here on SwiftShader with the tiny synthetic
// shapes (the 2B takes hours on a software GPU): the weights are built in the page's worker, every
// row of the table is printed, and the figures are numbers of the right kind.
import { test } from "node:test";
import assert from "node:assert/strict";
import { assertNoErrors, openPage, serverAndBrowser } from "./harness.mjs";
import { wasmGlue } from "./pieces.mjs";

const env = serverAndBrowser();

/** Runs bench.html with `query` to its end; the page, the Markdown table and its rows by measure. */
async function runBench(query) {
  const page = await openPage(env.browser.context, env.server.url + "www/bench.html?" + query);
  await page.waitForFunction(() => ["done", "failed"].includes(document.body.dataset.state), null, { timeout: 590_000 });
  const { state, notice, table } = await page.evaluate(() => ({
    state: document.body.dataset.state,
    notice: document.getElementById("notice").textContent,
    table: document.getElementById("table").textContent,
  }));
  console.log(table);
  assert.equal(state, "done", notice);
  const rows = new Map(table.split("\n").filter((l) => l.startsWith("| ") && !l.startsWith("| measure")).map((l) => l.slice(2, -2).split(" | ")));
  const value = (measure) => {
    assert.ok(rows.has(measure), `no row "${measure}" in\n${table}`);
    return rows.get(measure);
  };
  return { page, table, rows, value };
}

test("bench.html builds synthetic weights in its worker and prints the whole table", { timeout: 600_000 }, async () => {
  wasmGlue();
  const { page, table, value } = await runBench("size=tiny&contexts=16,64&run");
  assert.match(table.split("\n")[0], /swiftshader/i, "the adapter line names the adapter");
  assert.match(value("load: synthetic tiny built, quantized to int4, uploaded"), /^\d+\.\d s$/);
  assert.match(value("ViT, one 640×480 frame (1200 patches)"), /^\d+\.\d\d s$/);
  for (const ctx of [16, 64]) {
    assert.ok(Number(value(`decode at ${ctx} context`).split(" ")[0]) > 0);
    for (const host of ["(record and submit)", "with the GPU idle (record and submit)"]) {
      assert.ok(Number(value(`decode at ${ctx}: host ms per token ${host}`).split(" ")[0]) > 0);
    }
    // The persistent plan: no buffer or bind group is made per steady-state token, one submit each.
    const [dispatches, bindGroups, buffers, submits] = value(`decode at ${ctx}: per token dispatches / bind groups / buffers / submits / waits`).split(" / ").map(Number);
    assert.ok(dispatches > 0 && dispatches <= 8 * 2 + 8, `dispatches ${dispatches}`);
    assert.deepEqual([bindGroups, buffers, submits], [0, 0, 1]);
  }
  assert.match(value("time to first token, one frame + 32 text tokens (334 tokens)"), /^\d+\.\d\d s$/);
  assert.match(value("GPU memory: weights"), /^\d+ MiB$/);
  assert.match(value("wasm heap after the run"), /^\d+ MiB$/);
  assertNoErrors(page);
  await page.close();
});

test("bench.html's decode-only run prints the decode and memory rows and skips the vision tower", { timeout: 600_000 }, async () => {
  wasmGlue();
  const { page, rows, value } = await runBench("size=tiny&contexts=16&decodeOnly&run");
  assert.ok(Number(value("decode at 16 context").split(" ")[0]) > 0);
  assert.match(value("GPU memory: peak (weights, KV cache for 32 tokens, activations)"), /^\d+ MiB$/);
  const skipped = [...rows.keys()].filter((m) => /ViT|prefill|first token/.test(m));
  assert.deepEqual(skipped, [], "decode only: no ViT, prefill or time-to-first-token rows");
  assertNoErrors(page);
  await page.close();
});
