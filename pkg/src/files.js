// Folders with synchronous random reads, the shape the wasm loader takes:
//   FileLike { size, readAt(offset, dst) }   Folder { open(name) -> FileLike | null }
// Synchronous reads are legal only in workers: FileReaderSync, sync XHR, OPFS sync handles
// (cache.js). Each readAt fills `dst` completely or throws.

/** Bytes already in memory (a fetched manifest, a test fixture). */
export function memFile(bytes) {
  return {
    size: bytes.length,
    readAt(offset, dst) {
      if (offset + dst.length > bytes.length) throw new Error(`read past the end (${offset}+${dst.length} > ${bytes.length})`);
      dst.set(bytes.subarray(offset, offset + dst.length));
    },
  };
}

/** A user-picked File (or any Blob). */
function blobFile(file) {
  const reader = new FileReaderSync();
  return {
    size: file.size,
    readAt(offset, dst) {
      const buf = reader.readAsArrayBuffer(file.slice(offset, offset + dst.length));
      if (buf.byteLength !== dst.length) throw new Error(`${file.name}: read ${buf.byteLength} of ${dst.length} bytes at ${offset}`);
      dst.set(new Uint8Array(buf));
    },
  };
}

/**
 * Files by their base name (a directory picker's File objects carry the folder in
 * webkitRelativePath; the model folder is flat).
 */
export function filesFolder(files) {
  const byName = new Map(files.map((f) => [f.name, f]));
  return { open: (name) => (byName.has(name) ? blobFile(byName.get(name)) : null), close() {} };
}

/** A FileSystemDirectoryHandle's files, listed up front because open() must be synchronous. */
export async function directoryFolder(dir) {
  const files = [];
  for await (const h of dir.values()) if (h.kind === "file") files.push(await h.getFile());
  return filesFolder(files);
}

function xhr(method, url, range) {
  const x = new XMLHttpRequest();
  x.open(method, url, false);
  if (method === "GET") x.responseType = "arraybuffer";
  if (range) x.setRequestHeader("Range", range);
  try {
    x.send();
  } catch (e) {
    throw new Error(`${url}: ${e.message || "network error"}`);
  }
  return x;
}

/**
 * A remote folder read by synchronous HTTP range requests (the original safetensors, fed to the
 * in-browser quantizer without holding a file in memory). A file's size comes from a HEAD
 * request (Content-Length is readable cross-origin; Content-Range is not always exposed).
 */
export function httpFolder(baseUrl) {
  return {
    open(name) {
      const url = new URL(name, baseUrl).href;
      const head = xhr("HEAD", url);
      if (head.status === 404) return null;
      if (head.status !== 200) throw new Error(`${url}: HTTP ${head.status} ${head.statusText}`);
      const size = Number(head.getResponseHeader("Content-Length"));
      if (!Number.isFinite(size)) throw new Error(`${url}: no Content-Length`);
      return {
        size,
        readAt(offset, dst) {
          if (dst.length === 0) return;
          const x = xhr("GET", url, `bytes=${offset}-${offset + dst.length - 1}`);
          if (x.status !== 206) {
            throw new Error(`${url}: range request answered HTTP ${x.status}${x.status === 200 ? " (the server ignores Range)" : ""}`);
          }
          if (x.response.byteLength !== dst.length) throw new Error(`${url}: got ${x.response.byteLength} of ${dst.length} bytes at ${offset}`);
          dst.set(new Uint8Array(x.response));
        },
      };
    },
    close() {},
  };
}

// `owner/name`: two path segments, no scheme, not starting with "." or "/" (those are URLs).
const HF_ID = /^[A-Za-z0-9][\w.-]*\/[\w.-]+$/;

/** A source string → the folder URL it names (ending in "/"), relative ones against `base`. */
export function resolveSource(source, base = globalThis.location?.href) {
  const s = String(source);
  const url = HF_ID.test(s) ? `https://huggingface.co/${s}/resolve/main/` : new URL(s, base).href;
  return url.endsWith("/") ? url : `${url}/`;
}
