//! `qwen3-vl run`: one question about images or a video, the answer streamed to stdout, then
//! time to first token and prefill / decode speed (or everything as one JSON line).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use qwen3_vl_webgpu::model::{ModelError, ModelFolder};
use qwen3_vl_webgpu::runtime::request::{ChatOptions, Image, Request, Video};
use qwen3_vl_webgpu::runtime::preprocess::HOST_BUDGET;
use qwen3_vl_webgpu::runtime::video::check_fps;
use qwen3_vl_webgpu::runtime::{generate, Content, Message, Session, TextStream, VideoProcessor};

use crate::common::{self, decode_file, Result, Weights};
use crate::hub;

/// Answer a prompt about images or a video.
#[derive(clap::Args)]
pub struct Args {
    /// Model folder (Hugging Face layout, or written by `quantize`) or Hugging Face id
    /// (owner/name[@revision], fetched into the Hugging Face cache).
    #[arg(long, value_name = "DIR|ID", default_value = hub::DEFAULT_MODEL)]
    model: String,
    /// An image file (PNG or JPEG); repeat for several.
    #[arg(long, value_name = "FILE")]
    image: Vec<PathBuf>,
    /// A folder of video frames (PNG/JPEG, in file-name order).
    #[arg(long, value_name = "DIR", requires = "fps")]
    video: Option<PathBuf>,
    /// Frames per second of --video.
    #[arg(long, value_name = "F")]
    fps: Option<f64>,
    /// The question.
    #[arg(long, value_name = "TEXT")]
    prompt: String,
    /// A system message before the question.
    #[arg(long, value_name = "TEXT")]
    system: Option<String>,
    /// At most this many new tokens (default 512).
    #[arg(long, value_name = "N")]
    max_new_tokens: Option<usize>,
    /// Always the most likely token, whatever generation_config.json says.
    #[arg(long)]
    greedy: bool,
    /// Sampling temperature (default: generation_config.json's).
    #[arg(long, value_name = "T")]
    temperature: Option<f32>,
    /// Sample among the K most likely tokens.
    #[arg(long, value_name = "K")]
    top_k: Option<u32>,
    /// Sample within the top-P probability mass.
    #[arg(long, value_name = "P")]
    top_p: Option<f32>,
    /// Random seed: same seed, same tokens.
    #[arg(long, value_name = "S")]
    seed: Option<u64>,
    /// The most pixels of an image (default 786432, 1024×768); it caps preprocessor_config.json's
    /// maximum, keeping the aspect ratio.
    #[arg(long, value_name = "N")]
    max_pixels: Option<usize>,
    /// The most pixels of all of the video's frames together (default 1572864).
    #[arg(long, value_name = "N")]
    video_max_pixels: Option<usize>,
    /// Tokens the KV cache may hold (default: the model's max_position_embeddings); a longer
    /// prompt is refused before the GPU is touched.
    #[arg(long, value_name = "N")]
    context_length: Option<usize>,
    /// How the large matrices are stored on the GPU.
    #[arg(long, value_enum, default_value_t)]
    weights: Weights,
    /// Print one JSON object (ids, text, stop, timings) instead of streaming the text.
    #[arg(long)]
    json: bool,
}

/// A folder of frames (PNG/JPEG, in file-name order) at `fps` frames per second. Only the
/// frames the processor samples are decoded, and together they must fit the host budget: a
/// folder of any length costs the memory of the frames used.
fn video(dir: &Path, fps: f64, p: &VideoProcessor) -> Result<Video> {
    let fps = check_fps("--fps", fps).map_err(|e| e.to_string())?;
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| matches!(x.to_ascii_lowercase().to_str(), Some("png" | "jpg" | "jpeg"))))
        .collect();
    files.sort();
    let picked = p.sample_frames(files.len(), Some(fps));
    let mut bytes = 0usize;
    let mut frames = Vec::with_capacity(picked.len());
    for &i in &picked {
        let frame = decode_file(&files[i])?;
        bytes += frame.data.len();
        if bytes > HOST_BUDGET {
            return Err(format!("{}: the {} sampled frames take more than {HOST_BUDGET} bytes", dir.display(), picked.len()));
        }
        frames.push(frame);
    }
    // The times the processor gives a clip's samples (`calculate_timestamps`).
    Ok(Video::Frames { frames, timestamps: picked.iter().map(|&i| i as f64 / fps).collect() })
}

pub fn run(args: Args) -> Result<()> {
    let dir = hub::model_dir(&args.model)?;
    let proc = common::processor(&dir)?;
    let images: Vec<Image> = args.image.iter().map(|f| decode_file(f).map(Image::from)).collect::<Result<_>>()?;
    let videos = match (&args.video, args.fps) {
        (Some(v), Some(fps)) => vec![video(v, fps, &proc.video_processor)?],
        _ => Vec::new(),
    };
    let mut content: Vec<Content> = images.iter().map(|_| Content::Image).collect();
    content.extend(videos.iter().map(|_| Content::Video));
    content.push(Content::Text(args.prompt.clone()));
    let mut messages = Vec::new();
    if let Some(s) = &args.system {
        messages.push(Message::system(s));
    }
    messages.push(Message::user(content));
    let options = ChatOptions {
        max_new_tokens: args.max_new_tokens,
        greedy: args.greedy,
        temperature: args.temperature,
        top_k: args.top_k,
        top_p: args.top_p,
        seed: args.seed,
        max_pixels: args.max_pixels,
        video_max_pixels: args.video_max_pixels,
        ..ChatOptions::default()
    };

    // Everything checkable is checked before the GPU is touched.
    let folder = ModelFolder::open(&dir).map_err(|e| e.to_string())?;
    let req = Request::new(&proc, &messages, &images, &videos, &options, &folder.generation).map_err(|e| e.to_string())?;
    let context = args.context_length.unwrap_or(folder.config.text_config.max_position_embeddings);
    req.check_capacity(context).map_err(|e| e.to_string())?;
    let gpu = &common::gpu()?;
    let (_, model) = common::load(&dir, args.weights, gpu)?;
    let (prompt, opts) = (&req.prompt, &req.options);
    let mut session = Session::new(gpu, &model, req.capacity().min(context)).map_err(|e| e.to_string())?;

    let start = Instant::now();
    let logits = session
        .prefill(&prompt.input_ids, &prompt.rope.position_ids, prompt.rope.rope_delta, &req.images, &req.videos, false)
        .map_err(|e| e.to_string())?;
    let prefilled = session.last_prefill();
    let mut first: Option<Instant> = None;
    let mut stream = TextStream::new();
    let json = args.json;
    let mut text = String::new();
    let (ids, stop) = pollster::block_on(generate(&mut session, logits, opts, |id| {
        first.get_or_insert_with(Instant::now);
        if let Ok(delta) = stream.push(id, |ids| proc.decode(ids, true).map_err(|e| ModelError::Input(e.to_string()))) {
            if !json {
                print!("{delta}");
                let _ = std::io::stdout().flush();
            }
            text += &delta;
        }
        true
    }))
    .map_err(|e| e.to_string())?;
    let end = Instant::now();
    let ttft = first.map_or(0.0, |f| (f - start).as_secs_f64());
    // Only the tokens computed now (a session reused across turns takes the rest from its cache).
    let prefill_tps = prefilled.computed as f64 / ttft.max(1e-9);
    let decode_tps = (ids.len().saturating_sub(1)) as f64 / first.map_or(1e-9, |f| (end - f).as_secs_f64().max(1e-9));
    if json {
        let out = serde_json::json!({
            "ids": ids, "text": text, "stop": stop.reason(), "prompt_tokens": prompt.input_ids.len(),
            "cached_tokens": prefilled.cached, "computed_tokens": prefilled.computed, "time_to_first_token_s": ttft, "prefill_tokens_per_s": prefill_tps, "decode_tokens_per_s": decode_tps,
        });
        println!("{out}");
    } else {
        println!();
        eprintln!(
            "time to first token {:.3} s · prefill {:.1} tok/s ({} tokens computed) · decode {:.1} tok/s ({} tokens, {})",
            ttft,
            prefill_tps,
            prefilled.computed,
            decode_tps,
            ids.len(),
            stop.reason()
        );
    }
    Ok(())
}
