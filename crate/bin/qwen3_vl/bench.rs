//! `qwen3-vl bench`: the end-to-end figures users feel, on random weights of the real shapes
//! or a model folder, as one table.

use std::time::Instant;

use qwen3_vl_webgpu::gpu::{DType, Encoder, Gpu};
use qwen3_vl_webgpu::kernels::quant::Format;
use qwen3_vl_webgpu::kernels::sample::argmax;
use qwen3_vl_webgpu::model::{synthetic, ModelFolder, Qwen3VL};
use qwen3_vl_webgpu::runtime::{get_rope_index, request, ImageProcessor, RgbImage, Sampling, Session, VisionInput};
use qwen3_vl_webgpu::testing::{cpu_secs, Rng};

use crate::common::{self, Result, Weights};
use crate::hub;

/// Load time, ViT time for one 640×480 frame, prefill and decode tokens/s, time to first
/// token, GPU memory; with --images, time to first token and peak GPU memory per photo size.
#[derive(clap::Args)]
#[command(group = clap::ArgGroup::new("what").required(true).args(["model", "synthetic"]))]
pub struct Args {
    /// Model folder (Hugging Face layout, or written by `quantize`).
    /// Model folder or Hugging Face id (owner/name[@revision]).
    #[arg(long, value_name = "DIR|ID")]
    model: Option<String>,
    /// Random weights of the real shapes (2b or 4b) through the ordinary loader: no download.
    #[arg(long, value_name = "2b|4b")]
    synthetic: Option<String>,
    /// How the large matrices are stored on the GPU.
    #[arg(long, value_enum, default_value_t)]
    weights: Weights,
    /// Photos of these sizes (WxH, comma-separated), each resized within --max-pixels as `run`
    /// resizes it: time to first token and peak GPU memory.
    #[arg(long, value_name = "WxH,…", value_delimiter = ',', value_parser = photo_size)]
    images: Vec<(usize, usize)>,
    /// The image budget of --images (default: run's, 786432).
    #[arg(long, value_name = "N", default_value_t = request::DEFAULT_MAX_PIXELS)]
    max_pixels: usize,
}

fn photo_size(s: &str) -> Result<(usize, usize)> {
    s.split_once('x').and_then(|(w, h)| Some((w.parse().ok()?, h.parse().ok()?))).ok_or_else(|| format!("not WxH: {s}"))
}

/// Seconds `work` takes, waiting for the GPU to finish it.
fn timed<T>(gpu: &Gpu, work: impl FnOnce() -> Result<T>) -> Result<(T, f64)> {
    let start = Instant::now();
    let out = work()?;
    gpu.wait();
    Ok((out, start.elapsed().as_secs_f64()))
}

pub fn run(args: Args) -> Result<()> {
    let format = Format::from(args.weights);
    let gpu = &common::gpu()?;
    let (folder, what) = match (&args.model, &args.synthetic) {
        (Some(model), _) => (ModelFolder::open(&hub::model_dir(model)?).map_err(|e| e.to_string())?, model.clone()),
        (None, Some(size)) => {
            let config = synthetic::config(size).map_err(|e| e.to_string())?;
            (synthetic::folder(config).map_err(|e| e.to_string())?, format!("synthetic {size}"))
        }
        (None, None) => unreachable!("clap requires --model or --synthetic"),
    };
    let (model, load_s) = timed(gpu, || Qwen3VL::load(gpu, &folder, format).map_err(|e| e.to_string()))?;
    let weights = gpu.memory.live();
    let c = &model.config;
    let tc = &c.text_config;
    let mut rng = Rng::new(1);
    let mut rows: Vec<(String, String)> = vec![("load (read, quantise, upload)".into(), format!("{load_s:.1} s"))];

    // One 640×480 camera frame: 30×40 patches, 300 merged tokens.
    let image = ImageProcessor::default().preprocess(&RgbImage::new(640, 480, (0..640 * 480 * 3).map(|i| (i * 7 % 251) as u8).collect()).map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
    let (_, vit_s) = timed(gpu, || {
        let mut enc = Encoder::new(gpu);
        let out = model.visual.forward(&mut enc, &image.pixel_values, &[image.grid_thw]).map_err(|e| e.to_string())?;
        enc.submit();
        Ok(out)
    })?;
    rows.push(("ViT, one 640×480 frame (1200 patches)".into(), format!("{:.2} s", vit_s)));

    // Text through the decoder: t new tokens after `past` cached ones (cache contents do not
    // change the work), then the chosen token read back.
    let capacity = 4096 + 8;
    let kv = if format == Format::F32 { DType::F32 } else { DType::F16 };
    let state = model.language_model.new_state(gpu, capacity, kv).map_err(|e| e.to_string())?;
    let picked = gpu.empty(DType::U32, &[1]).map_err(|e| e.to_string())?;
    let step = |t: usize, past: usize, rng: &mut Rng| -> Result<()> {
        let ids: Vec<u32> = (0..t).map(|_| rng.below(tc.vocab_size as u64) as u32).collect();
        let pos: Vec<[u32; 3]> = (past..past + t).map(|p| [p as u32; 3]).collect();
        let mut enc = Encoder::new(gpu);
        let logits = model.language_model.forward(&mut enc, &state, &ids, &pos, past, None, false).map_err(|e| e.to_string())?;
        argmax(&mut enc, &logits, 0, &picked);
        enc.submit();
        gpu.read_u32_blocking(&picked).map_err(|e| e.to_string())?;
        Ok(())
    };
    let (_, prefill_s) = timed(gpu, || step(512, 0, &mut rng))?;
    rows.push(("prefill, 512 tokens".into(), format!("{:.1} tok/s", 512.0 / prefill_s)));
    for ctx in [128usize, 4096] {
        let n = 4;
        step(1, ctx - 1, &mut rng)?;
        let (_, s) = timed(gpu, || (0..n).try_for_each(|i| step(1, ctx + i, &mut rng)))?;
        rows.push((format!("decode at {ctx} context"), format!("{:.2} tok/s", n as f64 / s)));
    }
    // Time to first token for one image and 32 text tokens, through the session as `run` does
    // (a fresh cache each time), with the GPU memory it peaks at.
    drop(state);
    let mib = |bytes: u64| format!("{:.0} MiB", bytes as f64 / (1 << 20) as f64);
    // Text ids below every vision marker (Qwen's special tokens sit at the vocabulary's end).
    let text_vocab = [c.image_token_id, c.video_token_id, c.vision_start_token_id, c.vision_end_token_id].into_iter().min().unwrap_or(0).min(tc.vocab_size as u32);
    let mut first_token = |image: &VisionInput| -> Result<(usize, f64, f64, u64)> {
        let mut ids: Vec<u32> = (0..16).map(|_| rng.below(text_vocab as u64) as u32).collect();
        ids.push(c.vision_start_token_id);
        ids.extend(std::iter::repeat_n(c.image_token_id, image.num_tokens(c.vision_config.spatial_merge_size)));
        ids.push(c.vision_end_token_id);
        ids.extend((0..16).map(|_| rng.below(text_vocab as u64) as u32));
        let rope = get_rope_index(&ids, c.image_token_id, c.video_token_id, &[image.grid_thw], &[], c.vision_config.spatial_merge_size).map_err(|e| e.to_string())?;
        gpu.memory.reset_peak();
        let mut session = Session::new(gpu, &model, ids.len() + 1).map_err(|e| e.to_string())?;
        let cpu = cpu_secs().unwrap_or(f64::NAN);
        let (_, ttft) = timed(gpu, || {
            let logits = session.prefill(&ids, &rope.position_ids, rope.rope_delta, std::slice::from_ref(image), &[], false).map_err(|e| e.to_string())?;
            pollster::block_on(session.choose(&logits, &Sampling::Greedy, 0.0)).map_err(|e| e.to_string())
        })?;
        Ok((ids.len(), ttft, cpu_secs().unwrap_or(f64::NAN) - cpu, gpu.memory.peak()))
    };
    let peak = gpu.memory.peak();
    let (tokens, ttft, _, _) = first_token(&image)?;
    rows.push((format!("time to first token, one frame + 32 text tokens ({tokens} tokens)"), format!("{ttft:.2} s")));
    rows.push(("GPU memory: weights".into(), mib(weights)));
    rows.push(("GPU memory: peak (weights, KV cache for 4K, activations)".into(), mib(peak.max(gpu.memory.peak()))));
    let processor = ImageProcessor::default().with_budget(args.max_pixels).map_err(|e| e.to_string())?;
    for &(w, h) in &args.images {
        let photo = RgbImage::new(w, h, (0..w * h * 3).map(|i| (i * 7 % 251) as u8).collect()).map_err(|e| e.to_string())?;
        let (image, resize_s) = timed(gpu, || processor.preprocess(&photo).map_err(|e| e.to_string()))?;
        let [_, gh, gw] = image.grid_thw;
        let (tokens, ttft, cpu, peak) = first_token(&image)?;
        // Process CPU seconds beside the wall time: on a shared machine only they repeat.
        rows.push((
            format!("time to first token, a {w}×{h} photo at {} pixels ({}×{}, {tokens} tokens; resize {resize_s:.1} s)", args.max_pixels, gw * 16, gh * 16),
            format!("{ttft:.2} s ({cpu:.0} CPU s), peak {}", mib(peak)),
        ));
    }

    let caps = &gpu.caps;
    println!("{what}, weights {format:?}, on {} ({}), profile {:?}\n", caps.adapter, caps.backend, caps.profile);
    println!("| measure | value |\n|---|---:|");
    for (k, v) in rows {
        println!("| {k} | {v} |");
    }
    Ok(())
}
