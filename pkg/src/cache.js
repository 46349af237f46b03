// The weights cache lives in the Origin Private File System, not the Cache API. The model runs in
// a worker whose Rust loader reads synchronously; OPFS gives a worker synchronous random reads
// (FileSystemSyncAccessHandle), so tensors stream straight from storage into GPU buffers with no
// shard held in memory, while a Cache API Response can only be read whole and asynchronously. OPFS
// files can also be written piecewise and renamed, so a shard is written to `name.part`, hashed,
// and only then committed under its real name: a half-written shard is never trusted.
//
// Layout: OPFS /qwen3-vl-webgpu/<cache key>/ holds manifest.json (written last, so its presence
// means every entry was once complete), the copied JSON files and weights-NNNNN.bin shards; an
// incomplete entry holds only what a later load resumes from (committed files, `.part` files,
// the in-browser quantization's quantize.json). Must run in a worker (sync access handles).
//
// Several tabs: a complete entry is opened with read-only access handles, which any number of
// tabs share (a browser without them reads through File snapshots instead); filling an entry
// (download, quantization) holds a Web Lock named after it, so a second tab waits for the first
// and then finds the entry complete.

import { memFile } from "./files.js";

const ROOT = "qwen3-vl-webgpu";
const MANIFEST = "manifest.json";
const PARALLEL = 3;

async function root(create) {
  const opfs = await navigator.storage.getDirectory();
  try {
    return await opfs.getDirectoryHandle(ROOT, { create });
  } catch (e) {
    if (e.name === "NotFoundError") return null;
    throw e;
  }
}

export async function sha256Hex(bytes) {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** A readable, collision-safe OPFS folder name for a source URL. */
export async function cacheKey(url) {
  const slug = url.replace(/^[a-z]+:\/\//i, "").replace(/[^A-Za-z0-9._-]+/g, "_").slice(0, 80);
  const hash = await sha256Hex(new TextEncoder().encode(url));
  return `${slug}-${hash.slice(0, 12)}`;
}

/** The entry folder for `key`; null when it does not exist and `create` is false. */
export async function cacheDir(key, create = false) {
  const r = await root(create);
  try {
    return r && (await r.getDirectoryHandle(key, { create }));
  } catch (e) {
    if (e.name === "NotFoundError") return null;
    throw e;
  }
}

/** Deletes the entry folder `key` when it holds nothing (a load that failed before any write). */
export async function dropIfEmpty(key) {
  const dir = await cacheDir(key);
  if (!dir) return;
  for await (const _ of dir.keys()) return;
  await (await root(false)).removeEntry(key).catch(() => {});
}

/**
 * Runs `fn` holding the entry's Web Lock, so one tab at a time writes it (where the browser has
 * no Web Locks, as before them: unguarded).
 */
export function withEntryLock(key, signal, fn) {
  const locks = globalThis.navigator?.locks;
  return locks ? locks.request(`${ROOT}/${key}`, { signal }, fn) : fn();
}

async function fileHandle(dir, name) {
  try {
    return await dir.getFileHandle(name);
  } catch (e) {
    if (e.name === "NotFoundError" || e.name === "TypeMismatchError") return null;
    throw e;
  }
}

export async function remove(dir, name) {
  try {
    await dir.removeEntry(name);
  } catch (e) {
    if (e.name !== "NotFoundError") throw e;
  }
}

/** The manifest stored with a complete entry, or null. */
export async function cachedManifest(dir) {
  const h = await fileHandle(dir, MANIFEST);
  return h ? JSON.parse(await (await h.getFile()).text()) : null;
}

export async function writeManifest(dir, manifest) {
  const h = await dir.getFileHandle(MANIFEST, { create: true });
  const w = await h.createWritable();
  await w.write(JSON.stringify(manifest));
  await w.close();
}

function entries(manifest) {
  return [...manifest.files, ...manifest.shards];
}

function mib(n) {
  return `${(n / 2 ** 20).toFixed(1)} MiB`;
}

/** A QuotaExceededError saying how many bytes are needed (`needed` null: not known). */
export function quotaError(needed, available, atLeast = false) {
  const amount = needed == null ? "more storage is" : `${atLeast ? "more than " : ""}${needed} bytes (${mib(needed)}) more are`;
  const e = new Error(
    `Not enough storage for the model weights: ${amount} needed` +
      (available == null ? "" : `, ${available} bytes (${mib(available)}) are available`) +
      ". Free disk space or clear this site's storage (Qwen3VL.clearCache()) and load again.",
  );
  e.name = "QuotaExceededError";
  return e;
}

export function isQuotaError(e) {
  return e?.name === "QuotaExceededError";
}

/** True when the committed file `entry.name` exists with the manifest's size and sha256. */
export async function verified(dir, entry) {
  const h = await fileHandle(dir, entry.name);
  if (!h) return false;
  const file = await h.getFile();
  return file.size === entry.bytes && (await sha256Hex(await file.arrayBuffer())) === entry.sha256;
}

/**
 * Hashes `name.part` as stored and renames it to `name` only when it matches the manifest; a
 * mismatching part is deleted. Returns whether it was committed.
 */
async function commit(dir, entry) {
  const part = await dir.getFileHandle(`${entry.name}.part`);
  const file = await part.getFile();
  if (file.size !== entry.bytes || (await sha256Hex(await file.arrayBuffer())) !== entry.sha256) {
    await remove(dir, `${entry.name}.part`);
    return false;
  }
  await remove(dir, entry.name);
  await part.move(entry.name);
  return true;
}

/**
 * Downloads `entry` into `name.part` (resuming a previous .part with a Range request when the
 * server allows), hashes what is on disk, and renames it to `name` only when the hash matches.
 */
async function download(dir, url, entry, signal, onBytes) {
  const partName = `${entry.name}.part`;
  const handle = await (await dir.getFileHandle(partName, { create: true })).createSyncAccessHandle();
  let resumed = Math.min(handle.getSize(), entry.bytes);
  try {
    // A complete .part is from a run cut before its commit: it only needs verifying.
    if (resumed < entry.bytes) {
      const headers = resumed > 0 ? { Range: `bytes=${resumed}-` } : {};
      const res = await fetch(url, { signal, headers, cache: "no-store" });
      if (!res.ok) throw new Error(`${url}: HTTP ${res.status} ${res.statusText}`);
      if (res.status !== 206) resumed = 0;
      let at = resumed;
      handle.truncate(at);
      onBytes(at);
      const reader = res.body.getReader();
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        if (at + value.length > entry.bytes) throw new Error(`${url}: more than the manifest's ${entry.bytes} bytes`);
        handle.write(value, { at });
        at += value.length;
        onBytes(value.length);
      }
      if (at !== entry.bytes) throw new Error(`${url}: got ${at} bytes, the manifest says ${entry.bytes}`);
      handle.flush();
    }
  } catch (e) {
    if (isQuotaError(e)) {
      handle.close();
      await remove(dir, partName); // a part that hit the quota is not kept for resuming
      throw e;
    }
    if (signal?.aborted || e.message.startsWith(url)) throw e;
    throw new Error(`${url}: ${e.message} (the bytes so far are kept; loading again resumes)`);
  } finally {
    handle.close();
  }
  if (await commit(dir, entry)) return;
  if (resumed > 0) return download(dir, url, entry, signal, onBytes); // the kept part was bad: once more from 0
  throw new Error(`${url}: the sha256 of the downloaded file does not match the manifest's ${entry.sha256}`);
}

/**
 * Makes `dir` hold every file and shard of `manifest`, verified by sha256: cached entries are
 * re-hashed, missing or mismatching ones fetched from `baseUrl`. Writes manifest.json last.
 * Progress reports bytes of verified-or-downloaded entries against the manifest's total.
 */
export async function fillCache(dir, baseUrl, manifest, { signal, onProgress } = {}) {
  const all = entries(manifest);
  const total = all.reduce((s, e) => s + e.bytes, 0);
  let loaded = 0;
  const report = (phase, file) => onProgress?.({ phase, loaded, total, file });
  const missing = await unverified(dir, manifest, (entry) => {
    loaded += entry.bytes;
    report("verify", entry.name);
  });
  signal?.throwIfAborted();

  if (missing.length) {
    await remove(dir, MANIFEST); // from here until the end, this entry is incomplete
    let have = 0;
    for (const e of missing) {
      const part = await fileHandle(dir, `${e.name}.part`);
      if (part) have += Math.min((await part.getFile()).size, e.bytes);
    }
    const need = missing.reduce((s, e) => s + e.bytes, 0) - have;
    const { quota, usage } = await navigator.storage.estimate();
    if (quota != null && usage != null && quota - usage < need) throw quotaError(need, quota - usage);

    // A few downloads at once. After a failure no new one starts; those under way finish (or
    // fail) and stay committed or kept as .part for the next load to resume.
    let failure = null;
    const queue = [...missing];
    const worker = async () => {
      for (let entry; !failure && (entry = queue.shift()); ) {
        await download(dir, new URL(entry.name, baseUrl).href, entry, signal, (n) => {
          loaded += n;
          report("download", entry.name);
        }).catch((e) => {
          // estimate() can be far from what the write met (a full disk), so only the need is said.
          failure ??= isQuotaError(e) ? quotaError(need) : e;
        });
      }
    };
    await Promise.all(Array.from({ length: Math.min(PARALLEL, missing.length) }, worker));
    if (failure) {
      signal?.throwIfAborted();
      // Out of space: every part is dropped, leaving room and no partial entry.
      if (isQuotaError(failure)) for (const e of missing) await remove(dir, `${e.name}.part`);
      throw failure;
    }
  }
  await writeManifest(dir, manifest);
}

/** Entries of `manifest` whose committed file is missing or does not match (each re-hashed). */
async function unverified(dir, manifest, onVerified) {
  const bad = [];
  for (const entry of entries(manifest)) {
    if (await verified(dir, entry)) onVerified(entry);
    else bad.push(entry);
  }
  return bad;
}

/** True when `dir` holds a complete, verified entry for `manifest`. */
export async function isComplete(dir, manifest, onProgress) {
  const total = entries(manifest).reduce((s, e) => s + e.bytes, 0);
  let loaded = 0;
  const bad = await unverified(dir, manifest, (e) => {
    loaded += e.bytes;
    onProgress?.({ phase: "verify", loaded, total, file: e.name });
  });
  return bad.length === 0;
}

/**
 * A file of a complete entry for synchronous reads: a read-only access handle, shared with
 * other tabs; where the browser knows only exclusive handles and another tab holds one, a File
 * snapshot read with FileReaderSync (the committed files never change).
 */
async function openReadOnly(handle, name) {
  let h;
  try {
    h = await handle.createSyncAccessHandle({ mode: "read-only" });
  } catch (e) {
    if (e.name !== "NoModificationAllowedError" && e.name !== "InvalidStateError") throw e;
    const file = await handle.getFile();
    const reader = new FileReaderSync();
    return {
      size: file.size,
      readAt(offset, dst) {
        const buf = reader.readAsArrayBuffer(file.slice(offset, offset + dst.length));
        if (buf.byteLength !== dst.length) throw new Error(`${name}: read ${buf.byteLength} of ${dst.length} bytes at ${offset}`);
        dst.set(new Uint8Array(buf));
      },
      close() {},
    };
  }
  const size = h.getSize();
  return {
    size,
    readAt(offset, dst) {
      const n = h.read(dst, { at: offset });
      if (n !== dst.length) throw new Error(`${name}: read ${n} of ${dst.length} bytes at ${offset} (size ${size})`);
    },
    close: () => h.close(),
  };
}

/** A Folder over a complete cache entry. `close()` releases its files. */
export async function openCachedFolder(dir, manifest) {
  const files = new Map([[MANIFEST, memFile(new TextEncoder().encode(JSON.stringify(manifest)))]]);
  try {
    for (const entry of entries(manifest)) files.set(entry.name, await openReadOnly(await dir.getFileHandle(entry.name), entry.name));
  } catch (e) {
    for (const f of files.values()) f.close?.();
    throw e;
  }
  return {
    open: (name) => files.get(name) ?? null,
    close() {
      for (const f of files.values()) f.close?.();
      files.clear();
    },
  };
}

/** Removes every cached model. Fails while a loaded model holds its files open. */
export async function clearCache() {
  if (!(await root(false))) return;
  try {
    await (await navigator.storage.getDirectory()).removeEntry(ROOT, { recursive: true });
  } catch (e) {
    if (e.name === "NoModificationAllowedError" || e.name === "InvalidModificationError") {
      throw new Error("the weights cache is in use: unload the model before clearing the cache");
    }
    throw e;
  }
}

async function dirBytes(dir) {
  let n = 0;
  for await (const [, h] of dir.entries()) {
    n += h.kind === "file" ? (await h.getFile()).size : await dirBytes(h);
  }
  return n;
}

/** Bytes held by the weights cache: complete entries and the resumable parts of incomplete ones. */
export async function cacheSize() {
  const dir = await root(false);
  return dir ? dirBytes(dir) : 0;
}
