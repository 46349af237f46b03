//! The benchmark both faces print (`qwen3-vl bench`, `www/bench.html`): the figures users feel,
//! measured through the ordinary session code on the host clock ([`now_ms`]), waiting for the
//! GPU asynchronously, so the same rows come from a native process and a browser worker.

use crate::gpu::{now_ms, Counts, Encoder, Gpu};
use crate::model::Qwen3VL;
use crate::testing::Rng;

use super::{generate, get_rope_index, GenerateOptions, ImageProcessor, RgbImage, RuntimeError, Sampling, Session, VisionInput};

/// One line of the table.
pub struct Row {
    pub measure: String,
    pub value: String,
}

pub struct Options {
    /// Contexts (cached tokens) to decode at.
    pub contexts: Vec<usize>,
    /// Decode tokens timed at each context, once the pipeline is full.
    pub tokens: usize,
    /// The prefill row's prompt length.
    pub prefill_tokens: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options { contexts: vec![128, 4096], tokens: 8, prefill_tokens: 512 }
    }
}

type BenchSession<'a> = Session<&'a Gpu, &'a Qwen3VL>;

/// Runs every measurement on `model`, giving each row to `on_row` as soon as it is known.
pub async fn run(gpu: &Gpu, model: &Qwen3VL, opts: &Options, mut on_row: impl FnMut(Row)) -> Result<(), RuntimeError> {
    let mut row = |measure: String, value: String| on_row(Row { measure, value });
    let weights = gpu.memory.live();
    let longest = opts.contexts.iter().copied().max().unwrap_or(0).max(opts.prefill_tokens);
    let mut session = Session::new(gpu, model, longest + opts.tokens + 8)?;

    let start = now_ms();
    let pipelines = session.compile()?.len();
    gpu.settle().await;
    row(format!("compile: {pipelines} pipelines"), secs(now_ms() - start));

    let frame = camera_frame()?;
    let start = now_ms();
    let mut enc = Encoder::new(gpu);
    let vision = model.visual.forward(&mut enc, &frame.pixel_values, &[frame.grid_thw])?;
    enc.submit();
    gpu.settle().await;
    drop(vision);
    row(format!("ViT, one 640×480 frame ({} patches)", frame.grid_thw.iter().product::<usize>()), secs(now_ms() - start));

    let mut rng = Rng::new(1);
    let c = &model.config;
    // Text ids: no image or video pads, which would ask for their pixels.
    let text_ids = c.image_token_id.min(c.video_token_id).min(c.text_config.vocab_size as u32) as u64;
    let n = opts.prefill_tokens;
    let ids: Vec<u32> = (0..n).map(|_| rng.below(text_ids) as u32).collect();
    let start = now_ms();
    let logits = session.prefill(&ids, &text_positions(n), 0, &[], &[], false)?;
    session.choose(&logits, &Sampling::Greedy, 0.0).await?;
    row(format!("prefill, {n} tokens"), format!("{:.1} tok/s", n as f64 / (now_ms() - start) * 1e3));

    for &ctx in &opts.contexts {
        let (tok_s, per_token) = decode_at(gpu, &mut session, ctx, opts.tokens).await?;
        let t = opts.tokens as f64;
        row(format!("decode at {ctx} context"), format!("{tok_s:.2} tok/s"));
        row(format!("decode at {ctx}: host ms per token (record and submit)"), format!("{:.3} ms", per_token.encode_ns as f64 / t / 1e6));
        row(
            format!("decode at {ctx}: per token dispatches / bind groups / buffers / submits / waits"),
            format!(
                "{:.0} / {:.0} / {:.0} / {:.1} / {:.1}",
                per_token.dispatches as f64 / t,
                per_token.bind_groups as f64 / t,
                per_token.buffers as f64 / t,
                per_token.submits as f64 / t,
                per_token.waits as f64 / t
            ),
        );
    }

    // Time to first token for one frame and 32 text tokens, through the session as a chat does.
    let mut ids: Vec<u32> = (0..16).map(|_| rng.below(text_ids) as u32).collect();
    ids.push(c.vision_start_token_id);
    ids.extend(std::iter::repeat_n(c.image_token_id, frame.num_tokens(c.vision_config.spatial_merge_size)));
    ids.push(c.vision_end_token_id);
    ids.extend((0..16).map(|_| rng.below(text_ids) as u32));
    let rope = get_rope_index(&ids, c.image_token_id, c.video_token_id, &[frame.grid_thw], &[], c.vision_config.spatial_merge_size)?;
    session.reset();
    let start = now_ms();
    let logits = session.prefill(&ids, &rope.position_ids, rope.rope_delta, std::slice::from_ref(&frame), &[], false)?;
    session.choose(&logits, &Sampling::Greedy, 0.0).await?;
    row(format!("time to first token, one frame + 32 text tokens ({} tokens)", ids.len()), secs(now_ms() - start));

    let mib = |b: u64| format!("{:.0} MiB", b as f64 / (1 << 20) as f64);
    row("GPU memory: weights".into(), mib(weights));
    row(format!("GPU memory: peak (weights, KV cache for {} tokens, activations)", session.capacity()), mib(gpu.memory.peak()));
    Ok(())
}

/// Greedy decoding at `ctx` context through [`generate`]: tokens/s and the device's counters
/// over `tokens` steady-state tokens (the first, which builds the plan, and the last few, which
/// need no next step, are not counted).
/// The `ctx - 1` earlier positions count as cached without a prefill: attention's work depends
/// on the length, not the values.
pub async fn decode_at(gpu: &Gpu, session: &mut BenchSession<'_>, ctx: usize, tokens: usize) -> Result<(f64, Counts), RuntimeError> {
    session.reset();
    session.assume_cached(ctx - 1)?;
    let logits = session.prefill(&vec![0; ctx], &text_positions(ctx), 0, &[], &[], false)?;
    let opts = GenerateOptions { max_new_tokens: tokens + 4, sampling: Sampling::Greedy, seed: 0, eos: vec![] };
    let mut marks = Vec::new();
    generate(session, logits, &opts, |_| {
        marks.push((now_ms(), gpu.counters.snapshot()));
        true
    })
    .await?;
    let ((t0, c0), (t1, c1)) = (marks[1], marks[tokens + 1]);
    Ok((tokens as f64 / (t1 - t0) * 1e3, c1 - c0))
}

/// Positions 0..n of a text-only prompt, the same on the three rotary axes.
fn text_positions(n: usize) -> [Vec<u32>; 3] {
    let pos: Vec<u32> = (0..n as u32).collect();
    [pos.clone(), pos.clone(), pos]
}

/// One 640×480 camera frame (30×40 patches, 300 merged tokens) of a fixed pattern.
fn camera_frame() -> Result<VisionInput, RuntimeError> {
    let pixels = (0..640 * 480 * 3).map(|i| (i * 7 % 251) as u8).collect();
    let image = RgbImage::new(640, 480, pixels)?;
    ImageProcessor::default().preprocess(&image)
}

fn secs(ms: f64) -> String {
    format!("{:.2} s", ms / 1e3)
}
