// The in-browser quantization of an original safetensors folder into a cache entry, resumable.
//
// The wasm Quantizer runs in steps, each reading one byte range it names up front, so the
// ranges are fetched ahead in parallel (net.js RangeReader) while earlier steps run. Every file
// and shard it hands out is committed at once (written as name.part, then renamed) and listed in
// quantize.json with its size and sha256; an interrupted quantization (a lost network, a closed
// tab, an abort) starts again from the committed shards without reading their tensors again.
// quantize.json also records the shard size and each source file's size and ETag: a change
// of either starts from scratch.

import { memFile } from "./files.js";
import { fetchFile, fetchRange, RangeReader, resolveFile } from "./net.js";

const STATE = "quantize.json";
const STATE_VERSION = 1;

/**
 * The original folder at `url` as the quantizer reads it: the small files fetched whole, each
 * safetensors file's redirect resolved and its header fetched; tensor bytes come from `reader`
 * once it is set. `files` maps each safetensors file to its resolved `{ url, final, size, etag }`.
 */
async function openSource(url, names, { signal, missing }) {
  const small = new Map();
  await Promise.all(
    [...names.files, names.index].map(async (name) => {
      const bytes = await fetchFile(new URL(name, url).href, { signal });
      if (bytes) small.set(name, bytes);
    }),
  );
  if (!small.has("config.json")) {
    throw new Error(`${url} holds no model: ${missing}, and ${url}config.json answered HTTP 404`);
  }
  let weights = [names.single];
  if (small.has(names.index)) {
    const index = JSON.parse(new TextDecoder().decode(small.get(names.index)));
    weights = [...new Set(Object.values(index.weight_map ?? {}))];
  }
  const files = new Map();
  const headers = new Map();
  await Promise.all(
    weights.map(async (name) => {
      const file = await resolveFile(new URL(name, url).href, { signal });
      if (!file) throw new Error(`${url}${name} answered HTTP 404${small.has(names.index) ? ` (${names.index} lists it)` : ""}`);
      files.set(name, file);
      const len = new DataView((await fetchRange(file, 0, 8, { signal })).buffer).getBigUint64(0, true);
      // A header past the file's end or absurdly long is the quantizer's error to name.
      const end = 8 + Math.min(Number(len), Math.max(0, file.size - 8), 100 << 20);
      headers.set(name, end > 8 ? await fetchRange(file, 0, end, { signal }) : new Uint8Array(0));
    }),
  );
  const source = {
    files,
    reader: null,
    folder: {
      open(name) {
        if (small.has(name)) return memFile(small.get(name));
        const file = files.get(name);
        if (!file) return null;
        const header = headers.get(name);
        return {
          size: file.size,
          readAt(offset, dst) {
            if (offset + dst.length <= header.length) dst.set(header.subarray(offset, offset + dst.length));
            else if (source.reader) source.reader.read(name, offset, dst);
            else throw new Error(`${name}: bytes at ${offset} are past the header`);
          },
        };
      },
      close() {},
    },
  };
  return source;
}

async function readJson(dir, name) {
  try {
    return JSON.parse(await (await (await dir.getFileHandle(name)).getFile()).text());
  } catch (e) {
    if (e.name === "NotFoundError" || e instanceof SyntaxError) return null;
    throw e;
  }
}

async function writeFile(dir, name, bytes) {
  const h = await (await dir.getFileHandle(name, { create: true })).createSyncAccessHandle();
  try {
    h.truncate(0);
    if (h.write(bytes, { at: 0 }) !== bytes.length) throw new Error(`short write to ${name}`);
    h.flush();
  } finally {
    h.close();
  }
}

/**
 * Quantizes the original folder at `url` into `dir` (a cache entry being filled under its
 * lock) with the wasm `Quantizer`; resumes from `dir`'s quantize.json. Returns the manifest;
 * the caller writes manifest.json. `verify(entry)` re-hashes a committed file.
 */
export async function quantizeToCache(dir, Quantizer, url, { signal, onProgress, shardMiB = 32, missing, verify, remove }) {
  const source = await openSource(url, Quantizer.sourceFiles(), { signal, missing });
  const identity = Object.fromEntries([...source.files].map(([name, f]) => [name, { size: f.size, etag: f.etag }]));
  const state = { version: STATE_VERSION, shardMiB, source: identity, done: [] };

  // What an interrupted run committed, when it quantized the same files into the same shards.
  const old = await readJson(dir, STATE);
  if (old && old.version === STATE_VERSION && old.shardMiB === shardMiB && JSON.stringify(old.source) === JSON.stringify(identity)) {
    const total = old.done.reduce((s, e) => s + e.bytes, 0);
    let loaded = 0;
    for (const entry of old.done) {
      // Shards are a prefix: the first one that fails its hash ends what is resumed.
      if (!(await verify(entry))) break;
      state.done.push(entry);
      loaded += entry.bytes;
      onProgress?.({ phase: "verify", loaded, total, file: entry.name });
    }
  }
  for (const name of (old?.done ?? []).map((e) => e.name)) {
    if (!state.done.some((e) => e.name === name)) await remove(name);
  }
  await writeFile(dir, STATE, new TextEncoder().encode(JSON.stringify(state)));

  const handed = [];
  const sink = { write: (name, bytes) => void handed.push({ name, bytes }) };
  let manifest = null;
  const commit = async () => {
    for (const { name, bytes } of handed.splice(0)) {
      if (name === "manifest.json") continue; // the caller writes it, last
      await writeFile(dir, `${name}.part`, bytes);
      await remove(name);
      await (await dir.getFileHandle(`${name}.part`)).move(name);
      const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
      state.done.push({ name, bytes: bytes.length, sha256: Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("") });
      await writeFile(dir, STATE, new TextEncoder().encode(JSON.stringify(state)));
    }
  };

  const q = new Quantizer(source.folder, sink, { shardMiB, resume: state.done });
  try {
    await commit();
    const reads = q.reads();
    const total = reads.reduce((s, r) => s + (r.end - r.start), 0);
    source.reader = new RangeReader(source.files, reads, { signal });
    let loaded = 0;
    for (let i = 0; i < reads.length; i++) {
      await source.reader.ready(i);
      signal?.throwIfAborted();
      q.step();
      source.reader.release(i);
      loaded += reads[i].end - reads[i].start;
      onProgress?.({ phase: "quantize", loaded, total, file: reads[i].file });
      await commit();
    }
    manifest = q.finish();
    await commit();
  } finally {
    q.free();
  }
  for (const entry of [...manifest.files, ...manifest.shards]) {
    const done = state.done.find((e) => e.name === entry.name);
    if (!done || done.sha256 !== entry.sha256 || done.bytes !== entry.bytes) {
      throw new Error(`quantize listed ${entry.name} in its manifest with another size or sha256 than it wrote`);
    }
  }
  await remove(STATE);
  return manifest;
}
