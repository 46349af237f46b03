//! `qwen3-vl bench`: the end-to-end figures users feel, on random weights of the real shapes
//! or a model folder, as one table.

use std::time::Instant;

use qwen3_vl_webgpu::gpu::{Backend, Counts, Encoder, Gpu, Profile, Profiler};
use qwen3_vl_webgpu::kernels::quant::Format;
use qwen3_vl_webgpu::model::{synthetic, ModelFolder, Qwen3VL};
use qwen3_vl_webgpu::runtime::{generate, get_rope_index, request, GenerateOptions, ImageProcessor, RgbImage, Sampling, Session, VisionInput};
use qwen3_vl_webgpu::testing::{cpu_secs, Rng};

use crate::common::{Result, Weights};
use crate::hub;

/// Load time, ViT time for one 640×480 frame, prefill and decode tokens/s, what a decode
/// token asks of the device (dispatches, buffers and bind groups created, submits, waits,
/// host time), time to first token, GPU memory; with `--profile` GPU time per kernel family;
/// with --images, time to first token and peak GPU memory per photo size.
#[derive(clap::Args)]
#[command(group = clap::ArgGroup::new("what").required(true).args(["model", "synthetic"]))]
pub struct Args {
    /// Model folder (Hugging Face layout, or written by `quantize`).
    /// Model folder or Hugging Face id (owner/name[@revision]).
    #[arg(long, value_name = "DIR|ID")]
    model: Option<String>,
    /// Random weights of the real shapes (2b or 4b; tiny: a quick check) through the ordinary
    /// loader: no download.
    #[arg(long, value_name = "2b|4b|tiny")]
    synthetic: Option<String>,
    /// How the large matrices are stored on the GPU.
    #[arg(long, value_enum, default_value_t)]
    weights: Weights,
    /// `noop`: wgpu's noop backend, which executes nothing, so every figure is the host's
    /// cost alone (WebGPU's default limits, no optional features).
    #[arg(long, value_enum, default_value_t)]
    backend: BackendArg,
    /// GPU time per kernel family (timestamp queries) for one decode token and for the ViT.
    #[arg(long)]
    profile: bool,
    /// Decode tokens timed at each context, once the pipeline is full (more average out a
    /// busy host's noise).
    #[arg(long, value_name = "N", default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..))]
    tokens: u16,
    /// Photos of these sizes (WxH, comma-separated), each resized within --max-pixels as `run`
    /// resizes it: time to first token and peak GPU memory.
    #[arg(long, value_name = "WxH,…", value_delimiter = ',', value_parser = photo_size)]
    images: Vec<(usize, usize)>,
    /// The image budget of --images (default: run's, 786432).
    #[arg(long, value_name = "N", default_value_t = request::DEFAULT_MAX_PIXELS)]
    max_pixels: usize,
    /// Only the load and the decode rows (with --profile, the decode token's GPU time): on a
    /// CPU adapter the ViT, prefill and time-to-first-token rows take most of the run (the
    /// 2B on lavapipe: about 1.5 of 20 minutes without them).
    #[arg(long, conflicts_with = "images")]
    decode_only: bool,
}

fn photo_size(s: &str) -> Result<(usize, usize)> {
    s.split_once('x').and_then(|(w, h)| Some((w.parse().ok()?, h.parse().ok()?))).ok_or_else(|| format!("not WxH: {s}"))
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
enum BackendArg {
    #[default]
    Gpu,
    Noop,
}

/// Seconds `work` takes, waiting for the GPU to finish it.
fn timed<T>(gpu: &Gpu, work: impl FnOnce() -> Result<T>) -> Result<(T, f64)> {
    let start = Instant::now();
    let out = work()?;
    gpu.wait();
    Ok((out, start.elapsed().as_secs_f64()))
}

fn err(e: impl ToString) -> String {
    e.to_string()
}

/// `ctx - 1` positions counted as cached (no prefill: attention's work depends on the length
/// only) and the context's last token computed: its logits, ready for decoding.
fn at_context(session: &mut Session<&Gpu, &Qwen3VL>, ctx: usize) -> Result<qwen3_vl_webgpu::gpu::Tensor> {
    session.reset();
    session.assume_cached(ctx - 1).map_err(err)?;
    let pos: Vec<u32> = (0..ctx as u32).collect();
    session.prefill(&vec![0; ctx], &[pos.clone(), pos.clone(), pos], 0, &[], &[], false).map_err(err)
}

/// What `tokens` steady-state decode tokens took: tokens/s, the device counters, and the
/// host CPU time of the decoding thread per token (where the OS tells it).
struct Decoded {
    tok_s: f64,
    counts: Counts,
    cpu_ms: Option<f64>,
}

/// Nanoseconds this thread has run on a CPU (Linux's schedstat): unlike the wall clock, it
/// does not grow while other processes hold the cores.
fn thread_cpu_ns() -> Option<u64> {
    std::fs::read_to_string("/proc/thread-self/schedstat").ok()?.split_whitespace().next()?.parse().ok()
}

/// Greedy decoding at `ctx` context through `generate`, measured over tokens 1 to `tokens` + 1
/// (every step in between fed).
fn decode_at(session: &mut Session<&Gpu, &Qwen3VL>, gpu: &Gpu, ctx: usize, tokens: usize) -> Result<Decoded> {
    let logits = at_context(session, ctx)?;
    let opts = GenerateOptions { max_new_tokens: tokens + 4, sampling: Sampling::Greedy, seed: 0, eos: vec![] };
    let mut marks = Vec::new();
    pollster::block_on(generate(session, logits, &opts, |_| {
        marks.push((Instant::now(), thread_cpu_ns(), gpu.counters.snapshot()));
        true
    }))
    .map_err(err)?;
    let ((t0, cpu0, c0), (t1, cpu1, c1)) = (marks[1], marks[tokens + 1]);
    let cpu_ms = cpu0.zip(cpu1).map(|(a, b)| (b - a) as f64 / tokens as f64 / 1e6);
    Ok(Decoded { tok_s: tokens as f64 / (t1 - t0).as_secs_f64(), counts: c1 - c0, cpu_ms })
}

/// Rows of GPU milliseconds per kernel family, largest first, then their total.
fn profile_rows(what: &str, times: Vec<((&str, &str), f64)>, rows: &mut Vec<(String, String)>) {
    let total: f64 = times.iter().map(|(_, s)| s).sum();
    let mut times = times;
    times.sort_by(|a, b| b.1.total_cmp(&a.1));
    for ((shader, entry), s) in times {
        rows.push((format!("GPU time, {what}: {shader}.{entry}"), format!("{:.3} ms", s * 1e3)));
    }
    rows.push((format!("GPU time, {what}: total"), format!("{:.3} ms", total * 1e3)));
}

pub fn run(args: Args) -> Result<()> {
    let format = Format::from(args.weights);
    let tokens = usize::from(args.tokens);
    let backend = match args.backend {
        BackendArg::Gpu => Backend::Gpu,
        BackendArg::Noop => Backend::Noop,
    };
    let gpu = &Gpu::with_backend_blocking(backend, Profile::from_env()).map_err(err)?;
    let profiler = match args.profile {
        true => Some(Profiler::new(gpu).ok_or("--profile needs timestamp queries, which this adapter does not offer")?),
        false => None,
    };
    let (folder, what) = match (&args.model, &args.synthetic) {
        (Some(model), _) => (ModelFolder::open(&hub::model_dir(model)?).map_err(err)?, model.clone()),
        (None, Some(size)) => {
            let config = synthetic::config(size).map_err(err)?;
            (synthetic::folder(config).map_err(err)?, format!("synthetic {size}"))
        }
        (None, None) => unreachable!("clap requires --model or --synthetic"),
    };
    let (model, load_s) = timed(gpu, || Qwen3VL::load(gpu, &folder, format).map_err(err))?;
    let weights = gpu.memory.live();
    let c = &model.config;
    let mut rng = Rng::new(1);
    let mut rows: Vec<(String, String)> = vec![("load (read, quantise, upload)".into(), format!("{load_s:.1} s"))];

    // One 640×480 camera frame: 30×40 patches, 300 merged tokens.
    let image = ImageProcessor::default().preprocess(&RgbImage::new(640, 480, (0..640 * 480 * 3).map(|i| (i * 7 % 251) as u8).collect()).map_err(err)?).map_err(err)?;
    if !args.decode_only {
        let (_, vit_s) = timed(gpu, || {
            let mut enc = Encoder::new(gpu);
            let out = model.visual.forward(&mut enc, &image.pixel_values, &[image.grid_thw]).map_err(err)?;
            enc.submit();
            Ok(out)
        })?;
        rows.push(("ViT, one 640×480 frame (1200 patches)".into(), format!("{:.2} s", vit_s)));
    }

    // A 512-token prompt, then decoding at two contexts through the session's pipelined loop.
    let mut session = Session::new(gpu, &model, 4096 + 2 * tokens).map_err(err)?;
    // Text ids: no image or video pads, which would ask for their pixels.
    let text_ids = c.image_token_id.min(c.video_token_id) as u64;
    let ids: Vec<u32> = (0..512).map(|_| rng.below(text_ids) as u32).collect();
    let pos: Vec<u32> = (0..512).collect();
    if !args.decode_only {
        let (_, prefill_s) = timed(gpu, || {
            let logits = session.prefill(&ids, &[pos.clone(), pos.clone(), pos], 0, &[], &[], false).map_err(err)?;
            pollster::block_on(session.choose(&logits, &Sampling::Greedy, 0.0)).map_err(err)
        })?;
        rows.push(("prefill, 512 tokens".into(), format!("{:.1} tok/s", 512.0 / prefill_s)));
    }
    let mut at_128 = None;
    for ctx in [128usize, 4096] {
        let d = decode_at(&mut session, gpu, ctx, tokens)?;
        rows.push((format!("decode at {ctx} context"), format!("{:.2} tok/s ({:.3} ms per token)", d.tok_s, 1e3 / d.tok_s)));
        at_128 = at_128.or(Some(d));
    }
    let Decoded { counts: t, cpu_ms, .. } = at_128.expect("measured at 128");
    let per = |x: u64| format!("{:.1}", x as f64 / tokens as f64);
    rows.push(("per decode token (at 128 context): dispatches".into(), per(t.dispatches)));
    rows.push(("per decode token (at 128 context): buffers / bind groups created".into(), format!("{} / {}", per(t.buffers), per(t.bind_groups))));
    rows.push(("per decode token (at 128 context): submits / read-backs waited / stalls (waits with nothing queued)".into(), format!("{} / {} / {}", per(t.submits), per(t.waits), per(t.stalls))));
    rows.push(("per decode token (at 128 context): bytes written".into(), per(t.bytes_written)));
    rows.push(("per decode token (at 128 context): host wall time encoding and submitting".into(), format!("{:.3} ms", t.encode_ns as f64 / tokens as f64 / 1e6)));
    let cpu = cpu_ms.map_or("not offered by this OS".into(), |ms| format!("{ms:.3} ms"));
    rows.push(("per decode token (at 128 context): host CPU time of the decoding thread".into(), cpu));
    if let Some(p) = &profiler {
        let logits = at_context(&mut session, 128)?;
        let mut decoder = session.decoder(&logits, &Sampling::Greedy).map_err(err)?;
        let step = decoder.submit_profiled(0.0, true, Some(p));
        pollster::block_on(decoder.read(step)).map_err(err)?;
        decoder.finish(&[]);
        profile_rows("one decode token at 128 context", pollster::block_on(p.read(gpu)).map_err(err)?, &mut rows);
        if !args.decode_only {
            let mut enc = Encoder::new(gpu);
            enc.profile(p);
            model.visual.forward(&mut enc, &image.pixel_values, &[image.grid_thw]).map_err(err)?;
            enc.submit();
            profile_rows("ViT, one 640×480 frame", pollster::block_on(p.read(gpu)).map_err(err)?, &mut rows);
        }
    }
    drop(session);
    // Time to first token for one image and 32 text tokens, through the session as `run` does
    // (a fresh cache each time), with the GPU memory it peaks at.
    let mib = |bytes: u64| format!("{:.0} MiB", bytes as f64 / (1 << 20) as f64);
    let mut first_token = |image: &VisionInput| -> Result<(usize, f64, f64, u64)> {
        let mut ids: Vec<u32> = (0..16).map(|_| rng.below(text_ids) as u32).collect();
        ids.push(c.vision_start_token_id);
        ids.extend(std::iter::repeat_n(c.image_token_id, image.num_tokens(c.vision_config.spatial_merge_size)));
        ids.push(c.vision_end_token_id);
        ids.extend((0..16).map(|_| rng.below(text_ids) as u32));
        let rope = get_rope_index(&ids, c.image_token_id, c.video_token_id, &[image.grid_thw], &[], c.vision_config.spatial_merge_size).map_err(err)?;
        gpu.memory.reset_peak();
        let mut session = Session::new(gpu, &model, ids.len() + 1).map_err(err)?;
        let cpu = cpu_secs().unwrap_or(f64::NAN);
        let (_, ttft) = timed(gpu, || {
            let logits = session.prefill(&ids, &rope.position_ids, rope.rope_delta, std::slice::from_ref(image), &[], false).map_err(err)?;
            pollster::block_on(session.choose(&logits, &Sampling::Greedy, 0.0)).map_err(err)
        })?;
        Ok((ids.len(), ttft, cpu_secs().unwrap_or(f64::NAN) - cpu, gpu.memory.peak()))
    };
    let peak = gpu.memory.peak();
    if !args.decode_only {
        let (n, ttft, _, _) = first_token(&image)?;
        rows.push((format!("time to first token, one frame + 32 text tokens ({n} tokens)"), format!("{ttft:.2} s")));
    }
    rows.push(("GPU memory: weights".into(), mib(weights)));
    rows.push(("GPU memory: peak (weights, KV cache for 4K, activations)".into(), mib(peak.max(gpu.memory.peak()))));
    let processor = ImageProcessor::default().with_budget(args.max_pixels).map_err(err)?;
    for &(w, h) in &args.images {
        let photo = RgbImage::new(w, h, (0..w * h * 3).map(|i| (i * 7 % 251) as u8).collect()).map_err(err)?;
        let (image, resize_s) = timed(gpu, || processor.preprocess(&photo).map_err(err))?;
        let [_, gh, gw] = image.grid_thw;
        let (n, ttft, cpu, peak) = first_token(&image)?;
        // Process CPU seconds beside the wall time: on a shared machine only they repeat.
        rows.push((
            format!("time to first token, a {w}×{h} photo at {} pixels ({}×{}, {n} tokens; resize {resize_s:.1} s)", args.max_pixels, gw * 16, gh * 16),
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
