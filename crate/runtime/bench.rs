//! The benchmark both faces print (`qwen3-vl bench`, `www/bench.html`): the figures users feel,
//! measured through the ordinary session code on the host clock ([`now_ms`]), waiting for the
//! GPU asynchronously, so the same rows come from a native process and a browser worker.

use crate::gpu::{now_ms, Counts, Encoder, Gpu, Profiler, Tensor};
use crate::model::{ModelError, Qwen3VL};
use crate::testing::{cpu_secs, thread_cpu_secs, Rng};

use super::request::DEFAULT_MAX_PIXELS;
use super::{generate, get_rope_index, GenerateOptions, ImageProcessor, RgbImage, RuntimeError, Sampling, Session, VisionInput};

/// One line of the table.
pub struct Row {
    pub measure: String,
    pub value: String,
}

pub struct Options<'p> {
    /// Contexts (cached tokens) to decode at.
    pub contexts: Vec<usize>,
    /// Decode tokens timed at each context, once the pipeline is full.
    pub tokens: usize,
    /// The prefill row's prompt length (it runs in the decoder's chunks); 0: no prefill row.
    pub prefill_tokens: usize,
    /// Also the ViT on square images of these many patches each (squares of a multiple of the
    /// merge size), with the time per patch.
    pub vit_patches: Vec<usize>,
    /// Photos of these sizes (width, height), each resized within `max_pixels` as a chat
    /// resizes it: time to first token and peak GPU memory.
    pub photos: Vec<(usize, usize)>,
    pub max_pixels: usize,
    /// GPU time per kernel family (timestamp queries) for one decode token and for the ViT.
    pub profiler: Option<&'p Profiler>,
    /// The vision rows (the ViT, time to first token with an image); without them and with no
    /// prefill, the table takes a minute where those would take hours (a large model on a
    /// software adapter).
    pub vision: bool,
}

impl Options<'_> {
    /// Only the compile, decode and memory rows: no vision rows and no prefill.
    pub fn decode_only(self) -> Self {
        Options { vision: false, prefill_tokens: 0, ..self }
    }
}

impl Default for Options<'_> {
    fn default() -> Self {
        Options { contexts: vec![128, 4096], tokens: 8, prefill_tokens: 512, vit_patches: vec![], photos: vec![], max_pixels: DEFAULT_MAX_PIXELS, profiler: None, vision: true }
    }
}

type BenchSession<'a> = Session<&'a Gpu, &'a Qwen3VL>;

/// Runs every measurement on `model`, giving each row to `on_row` as soon as it is known.
pub async fn run(gpu: &Gpu, model: &Qwen3VL, opts: &Options<'_>, mut on_row: impl FnMut(Row)) -> Result<(), RuntimeError> {
    let mut row = |measure: String, value: String| on_row(Row { measure, value });
    let c = &model.config;
    let merge = c.vision_config.spatial_merge_size;
    let squares: Vec<usize> = opts.vit_patches.iter().map(|&p| p.isqrt()).collect();
    if let Some((&p, _)) = opts.vit_patches.iter().zip(&squares).find(|&(&p, &side)| side * side != p || !side.is_multiple_of(merge)) {
        return Err(RuntimeError::Options(format!("ViT patches {p}: not the square of a multiple of {merge}")));
    }
    let processor = ImageProcessor::default().with_budget(opts.max_pixels)?;
    let weights = gpu.memory.live();
    let longest = opts.contexts.iter().copied().max().unwrap_or(0).max(opts.prefill_tokens);
    let mut session = Session::new(gpu, model, longest + opts.tokens + 8)?;

    let start = now_ms();
    let pipelines = session.compile()?.len();
    gpu.settle().await;
    row(format!("compile: {pipelines} pipelines"), secs(now_ms() - start));

    let frame = camera_frame()?;
    if opts.vision {
        let (vit_ms, _) = vit(gpu, model, &frame.pixel_values, frame.grid_thw).await?;
        row(format!("ViT, one 640×480 frame ({} patches)", frame.grid_thw.iter().product::<usize>()), secs(vit_ms));
    }
    let vc = &c.vision_config;
    let mut rng = Rng::new(1);
    for (&patches, &side) in opts.vit_patches.iter().zip(&squares).filter(|_| opts.vision) {
        let pixels = rng.vec(patches * vc.in_channels * vc.temporal_patch_size * vc.patch_size * vc.patch_size, 1.0);
        let (ms, cpu_s) = vit(gpu, model, &pixels, [1, side, side]).await?;
        row(format!("ViT, {side}×{side} patches ({patches})"), format!("{}, {:.1} ms/patch{}", secs(ms), ms / patches as f64, cpu_note(cpu_s)));
    }

    let text_ids = text_ids(model);
    if let prefill @ 1.. = opts.prefill_tokens {
        let ids: Vec<u32> = (0..prefill).map(|_| rng.below(text_ids) as u32).collect();
        gpu.memory.reset_peak();
        let clock = Clock::start();
        let logits = session.prefill(&ids, &text_positions(prefill), 0, &[], &[], false)?;
        session.choose(&logits, &Sampling::Greedy, 0.0).await?;
        let (ms, cpu_s) = clock.read();
        row(format!("prefill, {prefill} tokens"), format!("{}, {:.2} tok/s{}", secs(ms), prefill as f64 / ms * 1e3, cpu_note(cpu_s)));
        row(format!("GPU memory: peak of that prefill (weights, KV cache for {} tokens, activations)", session.capacity()), mib(gpu.memory.peak()));
    }
    let mut peak = gpu.memory.peak();

    for &ctx in &opts.contexts {
        let d = decode_at(gpu, &mut session, ctx, opts.tokens).await?;
        let (t, per) = (opts.tokens as f64, d.counts);
        row(format!("decode at {ctx} context"), format!("{:.2} tok/s", d.tok_s));
        row(format!("decode at {ctx}: host ms per token (record and submit)"), format!("{:.3} ms", per.encode_ns as f64 / t / 1e6));
        let idle = host_ms_idle(gpu, &mut session, ctx, opts.tokens).await?;
        row(format!("decode at {ctx}: host ms per token with the GPU idle (record and submit)"), format!("{idle:.3} ms"));
        if let Some(ms) = d.thread_cpu_ms {
            row(format!("decode at {ctx}: host CPU ms per token (the decoding thread)"), format!("{ms:.3} ms"));
        }
        row(
            format!("decode at {ctx}: per token dispatches / bind groups / buffers / submits / waits"),
            format!("{:.0} / {:.0} / {:.0} / {:.1} / {:.1}", per.dispatches as f64 / t, per.bind_groups as f64 / t, per.buffers as f64 / t, per.submits as f64 / t, per.waits as f64 / t),
        );
        row(format!("decode at {ctx}: per token stalls (waits with nothing queued) / bytes written"), format!("{:.1} / {:.0}", per.stalls as f64 / t, per.bytes_written as f64 / t));
    }
    if let Some(p) = opts.profiler {
        let ctx = opts.contexts.first().copied().unwrap_or(128);
        let logits = at_context(&mut session, ctx)?;
        let mut decoder = session.decoder(&logits, &Sampling::Greedy)?;
        let step = decoder.submit_profiled(0.0, true, Some(p));
        decoder.read(step).await?;
        decoder.finish(&[]);
        profile_rows(&format!("one decode token at {ctx} context"), p.read(gpu).await.map_err(ModelError::from)?, &mut row);
    }
    if let Some(p) = opts.profiler.filter(|_| opts.vision) {
        let mut enc = Encoder::new(gpu);
        enc.profile(p);
        model.visual.forward(&mut enc, &frame.pixel_values, &[frame.grid_thw])?;
        enc.submit();
        profile_rows("ViT, one 640×480 frame", p.read(gpu).await.map_err(ModelError::from)?, &mut row);
    }
    peak = peak.max(gpu.memory.peak());
    let capacity = session.capacity();
    drop(session);
    if opts.vision {
        peak = peak.max(first_token_rows(gpu, model, opts, &processor, &frame, &mut rng, &mut row).await?);
    }
    row("GPU memory: weights".into(), mib(weights));
    row(format!("GPU memory: peak (weights, KV cache for {capacity} tokens, activations)"), mib(peak));
    Ok(())
}

/// Time to first token for the camera frame and for each of `opts.photos`, each between 32
/// random text tokens, through a fresh session as a chat does (the photo rows with their own
/// peak GPU memory). Returns the frame's peak.
async fn first_token_rows(
    gpu: &Gpu,
    model: &Qwen3VL,
    opts: &Options<'_>,
    processor: &ImageProcessor,
    frame: &VisionInput,
    rng: &mut Rng,
    row: &mut impl FnMut(String, String),
) -> Result<u64, RuntimeError> {
    let c = &model.config;
    let merge = c.vision_config.spatial_merge_size;
    let text_ids = text_ids(model);
    let mut first_token = async |image: &VisionInput| -> Result<(usize, f64, Option<f64>, u64), RuntimeError> {
        let mut ids: Vec<u32> = (0..16).map(|_| rng.below(text_ids) as u32).collect();
        ids.push(c.vision_start_token_id);
        ids.extend(std::iter::repeat_n(c.image_token_id, image.num_tokens(merge)));
        ids.push(c.vision_end_token_id);
        ids.extend((0..16).map(|_| rng.below(text_ids) as u32));
        let rope = get_rope_index(&ids, c.image_token_id, c.video_token_id, &[image.grid_thw], &[], merge)?;
        gpu.memory.reset_peak();
        let mut session = Session::new(gpu, model, ids.len() + 1)?;
        let clock = Clock::start();
        let logits = session.prefill(&ids, &rope.position_ids, rope.rope_delta, std::slice::from_ref(image), &[], false)?;
        session.choose(&logits, &Sampling::Greedy, 0.0).await?;
        let (ms, cpu_s) = clock.read();
        Ok((ids.len(), ms, cpu_s, gpu.memory.peak()))
    };
    let (n, ttft, _, frame_peak) = first_token(frame).await?;
    row(format!("time to first token, one frame + 32 text tokens ({n} tokens)"), secs(ttft));
    for &(w, h) in &opts.photos {
        let start = now_ms();
        let image = processor.preprocess(&RgbImage::new(w, h, pattern(w * h * 3))?)?;
        let resize_ms = now_ms() - start;
        let [_, gh, gw] = image.grid_thw;
        let (n, ttft, cpu_s, peak) = first_token(&image).await?;
        // Process CPU seconds beside the wall time: on a shared machine only they repeat.
        row(
            format!("time to first token, a {w}×{h} photo at {} pixels ({}×{}, {n} tokens; resize {})", opts.max_pixels, gw * 16, gh * 16, secs(resize_ms)),
            format!("{}{}, peak {}", secs(ttft), cpu_note(cpu_s), mib(peak)),
        );
    }
    Ok(frame_peak)
}

/// Text ids of the random prompts: none of the image or video pads, which would ask for pixels.
fn text_ids(model: &Qwen3VL) -> u64 {
    let c = &model.config;
    c.image_token_id.min(c.video_token_id).min(c.text_config.vocab_size as u32) as u64
}

/// Milliseconds the ViT takes on one image, and the process's CPU seconds meanwhile (where the
/// OS tells them).
async fn vit(gpu: &Gpu, model: &Qwen3VL, pixels: &[f32], grid_thw: [usize; 3]) -> Result<(f64, Option<f64>), RuntimeError> {
    let clock = Clock::start();
    let mut enc = Encoder::new(gpu);
    let out = model.visual.forward(&mut enc, pixels, &[grid_thw])?;
    enc.submit();
    gpu.settle().await;
    drop(out);
    Ok(clock.read())
}

/// What `tokens` steady-state decode tokens took.
pub struct Decoded {
    pub tok_s: f64,
    /// The device's counters over those tokens.
    pub counts: Counts,
    /// Host CPU time of the decoding thread per token, where the OS tells it: unlike the wall
    /// clock, it does not grow while other processes hold the cores.
    pub thread_cpu_ms: Option<f64>,
}

/// Greedy decoding at `ctx` context through [`generate`], over `tokens` steady-state tokens
/// (the first, which builds the plan, and the last few, which need no next step, are not
/// counted).
pub async fn decode_at(gpu: &Gpu, session: &mut BenchSession<'_>, ctx: usize, tokens: usize) -> Result<Decoded, RuntimeError> {
    let logits = at_context(session, ctx)?;
    let opts = GenerateOptions { max_new_tokens: tokens + 4, sampling: Sampling::Greedy, seed: 0, eos: vec![] };
    let mut marks = Vec::new();
    generate(session, logits, &opts, |_| {
        marks.push((now_ms(), thread_cpu_secs(), gpu.counters.snapshot()));
        true
    })
    .await?;
    let ((t0, cpu0, c0), (t1, cpu1, c1)) = (marks[1], marks[tokens + 1]);
    let thread_cpu_ms = cpu0.zip(cpu1).map(|(a, b)| (b - a) * 1e3 / tokens as f64);
    Ok(Decoded { tok_s: tokens as f64 / (t1 - t0) * 1e3, counts: c1 - c0, thread_cpu_ms })
}

/// Host time per token to record and submit a decode step at `ctx` context with the GPU idle:
/// each step's token is read before the next step is submitted. Where the GPU is a device of
/// its own, the pipelined figure costs the same; on a software adapter (lavapipe, SwiftShader)
/// the previous step's work shares the cores with the recording thread, and the pipelined
/// figure holds the time it takes from it too.
async fn host_ms_idle(gpu: &Gpu, session: &mut BenchSession<'_>, ctx: usize, tokens: usize) -> Result<f64, RuntimeError> {
    let logits = at_context(session, ctx)?;
    let mut decoder = session.decoder(&logits, &Sampling::Greedy)?;
    let before = gpu.counters.snapshot();
    for _ in 0..tokens {
        let step = decoder.submit(0.0, true);
        decoder.read(step).await?;
    }
    let encode_ns = (gpu.counters.snapshot() - before).encode_ns;
    decoder.finish(&[]);
    Ok(encode_ns as f64 / tokens as f64 / 1e6)
}

/// `ctx - 1` positions counted as cached (no prefill: attention's work depends on the length,
/// not the values) and the context's last token computed: its logits, ready for decoding.
fn at_context(session: &mut BenchSession<'_>, ctx: usize) -> Result<Tensor, RuntimeError> {
    session.reset();
    session.assume_cached(ctx - 1)?;
    Ok(session.prefill(&vec![0; ctx], &text_positions(ctx), 0, &[], &[], false)?)
}

/// Rows of GPU milliseconds per kernel family, largest first, then their total.
fn profile_rows(what: &str, mut times: Vec<((&str, &str), f64)>, row: &mut impl FnMut(String, String)) {
    let total: f64 = times.iter().map(|(_, s)| s).sum();
    times.sort_by(|a, b| b.1.total_cmp(&a.1));
    for ((shader, entry), s) in times {
        row(format!("GPU time, {what}: {shader}.{entry}"), format!("{:.3} ms", s * 1e3));
    }
    row(format!("GPU time, {what}: total"), format!("{:.3} ms", total * 1e3));
}

/// Positions 0..n of a text-only prompt, the same on the three rotary axes.
fn text_positions(n: usize) -> [Vec<u32>; 3] {
    let pos: Vec<u32> = (0..n as u32).collect();
    [pos.clone(), pos.clone(), pos]
}

/// One 640×480 camera frame (30×40 patches, 300 merged tokens) of a fixed pattern.
fn camera_frame() -> Result<VisionInput, RuntimeError> {
    ImageProcessor::default().preprocess(&RgbImage::new(640, 480, pattern(640 * 480 * 3))?)
}

/// Pixel bytes of a fixed pattern.
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 % 251) as u8).collect()
}

/// Wall milliseconds and, where the OS tells them, the process's CPU seconds since `start`.
struct Clock {
    ms: f64,
    cpu_s: Option<f64>,
}

impl Clock {
    fn start() -> Clock {
        Clock { ms: now_ms(), cpu_s: cpu_secs() }
    }

    fn read(&self) -> (f64, Option<f64>) {
        (now_ms() - self.ms, cpu_secs().zip(self.cpu_s).map(|(b, a)| b - a))
    }
}

/// " (N CPU-s)" where the OS tells the process's CPU time.
fn cpu_note(seconds: Option<f64>) -> String {
    seconds.map_or(String::new(), |s| format!(" ({s:.1} CPU-s)"))
}

fn mib(bytes: u64) -> String {
    format!("{:.0} MiB", bytes as f64 / (1 << 20) as f64)
}

fn secs(ms: f64) -> String {
    format!("{:.2} s", ms / 1e3)
}
