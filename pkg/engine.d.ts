// Types of "qwen3-vl-webgpu/engine": the model inside a worker, with no message passing.
import type { ChatOptions, ChatResult, EngineInfo, LoadOptions, Message, Source } from "./index.js";

export type {
  ChatOptions, ChatResult, ContentPart, EngineInfo, GenerationOptions, ImageInput, LoadOptions, Message, Progress,
  RGBAImage, Source, StopReason, Weights,
} from "./index.js";

export class Engine {
  private constructor();
  static load(source: Source, options?: LoadOptions): Promise<Engine>;
  chat(messages: Message[], options?: ChatOptions, onDelta?: (delta: string, tokenId: number) => void): Promise<ChatResult>;
  reset(): void;
  unload(): void;
  info(): EngineInfo;
}

/** Instantiates the wasm module (Engine.load does it too). */
export function initWasm(): Promise<unknown>;
export function clearCache(): Promise<void>;
export function cacheSize(): Promise<number>;
