//! Reading loosely typed JS values with errors that say which field was wrong, building plain
//! JS objects, and the load's progress events.

use std::cell::Cell;

use js_sys::{Function, Object, Reflect};
use wasm_bindgen::{JsCast, JsValue};

pub use crate::gpu::now_ms;

/// The message of a thrown JS value (an `Error`'s `message`, else its string form).
pub fn error_message(e: &JsValue) -> String {
    if let Some(err) = e.dyn_ref::<js_sys::Error>() {
        return String::from(err.message());
    }
    e.as_string().unwrap_or_else(|| format!("{e:?}"))
}

/// `value[key]`, undefined when `value` is not an object.
pub fn get(value: &JsValue, key: &str) -> JsValue {
    if !value.is_object() {
        return JsValue::UNDEFINED;
    }
    Reflect::get(value, &key.into()).unwrap_or(JsValue::UNDEFINED)
}

/// `value[key]` as a function.
pub fn method(value: &JsValue, key: &str) -> Result<Function, String> {
    get(value, key).dyn_into::<Function>().map_err(|_| format!("`{key}` must be a function"))
}

/// `value` as a finite number.
pub fn number(value: &JsValue, what: &str) -> Result<f64, String> {
    match value.as_f64() {
        Some(v) if v.is_finite() => Ok(v),
        _ => Err(format!("{what} must be a finite number")),
    }
}

/// `value` as a whole number in `0..=max`.
pub fn count(value: &JsValue, what: &str, max: f64) -> Result<usize, String> {
    let v = number(value, what)?;
    if v < 0.0 || v.fract() != 0.0 || v > max {
        return Err(format!("{what} must be a whole number from 0 to {max}, not {v}"));
    }
    Ok(v as usize)
}

/// `value` as a string.
pub fn string(value: &JsValue, what: &str) -> Result<String, String> {
    value.as_string().ok_or_else(|| format!("{what} must be a string"))
}

/// A plain JS object from key/value pairs.
pub fn object(pairs: &[(&str, JsValue)]) -> JsValue {
    let o = Object::new();
    for (k, v) in pairs {
        // Setting a property on a fresh plain object cannot fail.
        let _ = Reflect::set(&o, &(*k).into(), v);
    }
    o.into()
}

/// A Rust value (serde) as a plain JS object (maps as objects, not `Map`s).
pub fn to_js<T: serde::Serialize + ?Sized>(value: &T) -> Result<JsValue, String> {
    value.serialize(&serde_wasm_bindgen::Serializer::json_compatible()).map_err(|e| e.to_string())
}

/// `onProgress({ phase, done, total, file })` as a load or a quantization reads the weights,
/// called at most once per MiB read.
pub struct Progress {
    callback: Function,
    phase: &'static str,
    total: Cell<u64>,
    done: Cell<u64>,
    reported: Cell<u64>,
}

const REPORT_EVERY: u64 = 1 << 20;

impl Progress {
    pub fn new(callback: Function, phase: &'static str) -> Self {
        Progress { callback, phase, total: Cell::new(0), done: Cell::new(0), reported: Cell::new(0) }
    }

    /// Starts counting towards `total` bytes.
    pub fn start(&self, total: u64) {
        self.total.set(total);
        self.done.set(0);
        self.reported.set(0);
    }

    /// Counts `bytes` read from `file`. Before [`Progress::start`] (headers and configs) nothing
    /// is reported. A throwing callback stops the load with its message.
    pub fn advance(&self, bytes: u64, file: &str) -> Result<(), String> {
        let total = self.total.get();
        if total == 0 {
            return Ok(());
        }
        let done = (self.done.get() + bytes).min(total);
        self.done.set(done);
        if done - self.reported.get() >= REPORT_EVERY || done == total {
            self.reported.set(done);
            self.report(done, total, file)?;
        }
        Ok(())
    }

    /// Sends `{ phase, done, total, file }` now.
    pub fn report(&self, done: u64, total: u64, file: &str) -> Result<(), String> {
        let event = [("phase", self.phase.into()), ("done", (done as f64).into()), ("total", (total as f64).into()), ("file", file.into())];
        self.callback.call1(&JsValue::NULL, &object(&event)).map_err(|e| format!("onProgress threw: {}", error_message(&e)))?;
        Ok(())
    }

    /// The same callback for the next phase of the work.
    pub fn then(&self, phase: &'static str) -> Progress {
        Progress::new(self.callback.clone(), phase)
    }
}
