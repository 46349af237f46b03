//! One chat request, prepared the same way by every face (the CLI's `run`, the browser's
//! `Engine::chat`): the processor read from the model folder, decoded pixels → vision inputs,
//! the conversation → prompt ids and M-RoPE positions, and the caller's options over
//! generation_config.json's defaults. Same inputs ⇒ same ids, by construction.

use crate::kernels::sample::SampleParams;
use crate::model::GenerationConfig;

use super::video::patch_timestamps;
use super::{
    GenerateOptions, ImageProcessor, Message, Prompt, Qwen3VLProcessor, RgbImage, RuntimeError, Sampling, VideoInput,
    VideoProcessor, VisionInput,
};

/// New tokens when the caller names no limit.
pub const DEFAULT_MAX_NEW_TOKENS: usize = 512;

/// An image's pixel budget when the request names none: 1024×768 for a 4:3 photo, 768 merged
/// tokens. The reference budget (16 MP for Qwen3-VL) costs a minute of ViT on a fast GPU; this
/// keeps a photo interactive (README "Image budgets" has the measured times).
pub const DEFAULT_MAX_PIXELS: usize = 786_432;

/// A video's budget, all frames together, when the request names none: as many merged tokens
/// as a default image (two frames make one temporal patch).
pub const DEFAULT_VIDEO_MAX_PIXELS: usize = 2 * DEFAULT_MAX_PIXELS;

/// Reads the tokenizer and the image/video processor configs of a model folder through
/// `read(file name)` (`None`: the folder has no such file). Without `preprocessor_config.json`
/// the Qwen3-VL defaults apply.
pub fn processor<E: std::fmt::Display>(
    mut read: impl FnMut(&str) -> Result<Option<Vec<u8>>, E>,
) -> Result<Qwen3VLProcessor, RuntimeError> {
    let tokenizer = read_text(&mut read, "tokenizer.json")?
        .ok_or_else(|| RuntimeError::Tokenizer("the model folder has no tokenizer.json".into()))?;
    let mut p = Qwen3VLProcessor::from_tokenizer_json(tokenizer.as_bytes())?;
    p.image_processor = image_processor(&mut read)?;
    if let Some(json) = read_text(&mut read, "video_preprocessor_config.json")? {
        p.video_processor = VideoProcessor::from_config_json(&json)?;
    }
    Ok(p)
}

/// The image processor of a model folder read through `read` (as [`processor`]), for callers that
/// need no tokenizer.
pub fn image_processor<E: std::fmt::Display>(
    mut read: impl FnMut(&str) -> Result<Option<Vec<u8>>, E>,
) -> Result<ImageProcessor, RuntimeError> {
    match read_text(&mut read, "preprocessor_config.json")? {
        Some(json) => ImageProcessor::from_config_json(&json),
        None => Ok(ImageProcessor::default()),
    }
}

fn read_text<E: std::fmt::Display>(
    read: &mut impl FnMut(&str) -> Result<Option<Vec<u8>>, E>,
    name: &str,
) -> Result<Option<String>, RuntimeError> {
    let bytes = read(name).map_err(|e| RuntimeError::Config(format!("{name}: {e}")))?;
    bytes.map(|b| String::from_utf8(b).map_err(|e| RuntimeError::Config(format!("{name}: {e}")))).transpose()
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
            Video::Clip { frames, fps } => p.preprocess_all(frames, Some(*fps)),
            Video::Frames { frames, timestamps } => {
                if timestamps.len() != frames.len() || timestamps.iter().any(|t| !t.is_finite()) {
                    return Err(RuntimeError::Video(format!(
                        "{} frames need as many finite timestamps, not {:?}",
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

impl ChatOptions {
    /// Greedy when asked, or when neither generation_config.json nor the caller's temperature
    /// asks for sampling; eos from generation_config.json. Out-of-range values are errors.
    pub fn generate_options(&self, gen: &GenerationConfig) -> Result<GenerateOptions, RuntimeError> {
        let check = |name: &str, v: f32, ok: bool| match ok && v.is_finite() {
            true => Ok(v),
            false => Err(RuntimeError::Options(format!("{name} {v} is out of range"))),
        };
        let sampling = if self.greedy || !(gen.do_sample || self.temperature.is_some()) {
            Sampling::Greedy
        } else {
            let temperature = self.temperature.unwrap_or(gen.temperature);
            let top_p = self.top_p.unwrap_or(gen.top_p);
            let repetition_penalty = self.repetition_penalty.unwrap_or(gen.repetition_penalty);
            let presence_penalty = self.presence_penalty.unwrap_or(0.0);
            Sampling::Sample(SampleParams {
                temperature: check("temperature", temperature, temperature > 0.0)?,
                top_k: self.top_k.unwrap_or(gen.top_k as u32),
                top_p: check("topP", top_p, top_p > 0.0 && top_p <= 1.0)?,
                repetition_penalty: check("repetitionPenalty", repetition_penalty, repetition_penalty > 0.0)?,
                presence_penalty: check("presencePenalty", presence_penalty, true)?,
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
        Ok(Request { prompt, images, videos: videos.into_iter().map(|v| v.vision).collect(), options: generate })
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
        self.prompt.input_ids.len() + self.options.max_new_tokens + 1
    }
}
