// Network reads for the in-browser quantization of an original safetensors folder, made for a
// real network: every request is retried with backoff on transient failures (a dropped
// connection, a cut body, 408/425/429/5xx), a file's redirect (the Hugging Face hub answers every
// resolve/ URL with one) is followed once and its target used for every range, and the ranges the
// quantizer will read are fetched ahead in parallel, as large requests, within a bounded window.

const RETRIES = 5;
const BACKOFF_MS = 250; // doubled per retry, plus up to as much again at random

/** A failure that retrying cannot fix (a 404, a server that ignores Range). */
function permanent(message) {
  const e = new Error(message);
  e.permanent = true;
  return e;
}

const transient = (status) => status === 408 || status === 425 || status === 429 || status >= 500;

export function answered(url, res) {
  return `${url} answered HTTP ${res.status}${res.statusText ? ` ${res.statusText}` : ""}`;
}

function sleep(ms, signal) {
  return new Promise((resolve, reject) => {
    const t = setTimeout(resolve, ms);
    signal?.addEventListener("abort", () => (clearTimeout(t), reject(signal.reason)), { once: true });
  });
}

/**
 * Runs `attempt()` until it returns, retrying thrown errors that are not `permanent` (network
 * errors included) with exponential backoff. `what` names the request in the final error.
 */
export async function retrying(what, attempt, { signal, retries = RETRIES } = {}) {
  for (let i = 0; ; i++) {
    try {
      return await attempt();
    } catch (e) {
      signal?.throwIfAborted();
      if (e.permanent) throw e;
      if (i >= retries) throw new Error(`${what}: ${e.message} (gave up after ${i + 1} tries)`);
      await sleep(BACKOFF_MS * 2 ** i * (1 + Math.random()), signal);
    }
  }
}

/** A whole small file, or null when the server answers 404. */
export function fetchFile(url, { signal } = {}) {
  return retrying(url, async () => {
    const res = await fetch(url, { signal, cache: "no-cache" });
    if (res.status === 404) return null;
    if (!res.ok) throw (transient(res.status) ? Error : permanent)(answered(url, res));
    return new Uint8Array(await res.arrayBuffer());
  }, { signal });
}

/**
 * A large remote file: its redirect followed once (HEAD), then `{ url, final, size, etag }`
 * with `final` the URL ranges go to; null when the server answers 404.
 */
export function resolveFile(url, { signal } = {}) {
  return retrying(url, async () => {
    const res = await fetch(url, { method: "HEAD", signal, cache: "no-store" });
    if (res.status === 404) return null;
    if (!res.ok) throw (transient(res.status) ? Error : permanent)(answered(url, res));
    const size = Number(res.headers.get("Content-Length"));
    if (!Number.isSafeInteger(size)) throw permanent(`${url} answered HEAD without a Content-Length`);
    return { url, final: res.url || url, size, etag: res.headers.get("ETag") };
  }, { signal });
}

/**
 * Bytes `start..end` of `file` (from resolveFile). A redirect target that stops answering
 * (signed URLs expire) is resolved again once.
 */
export function fetchRange(file, start, end, { signal } = {}) {
  const what = `${file.url} bytes ${start}-${end - 1}`;
  let reresolved = false;
  return retrying(what, async () => {
    const res = await fetch(file.final, { headers: { Range: `bytes=${start}-${end - 1}` }, signal, cache: "no-store" });
    if (res.status === 206) {
      const bytes = new Uint8Array(await res.arrayBuffer());
      if (bytes.length !== end - start) throw new Error(`got ${bytes.length} of ${end - start} bytes`);
      return bytes;
    }
    if (res.status === 200) throw permanent(`${file.final} answered a range request with the whole file (the server ignores Range)`);
    if (file.final !== file.url && !reresolved && [401, 403, 404, 410].includes(res.status)) {
      reresolved = true;
      Object.assign(file, await resolveFile(file.url, { signal }));
      throw new Error(`${answered(file.final, res)}; its redirect was followed again`);
    }
    throw (transient(res.status) ? Error : permanent)(answered(file.final, res));
  }, { signal });
}

/**
 * The byte ranges a sequence of steps reads (`reads[i] = { file, start, end }`), fetched ahead:
 * consecutive contiguous ranges of one file are merged into requests of up to `maxRequest`
 * bytes; at most `parallel` requests are in flight and at most `window` bytes (one request more
 * when a single request is larger) are held, each dropped once its last step has run.
 */
export class RangeReader {
  #files;
  #requests = [];
  #of = []; // step → request index
  #next = 0; // the next request to start
  #held = 0;
  #flying = 0;
  #opts;

  constructor(files, reads, { signal, parallel = 4, window = 64 << 20, maxRequest = 16 << 20 } = {}) {
    this.#files = files;
    this.#opts = { signal, parallel, window };
    for (const [i, r] of reads.entries()) {
      const last = this.#requests.at(-1);
      if (last && last.file === r.file && last.end === r.start && r.end - last.start <= maxRequest) {
        last.end = r.end;
        last.lastStep = i;
      } else {
        this.#requests.push({ file: r.file, start: r.start, end: r.end, lastStep: i, data: null, done: null });
      }
      this.#of.push(this.#requests.length - 1);
    }
  }

  /** Resolves once step `i`'s range is in memory (starting further requests ahead). */
  async ready(i) {
    const want = this.#of[i];
    while (this.#next <= want || this.#canStart()) this.#start(this.#next++);
    await this.#requests[want].done;
  }

  #canStart() {
    const { parallel, window } = this.#opts;
    const r = this.#requests[this.#next];
    return r && this.#flying < parallel && (this.#held === 0 || this.#held + (r.end - r.start) <= window);
  }

  #start(k) {
    const r = this.#requests[k];
    this.#held += r.end - r.start;
    this.#flying++;
    r.done = fetchRange(this.#files.get(r.file), r.start, r.end, { signal: this.#opts.signal })
      .then((data) => {
        r.data = data;
      })
      .finally(() => {
        this.#flying--;
        // A request that finished makes room for the next one ahead.
        while (this.#canStart()) this.#start(this.#next++);
      });
    r.done.catch(() => {}); // awaited by ready(); ahead of it, a failure waits to be seen there
  }

  /** Copies `dst.length` bytes of `file` at `offset` from a request in memory. */
  read(file, offset, dst) {
    const end = offset + dst.length;
    const r = this.#requests.find((q) => q.data && q.file === file && q.start <= offset && end <= q.end);
    if (!r) throw new Error(`${file}: bytes ${offset}-${end - 1} were not fetched ahead`);
    dst.set(r.data.subarray(offset - r.start, end - r.start));
  }

  /** Drops every request whose last step is at most `i`. */
  release(i) {
    for (const r of this.#requests) {
      if (r.data && r.lastStep <= i) {
        r.data = null;
        this.#held -= r.end - r.start;
      }
    }
  }
}
