// The project pieces the browser tests drive, located (or made) here once so every test file
// names them the same way: the wasm build, the npm package entry, the demo, the native CLI and
// the tiny model folder with its pre-quantized shards. A missing piece throws, naming its maker.
import { execFileSync } from "node:child_process";
import { readdirSync, readFileSync, rmSync, mkdirSync, existsSync } from "node:fs";
import { join, resolve } from "node:path";
import { need, repoRoot } from "./harness.mjs";

/** The wasm-bindgen glue (`--target web`) under pkg/dist, as a path relative to the repo root. */
export function wasmGlue() {
  need("pkg/dist", "the wasm build: `bash pkg/build.sh` (crate/web, wasm-bindgen --target web)");
  const wasm = readdirSync(join(repoRoot, "pkg/dist"), { recursive: true }).find((f) => f.endsWith("_bg.wasm"));
  if (!wasm) throw new Error("pkg/dist holds no *_bg.wasm: `bash pkg/build.sh` did not finish");
  return need(`pkg/dist/${wasm.slice(0, -"_bg.wasm".length)}.js`, "the wasm-bindgen glue beside the .wasm")
    .slice(repoRoot.length + 1);
}

/** The package's ESM entry (pkg/package.json `exports` / `module` / `main`), relative to the repo root. */
export function packageEntry() {
  wasmGlue();
  const pj = JSON.parse(readFileSync(need("pkg/package.json", "the npm package (pkg/)"), "utf8"));
  const exp = typeof pj.exports === "string" ? pj.exports : pj.exports?.["."];
  const entry = (typeof exp === "string" ? exp : exp?.import ?? exp?.default) ?? pj.module ?? pj.main;
  if (!entry) throw new Error("pkg/package.json names no entry (exports / module / main)");
  return need(join("pkg", entry), "the package entry named in pkg/package.json").slice(repoRoot.length + 1);
}

/** The demo page, relative to the repo root. */
export function demoPage() {
  need("www/index.html", "the demo (www/)");
  need("www/sw.js", "the demo's service worker");
  return "www/";
}

/** The image both the CLI and the browser see: an RGB PNG with no colour chunks (pixels decode identically). */
export const imageFile = "tests/fixtures/image_64x48.png";

/** The native CLI, built by `cargo test` / `cargo build --bin qwen3-vl` (debug: the tiny model is fast either way). */
export function cli() {
  execFileSync("cargo", ["build", "--quiet", "--bin", "qwen3-vl"], { cwd: repoRoot, stdio: "inherit" });
  return join(process.env.CARGO_TARGET_DIR ? resolve(repoRoot, process.env.CARGO_TARGET_DIR) : join(repoRoot, "target"), "debug/qwen3-vl");
}

/** Shard size of the tiny model's int4 folder: 64 KiB, so its ~211 KB come in several shards and resuming is exercised across shards. */
export const shardMiB = 1 / 16;

let tiny;
/**
 * The tiny end-to-end model, made fresh once per test process under target/browser/:
 * `tiny/` the original folder (f32 safetensors, tests/fixtures/tiny.sh) and `tiny-q4/` its
 * pre-quantized shards (`qwen3-vl quantize --shard-mib shardMiB`; an in-browser quantization
 * that must reproduce them passes the same `shardMiB`). Paths are relative to the repo root,
 * i.e. also URL paths on the test server.
 */
export function tinyModel() {
  if (tiny) return tiny;
  const script = need("tests/fixtures/tiny.sh", "the tiny model assembler (quant helper's tests/fixtures/)");
  const bin = cli();
  const out = join(repoRoot, "target/browser");
  const dir = join(out, "tiny"), q4 = join(out, "tiny-q4");
  rmSync(dir, { recursive: true, force: true });
  rmSync(q4, { recursive: true, force: true });
  mkdirSync(out, { recursive: true });
  execFileSync("bash", [script, dir], { cwd: repoRoot, stdio: "inherit" });
  execFileSync(bin, ["quantize", "--model", dir, "--out", q4, "--shard-mib", String(shardMiB)], { cwd: repoRoot, stdio: "inherit" });
  if (!existsSync(join(q4, "manifest.json"))) throw new Error(`qwen3-vl quantize wrote no ${q4}/manifest.json`);
  const manifest = JSON.parse(readFileSync(join(q4, "manifest.json"), "utf8"));
  tiny = { dir: "target/browser/tiny/", q4: "target/browser/tiny-q4/", manifest, shardMiB };
  return tiny;
}

/**
 * `qwen3-vl run --json --greedy` on `model` (repo-relative) with the test image (or `image`, also
 * repo-relative): the parsed JSON. Under the minimum profile, so natively the same kernel
 * variants run as on SwiftShader and the two cannot round differently through a different
 * reduction order.
 */
export function nativeGreedy(model, prompt, maxNewTokens, image = imageFile) {
  need(image, "the tiny model's test image (quant helper's tests/fixtures/)");
  const out = execFileSync(cli(), [
    "run", "--model", join(repoRoot, model), "--image", join(repoRoot, image), "--prompt", prompt,
    "--greedy", "--json", "--max-new-tokens", String(maxNewTokens),
  ], { cwd: repoRoot, encoding: "utf8", stdio: ["ignore", "pipe", "inherit"], env: { ...process.env, QWEN3VL_PROFILE: "minimum" } });
  const line = out.trim().split("\n").filter((l) => l.startsWith("{")).at(-1);
  if (!line) throw new Error(`qwen3-vl run --json printed no JSON object:\n${out}`);
  return JSON.parse(line);
}

/**
 * `npm pack` of pkg/ into target/browser/ (what a user installs): `{ tarball, files, size,
 * unpackedSize }` from npm's JSON report. `install(dir)` unpacks it as dir/node_modules/qwen3-vl-webgpu.
 */
export function packedPackage() {
  wasmGlue();
  const out = join(repoRoot, "target/browser");
  mkdirSync(out, { recursive: true });
  const [report] = JSON.parse(execFileSync("npm", ["pack", "--json", "--pack-destination", out], { cwd: join(repoRoot, "pkg"), encoding: "utf8" }));
  const tarball = join(out, report.filename);
  return {
    tarball,
    files: report.files.map((f) => ({ path: f.path, size: f.size })),
    size: report.size,
    unpackedSize: report.unpackedSize,
    install(dir) {
      const to = join(dir, "node_modules/qwen3-vl-webgpu");
      rmSync(to, { recursive: true, force: true });
      mkdirSync(to, { recursive: true });
      execFileSync("tar", ["xzf", tarball, "-C", to, "--strip-components=1"]);
      return to;
    },
  };
}

/** The browser tests' own npm tools (tests/browser/package.json, installed by tests/setup.sh). */
export function testTool(name) {
  return need(`tests/browser/node_modules/${name}`, "run `bash tests/setup.sh` (npm ci in tests/browser)");
}
