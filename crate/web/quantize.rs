//! `Quantizer`: the in-browser quantization of an original model folder, one bounded step at a
//! time. JS fetches each step's byte range ahead of it (in parallel, with retries) and commits
//! every shard as it is handed out, so a cut connection resumes from the committed shards.

use js_sys::{Function, Uint8Array};
use wasm_bindgen::prelude::*;

use crate::model::quantized::{self, Entry, Writer};
use crate::model::safetensors;

use super::folder::Folder;
use super::js::{error_message, get, method, number, to_js};
use super::fail;

#[wasm_bindgen]
pub struct Quantizer {
    writer: Option<Writer>,
    sink: JsValue,
    write: Function,
}

/// `sink.write(name, bytes)` as the writer's sink.
fn sink_of<'a>(sink: &'a JsValue, write: &'a Function) -> impl FnMut(&str, &[u8]) -> std::io::Result<()> + 'a {
    move |name, bytes| write.call2(sink, &name.into(), &Uint8Array::from(bytes)).map(|_| ()).map_err(|e| std::io::Error::other(error_message(&e)))
}

#[wasm_bindgen]
impl Quantizer {
    /// Reads the configs and safetensors headers of the folder `src` (original safetensors),
    /// hands the copied files to `sink.write(name, bytes)` and plans the steps.
    /// `options.shardMiB` (default 32) bounds a shard; `options.resume` lists the
    /// `{ name, bytes, sha256 }` of the files and shards an interrupted run committed.
    #[wasm_bindgen(constructor)]
    pub fn new(src: JsValue, sink: JsValue, options: JsValue) -> Result<Quantizer, JsError> {
        let folder = Folder::new(src).map_err(fail)?;
        let write = method(&sink, "write").map_err(|e| fail(format!("sink: {e}")))?;
        let shard_mib = match get(&options, "shardMiB") {
            v if v.is_undefined() => quantized::DEFAULT_SHARD_MIB,
            v => number(&v, "shardMiB").map_err(fail)?,
        };
        let shard_bytes = quantized::shard_bytes(shard_mib).map_err(fail)?;
        let resume: Vec<Entry> = match get(&options, "resume") {
            v if v.is_undefined() => Vec::new(),
            v => serde_wasm_bindgen::from_value(v).map_err(|e| fail(format!("resume: {e}")))?,
        };
        let writer = Writer::new(folder.sources(None), shard_bytes, &resume, &mut sink_of(&sink, &write)).map_err(fail)?;
        Ok(Quantizer { writer: Some(writer), sink, write })
    }

    /// The files the quantizer reads: `{ files, index, single }`, the small ones it reads whole
    /// when present (configs, tokenizer, chat template), the safetensors index and the single
    /// safetensors file used without one, so a caller can fetch them before it starts.
    #[wasm_bindgen(js_name = sourceFiles)]
    pub fn source_files() -> Result<JsValue, JsError> {
        let json = serde_json::json!({ "files": quantized::COPIED, "index": safetensors::INDEX, "single": safetensors::SINGLE });
        to_js(&json).map_err(fail)
    }

    /// The `{ file, start, end }` byte range each remaining step reads, in order.
    pub fn reads(&self) -> Result<JsValue, JsError> {
        to_js(&self.live()?.reads()).map_err(fail)
    }

    /// Runs the next step (its range must be readable now); false once none is left.
    pub fn step(&mut self) -> Result<bool, JsError> {
        let (sink, write) = (&self.sink, &self.write);
        let writer = self.writer.as_mut().ok_or_else(|| fail("the quantizer has finished"))?;
        writer.step(&mut sink_of(sink, write)).map_err(fail)
    }

    /// Runs what is left, writes the last shard and manifest.json; returns the manifest.
    pub fn finish(&mut self) -> Result<JsValue, JsError> {
        let writer = self.writer.take().ok_or_else(|| fail("the quantizer has finished"))?;
        let manifest = writer.finish(&mut sink_of(&self.sink, &self.write)).map_err(fail)?;
        to_js(&manifest).map_err(fail)
    }

    fn live(&self) -> Result<&Writer, JsError> {
        self.writer.as_ref().ok_or_else(|| fail("the quantizer has finished"))
    }
}
