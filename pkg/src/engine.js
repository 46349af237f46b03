// The model inside a worker: source resolution, the weights cache, and the wasm Engine. Usable
// directly in an application's own worker; src/index.js wraps it for the main thread.

import init, { Engine as WasmEngine, Quantizer } from "../dist/wasm/qwen3_vl_webgpu.js";
import {
  cacheDir, cacheKey, cachedManifest, dropIfEmpty, fillCache, isComplete, isQuotaError, openCachedFolder, quotaError, remove,
  verified, withEntryLock, writeManifest,
} from "./cache.js";
import { checkKeys, LOAD_OPTIONS } from "./check.js";
import { directoryFolder, filesFolder, httpFolder, resolveSource } from "./files.js";
import { toWasmMessages } from "./image.js";
import { answered } from "./net.js";
import { quantizeToCache } from "./quantize.js";

export { clearCache, cacheSize } from "./cache.js";

let wasmReady = null;
let wasmMemory = null;
/** Instantiates the wasm module once (wasm-bindgen `--target web` glue); resolves to its exports. */
export function initWasm() {
  return (wasmReady ??= init().then((exports) => {
    wasmMemory = exports.memory;
    return exports;
  }));
}

/**
 * The weights of a remote folder as a cached, verified Folder: a pre-quantized folder (with
 * manifest.json) is downloaded into OPFS; an original safetensors folder is quantized in the
 * browser by range reads and stored the same way. With the network down, a complete cached
 * entry is used as is. Filling the entry holds its lock (another tab loading the same model
 * waits, then finds it complete); a load that fails leaves only resumable parts.
 */
async function remoteFolder(url, { signal, onProgress, shardMiB }) {
  const key = await cacheKey(url);
  try {
    return await withEntryLock(key, signal, () => fillEntry(url, key, { signal, onProgress, shardMiB }));
  } catch (e) {
    await dropIfEmpty(key);
    throw e;
  }
}

async function fillEntry(url, key, { signal, onProgress, shardMiB }) {
  const manifestUrl = `${url}manifest.json`;
  let manifest = null;
  let missing = null; // why this is read as an original folder
  try {
    const res = await fetch(manifestUrl, { signal, cache: "no-cache" });
    if (res.ok) manifest = await res.json().catch(() => {
      throw new Error(`${manifestUrl} is not JSON`);
    });
    else if (res.status === 404) missing = answered(manifestUrl, res);
    else throw new Error(answered(manifestUrl, res));
  } catch (e) {
    signal?.throwIfAborted();
    if (!(e instanceof TypeError)) throw e; // a TypeError is fetch's "network unreachable"
    const dir = await cacheDir(key);
    manifest = dir && (await cachedManifest(dir));
    if (!manifest) throw new Error(`cannot reach ${url} (${e.message}) and no copy of it is cached`);
    return openCachedFolder(dir, manifest);
  }
  let dir = await cacheDir(key);
  if (missing) {
    manifest = dir && (await cachedManifest(dir));
    if (!manifest || !(await isComplete(dir, manifest, onProgress))) {
      signal?.throwIfAborted();
      dir ??= await cacheDir(key, true);
      await remove(dir, "manifest.json");
      const check = (entry) => verified(dir, entry);
      manifest = await quantizeToCache(dir, Quantizer, url, {
        signal, onProgress, shardMiB, missing, verify: check, remove: (name) => remove(dir, name),
      }).catch((e) => {
        signal?.throwIfAborted();
        if (isQuotaError(e)) throw quotaError(null, null); // what is committed stays, to resume from
        if (e.name !== "Error" || e.message.startsWith(url)) throw e;
        throw new Error(`${url} has no manifest.json (${missing}), so it was read as original safetensors: ${e.message}`);
      });
      await writeManifest(dir, manifest);
    }
  } else {
    if (manifest?.format !== "qwen3-vl-webgpu") throw new Error(`${manifestUrl} is not a qwen3-vl-webgpu manifest`);
    dir ??= await cacheDir(key, true);
    await fillCache(dir, url, manifest, { signal, onProgress });
  }
  signal?.throwIfAborted();
  return openCachedFolder(dir, manifest);
}

export class Engine {
  #wasm;
  #folder;
  #busy = false;
  #lost = null;

  constructor(wasm, folder) {
    this.#wasm = wasm;
    this.#folder = folder;
  }

  /**
   * `source`: a Hugging Face id, a folder URL (string or URL), File[] or a
   * FileSystemDirectoryHandle. Options: weights ("q4" default; "f16"/"f32" only for original
   * safetensors read directly), contextLength, shardMiB (in-browser quantization), warmUp
   * (default true), onProgress, signal.
   */
  static async load(source, options = {}) {
    checkKeys(options, LOAD_OPTIONS, "load options");
    const { weights = "q4", contextLength, shardMiB, warmUp = true, onProgress, signal } = options;
    signal?.throwIfAborted();
    await initWasm();
    let folder;
    if (typeof source === "string" || source instanceof URL) {
      const url = resolveSource(source);
      folder = weights === "q4" ? await remoteFolder(url, { signal, onProgress, shardMiB }) : httpFolder(url);
    } else if (Array.isArray(source)) {
      folder = filesFolder(source);
    } else if (source?.kind === "directory") {
      folder = await directoryFolder(source);
    } else {
      throw new TypeError("source must be a Hugging Face id, a folder URL, File[] or a FileSystemDirectoryHandle");
    }
    try {
      signal?.throwIfAborted();
      // A throwing onProgress stops the wasm loader: that is how an abort reaches it.
      const progress = (p) => {
        signal?.throwIfAborted();
        onProgress?.({ phase: p.phase, loaded: p.done, total: p.total, file: p.file });
      };
      const wasm = await WasmEngine.load(folder, { weights, warmUp, ...(contextLength ? { contextLength } : {}), onProgress: progress });
      if (signal?.aborted) {
        wasm.free();
        signal.throwIfAborted();
      }
      return new Engine(wasm, folder);
    } catch (e) {
      folder.close();
      signal?.throwIfAborted(); // the AbortError rather than the loader's wrapping of it
      throw e;
    }
  }

  /**
   * Runs one assistant turn over the whole conversation (the cached prefix of earlier turns is
   * reused). `onDelta(text, tokenId)` sees each piece of text; aborting `signal` stops the
   * generation and the result says `stop: "cancelled"`.
   */
  async chat(messages, options = {}, onDelta) {
    this.#live();
    if (this.#busy) throw new Error("a chat is already running on this model: wait for it or abort it");
    const { signal } = options;
    signal?.throwIfAborted();
    this.#busy = true;
    try {
      // Everything but the package's own keys goes to the wasm, which refuses unknown ones.
      const gen = Object.fromEntries(Object.entries(options).filter(([k, v]) => k !== "signal" && k !== "stream" && v !== undefined));
      const converted = await toWasmMessages(messages);
      return await this.#wasm.chat(converted, gen, (delta, id) => {
        onDelta?.(delta, id);
        return !signal?.aborted;
      });
    } catch (e) {
      // A lost device never comes back: drop it (and the GPU memory it held) so that only a new
      // load, on a new device, is left to do.
      const lost = this.#wasm.deviceLost();
      if (lost) {
        this.#lost = lost;
        this.#busy = false;
        this.unload();
      }
      throw e;
    } finally {
      this.#busy = false;
    }
  }

  /** Forgets the conversation's KV cache. */
  reset() {
    this.#live().reset();
  }

  info() {
    const info = this.#live().info();
    info.memory.wasmHeapBytes = wasmMemory.buffer.byteLength;
    return info;
  }

  /** Frees the GPU memory and releases the cached files. */
  unload() {
    if (!this.#wasm) return;
    if (this.#busy) throw new Error("cannot unload while a chat is running: abort it first");
    this.#wasm.free();
    this.#wasm = null;
    this.#folder.close();
  }

  #live() {
    if (this.#lost) throw new Error(`the GPU device was lost (${this.#lost}): load the model again`);
    if (!this.#wasm) throw new Error("the model was unloaded");
    return this.#wasm;
  }
}
