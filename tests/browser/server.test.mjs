// The test server's own promises, which the cache and offline tests rely on as witnesses: ranges
// as RFC 9110 says, every request logged, a cut that really breaks one response and only one,
// and offline / online on the same port. Pure Node.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { repoRoot } from "./harness.mjs";
import { startServer } from "./server.mjs";

const file = "tests/browser/server.mjs";
const body = readFileSync(join(repoRoot, file));
let server;
before(async () => { server = await startServer(); });
after(async () => { await server.close(); });

const get = (path, headers = {}) => fetch(server.url + path, { headers });

test("ranges: a-b, a-, -n, past the end", async () => {
  const cases = [["bytes=5-14", 5, 15], ["bytes=100-", 100, body.length], [`bytes=-7`, body.length - 7, body.length]];
  for (const [range, from, to] of cases) {
    const r = await get(file, { Range: range });
    assert.equal(r.status, 206, range);
    assert.equal(r.headers.get("content-range"), `bytes ${from}-${to - 1}/${body.length}`, range);
    assert.deepEqual(Buffer.from(await r.arrayBuffer()), body.subarray(from, to), range);
  }
  const past = await get(file, { Range: `bytes=${body.length}-` });
  assert.equal(past.status, 416);
  assert.equal(past.headers.get("content-range"), `bytes */${body.length}`);
  const whole = await get(file);
  assert.equal(whole.status, 200);
  assert.equal(whole.headers.get("accept-ranges"), "bytes");
  assert.equal(whole.headers.get("cache-control"), "no-store");
  assert.deepEqual(Buffer.from(await whole.arrayBuffer()), body);
});

test("no path outside the root; a directory redirects to its slash form", async () => {
  assert.equal((await get("..%2F..%2F..%2Fetc%2Fpasswd")).status, 403);
  const dir = await fetch(server.url + "tests", { redirect: "manual" });
  assert.equal(dir.status, 301);
  assert.equal(dir.headers.get("location"), "/tests/");
});

test("the log records each request; cutAfter breaks exactly the next GET of that path", async () => {
  server.resetLog();
  server.cutAfter("/" + file, 1000);
  await assert.rejects(get(file).then((r) => r.arrayBuffer()), "the cut response must fail in the client");
  assert.equal((await (await get(file)).arrayBuffer()).byteLength, body.length, "the next GET is whole");
  assert.deepEqual(server.log.map(({ path, status, bytes, cut }) => ({ path, status, bytes, cut })), [
    { path: "/" + file, status: 200, bytes: 1000, cut: true },
    { path: "/" + file, status: 200, bytes: body.length, cut: undefined },
  ]);
  assert.equal(server.requests("server.mjs").length, 2);
});

test("offline refuses connections on the port; online serves on the same port again", async () => {
  const port = server.port;
  await server.offline();
  await assert.rejects(get(file), TypeError, "a fetch while offline must fail");
  await assert.rejects(get(file), (e) => e.cause?.code === "ECONNREFUSED", "a new connection is refused");
  await server.online();
  assert.equal(server.port, port);
  assert.equal((await get(file)).status, 200);
});

test("dropRequest closes one matching request unanswered; latency delays answers; /redirect/ redirects", async () => {
  server.resetLog();
  server.dropRequest("server.mjs", { skip: 1, ranged: true });
  assert.equal((await get(file)).status, 200, "a request without Range does not count");
  assert.equal((await get(file, { Range: "bytes=0-9" })).status, 206, "the first ranged request is skipped");
  await assert.rejects(get(file, { Range: "bytes=0-9" }), TypeError, "the next one is dropped");
  assert.equal((await get(file, { Range: "bytes=0-9" })).status, 206, "and only that one");
  assert.deepEqual(server.log.map((e) => e.dropped ?? false), [false, false, true, false]);
  assert.equal(server.bytesServed("server.mjs"), body.length + 20);

  server.setLatency(120);
  const t0 = Date.now();
  await (await get(file)).arrayBuffer();
  assert.ok(Date.now() - t0 >= 110, "the answer came after the latency");
  server.setLatency(0);

  const r = await fetch(server.url + "redirect/" + file, { redirect: "manual" });
  assert.equal(r.status, 302);
  assert.equal(r.headers.get("location"), "/" + file);
  assert.equal((await get("redirect/" + file)).url, server.url + file, "fetch follows it");
});
