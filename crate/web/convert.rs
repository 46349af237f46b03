//! JS chat messages and options → the runtime's request types, validated with messages that name
//! the offending field.

use js_sys::{Array, Uint8Array};
use wasm_bindgen::{JsCast, JsValue};

use crate::runtime::request::{ChatOptions, Image, Video};
use crate::runtime::{Content, Message, RgbImage, Role};

use super::js::{count, get, number, string};

/// The side a browser can hand over (WebGPU's 2D texture limit is 8192; a camera frame or a
/// screenshot is well under it); larger means a mistake, not a picture.
const MAX_SIDE: f64 = 16384.0;

/// Messages with their images and videos in order, as `Request::new` takes them.
pub struct Conversation {
    pub messages: Vec<Message>,
    pub images: Vec<Image>,
    pub videos: Vec<Video>,
}

/// `WasmMessage[]`: `{ role, content: string | WasmPart[] }`.
pub fn conversation(value: &JsValue) -> Result<Conversation, String> {
    let list = value.dyn_ref::<Array>().ok_or("messages must be an array")?;
    if list.length() == 0 {
        return Err("messages must not be empty".into());
    }
    let mut c = Conversation { messages: Vec::new(), images: Vec::new(), videos: Vec::new() };
    for (i, m) in list.iter().enumerate() {
        let what = format!("messages[{i}]");
        let role = match string(&get(&m, "role"), &format!("{what}.role"))?.as_str() {
            "system" => Role::System,
            "user" => Role::User,
            "assistant" => Role::Assistant,
            other => return Err(format!("{what}.role must be \"system\", \"user\" or \"assistant\", not {other:?}")),
        };
        let content = get(&m, "content");
        let parts = match content.as_string() {
            Some(text) => vec![Content::Text(text)],
            None => {
                let parts = content.dyn_ref::<Array>().ok_or_else(|| format!("{what}.content must be a string or an array of parts"))?;
                parts.iter().enumerate().map(|(j, p)| part(&p, &format!("{what}.content[{j}]"), &mut c)).collect::<Result<_, _>>()?
            }
        };
        c.messages.push(Message::new(role, parts));
    }
    Ok(c)
}

fn part(p: &JsValue, what: &str, c: &mut Conversation) -> Result<Content, String> {
    match string(&get(p, "type"), &format!("{what}.type"))?.as_str() {
        "text" => Ok(Content::Text(string(&get(p, "text"), &format!("{what}.text"))?)),
        "image" => {
            // An image's own pixel budget (any whole number: it only caps the processor's).
            let max_pixels = match get(p, "maxPixels") {
                v if v.is_undefined() => None,
                v => Some(count(&v, &format!("{what}.maxPixels"), u32::MAX as f64)?),
            };
            c.images.push(Image { pixels: rgba(p, what)?, max_pixels });
            Ok(Content::Image)
        }
        "video" => {
            let frames = get(p, "frames");
            let frames = frames.dyn_ref::<Array>().ok_or_else(|| format!("{what}.frames must be an array"))?;
            let frames: Vec<RgbImage> = frames.iter().enumerate().map(|(k, f)| rgba(&f, &format!("{what}.frames[{k}]"))).collect::<Result<_, _>>()?;
            let times = get(p, "timestamps");
            let times = times.dyn_ref::<Array>().ok_or_else(|| format!("{what}.timestamps must be an array"))?;
            let timestamps: Vec<f64> = times.iter().enumerate().map(|(k, t)| number(&t, &format!("{what}.timestamps[{k}]"))).collect::<Result<_, _>>()?;
            if frames.is_empty() || timestamps.len() != frames.len() {
                return Err(format!("{what}: {} frames need as many timestamps, not {}", frames.len(), timestamps.len()));
            }
            c.videos.push(Video::Frames { frames, timestamps });
            Ok(Content::Video)
        }
        other => Err(format!("{what}.type must be \"text\", \"image\" or \"video\", not {other:?}")),
    }
}

/// `{ width, height, data: Uint8Array | Uint8ClampedArray }` of straight RGBA pixels.
fn rgba(p: &JsValue, what: &str) -> Result<RgbImage, String> {
    let width = count(&get(p, "width"), &format!("{what}.width"), MAX_SIDE)?;
    let height = count(&get(p, "height"), &format!("{what}.height"), MAX_SIDE)?;
    let data = get(p, "data");
    if !(data.is_instance_of::<Uint8Array>() || data.is_instance_of::<js_sys::Uint8ClampedArray>()) {
        return Err(format!("{what}.data must be a Uint8Array or Uint8ClampedArray of RGBA pixels"));
    }
    // Both are byte arrays: read either through a Uint8Array over the same memory.
    let data = Uint8Array::new(&data);
    if data.length() as usize != width * height * 4 {
        return Err(format!("{what}: {} bytes are not {width}×{height} RGBA pixels ({} bytes)", data.length(), width * height * 4));
    }
    RgbImage::from_rgba(width, height, &data.to_vec()).map_err(|e| format!("{what}: {e}"))
}

/// The chat options object (unknown keys are refused, so a typo is not silently ignored).
pub fn chat_options(value: &JsValue) -> Result<ChatOptions, String> {
    if value.is_null() || value.is_undefined() {
        return Ok(ChatOptions::default());
    }
    // Through a JSON value: serde-wasm-bindgen reads only a struct's own fields, so unknown keys
    // would pass unseen; serde_json honours `deny_unknown_fields`.
    let json: serde_json::Value = serde_wasm_bindgen::from_value(value.clone()).map_err(|e| format!("chat options: {e}"))?;
    serde_json::from_value(json).map_err(|e| format!("chat options: {e}"))
}
