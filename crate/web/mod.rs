//! The browser face (wasm32 only), exported through wasm-bindgen: `Engine` (load, chat, reset,
//! info), `Quantizer`, `selftest`, `adapterInfo`, `bench`. Thin: JS values ↔ runtime types and errors → JS `Error`s
//! with messages; the model work is the runtime's. Everything runs in a dedicated worker, so the
//! loader's synchronous reads (`FileLike.readAt`) and the prefill's long recording are legal.

mod bench;
mod convert;
mod engine;
mod folder;
mod js;
mod quantize;

use wasm_bindgen::prelude::*;

use crate::gpu::{Caps, Gpu, Profile};
use crate::kernels::selftest;
use crate::model::ModelFolder;

/// Panics (which would be bugs) print their message to the console before the trap.
#[wasm_bindgen(start)]
fn start() {
    console_error_panic_hook::set_once();
}

/// Any error as a JS `Error` with its message.
fn fail(e: impl std::fmt::Display) -> JsError {
    JsError::new(&e.to_string())
}

/// The tensor bytes of a folder's checkpoint: what loading or quantizing reads once each.
fn weight_bytes(folder: &ModelFolder) -> u64 {
    folder.checkpoint.files().iter().flat_map(|f| f.tensors().values()).map(|t| t.range.end - t.range.start).sum()
}

/// The adapter and what the kernels may use on it.
fn caps_info(c: &Caps) -> serde_json::Value {
    let l = &c.limits;
    serde_json::json!({
        "name": c.adapter, "backend": c.backend, "cpu": c.cpu, "f16": c.f16, "subgroups": c.subgroups,
        "subgroupMinSize": c.subgroup_min_size, "subgroupMaxSize": c.subgroup_max_size,
        "limits": {
            "maxStorageBufferBindingSize": l.max_storage_buffer_binding_size, "maxBufferSize": l.max_buffer_size,
            "maxComputeInvocationsPerWorkgroup": l.max_compute_invocations_per_workgroup,
            "maxComputeWorkgroupStorageSize": l.max_compute_workgroup_storage_size,
            "maxStorageBuffersPerShaderStage": l.max_storage_buffers_per_shader_stage,
        },
    })
}

/// The adapter the browser gives, with its capabilities (no model needed).
#[wasm_bindgen(js_name = adapterInfo)]
pub async fn adapter_info() -> Result<JsValue, JsError> {
    let gpu = Gpu::new(Profile::Full).await.map_err(fail)?;
    js::to_js(&caps_info(&gpu.caps)).map_err(fail)
}

/// Every WGSL file against its CPU reference on this adapter: `[{ name, maxErr, tol, ok }]`.
#[wasm_bindgen]
pub async fn selftest() -> Result<JsValue, JsError> {
    let gpu = Gpu::new(Profile::Full).await.map_err(fail)?;
    let cases = selftest::run(&gpu).await.map_err(fail)?;
    let rows: Vec<serde_json::Value> = cases
        .iter()
        .map(|c| serde_json::json!({ "name": c.name, "maxErr": c.max_err, "tol": c.tol, "ok": c.ok() }))
        .collect();
    js::to_js(&rows).map_err(fail)
}
