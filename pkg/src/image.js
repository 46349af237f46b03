// Images in, RGBA pixels out, for the chat messages the wasm engine takes. Runs on the main
// thread (DOM sources) and in workers (ImageBitmap, VideoFrame, Blob, URL, ImageData).
// colorSpaceConversion "none" and premultiplyAlpha "none" keep a PNG's stored values, so the
// pixels equal what the native decoder reads. Opaque pixels are exact; the 2D canvas used for
// readback stores premultiplied alpha, so translucent pixels may differ by rounding.

const BITMAP_OPTIONS = { colorSpaceConversion: "none", premultiplyAlpha: "none" };

// Pixel buffers this module allocated: safe to transfer to a worker (a caller's ImageData is not).
const owned = new WeakSet();

function isPixels(x) {
  return Number.isInteger(x?.width) && Number.isInteger(x?.height) && ArrayBuffer.isView(x?.data);
}

/**
 * Whether a JPEG holds its end-of-image marker after its (first full-size) scan: its segments are
 * walked by their lengths to the start-of-scan, then the entropy-coded data, where 0xFF is always
 * stuffed, is searched for FF D9. Data after the marker (a phone's appended video) is allowed;
 * a structure this walk does not understand is left to the decoder.
 */
function jpegComplete(b) {
  let i = 2;
  while (i + 4 <= b.length) {
    if (b[i] !== 0xff) return true;
    const marker = b[i + 1];
    if (marker === 0xff) {
      i++;
      continue;
    }
    if (marker === 0xd9) return true;
    const len = (b[i + 2] << 8) | b[i + 3];
    if (marker === 0xda) {
      for (let j = i + 2 + len; j + 1 < b.length; j++) if (b[j] === 0xff && b[j + 1] === 0xd9) return true;
      return false;
    }
    i += 2 + len;
  }
  return false;
}

/**
 * Throws when an encoded image stops before its format's end: browsers decode a JPEG cut in half
 * without complaint (the missing rows come out grey), which would have the model describe half a
 * picture. JPEG needs its end-of-image marker, PNG its IEND chunk, GIF its trailer; a WebP's RIFF
 * size must fit in the file.
 */
async function checkComplete(blob, what) {
  const head = new Uint8Array(await blob.slice(0, 12).arrayBuffer());
  const is = (bytes, at = 0) => bytes.every((b, i) => head[at + i] === b);
  const tail = async (n) => new Uint8Array(await blob.slice(Math.max(0, blob.size - n)).arrayBuffer());
  let format = null;
  let complete = true;
  if (is([0xff, 0xd8, 0xff])) {
    format = "JPEG";
    complete = jpegComplete(new Uint8Array(await blob.arrayBuffer()));
  } else if (is([0x89, 0x50, 0x4e, 0x47])) {
    format = "PNG";
    complete = new TextDecoder("latin1").decode(await tail(4096)).includes("IEND");
  } else if (is([0x47, 0x49, 0x46, 0x38])) {
    format = "GIF";
    complete = (await tail(16)).findLast((b) => b !== 0) === 0x3b;
  } else if (is([0x52, 0x49, 0x46, 0x46]) && is([0x57, 0x45, 0x42, 0x50], 8)) {
    format = "WebP";
    complete = new DataView(head.buffer).getUint32(4, true) + 8 <= blob.size;
  }
  if (!complete) throw new Error(`${what} is a truncated ${format}: its ${blob.size} bytes end before the image does (a cut download?)`);
}

async function bitmapOf(image) {
  const what = typeof image === "string" || image instanceof URL ? String(image).slice(0, 200) : `the ${image?.constructor?.name ?? "image"}`;
  if (typeof image === "string" || image instanceof URL) {
    const res = await fetch(image);
    if (!res.ok) throw new Error(`${what}: HTTP ${res.status} ${res.statusText}`);
    image = await res.blob();
  }
  if (image instanceof Blob) await checkComplete(image, what);
  try {
    return await createImageBitmap(image, BITMAP_OPTIONS);
  } catch (e) {
    throw new Error(`cannot decode the image (${image?.constructor?.name ?? typeof image}): ${e.message}`);
  }
}

/** Any supported image → `{ width, height, data: RGBA bytes }`. */
export async function toRGBA(image) {
  if (isPixels(image)) {
    if (image.data.length !== image.width * image.height * 4) {
      throw new Error(`image data has ${image.data.length} bytes, ${image.width}×${image.height} RGBA needs ${image.width * image.height * 4}`);
    }
    return { width: image.width, height: image.height, data: image.data };
  }
  const bitmap = image instanceof ImageBitmap ? image : await bitmapOf(image);
  try {
    const { width, height } = bitmap;
    if (!width || !height) throw new Error("the image is empty (a video that has no frame yet?)");
    const ctx = new OffscreenCanvas(width, height).getContext("2d", { willReadFrequently: true });
    ctx.drawImage(bitmap, 0, 0);
    const data = new Uint8Array(ctx.getImageData(0, 0, width, height, { colorSpace: "srgb" }).data.buffer);
    owned.add(data.buffer);
    return { width, height, data };
  } finally {
    if (bitmap !== image) bitmap.close();
  }
}

async function toPart(part) {
  switch (part?.type) {
    case "text":
      return { type: "text", text: String(part.text) };
    case "image":
    case "image_url": {
      // An image part may already be pixels (the main thread converted it before the worker).
      const image = part.type === "image" ? (isPixels(part) ? part : part.image) : (part.image_url?.url ?? part.image_url);
      const budget = part.maxPixels == null ? {} : { maxPixels: part.maxPixels };
      return { type: "image", ...(await toRGBA(image)), ...budget };
    }
    case "video": {
      const { frames, timestamps } = part;
      if (!Array.isArray(frames) || !Array.isArray(timestamps) || frames.length !== timestamps.length || !frames.length) {
        throw new Error("a video part needs `frames` and as many `timestamps` (seconds), at least one");
      }
      return { type: "video", frames: await Promise.all(frames.map(toRGBA)), timestamps: timestamps.map(Number) };
    }
    default:
      throw new Error(`unknown content part type ${JSON.stringify(part?.type)} (expected text, image or video)`);
  }
}

/** OpenAI-style messages → the wasm engine's messages (every image as RGBA). */
export async function toWasmMessages(messages) {
  if (!Array.isArray(messages) || !messages.length) throw new Error("chat needs a non-empty array of messages");
  return Promise.all(
    messages.map(async ({ role, content }) => {
      if (!["system", "user", "assistant"].includes(role)) throw new Error(`unknown role ${JSON.stringify(role)}`);
      return { role, content: typeof content === "string" ? content : await Promise.all(content.map(toPart)) };
    }),
  );
}

/** The pixel buffers in converted messages that can be transferred instead of copied. */
export function transferables(messages) {
  const out = new Set();
  for (const { content } of messages) {
    if (typeof content === "string") continue;
    for (const part of content) {
      for (const px of part.type === "video" ? part.frames : part.type === "image" ? [part] : []) {
        if (owned.has(px.data.buffer)) out.add(px.data.buffer);
      }
    }
  }
  return [...out];
}
