//! OpenAI's chat-completions JSON: the request as clients send it, turned into the runtime's
//! messages, images and options (`runtime::request`, as `run` and the browser do), the
//! responses and stream chunks, and the error shape.

use std::path::Path;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine as _;
use qwen3_vl_webgpu::runtime::preprocess::decode_image;
use qwen3_vl_webgpu::runtime::request::{ChatOptions, Image};
use qwen3_vl_webgpu::runtime::{Content, Message, RgbImage, Role};
use serde::Deserialize;
use serde_json::{json, Value};

/// `POST /v1/chat/completions`. Fields this server does not use are ignored, as OpenAI's
/// clients send many; the ones it uses must have the right types.
#[derive(Deserialize)]
pub struct ChatRequest {
    pub messages: Vec<ChatMessage>,
    #[serde(default)]
    pub stream: bool,
    pub stream_options: Option<StreamOptions>,
    pub max_tokens: Option<usize>,
    pub max_completion_tokens: Option<usize>,
    /// 0 is greedy decoding, as OpenAI's clients expect.
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    /// Not OpenAI's, but common among local servers.
    pub top_k: Option<u32>,
    pub presence_penalty: Option<f32>,
    pub seed: Option<u64>,
    pub stop: Option<Stop>,
    pub n: Option<u32>,
}

#[derive(Deserialize)]
pub struct StreamOptions {
    #[serde(default)]
    pub include_usage: bool,
}

#[derive(Deserialize)]
#[serde(untagged)]
pub enum Stop {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
pub struct ChatMessage {
    pub role: String,
    /// `null` for an assistant turn that only called tools.
    pub content: Option<MessageContent>,
}

#[derive(Deserialize)]
#[serde(untagged)]
pub enum MessageContent {
    Text(String),
    Parts(Vec<Part>),
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Part {
    Text { text: String },
    ImageUrl { image_url: ImageUrl },
}

#[derive(Deserialize)]
pub struct ImageUrl {
    pub url: String,
}

/// A request turned away: an HTTP status and OpenAI's error object.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError { status: StatusCode::BAD_REQUEST, message: message.into() }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let kind = if self.status.is_server_error() { "server_error" } else { "invalid_request_error" };
        let body = json!({ "error": { "message": self.message, "type": kind, "param": null, "code": null } });
        (self.status, Json(body)).into_response()
    }
}

/// What the runtime needs from a request: the conversation with its images in order, the
/// options, and the stop strings.
pub struct Chat {
    pub messages: Vec<Message>,
    pub images: Vec<Image>,
    pub options: ChatOptions,
    pub stop: Vec<String>,
    pub stream: bool,
    pub include_usage: bool,
}

impl ChatRequest {
    /// Reads the images (data: URLs and local paths) and maps the options; any problem is a
    /// 400 naming it.
    pub fn into_chat(self) -> Result<Chat, ApiError> {
        if self.n.is_some_and(|n| n != 1) {
            return Err(ApiError::bad_request("n: only one choice per request"));
        }
        if self.messages.is_empty() {
            return Err(ApiError::bad_request("messages: at least one message is needed"));
        }
        let mut images = Vec::new();
        let mut messages = Vec::new();
        for (i, m) in self.messages.into_iter().enumerate() {
            let role = match m.role.as_str() {
                "system" | "developer" => Role::System,
                "user" => Role::User,
                "assistant" => Role::Assistant,
                "tool" => Role::Tool,
                other => return Err(ApiError::bad_request(format!("messages[{i}].role: unknown role {other:?}"))),
            };
            let content = match m.content {
                None => vec![Content::Text(String::new())],
                Some(MessageContent::Text(t)) => vec![Content::Text(t)],
                Some(MessageContent::Parts(parts)) => parts
                    .into_iter()
                    .map(|p| match p {
                        Part::Text { text } => Ok(Content::Text(text)),
                        Part::ImageUrl { image_url } => {
                            images.push(load_image(&image_url.url).map(Image::from).map_err(|e| ApiError::bad_request(format!("messages[{i}]: image_url: {e}")))?);
                            Ok(Content::Image)
                        }
                    })
                    .collect::<Result<_, ApiError>>()?,
            };
            messages.push(Message::new(role, content));
        }
        let options = ChatOptions {
            max_new_tokens: self.max_completion_tokens.or(self.max_tokens),
            greedy: self.temperature == Some(0.0),
            temperature: self.temperature.filter(|&t| t != 0.0),
            top_p: self.top_p,
            top_k: self.top_k,
            presence_penalty: self.presence_penalty,
            seed: self.seed,
            ..ChatOptions::default()
        };
        let stop = match self.stop {
            None => Vec::new(),
            Some(Stop::One(s)) => vec![s],
            Some(Stop::Many(v)) => v,
        };
        let stop: Vec<String> = stop.into_iter().filter(|s| !s.is_empty()).collect();
        let include_usage = self.stream_options.is_some_and(|o| o.include_usage);
        Ok(Chat { messages, images, options, stop, stream: self.stream, include_usage })
    }
}

/// An image part's pixels: a `data:…;base64,` URL, or a file on this machine (`file://` URL or
/// path).
fn load_image(url: &str) -> Result<RgbImage, String> {
    let bytes = if let Some(rest) = url.strip_prefix("data:") {
        let (meta, data) = rest.split_once(',').ok_or("a data: URL needs a comma before its data")?;
        if !meta.ends_with(";base64") {
            return Err("only base64 data: URLs are read".into());
        }
        base64::engine::general_purpose::STANDARD.decode(data.trim()).map_err(|e| format!("data: URL: {e}"))?
    } else if url.starts_with("http://") || url.starts_with("https://") {
        return Err("http(s) URLs are not fetched: send the image as a data: URL or a local path".into());
    } else {
        let path = Path::new(url.strip_prefix("file://").unwrap_or(url));
        std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?
    };
    decode_image(&bytes).map_err(|e| e.to_string())
}

/// Usage counts as OpenAI reports them: `cached` of the `prompt` tokens came from the cache of
/// earlier requests (`prompt_tokens_details.cached_tokens`), the rest were computed.
pub fn usage(prompt: usize, cached: usize, completion: usize) -> Value {
    json!({
        "prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
        "prompt_tokens_details": { "cached_tokens": cached },
    })
}

/// A whole answer (`stream: false`).
pub fn completion(id: &str, created: u64, model: &str, text: &str, finish_reason: &str, usage: Value) -> Value {
    json!({
        "id": id, "object": "chat.completion", "created": created, "model": model,
        "choices": [{ "index": 0, "message": { "role": "assistant", "content": text }, "logprobs": null, "finish_reason": finish_reason }],
        "usage": usage,
    })
}

/// One server-sent chunk (`stream: true`): a delta, or the end with its finish reason.
pub fn chunk(id: &str, created: u64, model: &str, delta: Value, finish_reason: Option<&str>) -> Value {
    json!({
        "id": id, "object": "chat.completion.chunk", "created": created, "model": model,
        "choices": [{ "index": 0, "delta": delta, "logprobs": null, "finish_reason": finish_reason }],
    })
}

/// The last chunk with `stream_options.include_usage`: no choices, the usage.
pub fn usage_chunk(id: &str, created: u64, model: &str, usage: Value) -> Value {
    json!({ "id": id, "object": "chat.completion.chunk", "created": created, "model": model, "choices": [], "usage": usage })
}
