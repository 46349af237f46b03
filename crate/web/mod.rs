//! The browser face (wasm32 only), exported through wasm-bindgen: `Engine` (load, chat, reset,
//! info), `quantize`, `selftest`, `adapterInfo`. Thin: JS values ↔ runtime types and errors → JS `Error`s
//! with messages; the model work is the runtime's. Everything runs in a dedicated worker, so the
//! loader's synchronous reads (`FileLike.readAt`) and the prefill's long recording are legal.

mod convert;
mod engine;
mod folder;
mod js;

use std::rc::Rc;

use js_sys::{Function, Uint8Array};
use wasm_bindgen::prelude::*;

use crate::gpu::{Caps, Gpu, Profile};
use crate::kernels::selftest;
use crate::model::{quantized, ModelFolder};

use folder::Folder;
use js::{get, method, Progress};


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

/// Writes the pre-quantized int4 folder of the model folder `src` (original safetensors) through
/// `sink.write(name, bytes)`: the copied files, the shards in order, `manifest.json` last.
/// `options.shardMiB` (default 32) bounds a shard; `options.onProgress(p)` gets
/// `{ phase: "quantize", done, total, file }` as the weights are read. Returns the manifest.
#[wasm_bindgen]
pub fn quantize(src: JsValue, sink: JsValue, options: JsValue) -> Result<JsValue, JsError> {
    let folder = Folder::new(src).map_err(fail)?;
    let write = method(&sink, "write").map_err(|e| fail(format!("sink: {e}")))?;
    let shard_bytes = match get(&options, "shardMiB") {
        v if v.is_undefined() => quantized::DEFAULT_SHARD_MIB,
        v => js::number(&v, "shardMiB").map_err(fail)?,
    };
    let shard_bytes = quantized::shard_bytes(shard_bytes).map_err(fail)?;
    let progress = match get(&options, "onProgress") {
        p if p.is_undefined() => None,
        p => Some(Rc::new(Progress::new(p.dyn_into::<Function>().map_err(|_| fail("onProgress must be a function"))?, "quantize"))),
    };
    if let Some(p) = &progress {
        // Headers only: the total the progress counts towards.
        let source = ModelFolder::load(folder.sources(None)).map_err(fail)?;
        p.start(weight_bytes(&source));
    }
    let manifest = quantized::write(folder.sources(progress), shard_bytes, |name, bytes| {
        write
            .call2(&sink, &name.into(), &Uint8Array::from(bytes))
            .map(|_| ())
            .map_err(|e| std::io::Error::other(js::error_message(&e)))
    })
    .map_err(fail)?;
    js::to_js(&manifest).map_err(fail)
}
