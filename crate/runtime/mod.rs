//! The CPU half of a request, the same natively and in the browser: images and videos to
//! `pixel_values` ([`preprocess`], [`video`], resampling in [`resize`]), a conversation to prompt
//! token ids through the chat template and tokenizer ([`chat`]), and the M-RoPE position ids of
//! that prompt ([`rope_index`]). Each mirrors the transformers code it is named after. On the GPU:
//! a conversation's KV cache, prefill and decode ([`session`]) and the generation loop
//! ([`generate`]). [`request`] prepares one chat request from all of these for every face.

pub mod bench;
pub mod chat;
pub mod generate;
pub mod preprocess;
pub mod request;
pub mod resize;
pub mod rope_index;
pub mod session;
pub mod video;

pub use chat::{
    apply_chat_template, ChatTemplate, Content, Message, Prompt, Qwen3VLProcessor, Role, SpecialTokens,
    VideoPlaceholder,
};
pub use preprocess::{smart_resize, ImageProcessor, PatchSpec, RgbImage, VisionInput};
pub use resize::Resampler;
pub use generate::{generate, GenerateOptions, Stop, TextStream};
pub use rope_index::{get_rope_index, RopeIndex};
pub use session::{Decoder, Pending, Prefilled, Sampling, Session};
pub use video::{VideoInput, VideoProcessor};

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("a {height}x{width} image: the aspect ratio must be at most 200 (and both sides non-zero)")]
    AspectRatio { height: usize, width: usize },
    #[error("{len} bytes do not make a {width}x{height} image of {channels} channels")]
    Pixels { width: usize, height: usize, channels: usize, len: usize },
    #[error("decoding the image failed: {0}")]
    Decode(String),
    #[error("a video needs at least one frame")]
    NoFrames,
    #[error("video: {0}")]
    Video(String),
    #[error("processor config: {0}")]
    Config(String),
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    #[error("the tokenizer has no `{0}` token")]
    MissingToken(String),
    #[error("vision placeholders: {0}")]
    Placeholders(String),
    #[error("{0}")]
    Options(String),
    /// Sizes out of range, or buffers past the host-memory budget (`preprocess::HOST_BUDGET`).
    #[error("{0}")]
    Size(String),
    #[error("a budget of {max_pixels} pixels is below the processor's minimum of {min_pixels}")]
    Budget { max_pixels: usize, min_pixels: usize },
    #[error("the prompt needs {prompt} tokens but the context holds {capacity}")]
    Capacity { prompt: usize, capacity: usize },
    #[error(transparent)]
    Model(#[from] crate::model::ModelError),
}
