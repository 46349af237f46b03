//! `bench(options, onRow)`: the benchmark of `www/bench.html`: synthetic weights of the real
//! shapes built in the worker (no download), quantized to int4 and uploaded as a real load
//! does, then `runtime::bench` — the rows `qwen3-vl bench` prints natively.

use js_sys::Function;
use wasm_bindgen::prelude::*;

use super::fail;
use super::js::{error_message, now_ms, object};
use crate::gpu::{Gpu, Profile};
use crate::kernels::quant::Format;
use crate::model::{synthetic, Qwen3VL};
use crate::runtime::bench::{self, Options, Row};

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct BenchOptions {
    size: String,
    contexts: Option<Vec<usize>>,
    tokens: Option<usize>,
    #[serde(rename = "decodeOnly", default)]
    decode_only: bool,
}

/// `options`: `{ size: "2b" | "4b" | "tiny", contexts?: number[], tokens?: number,
/// decodeOnly?: boolean }` (decodeOnly: only the compile, decode and memory rows);
/// `onRow({ measure, value })` as each row is known. Resolves when all are.
#[wasm_bindgen]
pub async fn bench(options: JsValue, on_row: Function) -> Result<(), JsError> {
    // Through a JSON value, as chat options are, so unknown keys are refused.
    let json: serde_json::Value = serde_wasm_bindgen::from_value(options).map_err(|e| fail(format!("bench options: {e}")))?;
    let BenchOptions { size, contexts, tokens, decode_only } = serde_json::from_value(json).map_err(|e| fail(format!("bench options: {e}")))?;
    let mut opts = if decode_only { Options::default().decode_only() } else { Options::default() };
    if let Some(contexts) = contexts {
        if contexts.is_empty() || contexts.iter().any(|&c| c == 0 || c > 1 << 20) {
            return Err(fail("bench options: contexts must be 1 to 1048576 tokens"));
        }
        opts.contexts = contexts;
    }
    if let Some(tokens) = tokens {
        if !(1..=1024).contains(&tokens) {
            return Err(fail("bench options: tokens must be 1 to 1024"));
        }
        opts.tokens = tokens;
    }
    let emit = |measure: &str, value: String| {
        let row = object(&[("measure", measure.into()), ("value", value.into())]);
        on_row.call1(&JsValue::NULL, &row).map(|_| ()).map_err(|e| fail(error_message(&e)))
    };

    let gpu = Gpu::new(Profile::Full).await.map_err(fail)?;
    let start = now_ms();
    let folder = synthetic::folder(synthetic::config(&size).map_err(fail)?).map_err(fail)?;
    let model = Qwen3VL::load(&gpu, &folder, Format::Q4).map_err(fail)?;
    gpu.settle().await;
    emit(&format!("load: synthetic {size} built, quantized to int4, uploaded"), format!("{:.1} s", (now_ms() - start) / 1e3))?;
    // Rows go out as they come; a throwing onRow ends the run with its message.
    let mut thrown = None;
    bench::run(&gpu, &model, &opts, |Row { measure, value }| {
        if thrown.is_none() {
            thrown = emit(&measure, value).err();
        }
    })
    .await
    .map_err(fail)?;
    thrown.map_or(Ok(()), Err)
}
