//! Qwen3-VL on the client GPU: WGSL kernels through wgpu, natively and in the browser.
//!
//! Layers, each a folder: `gpu` (device, limits, buffers, pipelines) → `kernels` (one WGSL
//! file, one thin wrapper and one CPU reference per op); `model` (the model folder on the CPU:
//! configs, safetensors, weight names).

pub mod gpu;
pub mod kernels;
pub mod model;
pub mod testing;
