//! The pipelined decode loop (`generate` through the session's recorded decode step) against
//! choosing and stepping one token at a time, and what a steady-state decode token asks of the
//! device: counted on lavapipe and on wgpu's noop backend.

use std::path::Path;

use qwen3_vl_webgpu::gpu::{Backend, Counts, Gpu, Profile};
use qwen3_vl_webgpu::kernels::quant::Format;
use qwen3_vl_webgpu::kernels::sample::SampleParams;
use qwen3_vl_webgpu::model::{synthetic, ModelFolder, Qwen3VL, Qwen3VLConfig};
use qwen3_vl_webgpu::runtime::{generate, GenerateOptions, Sampling, Session, Stop};
use qwen3_vl_webgpu::testing::Rng;

fn gpu() -> &'static Gpu {
    static GPU: std::sync::OnceLock<Gpu> = std::sync::OnceLock::new();
    GPU.get_or_init(|| Gpu::new_blocking(Some(Profile::Full)).expect("a WebGPU adapter"))
}

fn golden(case: &str) -> ModelFolder {
    ModelFolder::open(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden").join(case)).unwrap()
}

/// A 12-token text prompt (ids below every fixture's vocabulary) and its positions.
fn prompt() -> (Vec<u32>, [Vec<u32>; 3]) {
    let ids: Vec<u32> = (0..12).map(|i| (i * 37 + 5) % 190).collect();
    let pos: Vec<u32> = (0..ids.len() as u32).collect();
    (ids, [pos.clone(), pos.clone(), pos])
}

/// `generate` as it ran before the decode plan: choose a token, then step it, one at a time.
fn step_by_step(session: &mut Session<&Gpu, &Qwen3VL>, logits: qwen3_vl_webgpu::gpu::Tensor, opts: &GenerateOptions, mut on_token: impl FnMut(u32) -> bool) -> (Vec<u32>, Stop) {
    let mut rng = Rng::new(opts.seed);
    let (mut logits, mut out) = (logits, Vec::new());
    if opts.max_new_tokens == 0 {
        return (out, Stop::MaxTokens);
    }
    loop {
        let token = pollster::block_on(session.choose(&logits, &opts.sampling, rng.uniform())).unwrap();
        out.push(token);
        if !on_token(token) {
            return (out, Stop::Cancelled);
        }
        if opts.eos.contains(&token) {
            return (out, Stop::Eos);
        }
        if out.len() >= opts.max_new_tokens {
            return (out, Stop::MaxTokens);
        }
        if session.tokens().len() >= session.capacity() {
            return (out, Stop::ContextFull);
        }
        logits = session.step(token).unwrap();
    }
}

/// Runs the prompt and `opts` both ways on fresh sessions of `capacity` positions, cancelling
/// after `cancel_after` tokens where given. Asserts the same tokens, the same stop, the same
/// conversation kept, and the same logits for a next turn from the cache; returns the tokens.
fn same_both_ways(model: &Qwen3VL, capacity: usize, opts: &GenerateOptions, cancel_after: Option<usize>) -> (Vec<u32>, Stop) {
    let (ids, pos) = prompt();
    let run = |pipelined: bool| {
        let mut s = Session::new(gpu(), model, capacity).unwrap();
        let logits = s.prefill(&ids, &pos, 0, &[], &[], false).unwrap();
        let mut n = 0;
        let on_token = |_| {
            n += 1;
            cancel_after.is_none_or(|c| n < c)
        };
        let got = match pipelined {
            true => pollster::block_on(generate(&mut s, logits, opts, on_token)).unwrap(),
            false => step_by_step(&mut s, logits, opts, on_token),
        };
        // A next turn: the kept conversation plus two tokens, from the cache.
        let mut next = s.tokens().to_vec();
        next.extend([7, 8]);
        let at: Vec<u32> = (0..next.len() as u32).collect();
        let next_logits = (next.len() <= capacity).then(|| {
            let l = s.prefill(&next, &[at.clone(), at.clone(), at], 0, &[], &[], false).unwrap();
            gpu().read_f32_blocking(&l).unwrap()
        });
        (got, s.tokens().to_vec(), next_logits)
    };
    let (pipelined, step) = (run(true), run(false));
    let what = format!("{:?} capacity {capacity} cancel after {cancel_after:?}", opts.sampling);
    assert_eq!(pipelined.0, step.0, "tokens and stop, {what}");
    assert_eq!(pipelined.1, step.1, "the conversation kept, {what}");
    assert_eq!(pipelined.2, step.2, "the next turn's logits, {what}");
    pipelined.0
}

fn opts(sampling: Sampling, max_new_tokens: usize, eos: Vec<u32>) -> GenerateOptions {
    GenerateOptions { max_new_tokens, sampling, seed: 5, eos }
}

#[test]
fn pipelined_loop_gives_the_step_by_step_tokens() {
    let sampled = Sampling::Sample(SampleParams { temperature: 0.9, top_k: 40, top_p: 0.95, repetition_penalty: 1.2, presence_penalty: 0.5, u: 0.0 });
    for format in [Format::F32, Format::Q4] {
        let model = Qwen3VL::load(gpu(), &golden("text_only"), format).unwrap();
        for sampling in [Sampling::Greedy, sampled] {
            let (ids, stop) = same_both_ways(&model, 64, &opts(sampling, 10, vec![]), None);
            assert_eq!((ids.len(), stop), (10, Stop::MaxTokens));
            // An eos in the middle of the stream: a token that first occurs after the first one.
            let at = (1..ids.len()).find(|&i| !ids[..i].contains(&ids[i])).expect("a token not seen before");
            let (with_eos, stop) = same_both_ways(&model, 64, &opts(sampling, 10, vec![ids[at]]), None);
            assert_eq!((with_eos.as_slice(), stop), (&ids[..=at], Stop::Eos), "{sampling:?} {format:?}");
            let (one, stop) = same_both_ways(&model, 64, &opts(sampling, 10, vec![]), Some(1));
            assert_eq!((one.len(), stop), (1, Stop::Cancelled));
            // 12 prompt tokens in 16 positions: 4 fed, a 5th chosen.
            let (full, stop) = same_both_ways(&model, 16, &opts(sampling, 10, vec![]), None);
            assert_eq!((full.len(), stop), (5, Stop::ContextFull));
            for max in [0, 1] {
                let (few, stop) = same_both_ways(&model, 64, &opts(sampling, max, vec![]), None);
                assert_eq!((few.len(), stop), (max, Stop::MaxTokens));
            }
        }
    }
}

/// Decoder layers in the counting model: a 2B's depth at the golden fixture's widths.
const LAYERS: usize = 28;
/// The bound on dispatches per decode token: 8 per decoder layer and 8 more.
const PER_LAYER: u64 = 8;

/// What one steady-state decode token asked of `gpu`: the counters between the 4th and the
/// 13th generated token (nine steps), divided by nine.
fn steady_token(gpu: &Gpu, sampling: Sampling) -> Counts {
    let mut config: Qwen3VLConfig = golden("text_only").config;
    config.text_config.num_hidden_layers = LAYERS;
    let model = Qwen3VL::load(gpu, &synthetic::folder(config).unwrap(), Format::Q4).unwrap();
    let mut session = Session::new(gpu, &model, 64).unwrap();
    let (ids, pos) = prompt();
    let logits = session.prefill(&ids, &pos, 0, &[], &[], false).unwrap();
    let mut marks = Vec::new();
    pollster::block_on(generate(&mut session, logits, &opts(sampling, 16, vec![]), |_| {
        marks.push(gpu.counters.snapshot());
        true
    }))
    .unwrap();
    let d = marks[12] - marks[3];
    let per = |x: u64| {
        assert_eq!(x % 9, 0, "the same count every step: {d:?}");
        x / 9
    };
    Counts {
        dispatches: per(d.dispatches),
        bind_groups: per(d.bind_groups),
        buffers: per(d.buffers),
        submits: per(d.submits),
        bytes_written: per(d.bytes_written),
        waits: per(d.waits),
        stalls: per(d.stalls),
        pipelines: per(d.pipelines),
        encode_ns: d.encode_ns / 9,
    }
}

fn assert_steady(gpu: &Gpu) {
    for sampling in [Sampling::Greedy, Sampling::Sample(SampleParams { top_k: 20, ..Default::default() })] {
        let c = steady_token(gpu, sampling);
        let what = format!("{sampling:?} on {}: {c:?}", gpu.caps.adapter);
        eprintln!("per steady-state decode token, {what}");
        assert_eq!((c.buffers, c.bind_groups, c.pipelines), (0, 0, 0), "nothing created, {what}");
        assert_eq!((c.submits, c.waits, c.stalls), (1, 1, 0), "one submit, one read, the next step queued while waiting, {what}");
        assert!(c.dispatches <= PER_LAYER * LAYERS as u64 + 8, "{what}");
        // The step buffer: a 64-byte header and the rotary row (head_dim floats).
        assert!(c.bytes_written <= 64 + 4 * 16, "{what}");
    }
}

// Each on a device of its own: other tests count on the shared one concurrently.
#[test]
fn steady_decode_creates_nothing_and_submits_once_on_lavapipe() {
    assert_steady(&Gpu::new_blocking(Some(Profile::Full)).unwrap());
}

#[test]
fn steady_decode_creates_nothing_and_submits_once_on_noop() {
    assert_steady(&Gpu::with_backend_blocking(Backend::Noop, Profile::Full).unwrap());
}
