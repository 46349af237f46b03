// Types of the public API of qwen3-vl-webgpu (src/index.js on the main thread, src/engine.js
// inside a worker). They compile with the DOM lib and with the WebWorker lib alone: the DOM
// element types are looked up on `globalThis`, so a worker-only project sees `never` there
// instead of an unresolved name (which `skipLibCheck` would turn into `any`).

/** Where weights come from: a Hugging Face id ("Qwen/Qwen3-VL-2B-Instruct"), the URL of a folder
 *  (relative ones start with "./", "../" or "/"; with manifest.json = pre-quantized shards made by
 *  `qwen3-vl quantize`, without = original safetensors, quantized in the browser once), or local
 *  files: File[] (a picked folder) or a FileSystemDirectoryHandle. */
export type Source = string | URL | File[] | FileSystemDirectoryHandle;

export type Weights = "q4" | "f16" | "f32";

export interface Progress {
  /** "verify": hashing cached files; "download": fetching pre-quantized files; "quantize":
   *  reading and quantizing original safetensors; "upload": weights to the GPU; "compile":
   *  the warm-up that compiles the GPU pipelines. */
  phase: "verify" | "download" | "quantize" | "upload" | "compile";
  /** Bytes (verify, download, quantize, upload) or steps (compile) done. */
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

// A load that fails (an abort, a lost network, a full disk, a 404) leaves in the cache only what
// the next load of the same source resumes from: verified shards and `.part` files of a
// download, the committed shards and `quantize.json` of an in-browser quantization. They count in
// `cacheSize()`; `clearCache()` removes them.

/** A DOM type where the project has the DOM lib, else `never`. */
type Dom<K extends string> = typeof globalThis extends Record<K, { prototype: infer T }> ? T : never;

/** Anything an image part may hold; converted to RGBA without colour-space conversion. */
export type ImageInput =
  | ImageBitmap
  | ImageData
  | Dom<"HTMLImageElement">
  | Dom<"HTMLVideoElement">
  | Dom<"HTMLCanvasElement">
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
  /** A URL: http(s), data: or blob:. */
  | { type: "image_url"; image_url: string | { url: string; detail?: string }; maxPixels?: number }
  /** Frames of one video with their times in seconds (e.g. the last seconds of a camera:
   *  see the README's "video" section). */
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

/** Unknown keys are an Error naming them. */
export interface ChatOptions extends GenerationOptions {
  /** false: no per-token messages; the iterator yields the whole text once at the end. */
  stream?: boolean;
  /** Aborting stops generation; `result` then resolves with `stop: "cancelled"`. */
  signal?: AbortSignal;
}

/** Why generation ended: an end-of-turn token ("stop"), `maxNewTokens` ("length"), an abort
 *  ("cancelled"), or the KV cache ran out ("context_full"). */
export type StopReason = "stop" | "length" | "cancelled" | "context_full";

export interface ChatResult {
  ids: number[];
  text: string;
  stop: StopReason;
  promptTokens: number;
  /** The prompt's token ids (chat template, image and video pads, timestamps). */
  promptIds: number[];
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

/** The adapter, the model, and memory. */
export interface EngineInfo {
  adapter: {
    name: string;
    backend: string;
    /** A software adapter (SwiftShader, lavapipe). */
    cpu: boolean;
    f16: boolean;
    subgroups: boolean;
    subgroupMinSize: number;
    subgroupMaxSize: number;
    limits: {
      maxStorageBufferBindingSize: number;
      maxBufferSize: number;
      maxComputeInvocationsPerWorkgroup: number;
      maxComputeWorkgroupStorageSize: number;
      maxStorageBuffersPerShaderStage: number;
    };
  };
  model: {
    weights: Weights;
    hiddenSize: number;
    layers: number;
    vocabSize: number;
    visionDepth: number;
    contextLength: number;
    cachedTokens: number;
  };
  memory: {
    /** GPU buffer bytes alive now, and the most ever alive at once. */
    liveBytes: number;
    peakBytes: number;
    /** The wasm linear memory of the worker (it grows, never shrinks). */
    wasmHeapBytes: number;
  };
}

// ----- chat.completions.create: OpenAI's Chat Completions shapes -----

export type ChatCompletionContentPart =
  | { type: "text"; text: string }
  | { type: "image_url"; image_url: { url: string; detail?: "auto" | "low" | "high" } };

export interface ChatCompletionMessageParam {
  /** "developer" is read as "system". */
  role: "system" | "developer" | "user" | "assistant";
  content: string | null | ChatCompletionContentPart[];
}

interface ChatCompletionCreateParamsBase {
  messages: ChatCompletionMessageParam[];
  /** Echoed in the response (the loaded model answers whatever it says). */
  model?: string;
  max_tokens?: number | null;
  max_completion_tokens?: number | null;
  /** 0 is argmax decoding. */
  temperature?: number | null;
  top_p?: number | null;
  seed?: number | null;
  /** Up to any number of strings; the text ends before the first one generated. */
  stop?: string | string[] | null;
  n?: 1 | null;
  presence_penalty?: number | null;
  /** Only 0: use presence_penalty or repetition_penalty. */
  frequency_penalty?: 0 | null;
  /** Not OpenAI's: transformers' multiplicative penalty (as WebLLM has it). */
  repetition_penalty?: number | null;
  logprobs?: false | null;
  user?: string;
}

export interface ChatCompletionCreateParamsNonStreaming extends ChatCompletionCreateParamsBase {
  stream?: false | null;
}

export interface ChatCompletionCreateParamsStreaming extends ChatCompletionCreateParamsBase {
  stream: true;
  stream_options?: { include_usage?: boolean } | null;
}

export type ChatCompletionCreateParams = ChatCompletionCreateParamsNonStreaming | ChatCompletionCreateParamsStreaming;

export type FinishReason = "stop" | "length";

export interface CompletionUsage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
  /** `cached_tokens` of the prompt came from the cache of earlier turns (not computed again). */
  prompt_tokens_details: { cached_tokens: number };
}

export interface ChatCompletion {
  id: string;
  object: "chat.completion";
  created: number;
  model: string;
  choices: Array<{
    index: 0;
    message: { role: "assistant"; content: string };
    finish_reason: FinishReason;
    logprobs: null;
    /** Not OpenAI's: the generated token ids (as vLLM returns them). */
    token_ids: number[];
  }>;
  usage: CompletionUsage;
}

export interface ChatCompletionChunk {
  id: string;
  object: "chat.completion.chunk";
  created: number;
  model: string;
  /** Empty in the final usage chunk (`stream_options.include_usage`). */
  choices: Array<{
    index: 0;
    delta: { role?: "assistant"; content?: string };
    finish_reason: FinishReason | null;
    logprobs: null;
    /** Not OpenAI's: the ids of the tokens this chunk's text came from. */
    token_ids: number[];
  }>;
  usage?: CompletionUsage;
}

export interface RequestOptions {
  /** Aborting rejects the call (or ends the stream) with an AbortError. */
  signal?: AbortSignal;
}

export interface Completions {
  create(body: ChatCompletionCreateParamsStreaming, options?: RequestOptions): Promise<AsyncIterable<ChatCompletionChunk>>;
  create(body: ChatCompletionCreateParamsNonStreaming, options?: RequestOptions): Promise<ChatCompletion>;
  create(body: ChatCompletionCreateParams, options?: RequestOptions): Promise<ChatCompletion | AsyncIterable<ChatCompletionChunk>>;
}

/** `model.chat(messages, options)`, with `model.chat.completions.create(body)` beside it. */
export interface Chat {
  /** One assistant turn over the whole conversation; earlier turns' KV cache is reused. */
  (messages: Message[], options?: ChatOptions): ChatStream;
  completions: Completions;
}

export class Qwen3VL {
  private constructor();
  /** `worker: false` runs the model in the calling thread, which must be a worker. Unknown
   *  options are an Error naming them. */
  static load(source: Source, options?: LoadOptions & { worker?: boolean }): Promise<Qwen3VL>;
  readonly chat: Chat;
  /** Forgets the conversation's KV cache. */
  reset(): Promise<void>;
  /** Frees GPU memory and ends the worker. */
  unload(): Promise<void>;
  info(): Promise<EngineInfo>;
  /** Deletes every cached model (unload loaded models first). */
  static clearCache(): Promise<void>;
  /** Bytes the weights cache holds: complete entries and resumable parts. */
  static cacheSize(): Promise<number>;
}

/** The folder URL a source string names (ending in "/"). */
export function resolveSource(source: string | URL, base?: string): string;
