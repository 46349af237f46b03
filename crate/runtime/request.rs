//! One chat request, prepared the same way by every face (the CLI's `run`, the browser's
//! `Engine::chat`): the processor read from the model folder, decoded pixels → vision inputs,
//! the conversation → prompt ids and M-RoPE positions, and the caller's options over
//! generation_config.json's defaults. Same inputs ⇒ same ids, by construction.

use crate::kernels::sample::SampleParams;
use crate::model::quantized::MANIFEST;
use crate::model::{GenerationConfig, Manifest};

use super::video::{check_fps, patch_timestamps};
use super::{
    GenerateOptions, ImageProcessor, Message, Prompt, Qwen3VLProcessor, RgbImage, RuntimeError, Sampling, VideoInput,
    VideoProcessor, VisionInput,
};

/// New tokens when the caller names no limit.
pub const DEFAULT_MAX_NEW_TOKENS: usize = 512;
/// The most new tokens a request may ask for (the browser's longest context, 2^24): more is
/// a mistake, and would wrap the cache capacity.
pub const MAX_NEW_TOKENS: usize = 1 << 24;
/// Penalties keep every logit finite: a repetition penalty within `[1/P, P]`, a presence
/// penalty within `[-P, P]`.
const MAX_PENALTY: f32 = 1e6;
/// The latest time, in seconds, a caller's video frame may have (about 31 years).
pub const MAX_SECONDS: f64 = 1e9;

/// An image's pixel budget when the request names none: 1024×768 for a 4:3 photo, 768 merged
/// tokens. The reference budget (16 MP for Qwen3-VL) costs a minute of ViT on a fast GPU; this
/// keeps a photo interactive (README "Image budgets" has the measured times).
pub const DEFAULT_MAX_PIXELS: usize = 786_432;

/// A video's budget, all frames together, when the request names none: as many merged tokens
/// as a default image (two frames make one temporal patch).
pub const DEFAULT_VIDEO_MAX_PIXELS: usize = 2 * DEFAULT_MAX_PIXELS;

/// Reads the tokenizer and the image/video processor configs of a model folder through
/// `read(file name)` (`None`: the folder has no such file). Without `preprocessor_config.json`
/// the Qwen3-VL defaults apply. In a pre-quantized folder every file is checked against
/// `manifest.json`'s sha256.
pub fn processor<E: std::fmt::Display>(read: impl FnMut(&str) -> Result<Option<Vec<u8>>, E>) -> Result<Qwen3VLProcessor, RuntimeError> {
    let mut folder = Folder::new(read)?;
    let tokenizer = folder
        .text("tokenizer.json")?
        .ok_or_else(|| RuntimeError::Tokenizer("the model folder has no tokenizer.json".into()))?;
    let mut p = Qwen3VLProcessor::from_tokenizer_json(tokenizer.as_bytes())?;
    p.image_processor = folder.image_processor()?;
    const VIDEO: &str = "video_preprocessor_config.json";
    if let Some(json) = folder.text(VIDEO)? {
        p.video_processor = VideoProcessor::from_config_json(&json).map_err(|e| in_file(VIDEO, e))?;
    }
    Ok(p)
}

/// The image processor of a model folder read through `read` (as [`processor`]), for callers that
/// need no tokenizer.
pub fn image_processor<E: std::fmt::Display>(read: impl FnMut(&str) -> Result<Option<Vec<u8>>, E>) -> Result<ImageProcessor, RuntimeError> {
    Folder::new(read)?.image_processor()
}

/// The small files of a model folder, each checked against the manifest of a pre-quantized one.
struct Folder<R> {
    read: R,
    manifest: Option<Manifest>,
}

impl<E: std::fmt::Display, R: FnMut(&str) -> Result<Option<Vec<u8>>, E>> Folder<R> {
    fn new(read: R) -> Result<Self, RuntimeError> {
        let mut folder = Folder { read, manifest: None };
        let manifest = folder.text(MANIFEST)?.map(|m| Manifest::from_json(&m)).transpose();
        folder.manifest = manifest.map_err(|e| RuntimeError::Config(e.to_string()))?;
        Ok(folder)
    }

    fn text(&mut self, name: &str) -> Result<Option<String>, RuntimeError> {
        let failed = |e: String| RuntimeError::Config(format!("{name}: {e}"));
        let Some(bytes) = (self.read)(name).map_err(|e| failed(e.to_string()))? else { return Ok(None) };
        if let Some(m) = &self.manifest {
            m.check_file(name, &bytes).map_err(|e| RuntimeError::Config(e.to_string()))?;
        }
        String::from_utf8(bytes).map(Some).map_err(|e| failed(e.to_string()))
    }

    fn image_processor(&mut self) -> Result<ImageProcessor, RuntimeError> {
        const IMAGE: &str = "preprocessor_config.json";
        match self.text(IMAGE)? {
            Some(json) => ImageProcessor::from_config_json(&json).map_err(|e| in_file(IMAGE, e)),
            None => Ok(ImageProcessor::default()),
        }
    }
}

/// A processor config's error, naming its file.
fn in_file(name: &str, e: RuntimeError) -> RuntimeError {
    match e {
        RuntimeError::Config(m) => RuntimeError::Config(format!("{name}: {m}")),
        RuntimeError::Video(m) => RuntimeError::Video(format!("{name}: {m}")),
        e => e,
    }
}

/// An image as a face receives it, with its own pixel budget (`None`: the request's).
pub struct Image {
    pub pixels: RgbImage,
    pub max_pixels: Option<usize>,
}

impl From<RgbImage> for Image {
    fn from(pixels: RgbImage) -> Image {
        Image { pixels, max_pixels: None }
    }
}

/// A video as a face receives it.
pub enum Video {
    /// Every decoded frame of a clip at `fps` frames per second: sampled as transformers does.
    Clip { frames: Vec<RgbImage>, fps: f64 },
    /// Frames the caller already chose, each with its time in seconds.
    Frames { frames: Vec<RgbImage>, timestamps: Vec<f64> },
}

impl Video {
    fn preprocess(&self, p: &VideoProcessor) -> Result<VideoInput, RuntimeError> {
        match self {
            Video::Clip { frames, fps } => p.preprocess_all(frames, Some(check_fps("fps", *fps)?)),
            Video::Frames { frames, timestamps } => {
                if timestamps.len() != frames.len() || timestamps.iter().any(|t| !(0.0..=MAX_SECONDS).contains(t)) {
                    return Err(RuntimeError::Video(format!(
                        "{} frames need as many timestamps from 0 to {MAX_SECONDS} seconds, not {:?}",
                        frames.len(),
                        timestamps
                    )));
                }
                let indices: Vec<usize> = (0..frames.len()).collect();
                let mut v = p.preprocess(frames, &indices, None)?;
                v.timestamps = patch_timestamps(timestamps, p.spec.temporal_patch_size);
                Ok(v)
            }
        }
    }
}

/// What the caller may override; `None` takes generation_config.json's value. Deserializes
/// from the browser's camelCase options object, refusing unknown keys.
#[derive(Clone, Debug, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ChatOptions {
    pub max_new_tokens: Option<usize>,
    /// Greedy even when generation_config.json samples.
    pub greedy: bool,
    pub temperature: Option<f32>,
    pub top_k: Option<u32>,
    pub top_p: Option<f32>,
    pub repetition_penalty: Option<f32>,
    pub presence_penalty: Option<f32>,
    pub seed: Option<u64>,
    /// The most pixels of an image (default [`DEFAULT_MAX_PIXELS`]; an image part's own budget
    /// wins); it caps preprocessor_config.json's maximum.
    pub max_pixels: Option<usize>,
    /// The most pixels of all of a video's frames together (default [`DEFAULT_VIDEO_MAX_PIXELS`]).
    pub video_max_pixels: Option<usize>,
}

/// The sampling options: the browser's name, generation_config.json's key, the test a value
/// must pass and the range in words. Penalties keep every logit finite within their ranges.
type Knob = (&'static str, &'static str, fn(f32) -> bool, &'static str);
const TEMPERATURE: Knob = ("temperature", "temperature", |v| v.is_normal() && v > 0.0, "a positive normal number");
const TOP_P: Knob = ("topP", "top_p", |v| v > 0.0 && v <= 1.0, "in (0, 1]");
const REPETITION_PENALTY: Knob =
    ("repetitionPenalty", "repetition_penalty", |v| (1.0 / MAX_PENALTY..=MAX_PENALTY).contains(&v), "from 1e-6 to 1e6");
const PRESENCE_PENALTY: Knob =
    ("presencePenalty", "presence_penalty", |v| (-MAX_PENALTY..=MAX_PENALTY).contains(&v), "from -1e6 to 1e6");

/// `v` when `knob` takes it, else an error naming the option (`file`: as the file spells it).
fn check(knob: Knob, v: f32, file: bool) -> Result<f32, RuntimeError> {
    let (name, key, ok, range) = knob;
    match ok(v) {
        true => Ok(v),
        false if file => Err(RuntimeError::Options(format!("generation_config.json: `{key}` {v} is out of range: it must be {range}"))),
        false => Err(RuntimeError::Options(format!("{name} {v} is out of range: it must be {range}"))),
    }
}

impl ChatOptions {
    /// Every option given, in range, whether or not it is used: a NaN temperature beside
    /// `greedy` is as much a mistake as without it. The error names the option as the browser
    /// spells it.
    pub fn validate(&self) -> Result<(), RuntimeError> {
        if let Some(n) = self.max_new_tokens.filter(|&n| n > MAX_NEW_TOKENS) {
            return Err(RuntimeError::Options(format!("maxNewTokens {n} is more than {MAX_NEW_TOKENS}")));
        }
        // A budget caps the processor's maximum (itself at most MAX_PIXELS), so any large one is
        // harmless; none at all is not a budget.
        for (name, budget) in [("maxPixels", self.max_pixels), ("videoMaxPixels", self.video_max_pixels)] {
            if budget == Some(0) {
                return Err(RuntimeError::Options(format!("{name} 0 leaves no pixels")));
            }
        }
        let given = [
            (TEMPERATURE, self.temperature),
            (TOP_P, self.top_p),
            (REPETITION_PENALTY, self.repetition_penalty),
            (PRESENCE_PENALTY, self.presence_penalty),
        ];
        given.into_iter().try_for_each(|(knob, v)| v.map_or(Ok(()), |v| check(knob, v, false).map(drop)))
    }

    /// Greedy when asked, or when neither generation_config.json nor the caller's temperature
    /// asks for sampling; eos from generation_config.json. Out-of-range values are errors, the
    /// file's own included when they are used.
    pub fn generate_options(&self, gen: &GenerationConfig) -> Result<GenerateOptions, RuntimeError> {
        self.validate()?;
        let pick = |knob, ours: Option<f32>, theirs| ours.map_or_else(|| check(knob, theirs, true), Ok);
        let sampling = if self.greedy || !(gen.do_sample || self.temperature.is_some()) {
            Sampling::Greedy
        } else {
            Sampling::Sample(SampleParams {
                temperature: pick(TEMPERATURE, self.temperature, gen.temperature)?,
                top_k: self.top_k.unwrap_or(u32::try_from(gen.top_k).unwrap_or(u32::MAX)),
                top_p: pick(TOP_P, self.top_p, gen.top_p)?,
                repetition_penalty: pick(REPETITION_PENALTY, self.repetition_penalty, gen.repetition_penalty)?,
                presence_penalty: self.presence_penalty.unwrap_or(0.0),
                u: 0.0,
            })
        };
        Ok(GenerateOptions {
            max_new_tokens: self.max_new_tokens.unwrap_or(DEFAULT_MAX_NEW_TOKENS),
            sampling,
            seed: self.seed.unwrap_or(0),
            eos: gen.eos_token_id.clone(),
        })
    }
}

/// A request ready for `Session::prefill` and `generate`.
pub struct Request {
    pub prompt: Prompt,
    pub images: Vec<VisionInput>,
    pub videos: Vec<VisionInput>,
    pub options: GenerateOptions,
    /// [`Request::capacity`], computed with checked arithmetic when the request was made.
    capacity: usize,
}

impl Request {
    /// `messages`' image and video parts are `images` and `videos`, in order; the prompt ends
    /// with the assistant's generation prompt. Images and videos are resized within the
    /// request's pixel budgets (an explicit one below the processor's minimum is an error).
    pub fn new(
        proc: &Qwen3VLProcessor,
        messages: &[Message],
        images: &[Image],
        videos: &[Video],
        options: &ChatOptions,
        generation: &GenerationConfig,
    ) -> Result<Request, RuntimeError> {
        let generate = options.generate_options(generation)?;
        let (ip, vp) = (&proc.image_processor, &proc.video_processor);
        let image_budget = options.max_pixels.unwrap_or(DEFAULT_MAX_PIXELS.max(ip.min_pixels));
        let images: Vec<VisionInput> = images
            .iter()
            .map(|i| ip.with_budget(i.max_pixels.unwrap_or(image_budget))?.preprocess(&i.pixels))
            .collect::<Result<_, _>>()?;
        let vp = vp.with_budget(options.video_max_pixels.unwrap_or(DEFAULT_VIDEO_MAX_PIXELS.max(vp.min_pixels)))?;
        let videos: Vec<VideoInput> = videos.iter().map(|v| v.preprocess(&vp)).collect::<Result<_, _>>()?;
        let prompt = proc.prompt(messages, &images, &videos, true)?;
        let capacity = prompt.input_ids.len().checked_add(generate.max_new_tokens).and_then(|n| n.checked_add(1));
        let capacity = capacity.ok_or_else(|| {
            RuntimeError::Options(format!("{} prompt tokens and maxNewTokens {} overflow", prompt.input_ids.len(), generate.max_new_tokens))
        })?;
        Ok(Request { prompt, images, videos: videos.into_iter().map(|v| v.vision).collect(), options: generate, capacity })
    }

    /// Fails before any GPU work when the prompt alone overflows a cache of `capacity` tokens.
    pub fn check_capacity(&self, capacity: usize) -> Result<(), RuntimeError> {
        match self.prompt.input_ids.len() {
            prompt if prompt > capacity => Err(RuntimeError::Capacity { prompt, capacity }),
            _ => Ok(()),
        }
    }

    /// Cache positions the request needs: the prompt, then every new token but the last.
    pub fn capacity(&self) -> usize {
        self.capacity
    }
}
