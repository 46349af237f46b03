// Runs every tests/browser/*.test.mjs with node:test, one file at a time (each launches its own
// Chromium on SwiftShader; two at once would only fight over the CPU). Arguments filter the files
// by substring: `node tests/browser/run.mjs e2e demo`. Exits non-zero on any failure, including a
// piece the tests need being absent (see `need` in harness.mjs): nothing is skipped.
import { spawnSync } from "node:child_process";
import { readdirSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const dir = fileURLToPath(new URL(".", import.meta.url));
const filters = process.argv.slice(2);
const files = readdirSync(dir)
  .filter((f) => f.endsWith(".test.mjs"))
  .filter((f) => filters.length === 0 || filters.some((s) => f.includes(s)))
  .sort()
  .map((f) => join(dir, f));
if (files.length === 0) {
  console.error(`no tests/browser/*.test.mjs match ${JSON.stringify(filters)}`);
  process.exit(1);
}
console.log(`browser tests: ${files.map((f) => f.slice(dir.length)).join(", ")}`);
const r = spawnSync(process.execPath, ["--test", "--test-concurrency=1", "--test-reporter=spec", ...files], {
  stdio: "inherit",
  env: { ...process.env, PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD: "1" },
});
process.exit(r.status ?? 1);
