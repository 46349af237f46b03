// Runs the wasm build's `bench` and posts its rows as they come: { adapter }, { row }…, { done }
// or { error }.
import init, { adapterInfo, bench } from "../pkg/dist/wasm/qwen3_vl_webgpu.js";

onmessage = async ({ data }) => {
  try {
    const wasm = await init();
    const a = await adapterInfo();
    // wgpu leaves the name empty in browsers: the adapter's own info names the GPU.
    const info = (await navigator.gpu.requestAdapter({ powerPreference: "high-performance" }))?.info ?? {};
    const name = [info.vendor, info.architecture, info.device, info.description].filter(Boolean).join(" ") || a.name;
    const features = [a.f16 && "shader-f16", a.subgroups && `subgroups ${a.subgroupMinSize}–${a.subgroupMaxSize}`].filter(Boolean);
    postMessage({ adapter: `${name} (${a.backend}; ${features.join(", ") || "no optional features"}; ${a.limits.maxStorageBufferBindingSize / 2 ** 20} MiB bindings)` });
    await bench(data, (row) => postMessage({ row }));
    postMessage({ row: { measure: "wasm heap after the run", value: `${Math.round(wasm.memory.buffer.byteLength / 2 ** 20)} MiB` } });
    postMessage({ done: true });
  } catch (e) {
    postMessage({ error: e instanceof Error ? e.message : String(e) });
  }
};
