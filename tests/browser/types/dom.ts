// Compiled by types.test.mjs with `tsc --strict` against the packed package, once with the DOM
// lib (this file) and once with only the WebWorker lib (worker.ts). Every `@ts-expect-error`
// line must fail to compile: were a type to decay to `any`, tsc would report the unused directive.
import { Qwen3VL, type ChatCompletion, type ChatCompletionChunk, type EngineInfo, type ImageInput, type Progress } from "qwen3-vl-webgpu";
import type { Engine } from "qwen3-vl-webgpu/engine";
import pkg from "qwen3-vl-webgpu/package.json" with { type: "json" };

export async function page(video: HTMLVideoElement, img: HTMLImageElement, canvas: HTMLCanvasElement): Promise<string> {
  const images: ImageInput[] = [video, img, canvas, "photo.jpg", new Blob()];
  // @ts-expect-error: a number is no image
  const bad: ImageInput = 5;
  const model = await Qwen3VL.load("Qwen/Qwen3-VL-2B-Instruct", {
    onProgress: (p: Progress) => void [p.phase === "verify", p.loaded / p.total],
  });
  // @ts-expect-error: misspelt option
  await Qwen3VL.load("a/b", { maxTokens: 4 });
  const answer = model.chat([{ role: "user", content: [{ type: "image", image: images[0] }, { type: "text", text: "?" }] }], { maxNewTokens: 8 });
  for await (const delta of answer) void delta.toUpperCase();
  const { stop, ids, promptIds } = await answer.result;
  // @ts-expect-error: the package's stop vocabulary has no "MaxTokens"
  const wrong: typeof stop = "MaxTokens";
  const info: EngineInfo = await model.info();
  const heap: number = info.memory.wasmHeapBytes + info.adapter.limits.maxBufferSize;
  // @ts-expect-error: EngineInfo is not a loose record
  void info.nonsense;

  const completion: ChatCompletion = await model.chat.completions.create({
    model: "qwen3-vl",
    messages: [{ role: "user", content: [{ type: "image_url", image_url: { url: "data:image/png;base64,AAAA" } }, { type: "text", text: "?" }] }],
    max_tokens: 16,
    temperature: 0,
  });
  const chunks = await model.chat.completions.create({ messages: [{ role: "user", content: "hi" }], stream: true });
  for await (const chunk of chunks) {
    const c: ChatCompletionChunk = chunk;
    void c.choices[0]?.delta.content;
  }
  // @ts-expect-error: n other than 1 is refused
  await model.chat.completions.create({ messages: [], n: 2 });
  void [bad, wrong, heap, ids.length, promptIds.length];
  return `${pkg.version} ${completion.choices[0].message.content} ${completion.choices[0].finish_reason}`;
}

export function inWorker(engine: Engine): number {
  return engine.info().model.contextLength;
}
