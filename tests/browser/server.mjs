// Static HTTP server for the browser tests and for people trying the demo: serves the repo root on
// 127.0.0.1 (a secure context, so OPFS and service workers work) with single-range requests.
// For the tests it keeps a request log, can go offline and back on the same port (same origin, so
// OPFS and the service worker survive), can cut one response for a path after N bytes or drop
// one request unanswered, can delay every answer (a far server), and redirects /redirect/PATH to
// /PATH (as the Hugging Face hub redirects every file to its CDN).
//
//   node tests/browser/server.mjs [--port 8080] [--root DIR]   → the demo at http://127.0.0.1:8080/www/
import { createServer } from "node:http";
import { open, stat } from "node:fs/promises";
import { extname, resolve, sep } from "node:path";
import { fileURLToPath } from "node:url";

const repoRoot = resolve(fileURLToPath(new URL("../..", import.meta.url)));

const types = {
  ".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
  ".mjs": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
  ".json": "application/json", ".wasm": "application/wasm", ".png": "image/png",
  ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".svg": "image/svg+xml", ".ico": "image/x-icon",
  ".webmanifest": "application/manifest+json", ".txt": "text/plain; charset=utf-8",
  ".md": "text/plain; charset=utf-8", ".ts": "text/plain; charset=utf-8",
};

/** `bytes=a-b`, `bytes=a-`, `bytes=-n` → [start, end] inclusive, null when absent, "bad" when unsatisfiable. */
function parseRange(header, size) {
  if (!header) return null;
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!m || (m[1] === "" && m[2] === "")) return "bad";
  let start, end;
  if (m[1] === "") { start = Math.max(0, size - Number(m[2])); end = size - 1; }
  else { start = Number(m[1]); end = m[2] === "" ? size - 1 : Math.min(Number(m[2]), size - 1); }
  return start > end || start >= size ? "bad" : [start, end];
}

const drainOrClose = (res) => new Promise((ok) => {
  const done = () => { res.off("drain", done); res.off("close", done); ok(); };
  res.once("drain", done);
  res.once("close", done);
});

/**
 * Starts serving `root` (default: the repo root). Resolves to a handle:
 *   url            base URL ending in "/"
 *   log            [{ method, path, range, status, bytes }] in arrival order (`bytes` = body bytes sent)
 *   resetLog()     empties the log
 *   requests(re)   log entries whose path matches the RegExp / substring
 *   bytesServed(re)  body bytes sent for those entries
 *   cutAfter(path, n)  the next GET of `path` sends n body bytes, then the connection is destroyed
 *   dropRequest(path, { skip, ranged })  a later GET whose path contains `path` (after `skip`
 *                  such GETs; with `ranged`, only range requests count) is answered by closing
 *                  the connection
 *   setLatency(ms) every request waits `ms` before its answer
 *   offline() / online()  stop listening (dropping open connections) / listen again on the same port
 *   close()        stop for good
 */
export async function startServer({ root = repoRoot, port = 0, host = "127.0.0.1", quiet = true } = {}) {
  root = resolve(root);
  const log = [];
  const cuts = new Map();
  const drops = [];
  let latency = 0;

  async function handle(req, res) {
    const path = decodeURIComponent(new URL(req.url, "http://x").pathname);
    const entry = { method: req.method, path, range: req.headers.range ?? null, status: 0, bytes: 0 };
    log.push(entry);
    if (latency) await new Promise((ok) => setTimeout(ok, latency));
    const send = (status, headers, body) => {
      entry.status = status;
      res.writeHead(status, headers);
      res.end(body);
    };
    const drop = drops.findIndex((d) => d.method === req.method && path.includes(d.path) && (!d.ranged || entry.range) && --d.skip < 0);
    if (drop >= 0) {
      drops.splice(drop, 1);
      entry.dropped = true;
      res.socket?.destroy();
      return;
    }
    if (path.startsWith("/redirect/")) return send(302, { Location: path.slice("/redirect".length), "Cache-Control": "no-store" });
    if (req.method !== "GET" && req.method !== "HEAD") return send(405, { Allow: "GET, HEAD" });
    if (path === "/favicon.ico") return send(204, {});
    let file = resolve(root, "." + path);
    if (file !== root && !file.startsWith(root + sep)) return send(403, {}, "outside the root\n");
    let info = await stat(file).catch(() => null);
    if (info?.isDirectory()) {
      if (!path.endsWith("/")) return send(301, { Location: path + "/" });
      file = resolve(file, "index.html");
      info = await stat(file).catch(() => null);
    }
    if (!info?.isFile()) return send(404, { "Content-Type": "text/plain" }, `not found: ${path}\n`);

    const size = info.size;
    const range = parseRange(req.headers.range, size);
    const headers = {
      "Content-Type": types[extname(file).toLowerCase()] ?? "application/octet-stream",
      "Accept-Ranges": "bytes",
      // Every fetch must reach the log: a browser HTTP cache hit would hide a request that a test
      // asserts the package's own cache avoided.
      "Cache-Control": "no-store",
    };
    if (range === "bad") return send(416, { ...headers, "Content-Range": `bytes */${size}` });
    const [start, end] = range ?? [0, size - 1];
    const length = size === 0 ? 0 : end - start + 1;
    headers["Content-Length"] = String(length);
    if (range) headers["Content-Range"] = `bytes ${start}-${end}/${size}`;
    entry.status = range ? 206 : 200;
    res.writeHead(entry.status, headers);
    if (req.method === "HEAD" || length === 0) return res.end();

    const cut = req.method === "GET" && cuts.has(path) ? cuts.get(path) : Infinity;
    if (cut !== Infinity) cuts.delete(path);
    const fh = await open(file, "r");
    try {
      const buf = Buffer.allocUnsafe(1 << 20);
      let pos = start;
      while (pos <= end) {
        const want = Math.min(buf.length, end + 1 - pos, cut - entry.bytes);
        if (want <= 0) break;
        const { bytesRead } = await fh.read(buf, 0, want, pos);
        if (bytesRead === 0) break;
        pos += bytesRead;
        entry.bytes += bytesRead;
        const chunk = Buffer.from(buf.subarray(0, bytesRead));
        if (!res.write(chunk)) await drainOrClose(res);
        if (res.destroyed) return;
      }
    } finally {
      await fh.close();
    }
    if (entry.bytes < length) {
      // The promised Content-Length is not met: the client sees a network error mid-body.
      entry.cut = true;
      await new Promise((ok) => res.write("", ok));
      res.socket?.destroy();
      return;
    }
    res.end();
  }

  const server = createServer((req, res) => {
    handle(req, res).catch((e) => {
      if (!res.headersSent) { res.writeHead(500); res.end(String(e)); } else res.destroy();
    });
  });
  if (!quiet) server.on("request", (req) => console.log(req.method, req.url, req.headers.range ?? ""));

  const listen = (p) => new Promise((ok, fail) => {
    server.once("error", fail);
    server.listen(p, host, () => { server.off("error", fail); ok(server.address().port); });
  });
  port = await listen(port);

  return {
    url: `http://${host}:${port}/`,
    port,
    root,
    log,
    resetLog: () => { log.length = 0; },
    requests: (re) => log.filter((e) => (typeof re === "string" ? e.path.includes(re) : re.test(e.path))),
    bytesServed(re) { return this.requests(re).reduce((s, e) => s + e.bytes, 0); },
    cutAfter: (path, n) => { cuts.set(path, n); },
    dropRequest: (path, { skip = 0, ranged = false } = {}) => { drops.push({ method: "GET", path, skip, ranged }); },
    setLatency: (ms) => { latency = ms; },
    offline: () => new Promise((ok) => {
      if (!server.listening) return ok();
      server.close(() => ok());
      server.closeAllConnections();
    }),
    online: async () => { if (!server.listening) await listen(port); },
    close: () => new Promise((ok) => {
      if (!server.listening) return ok();
      server.close(() => ok());
      server.closeAllConnections();
    }),
  };
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const arg = (name, fallback) => {
    const i = process.argv.indexOf(name);
    return i < 0 ? fallback : process.argv[i + 1];
  };
  const port = Number(arg("--port", "8080"));
  const s = await startServer({ root: arg("--root", repoRoot), port, quiet: !process.argv.includes("--verbose") });
  console.log(`serving ${s.root} at ${s.url} — the demo: ${s.url}www/`);
}
