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

async function bitmapOf(image) {
  if (typeof image === "string" || image instanceof URL) {
    const res = await fetch(image);
    if (!res.ok) throw new Error(`${image}: HTTP ${res.status} ${res.statusText}`);
    image = await res.blob();
  }
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
