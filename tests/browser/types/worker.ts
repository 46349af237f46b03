// The worker-only project (lib ES2022 + WebWorker, no DOM; see dom.ts): the DOM element types
// are `never` here, never `any`, and the worker-side API compiles.
import { Qwen3VL, type ImageInput } from "qwen3-vl-webgpu";
import { Engine, type ChatResult } from "qwen3-vl-webgpu/engine";

export async function worker(frame: VideoFrame, bitmap: ImageBitmap): Promise<ChatResult> {
  const images: ImageInput[] = [frame, bitmap, new OffscreenCanvas(2, 2), new Blob(), new URL("https://example.com/a.png")];
  // @ts-expect-error: a number is no image (`any` would let it through)
  const bad: ImageInput = 5;
  // @ts-expect-error: nor is a plain object
  const worse: ImageInput = { width: 1 };
  const engine = await Engine.load("Qwen/Qwen3-VL-2B-Instruct", { warmUp: false });
  // @ts-expect-error: misspelt option
  await Engine.load("a/b", { warmup: false });
  const model = await Qwen3VL.load("a/b", { worker: false });
  await model.unload();
  void [bad, worse];
  return engine.chat([{ role: "user", content: [{ type: "video", frames: images, timestamps: [0, 0.5, 1, 1.5, 2] }] }], { greedy: true });
}
