// The package's types as a TypeScript user meets them: the `npm pack` tarball installed into
// two projects compiled with `tsc --strict --noEmit` and `skipLibCheck: false`, one with the DOM
// lib (types/dom.ts) and one worker-only (types/worker.ts, lib ES2022 + WebWorker). Their
// `@ts-expect-error` lines must not compile (tsc fails on an unused directive), which catches
// types that decay to `any`. Also checks the tarball's contents. Pure Node, no browser.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { copyFileSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { repoRoot } from "./harness.mjs";
import { packedPackage, testTool } from "./pieces.mjs";

const projects = {
  dom: { file: "dom.ts", lib: ["ES2022", "DOM", "DOM.Iterable"] },
  worker: { file: "worker.ts", lib: ["ES2022", "WebWorker"] },
};

test("the tarball holds the README, both licences, the types, the code and the wasm", () => {
  const pack = packedPackage();
  console.log(`${pack.tarball}: ${pack.size} bytes packed, ${pack.unpackedSize} unpacked`);
  for (const f of pack.files) console.log(`  ${String(f.size).padStart(9)}  ${f.path}`);
  const paths = pack.files.map((f) => f.path);
  for (const want of ["README.md", "LICENSE-MIT", "LICENSE-APACHE", "package.json", "index.d.ts", "engine.d.ts", "src/index.js", "src/worker.js",
    "dist/wasm/qwen3_vl_webgpu.js", "dist/wasm/qwen3_vl_webgpu_bg.wasm"]) {
    assert.ok(paths.includes(want), `the tarball lacks ${want}`);
  }
});

for (const [name, { file, lib }] of Object.entries(projects)) {
  test(`tsc --strict compiles the ${name} project (skipLibCheck: false) and refuses its @ts-expect-error lines`, () => {
    const tsc = join(testTool("typescript"), "bin/tsc");
    const root = join(repoRoot, "target/browser/types");
    const dir = join(root, name);
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir, { recursive: true });
    packedPackage().install(root);
    copyFileSync(join(repoRoot, "tests/browser/types", file), join(dir, file));
    writeFileSync(join(dir, "tsconfig.json"), JSON.stringify({
      compilerOptions: {
        strict: true, noEmit: true, skipLibCheck: false, target: "ES2022", module: "ESNext", moduleResolution: "bundler",
        resolveJsonModule: true, lib, types: [],
      },
      files: [file],
    }));
    try {
      execFileSync(process.execPath, [tsc, "-p", dir], { encoding: "utf8", stdio: "pipe" });
    } catch (e) {
      assert.fail(`tsc failed on the ${name} project:\n${e.stdout}${e.stderr}`);
    }
  });
}
