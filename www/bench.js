// The benchmark page: runs the wasm build's `bench` in a dedicated Worker (where the engine runs
// in real apps, so host time per token is the worker's) and prints its rows as a Markdown table
// a person can paste into an issue. `?size=2b|4b&contexts=128,4096&run` starts it at once;
// `&decodeOnly` keeps only the compile, decode and memory rows; `&tokens=N` times N decode tokens
// at each context (default 8).
const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const rows = [];
let header = "";

for (const [name, id] of [["size", "size"], ["contexts", "contexts"]]) {
  if (params.has(name)) $(id).value = params.get(name);
}
$("decode-only").checked = params.has("decodeOnly");

/** The rows so far as Markdown, under the adapter line. */
function markdown() {
  return `${header}\n\n| measure | value |\n|---|---:|\n${rows.map((r) => `| ${r.measure} | ${r.value} |`).join("\n")}\n`;
}

function show(status) {
  $("status").textContent = status;
  $("table").textContent = markdown();
}

function fail(message) {
  $("notice").textContent = message;
  $("notice").hidden = false;
  show("failed");
  $("run").disabled = false;
  document.body.dataset.state = "failed";
}

function run() {
  const contexts = $("contexts").value.split(",").map((s) => Number(s.trim()));
  if (!contexts.every((c) => Number.isInteger(c) && c > 0)) return fail("Contexts must be positive whole numbers, e.g. 128,4096.");
  rows.length = 0;
  header = "";
  $("notice").hidden = true;
  $("run").disabled = true;
  $("copy").disabled = true;
  document.body.dataset.state = "running";
  const worker = new Worker(new URL("./bench-worker.js", import.meta.url), { type: "module" });
  worker.onmessage = ({ data }) => {
    if (data.adapter) {
      header = `${data.adapter} · ${navigator.userAgent}`;
      show("building the weights…");
    } else if (data.row) {
      rows.push(data.row);
      show("measuring…");
    } else if (data.done) {
      worker.terminate();
      show("done");
      $("run").disabled = false;
      $("copy").disabled = false;
      document.body.dataset.state = "done";
    } else if (data.error) {
      worker.terminate();
      fail(data.error);
    }
  };
  worker.onerror = (e) => fail(`The benchmark worker failed to start (${e.message || "its script or the wasm could not be loaded"}); build the package with pkg/build.sh.`);
  const tokens = params.has("tokens") ? Number(params.get("tokens")) : undefined;
  worker.postMessage({ size: $("size").value, contexts, tokens, decodeOnly: $("decode-only").checked });
}

$("run").onclick = run;
$("copy").onclick = () => navigator.clipboard.writeText(markdown());
if (!navigator.gpu) fail("This browser has no WebGPU.");
else if (params.has("run")) run();
