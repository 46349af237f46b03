//! `Engine`: one model on the GPU and one conversation's KV cache.

use std::cell::RefCell;
use std::rc::Rc;

use js_sys::{Function, Promise};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

use crate::gpu::{Gpu, Profile};
use crate::kernels::quant::Format;
use crate::model::{GenerationConfig, ModelError, ModelFolder, Qwen3VL};
use crate::runtime::request::{self, Request};
use crate::runtime::{generate, Qwen3VLProcessor, Session, TextStream};

use super::convert::{chat_options, conversation};
use super::folder::Folder;
use super::js::{count, error_message, get, now_ms, string, to_js, Progress};
use super::{caps_info, fail};

/// Cache positions when `contextLength` is not given.
const DEFAULT_CONTEXT: usize = 4096;

#[wasm_bindgen]
pub struct Engine {
    /// Shared with a running chat's future; borrowed mutably for the whole chat, so a second
    /// chat or a `reset` meanwhile is refused rather than interleaved.
    inner: Rc<RefCell<Inner>>,
}

struct Inner {
    gpu: Rc<Gpu>,
    model: Rc<Qwen3VL>,
    processor: Qwen3VLProcessor,
    generation: GenerationConfig,
    session: Session<Rc<Gpu>, Rc<Qwen3VL>>,
}

const BUSY: &str = "a chat is running on this engine: wait for it (or cancel it from onToken) first";

#[wasm_bindgen]
impl Engine {
    /// Loads a model folder onto the GPU: `options.weights` "q4" (default), "f16" or "f32";
    /// `options.contextLength` cache positions (default 4096); `options.onProgress(p)` with
    /// `{ phase: "upload", done, total, file }` as the weights are read, then `phase: "compile"`
    /// once per pipeline created by the warm-up (`warm_up`), which `options.warmUp: false` skips.
    pub async fn load(folder: JsValue, options: JsValue) -> Result<Engine, JsError> {
        let folder = Folder::new(folder).map_err(fail)?;
        let format = match get(&options, "weights") {
            w if w.is_undefined() => Format::Q4,
            w => match string(&w, "weights").map_err(fail)?.as_str() {
                "q4" => Format::Q4,
                "f16" => Format::F16,
                "f32" => Format::F32,
                other => return Err(fail(format!("weights must be \"q4\", \"f16\" or \"f32\", not {other:?}"))),
            },
        };
        let capacity = match get(&options, "contextLength") {
            c if c.is_undefined() => DEFAULT_CONTEXT,
            c => count(&c, "contextLength", (1u64 << 24) as f64).map_err(fail)?.max(1),
        };
        let progress = match get(&options, "onProgress") {
            p if p.is_undefined() => None,
            p => Some(Rc::new(Progress::new(p.dyn_into::<Function>().map_err(|_| fail("onProgress must be a function"))?, "upload"))),
        };

        let gpu = Rc::new(Gpu::new(Profile::Full).await.map_err(fail)?);
        let processor = request::processor(|name| folder.read(name)).map_err(fail)?;
        let model_folder = ModelFolder::load(folder.sources(progress.clone())).map_err(fail)?;
        if let Some(p) = &progress {
            p.start(super::weight_bytes(&model_folder));
        }
        let model = Rc::new(Qwen3VL::load(&gpu, &model_folder, format).map_err(fail)?);
        let session = Session::new(gpu.clone(), model.clone(), capacity).map_err(fail)?;
        let mut inner = Inner { gpu, model, processor, generation: model_folder.generation, session };
        let warm = match get(&options, "warmUp") {
            w if w.is_undefined() => true,
            w => w.as_bool().ok_or_else(|| fail("warmUp must be true or false"))?,
        };
        if warm {
            warm_up(&mut inner, progress.map(|p| p.then("compile"))).await?;
        }
        Ok(Engine { inner: Rc::new(RefCell::new(inner)) })
    }

    /// Answers the conversation `messages` (the whole of it each time: the cached prefix is
    /// reused). `onToken(delta, id)` (optional) sees each token's text as it completes;
    /// returning `false` cancels. Resolves to `{ ids, text, stop, promptTokens, promptIds, timings }`.
    // The borrow is held across the chat's awaits on purpose: it is the engine's lock, and every
    // other access uses `try_borrow*`, so an overlap is an Error, never a panic.
    #[allow(clippy::await_holding_refcell_ref)]
    pub fn chat(&self, messages: JsValue, options: JsValue, on_token: JsValue) -> Promise {
        let inner = self.inner.clone();
        future_to_promise(async move {
            let on_token = match on_token.is_undefined() || on_token.is_null() {
                true => None,
                false => Some(on_token.dyn_into::<Function>().map_err(|_| fail("onToken must be a function"))?),
            };
            let mut guard = inner.try_borrow_mut().map_err(|_| fail(BUSY))?;
            chat(&mut guard, &messages, &options, on_token.as_ref()).await.map_err(JsValue::from)
        })
    }

    /// Why the GPU device was lost, or `undefined` while it works. A lost engine only fails:
    /// free it and load again (a new device).
    #[wasm_bindgen(js_name = deviceLost)]
    pub fn device_lost(&self) -> Result<Option<String>, JsError> {
        Ok(self.inner.try_borrow().map_err(|_| fail(BUSY))?.gpu.lost())
    }

    /// Forgets the conversation: the next chat starts from an empty cache.
    pub fn reset(&self) -> Result<(), JsError> {
        self.inner.try_borrow_mut().map_err(|_| fail(BUSY))?.session.reset();
        Ok(())
    }

    /// The adapter and its capabilities, the model's sizes and the GPU memory in use.
    pub fn info(&self) -> Result<JsValue, JsError> {
        let inner = self.inner.try_borrow().map_err(|_| fail(BUSY))?;
        let (gpu, c) = (&inner.gpu, &inner.model.config);
        let t = &c.text_config;
        let info = serde_json::json!({
            "adapter": caps_info(&gpu.caps),
            "model": {
                "weights": format!("{:?}", inner.model.format).to_lowercase(),
                "hiddenSize": t.hidden_size, "layers": t.num_hidden_layers, "vocabSize": t.vocab_size,
                "visionDepth": c.vision_config.depth, "contextLength": inner.session.capacity(),
                "cachedTokens": inner.session.tokens().len(),
            },
            "memory": { "liveBytes": gpu.memory.live(), "peakBytes": gpu.memory.peak() },
        });
        to_js(&info).map_err(fail)
    }
}

/// Creates every pipeline the session will use (the decode plan, the prefill lengths, the
/// vision tower: `Session::compile`, which computes nothing), so that compiling happens inside
/// the load, not inside the first answer: on a software adapter compiling is most of that
/// answer's time. Reports `{ phase: "compile", done, total, file }` per pipeline as it is
/// created, and a last step when the GPU has finished compiling them (the browser compiles in
/// its GPU process, in order, so waiting for the queue waits for that).
async fn warm_up(inner: &mut Inner, progress: Option<Progress>) -> Result<(), JsError> {
    let labels = inner.session.compile().map_err(fail)?;
    let total = labels.len() as u64 + 1;
    if let Some(p) = &progress {
        for (i, label) in labels.iter().enumerate() {
            p.report(i as u64 + 1, total, label).map_err(fail)?;
        }
    }
    inner.gpu.settle().await;
    if let Some(p) = &progress {
        p.report(total, total, "pipelines").map_err(fail)?;
    }
    Ok(())
}

async fn chat(inner: &mut Inner, messages: &JsValue, options: &JsValue, on_token: Option<&Function>) -> Result<JsValue, JsError> {
    let conv = conversation(messages).map_err(fail)?;
    let options = chat_options(options).map_err(fail)?;
    let req = Request::new(&inner.processor, &conv.messages, &conv.images, &conv.videos, &options, &inner.generation).map_err(fail)?;
    req.check_capacity(inner.session.capacity()).map_err(fail)?;
    let ids = &req.prompt.input_ids;
    let start = now_ms();
    let logits = inner.session.prefill(ids, &req.prompt.rope.position_ids, req.prompt.rope.rope_delta, &req.images, &req.videos, false).map_err(fail)?;
    let prefilled = inner.session.last_prefill();
    let mut first: Option<f64> = None;
    let mut stream = TextStream::new();
    let mut text = String::new();
    // A throwing onToken (or undecodable ids) ends generation; that error is the chat's.
    let mut thrown: Option<String> = None;
    let processor = &inner.processor;
    let (out, stop) = generate(&mut inner.session, logits, &req.options, |id| {
        first.get_or_insert_with(now_ms);
        let delta = match stream.push(id, |ids| processor.decode(ids, true).map_err(|e| ModelError::Input(e.to_string()))) {
            Ok(d) => d,
            Err(e) => {
                thrown = Some(e.to_string());
                return false;
            }
        };
        text += &delta;
        let Some(on_token) = on_token else { return true };
        match on_token.call2(&JsValue::NULL, &delta.into(), &id.into()) {
            Ok(r) => r.as_bool() != Some(false),
            Err(e) => {
                thrown = Some(format!("onToken threw: {}", error_message(&e)));
                false
            }
        }
    })
    .await
    .map_err(fail)?;
    if let Some(e) = thrown {
        return Err(fail(e));
    }
    let end = now_ms();
    let ttft = first.unwrap_or(end) - start;
    let decode_ms = first.map_or(0.0, |f| end - f);
    let result = serde_json::json!({
        "ids": out,
        "text": text,
        "stop": stop.reason(),
        "promptTokens": ids.len(),
        "promptIds": ids,
        "timings": {
            "timeToFirstTokenMs": ttft,
            // Only the tokens computed in this turn; the rest came from the cache.
            "cachedTokens": prefilled.cached,
            "computedTokens": prefilled.computed,
            "prefillTokensPerS": prefilled.computed as f64 / (ttft / 1e3).max(1e-9),
            "decodeTokensPerS": out.len().saturating_sub(1) as f64 / (decode_ms / 1e3).max(1e-9),
            "totalMs": end - start,
        },
    });
    to_js(&result).map_err(fail)
}
