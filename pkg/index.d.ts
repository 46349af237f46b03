// Types of the public API of qwen3-vl-webgpu (src/index.js on the main thread, src/engine.js
// inside a worker).

/** Where weights come from: a Hugging Face id ("Qwen/Qwen3-VL-2B-Instruct"), the URL of a folder
 *  (relative ones start with "./", "../" or "/"; with manifest.json = pre-quantized shards made by
 *  `qwen3-vl quantize`, without = original safetensors, quantized in the browser once), or local
 *  files: File[] (a picked folder) or a FileSystemDirectoryHandle. */
export type Source = string | URL | File[] | FileSystemDirectoryHandle;

export type Weights = "q4" | "f16" | "f32";

export interface Progress {
  phase: "download" | "quantize" | "upload" | "compile";
  /** Bytes (download, quantize) or steps (upload, compile) done. */
  loaded: number;
  total: number;
  file?: string;
}

export interface LoadOptions {
  /** "q4" (default) is the only format a URL source caches; "f16"/"f32" read original safetensors
   *  directly (local files, or a URL by range requests on every load). */
  weights?: Weights;
  /** KV-cache length in tokens (default: the engine's). */
  contextLength?: number;
  /** Shard size of the in-browser quantization (MiB, default 32). */
  shardMiB?: number;
  /** Compile the GPU pipelines during the load (phase "compile") by answering one tiny
   *  question, so the first real answer starts at full speed (default true). */
  warmUp?: boolean;
  onProgress?: (progress: Progress) => void;
  /** Aborting rejects the load; downloaded shards stay cached and the next load resumes. */
  signal?: AbortSignal;
}

/** Anything an image part may hold; converted to RGBA without colour-space conversion. */
export type ImageInput =
  | ImageBitmap
  | ImageData
  | HTMLImageElement
  | HTMLVideoElement
  | HTMLCanvasElement
  | OffscreenCanvas
  | VideoFrame
  | Blob
  | string
  | URL
  | RGBAImage;

export interface RGBAImage {
  width: number;
  height: number;
  /** width × height × 4 bytes, RGBA, not premultiplied. */
  data: Uint8Array | Uint8ClampedArray;
}

export type ContentPart =
  | { type: "text"; text: string }
  /** `maxPixels`: this image's pixel budget, over the chat's (see ChatOptions.maxPixels). */
  | { type: "image"; image: ImageInput; maxPixels?: number }
  | { type: "image_url"; image_url: string | { url: string }; maxPixels?: number }
  /** Frames of one video with their times in seconds. */
  | { type: "video"; frames: ImageInput[]; timestamps: number[] };

export interface Message {
  role: "system" | "user" | "assistant";
  content: string | ContentPart[];
}

export interface GenerationOptions {
  maxNewTokens?: number;
  temperature?: number;
  topK?: number;
  topP?: number;
  repetitionPenalty?: number;
  presencePenalty?: number;
  seed?: number;
  /** Argmax decoding: the same ids as `qwen3-vl run --greedy`. */
  greedy?: boolean;
  /** The most pixels of an image (default 786432: 1024×768, 768 tokens); it caps the model's
   *  preprocessor_config.json maximum, keeping the aspect ratio. An image part's own wins. */
  maxPixels?: number;
  /** The most pixels of all of a video's frames together (default 1572864). */
  videoMaxPixels?: number;
}

export interface ChatOptions extends GenerationOptions {
  /** false: no per-token messages; the iterator yields the whole text once at the end. */
  stream?: boolean;
  /** Aborting stops generation; `result` then resolves with `stop: "cancelled"`. */
  signal?: AbortSignal;
}

export interface ChatResult {
  ids: number[];
  text: string;
  stop: "stop" | "length" | "cancelled" | "context_full";
  promptTokens: number;
  /** `cachedTokens` of the prompt came from earlier turns' cache, `computedTokens` were computed
   *  now (the prefill rate counts only these). */
  timings: {
    timeToFirstTokenMs: number;
    cachedTokens: number;
    computedTokens: number;
    prefillTokensPerS: number;
    decodeTokensPerS: number;
    totalMs: number;
  };
}

/** Text deltas as they are generated, and the final result. */
export interface ChatStream extends AsyncIterable<string> {
  result: Promise<ChatResult>;
}

/** Adapter, capabilities (f16, subgroups, limits), model sizes and GPU memory (live / peak). */
export type EngineInfo = Record<string, unknown>;

export class Qwen3VL {
  private constructor();
  /** `worker: false` runs the model in the calling thread, which must be a worker. */
  static load(source: Source, options?: LoadOptions & { worker?: boolean }): Promise<Qwen3VL>;
  /** One assistant turn over the whole conversation; earlier turns' KV cache is reused. */
  chat(messages: Message[], options?: ChatOptions): ChatStream;
  /** Forgets the conversation's KV cache. */
  reset(): Promise<void>;
  /** Frees GPU memory and ends the worker. */
  unload(): Promise<void>;
  info(): Promise<EngineInfo>;
  /** Deletes every cached model (unload loaded models first). */
  static clearCache(): Promise<void>;
  /** Bytes the weights cache holds. */
  static cacheSize(): Promise<number>;
}

/** The folder URL a source string names (ending in "/"). */
export function resolveSource(source: string | URL, base?: string): string;
