//! Conversation → prompt text → token ids, as transformers' `Qwen3VLProcessor.apply_chat_template`
//! produces them for Qwen3-VL: the model's Jinja chat template rendered by hand
//! ([`apply_chat_template`]), each `<|image_pad|>` expanded to one pad per merged block and each
//! `<|video_pad|>` to per-frame-pair `<t seconds><|vision_start|>pads<|vision_end|>`
//! ([`expand_vision_placeholders`]), then the Qwen BPE from a `tokenizer.json`.
//!
//! The two templates are those shipped in `chat_template.json` of Qwen/Qwen3-VL-*-Instruct and
//! Qwen3-VL-*-Thinking (read from public copies; tool calls and the `tools` system block left out):
//! - **Instruct**: no default system prompt; only the text of a leading system message; later
//!   system messages dropped; assistant turns verbatim (any `<think>` text included); generation
//!   prompt `<|im_start|>assistant\n`.
//! - **Thinking**: system messages anywhere; assistant turns before the last user query lose their
//!   `<think>…</think>` part, later ones keep it re-wrapped as `<think>\n…\n</think>\n\n`; generation
//!   prompt `<|im_start|>assistant\n<think>\n`.
//!
//! Videos follow transformers 5.23 by default, which keeps the template's outer
//! `<|vision_start|>…<|vision_end|>` around the frame-pair blocks; 4.57 replaced the whole wrapper
//! ([`VideoPlaceholder`]).

use tokenizers::Tokenizer;

use super::preprocess::{ImageProcessor, VisionInput, MAX_PIXELS};
use super::rope_index::{get_rope_index, RopeIndex};
use super::video::{VideoInput, VideoProcessor};
use super::RuntimeError;

pub const IMAGE_TOKEN: &str = "<|image_pad|>";
pub const VIDEO_TOKEN: &str = "<|video_pad|>";
pub const VISION_START: &str = "<|vision_start|>";
pub const VISION_END: &str = "<|vision_end|>";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    System,
    User,
    Assistant,
    /// A tool result; consecutive ones share one `user` turn of `<tool_response>` blocks.
    Tool,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::Tool => "tool",
        }
    }
}

/// One part of a message. A message of a single `Text` renders like a plain string content.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Content {
    Text(String),
    /// The next image of the request, in order.
    Image,
    /// The next video of the request, in order.
    Video,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub role: Role,
    pub content: Vec<Content>,
    /// Thinking template only: the reasoning of an assistant turn, when kept apart from `content`.
    pub reasoning_content: Option<String>,
}

impl Message {
    pub fn new(role: Role, content: Vec<Content>) -> Self {
        Message { role, content, reasoning_content: None }
    }
    pub fn text(role: Role, text: impl Into<String>) -> Self {
        Message::new(role, vec![Content::Text(text.into())])
    }
    pub fn system(text: impl Into<String>) -> Self {
        Message::text(Role::System, text)
    }
    pub fn user(content: Vec<Content>) -> Self {
        Message::new(Role::User, content)
    }
    pub fn assistant(text: impl Into<String>) -> Self {
        Message::text(Role::Assistant, text)
    }
}

/// Which model's chat template.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ChatTemplate {
    #[default]
    Instruct,
    Thinking,
}

/// Running image/video numbers for `add_vision_id` ("Picture 2: ").
#[derive(Default)]
struct Counts {
    image: usize,
    video: usize,
}

/// The template's content rendering: text verbatim, a vision part as its wrapped pad.
/// `vision = false` keeps only the text (the Instruct template's system and assistant turns).
fn render_content(parts: &[Content], vision: bool, count: Option<&mut Counts>, add_vision_id: bool) -> String {
    let mut scratch = Counts::default();
    let (counts, counting) = match count {
        Some(c) => (c, true),
        None => (&mut scratch, false),
    };
    let mut s = String::new();
    for part in parts {
        match part {
            Content::Text(t) => s.push_str(t),
            Content::Image if vision => {
                counts.image += counting as usize;
                if add_vision_id {
                    s.push_str(&format!("Picture {}: ", counts.image));
                }
                s.push_str(VISION_START);
                s.push_str(IMAGE_TOKEN);
                s.push_str(VISION_END);
            }
            Content::Video if vision => {
                counts.video += counting as usize;
                if add_vision_id {
                    s.push_str(&format!("Video {}: ", counts.video));
                }
                s.push_str(VISION_START);
                s.push_str(VIDEO_TOKEN);
                s.push_str(VISION_END);
            }
            Content::Image | Content::Video => {}
        }
    }
    s
}

/// Renders a conversation as the model's chat template does, with unexpanded vision placeholders.
pub fn apply_chat_template(
    messages: &[Message],
    template: ChatTemplate,
    add_generation_prompt: bool,
    add_vision_id: bool,
) -> String {
    let mut out = match template {
        ChatTemplate::Instruct => render_instruct(messages, add_vision_id),
        ChatTemplate::Thinking => render_thinking(messages, add_vision_id),
    };
    if add_generation_prompt {
        out.push_str("<|im_start|>assistant\n");
        if template == ChatTemplate::Thinking {
            out.push_str("<think>\n");
        }
    }
    out
}

/// A `tool` message: opens a `user` turn after a non-tool message, closes it before one.
fn render_tool(out: &mut String, messages: &[Message], i: usize, content: &str) {
    if i == 0 || messages[i - 1].role != Role::Tool {
        out.push_str("<|im_start|>user");
    }
    out.push_str("\n<tool_response>\n");
    out.push_str(content);
    out.push_str("\n</tool_response>");
    if i + 1 == messages.len() || messages[i + 1].role != Role::Tool {
        out.push_str("<|im_end|>\n");
    }
}

fn render_instruct(messages: &[Message], add_vision_id: bool) -> String {
    let mut out = String::new();
    if let Some(first) = messages.first().filter(|m| m.role == Role::System) {
        out.push_str("<|im_start|>system\n");
        out.push_str(&render_content(&first.content, false, None, false));
        out.push_str("<|im_end|>\n");
    }
    let mut counts = Counts::default();
    for (i, m) in messages.iter().enumerate() {
        match m.role {
            Role::User => {
                out.push_str("<|im_start|>user\n");
                out.push_str(&render_content(&m.content, true, Some(&mut counts), add_vision_id));
                out.push_str("<|im_end|>\n");
            }
            Role::Assistant => {
                out.push_str("<|im_start|>assistant\n");
                out.push_str(&render_content(&m.content, false, None, false));
                out.push_str("<|im_end|>\n");
            }
            Role::Tool => {
                let content = render_content(&m.content, true, Some(&mut counts), add_vision_id);
                render_tool(&mut out, messages, i, &content);
            }
            Role::System => {}
        }
    }
    out
}

fn render_thinking(messages: &[Message], add_vision_id: bool) -> String {
    let mut out = String::new();
    let mut counts = Counts::default();
    if let Some(first) = messages.first().filter(|m| m.role == Role::System) {
        out.push_str("<|im_start|>system\n");
        out.push_str(&render_content(&first.content, true, None, add_vision_id));
        out.push_str("<|im_end|>\n");
    }
    // The last user message that is not just a wrapped tool response.
    let mut last_query = messages.len().wrapping_sub(1);
    for (i, m) in messages.iter().enumerate().rev() {
        if m.role == Role::User {
            let c = render_content(&m.content, true, None, add_vision_id);
            if !(c.starts_with("<tool_response>") && c.ends_with("</tool_response>")) {
                last_query = i;
                break;
            }
        }
    }
    for (i, m) in messages.iter().enumerate() {
        let mut content = render_content(&m.content, true, Some(&mut counts), add_vision_id);
        match m.role {
            Role::User => push_turn(&mut out, "user", &content),
            Role::System if i > 0 => push_turn(&mut out, "system", &content),
            Role::System => {}
            Role::Assistant => {
                let mut reasoning = String::new();
                if let Some(r) = &m.reasoning_content {
                    reasoning = r.clone();
                } else if let Some(end) = content.find("</think>") {
                    let before = content[..end].trim_end_matches('\n');
                    reasoning = before.rsplit("<think>").next().unwrap_or("").trim_start_matches('\n').to_string();
                    content = content.rsplit("</think>").next().unwrap_or("").trim_start_matches('\n').to_string();
                }
                out.push_str("<|im_start|>assistant\n");
                let last = i + 1 == messages.len();
                if i > last_query && (last || !reasoning.is_empty()) {
                    out.push_str("<think>\n");
                    out.push_str(reasoning.trim_matches('\n'));
                    out.push_str("\n</think>\n\n");
                    out.push_str(content.trim_start_matches('\n'));
                } else {
                    out.push_str(&content);
                }
                out.push_str("<|im_end|>\n");
            }
            Role::Tool => render_tool(&mut out, messages, i, &content),
        }
    }
    out
}

fn push_turn(out: &mut String, role: &str, content: &str) {
    out.push_str("<|im_start|>");
    out.push_str(role);
    out.push('\n');
    out.push_str(content);
    out.push_str("<|im_end|>\n");
}

/// How a video's placeholder is expanded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum VideoPlaceholder {
    /// transformers ≥ 5.10 (the reference here): only `<|video_pad|>` is replaced, so the
    /// template's `<|vision_start|>`…`<|vision_end|>` stays around the per-frame-pair blocks.
    #[default]
    KeepOuter,
    /// transformers 4.57 (the release-time processor) and qwen-vl-utils: the whole
    /// `<|vision_start|><|video_pad|><|vision_end|>` is replaced by the per-frame-pair blocks.
    ReplaceWrapper,
}

/// Placeholder tokens of a grid, `t·h·w / merge²`, checked: at most [`MAX_PIXELS`] (a pad
/// stands for merge² patches of at least a pixel each).
pub fn pad_count(grid_thw: [usize; 3], merge_size: usize) -> Result<usize, RuntimeError> {
    let patches = grid_thw.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
    let merge2 = merge_size.checked_mul(merge_size).filter(|&m| m > 0);
    match (patches, merge2) {
        (Some(n), Some(m2)) if n / m2 <= MAX_PIXELS => Ok(n / m2),
        _ => Err(RuntimeError::Placeholders(format!("a grid of {grid_thw:?} patches merged by {merge_size} is out of range"))),
    }
}

/// `replace_image_token`: `t·h·w / merge²` pads.
pub fn image_placeholder(grid_thw: [usize; 3], merge_size: usize) -> Result<String, RuntimeError> {
    Ok(IMAGE_TOKEN.repeat(pad_count(grid_thw, merge_size)?))
}

/// `replace_video_token`: for each temporal patch `<{ts:.1} seconds><|vision_start|>` + `h·w/merge²`
/// pads + `<|vision_end|>`.
pub fn video_placeholder(grid_thw: [usize; 3], timestamps: &[f64], merge_size: usize) -> Result<String, RuntimeError> {
    let [t, h, w] = grid_thw;
    if timestamps.len() != t {
        return Err(RuntimeError::Placeholders(format!(
            "a video of {t} temporal patches with {} timestamps",
            timestamps.len()
        )));
    }
    let pads = VIDEO_TOKEN.repeat(pad_count([1, h, w], merge_size)?);
    Ok(timestamps.iter().map(|ts| format!("<{ts:.1} seconds>{VISION_START}{pads}{VISION_END}")).collect())
}

/// Replaces, in order of appearance, each image placeholder by its pads and each video placeholder
/// by its frame-pair blocks. The counts must match the inputs.
pub fn expand_vision_placeholders(
    text: &str,
    images: &[[usize; 3]],
    videos: &[VideoInput],
    merge_size: usize,
    style: VideoPlaceholder,
) -> Result<String, RuntimeError> {
    let wrapped_video = format!("{VISION_START}{VIDEO_TOKEN}{VISION_END}");
    let mut out = String::with_capacity(text.len());
    let (mut ni, mut nv) = (0, 0);
    let mut rest = text;
    loop {
        let img = rest.find(IMAGE_TOKEN);
        let vid = match style {
            VideoPlaceholder::KeepOuter => rest.find(VIDEO_TOKEN).map(|p| (p, VIDEO_TOKEN.len())),
            VideoPlaceholder::ReplaceWrapper => {
                let bare = rest.find(VIDEO_TOKEN);
                match rest.find(&wrapped_video) {
                    // The wrapper starts before the bare token it contains.
                    Some(p) if bare.is_some_and(|b| b == p + VISION_START.len()) => Some((p, wrapped_video.len())),
                    _ => bare.map(|p| (p, VIDEO_TOKEN.len())),
                }
            }
        };
        match (img, vid) {
            (Some(i), v) if v.is_none_or(|(p, _)| i < p) => {
                let grid = images.get(ni).ok_or_else(|| too_many("image", images.len()))?;
                out.push_str(&rest[..i]);
                out.push_str(&image_placeholder(*grid, merge_size)?);
                rest = &rest[i + IMAGE_TOKEN.len()..];
                ni += 1;
            }
            (_, Some((p, len))) => {
                let v = videos.get(nv).ok_or_else(|| too_many("video", videos.len()))?;
                out.push_str(&rest[..p]);
                out.push_str(&video_placeholder(v.vision.grid_thw, &v.timestamps, merge_size)?);
                rest = &rest[p + len..];
                nv += 1;
            }
            _ => break,
        }
    }
    out.push_str(rest);
    if ni != images.len() || nv != videos.len() {
        return Err(RuntimeError::Placeholders(format!(
            "the prompt has {ni} image and {nv} video placeholders for {} images and {} videos",
            images.len(),
            videos.len()
        )));
    }
    Ok(out)
}

fn too_many(what: &str, n: usize) -> RuntimeError {
    RuntimeError::Placeholders(format!("more {what} placeholders than the {n} {what}s given"))
}

/// The special token ids the runtime needs, looked up by name in the tokenizer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpecialTokens {
    pub im_start: u32,
    pub im_end: u32,
    pub endoftext: Option<u32>,
    pub vision_start: u32,
    pub vision_end: u32,
    pub image_pad: u32,
    pub video_pad: u32,
}

impl SpecialTokens {
    pub fn from_tokenizer(tok: &Tokenizer) -> Result<Self, RuntimeError> {
        let id = |s: &str| tok.token_to_id(s).ok_or_else(|| RuntimeError::MissingToken(s.to_string()));
        Ok(SpecialTokens {
            im_start: id("<|im_start|>")?,
            im_end: id("<|im_end|>")?,
            endoftext: tok.token_to_id("<|endoftext|>"),
            vision_start: id(VISION_START)?,
            vision_end: id(VISION_END)?,
            image_pad: id(IMAGE_TOKEN)?,
            video_pad: id(VIDEO_TOKEN)?,
        })
    }

    /// Generation stops at `<|im_end|>` or `<|endoftext|>` (generation_config's eos list).
    pub fn eos(&self) -> Vec<u32> {
        std::iter::once(self.im_end).chain(self.endoftext).collect()
    }
}

/// A tokenised prompt ready for prefill.
#[derive(Clone, Debug, PartialEq)]
pub struct Prompt {
    /// The expanded prompt text.
    pub text: String,
    pub input_ids: Vec<u32>,
    pub image_grid_thw: Vec<[usize; 3]>,
    pub video_grid_thw: Vec<[usize; 3]>,
    pub rope: RopeIndex,
}

/// Tokenizer, processors and template of one model: the CPU half of a request.
#[derive(Clone)]
pub struct Qwen3VLProcessor {
    pub tokenizer: Tokenizer,
    pub tokens: SpecialTokens,
    pub image_processor: ImageProcessor,
    pub video_processor: VideoProcessor,
    pub chat_template: ChatTemplate,
    pub video_placeholder: VideoPlaceholder,
    pub add_vision_id: bool,
}

impl Qwen3VLProcessor {
    /// From a `tokenizer.json`, with the default Qwen3-VL processors and the Instruct template.
    /// The `tokenizers` crate panics on some malformed files (a `decoder` section it cannot
    /// buffer: `decoders/mod.rs` `expect("Helper")`), and a panic aborts a wasm32 build, so the
    /// file is parsed as JSON first and the crate reads that value, where nothing can fail to
    /// buffer; natively a caught panic is the second line.
    pub fn from_tokenizer_json(bytes: &[u8]) -> Result<Self, RuntimeError> {
        let json: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| RuntimeError::Tokenizer(format!("tokenizer.json: {e}")))?;
        let tokenizer: Tokenizer = guarded("reading tokenizer.json", || serde_json::from_value(json).map_err(Into::into))?;
        Ok(Qwen3VLProcessor {
            tokens: SpecialTokens::from_tokenizer(&tokenizer)?,
            tokenizer,
            image_processor: ImageProcessor::default(),
            video_processor: VideoProcessor::default(),
            chat_template: ChatTemplate::Instruct,
            video_placeholder: VideoPlaceholder::KeepOuter,
            add_vision_id: false,
        })
    }

    /// Token ids of a text, special tokens in it included (no BOS is added for Qwen).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, RuntimeError> {
        let enc = guarded("encoding", || self.tokenizer.encode(text, true))?;
        Ok(enc.get_ids().to_vec())
    }

    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String, RuntimeError> {
        guarded("decoding", || self.tokenizer.decode(ids, skip_special_tokens))
    }

    /// Renders, expands and tokenises a conversation whose `Image`/`Video` parts are `images` and
    /// `videos` in order, and computes the M-RoPE positions of the result.
    pub fn prompt(
        &self,
        messages: &[Message],
        images: &[VisionInput],
        videos: &[VideoInput],
        add_generation_prompt: bool,
    ) -> Result<Prompt, RuntimeError> {
        let template_text =
            apply_chat_template(messages, self.chat_template, add_generation_prompt, self.add_vision_id);
        let merge = self.image_processor.spec.merge_size;
        images.iter().chain(videos.iter().map(|v| &v.vision)).try_for_each(|v| v.check(merge))?;
        let image_grid_thw: Vec<[usize; 3]> = images.iter().map(|i| i.grid_thw).collect();
        let text = expand_vision_placeholders(&template_text, &image_grid_thw, videos, merge, self.video_placeholder)?;
        let input_ids = match self.encode_spliced(&template_text, &image_grid_thw, videos)? {
            Some(ids) => ids,
            None => self.encode(&text)?,
        };
        let video_grid_thw: Vec<[usize; 3]> = videos.iter().map(|v| v.vision.grid_thw).collect();
        let rope = get_rope_index(
            &input_ids,
            self.tokens.image_pad,
            self.tokens.video_pad,
            &image_grid_thw,
            &video_grid_thw,
            merge,
        )?;
        Ok(Prompt { text, input_ids, image_grid_thw, video_grid_thw, rope })
    }

    /// The ids of the expanded text without tokenising thousands of pads: the placeholders are
    /// special added tokens, which the tokenizer splits out before anything else, so expanding
    /// them after tokenising gives the same ids. With [`VideoPlaceholder::KeepOuter`] every
    /// timestamp sits between two special tokens and is tokenised alone here too. `None` (use
    /// the text) when the placeholders do not tokenise to one id each or the style differs.
    fn encode_spliced(
        &self,
        template_text: &str,
        images: &[[usize; 3]],
        videos: &[VideoInput],
    ) -> Result<Option<Vec<u32>>, RuntimeError> {
        if self.video_placeholder != VideoPlaceholder::KeepOuter {
            return Ok(None);
        }
        let ids = self.encode(template_text)?;
        let t = self.tokens;
        let count = |id: u32| ids.iter().filter(|&&x| x == id).count();
        if count(t.image_pad) != template_text.matches(IMAGE_TOKEN).count()
            || count(t.video_pad) != template_text.matches(VIDEO_TOKEN).count()
        {
            return Ok(None);
        }
        let merge = self.image_processor.spec.merge_size;
        let (mut images, mut videos) = (images.iter(), videos.iter());
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if id == t.image_pad {
                let grid = images.next().ok_or_else(|| too_many("image", 0))?;
                out.extend(std::iter::repeat_n(t.image_pad, pad_count(*grid, merge)?));
            } else if id == t.video_pad {
                let v = videos.next().ok_or_else(|| too_many("video", 0))?;
                let [nt, h, w] = v.vision.grid_thw;
                if v.timestamps.len() != nt {
                    return Err(RuntimeError::Placeholders(format!(
                        "a video of {nt} temporal patches with {} timestamps",
                        v.timestamps.len()
                    )));
                }
                for ts in &v.timestamps {
                    out.extend(self.encode(&format!("<{ts:.1} seconds>"))?);
                    out.push(t.vision_start);
                    out.extend(std::iter::repeat_n(t.video_pad, pad_count([1, h, w], merge)?));
                    out.push(t.vision_end);
                }
            } else {
                out.push(id);
            }
        }
        Ok(Some(out))
    }
}

/// Runs a call into the `tokenizers` crate with its panics caught (natively; a wasm32 build
/// aborts instead, so what is known to panic is refused before the call).
fn guarded<T>(what: &str, call: impl FnOnce() -> tokenizers::Result<T>) -> Result<T, RuntimeError> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(call)) {
        Ok(result) => result.map_err(|e| RuntimeError::Tokenizer(format!("{what}: {e}"))),
        Err(panic) => {
            let message = panic.downcast_ref::<&str>().copied().or(panic.downcast_ref::<String>().map(String::as_str));
            Err(RuntimeError::Tokenizer(format!("{what}: the tokenizers crate panicked: {}", message.unwrap_or("?"))))
        }
    }
}
