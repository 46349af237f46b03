//! Qwen3-VL on the client GPU: WGSL kernels through wgpu, natively and in the browser.
//!
//! Layers, each a folder: `gpu` (device, limits, buffers, pipelines) → `kernels` (one WGSL
//! file, one thin wrapper and one CPU reference per op) → `model` (the model folder: configs,
//! safetensors, weight names) → `runtime` (the CPU side of a request: preprocessing, chat
//! template and tokenizer, M-RoPE position ids, the session) → `web` (wasm32 only: the browser
//! face through wasm-bindgen).

pub mod gpu;
pub mod kernels;
pub mod model;
pub mod runtime;
pub mod testing;
#[cfg(target_arch = "wasm32")]
mod web;
