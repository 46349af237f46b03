// The worker side of the message protocol (src/index.js is the other side):
//   in:  { id, op: "load"|"chat"|"reset"|"unload"|"info"|"clearCache"|"cacheSize", args }
//        { op: "abort", target: id }
//   out: { id, type: "progress", progress } | { id, type: "delta", delta, token }
//        { id, type: "done", value } | { id, type: "error", error: { name, message } }
// Errors cross as name + message and become Errors again on the other side.

import { Engine, cacheSize, clearCache } from "./engine.js";

/** Serves one model to the messages `receive` is given, answering through `post(msg)`. */
export function serve(post) {
  let engine = null;
  const running = new Map();
  const live = () => {
    if (!engine) throw new Error("no model is loaded");
    return engine;
  };
  const ops = {
    async load({ source, options }, { id, signal }) {
      engine?.unload();
      engine = null;
      engine = await Engine.load(source, { ...options, signal, onProgress: (progress) => post({ id, type: "progress", progress }) });
    },
    chat({ messages, options }, { id, signal }) {
      const onDelta = options.stream === false ? undefined : (delta, token) => post({ id, type: "delta", delta, token });
      return live().chat(messages, { ...options, signal }, onDelta);
    },
    reset: () => live().reset(),
    info: () => live().info(),
    unload() {
      engine?.unload();
      engine = null;
    },
    clearCache,
    cacheSize,
  };
  return async function receive(msg) {
    if (msg.op === "abort") {
      running.get(msg.target)?.abort();
      return;
    }
    const control = new AbortController();
    running.set(msg.id, control);
    try {
      if (!Object.hasOwn(ops, msg.op)) throw new Error(`unknown operation ${JSON.stringify(msg.op)}`);
      const value = await ops[msg.op](msg.args ?? {}, { id: msg.id, signal: control.signal });
      post({ id: msg.id, type: "done", value });
    } catch (e) {
      post({ id: msg.id, type: "error", error: { name: e?.name ?? "Error", message: e?.message ?? String(e) } });
    } finally {
      running.delete(msg.id);
    }
  };
}
