// The main-thread API. The model runs in a dedicated worker (src/worker.js), so the page stays
// responsive and the loader can use the synchronous reads only workers have; each call here is a
// message to it. `worker: false` runs the same code in the calling thread, which must itself be a
// worker (an application's own).

import { cacheSize, clearCache } from "./cache.js";
import { checkKeys, LOAD_OPTIONS } from "./check.js";
import { resolveSource } from "./files.js";
import { toWasmMessages, transferables } from "./image.js";
import { completions } from "./openai.js";

function toError({ name, message }) {
  const e = new Error(message);
  e.name = name;
  return e;
}

/** Numbered calls over a message channel, with their progress, deltas and abort. */
class Channel {
  #send;
  #stop;
  #next = 1;
  #pending = new Map();
  #closed = null;

  constructor(send, stop) {
    this.#send = send;
    this.#stop = stop;
  }

  receive(msg) {
    const call = this.#pending.get(msg.id);
    if (!call) return;
    if (msg.type === "progress") call.onProgress?.(msg.progress);
    else if (msg.type === "delta") call.onDelta?.(msg.delta, msg.token);
    else {
      this.#pending.delete(msg.id);
      if (msg.type === "done") call.resolve(msg.value);
      else call.reject(toError(msg.error));
    }
  }

  /** Ends the channel (the worker with it); calls in flight and later ones reject with `error`. */
  fail(error) {
    this.#closed = error;
    for (const call of this.#pending.values()) call.reject(error);
    this.#pending.clear();
    this.#stop();
  }

  stop() {
    this.fail(new Error("the model was unloaded"));
  }

  call(op, args, { onProgress, onDelta, signal, transfer = [] } = {}) {
    const id = this.#next++;
    return new Promise((resolve, reject) => {
      if (this.#closed) return reject(this.#closed);
      this.#pending.set(id, { resolve, reject, onProgress, onDelta });
      this.#send({ id, op, args }, transfer);
      signal?.addEventListener("abort", () => this.#send({ op: "abort", target: id }), { once: true });
    });
  }
}

// Not the literal "./worker.js": bundlers rewrite `new URL("<literal>", import.meta.url)` into an
// asset URL (Vite inlines a small one as data:, which cannot import host.js).
const WORKER_FILE = "./worker.js";

/**
 * Whether the worker must start through a blob URL: a dedicated worker is controlled by the
 * service worker whose scope holds its script's URL, a blob-URL worker by its page's. When the
 * package is served unbundled outside the page's service-worker scope (the demo's /www/ scope
 * and /pkg/src/), a blob keeps the worker's code and wasm coming from that service worker's
 * cache offline. Bundled, `import.meta.url` is the bundle's (or, under webpack, a file: URL), so
 * this is false and the literal form below, which every bundler recognises, starts the worker.
 */
async function startThroughBlob() {
  const sw = globalThis.navigator?.serviceWorker;
  if (!sw?.controller) return null;
  const url = new URL(WORKER_FILE, import.meta.url);
  if (url.origin !== globalThis.location?.origin) return null;
  const scope = (await sw.getRegistration().catch(() => null))?.scope;
  if (!scope || url.href.startsWith(scope)) return null;
  return URL.createObjectURL(new Blob([`import ${JSON.stringify(url.href)};`], { type: "text/javascript" }));
}

async function workerChannel() {
  const blob = await startThroughBlob();
  const worker = blob
    ? new Worker(blob, { type: "module" })
    : new Worker(new URL("./worker.js", import.meta.url), { type: "module" });
  const channel = new Channel((msg, transfer) => worker.postMessage(msg, transfer), () => worker.terminate());
  worker.onmessage = (e) => channel.receive(e.data);
  worker.onerror = (e) => {
    e.preventDefault();
    channel.fail(new Error(`the model worker failed: ${e.message || "its script or the wasm could not be loaded"}`));
  };
  return channel;
}

async function localChannel() {
  const { serve } = await import("./host.js");
  let channel;
  const receive = serve((msg) => channel.receive(msg));
  channel = new Channel((msg) => receive(msg), () => {});
  return channel;
}

/** An async iterable of text deltas with the final result beside it. */
function stream(start) {
  const queue = [];
  let wake = null;
  let finished = false;
  const push = (delta) => {
    queue.push(delta);
    wake?.();
  };
  const result = start(push);
  const settle = () => {
    finished = true;
    wake?.();
  };
  result.then(settle, settle);
  return {
    result,
    async *[Symbol.asyncIterator]() {
      for (;;) {
        if (queue.length) yield queue.shift();
        else if (finished) {
          await result; // throws the chat's error
          return;
        } else await new Promise((r) => (wake = r)).finally(() => (wake = null));
      }
    },
  };
}

/** A label for the loaded model in OpenAI-shaped responses. */
function modelName(source) {
  if (typeof source === "string") return source.replace(/^https:\/\/huggingface\.co\/(.+?)\/resolve\/main\/$/, "$1");
  return Array.isArray(source) ? "local files" : (source?.name ?? "local folder");
}

export class Qwen3VL {
  #channel;

  /**
   * One assistant turn over the whole conversation (OpenAI-style messages; images as
   * ImageBitmap, ImageData, HTMLVideoElement, HTMLCanvasElement, HTMLImageElement, VideoFrame,
   * Blob or URL). Iterate for the text deltas; `result` gives ids, text, stop reason, timings.
   * `chat.completions.create(body)` is the same in OpenAI's request and response shapes.
   */
  chat;

  constructor(channel, source) {
    this.#channel = channel;
    const run = (messages, options, onDelta) => this.#run(messages, options, onDelta);
    this.chat = (messages, options) => stream((push) => run(messages, options, push));
    this.chat.completions = completions(run, () => modelName(source));
  }

  /**
   * Loads a model. `source`: a Hugging Face id ("Qwen/Qwen3-VL-2B-Instruct"), a folder URL
   * (relative ones start with "./", "../" or "/"), File[] or a FileSystemDirectoryHandle.
   */
  static async load(source, options = {}) {
    checkKeys(options, [...LOAD_OPTIONS, "worker"], "load options");
    const { worker = true, signal, onProgress, ...rest } = options;
    signal?.throwIfAborted();
    if (typeof source === "string" || source instanceof URL) source = resolveSource(source);
    // persist() exists only on the main thread; a denial just leaves the cache evictable.
    await globalThis.navigator?.storage?.persist?.().catch(() => false);
    const channel = worker ? await workerChannel() : await localChannel();
    // Abort ends a worker load at once (terminating it frees what it held; downloaded shards
    // stay cached for the next load); in-thread, the load stops at its next step.
    const abort = () => worker && channel.fail(signal.reason);
    signal?.addEventListener("abort", abort, { once: true });
    try {
      await channel.call("load", { source, options: rest }, { onProgress, signal });
    } catch (e) {
      channel.stop();
      throw e;
    } finally {
      signal?.removeEventListener("abort", abort);
    }
    return new Qwen3VL(channel, source);
  }

  /** The chat behind `chat` and `chat.completions.create`: `onDelta(text, tokenId)` per token. */
  async #run(messages, { signal, ...options } = {}, onDelta) {
    signal?.throwIfAborted();
    const converted = await toWasmMessages(messages);
    const result = await this.#channel.call("chat", { messages: converted, options }, {
      signal,
      transfer: transferables(converted),
      onDelta,
    });
    if (options.stream === false) onDelta?.(result.text, null);
    return result;
  }

  /** Forgets the conversation (its KV cache); the next chat starts from scratch. */
  reset() {
    return this.#channel.call("reset");
  }

  /** Adapter, capabilities, model sizes and GPU memory. */
  info() {
    return this.#channel.call("info");
  }

  /** Frees GPU memory and ends the worker; the object is unusable afterwards. */
  async unload() {
    try {
      await this.#channel.call("unload");
    } finally {
      this.#channel.stop();
    }
  }

  /** Deletes every cached model (unload loaded models first). */
  static clearCache() {
    return clearCache();
  }

  /** Bytes the weights cache holds. */
  static cacheSize() {
    return cacheSize();
  }
}

export { resolveSource };
