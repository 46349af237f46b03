// The model inside a worker: source resolution, the weights cache, and the wasm Engine. Usable
// directly in an application's own worker; src/index.js wraps it for the main thread.

import init, { Engine as WasmEngine, quantize } from "../dist/wasm/qwen3_vl_webgpu.js";
import { cacheDir, cacheKey, cachedManifest, fillCache, isComplete, openCachedFolder, quantizeToCache } from "./cache.js";
import { directoryFolder, filesFolder, httpFolder, resolveSource } from "./files.js";
import { toWasmMessages } from "./image.js";

export { clearCache, cacheSize } from "./cache.js";

let wasmReady = null;
/** Instantiates the wasm module once (wasm-bindgen `--target web` glue). */
export function initWasm() {
  return (wasmReady ??= init());
}

const GENERATION_OPTIONS = ["maxNewTokens", "temperature", "topK", "topP", "repetitionPenalty", "presencePenalty", "seed", "greedy", "maxPixels", "videoMaxPixels"];

/**
 * The weights of a remote folder as a cached, verified Folder: a pre-quantized folder (with
 * manifest.json) is downloaded into OPFS; an original safetensors folder is quantized in the
 * browser by range reads and stored the same way. With the network down, a complete cached
 * entry is used as is.
 */
async function remoteFolder(url, { signal, onProgress, shardMiB }) {
  const dir = await cacheDir(await cacheKey(url));
  let manifest = null;
  let original = false;
  try {
    const res = await fetch(`${url}manifest.json`, { signal, cache: "no-cache" });
    if (res.ok) manifest = await res.json();
    else if (res.status === 404) original = true;
    else throw new Error(`${url}manifest.json: HTTP ${res.status} ${res.statusText}`);
  } catch (e) {
    signal?.throwIfAborted();
    if (!(e instanceof TypeError)) throw e; // a TypeError is fetch's "network unreachable"
    manifest = await cachedManifest(dir);
    if (!manifest) throw new Error(`cannot reach ${url} (${e.message}) and no copy of it is cached`);
  }
  if (original) {
    manifest = await cachedManifest(dir);
    if (!manifest || !(await isComplete(dir, manifest, onProgress))) {
      signal?.throwIfAborted();
      manifest = await quantizeToCache(dir, quantize, httpFolder(url), { signal, onProgress, shardMiB }).catch((e) => {
        if (e.name !== "Error") throw e; // QuotaExceededError, AbortError
        throw new Error(`${url} has no manifest.json, so it was read as original safetensors: ${e.message}`);
      });
    }
  } else {
    if (manifest.format !== "qwen3-vl-webgpu") throw new Error(`${url}manifest.json is not a qwen3-vl-webgpu manifest`);
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
  static async load(source, { weights = "q4", contextLength, shardMiB, warmUp = true, onProgress, signal } = {}) {
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
      const converted = await toWasmMessages(messages);
      const gen = Object.fromEntries(GENERATION_OPTIONS.filter((k) => options[k] != null).map((k) => [k, options[k]]));
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
    return this.#live().info();
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
