//! Choosing the next token on the GPU: greedy `argmax`, or `sample` with penalties,
//! temperature, top-k and top-p, driven by a uniform number `u` the CPU draws from a seeded RNG
//! (same seed ⇒ same tokens). Either writes one `u32` token id, so a step reads back 4 bytes;
//! `sample` also appends it to the history, so a decode loop on the GPU keeps its penalties.
//!
//! `sample` follows transformers' processors in this order, on one row of logits:
//! 1. repetition penalty (`RepetitionPenaltyLogitsProcessor`) on every distinct token of the
//!    history: `l < 0 ? l·p : l/p`. transformers passes all of `input_ids`, prompt included;
//! 2. presence penalty (vLLM/OpenAI) on every distinct token of `history[presence_from..]`:
//!    `l −= presence_penalty`. vLLM counts generated tokens only, so pass the prompt length;
//! 3. temperature: `l / T`;
//! 4. top-k: keep the tokens whose logit is ≥ the k-th largest (all tokens tied with it stay);
//! 5. top-p (`TopPLogitsWarper`): keep the most probable tokens until their cumulative
//!    probability reaches `top_p`, at least one; tokens tied with the last one kept stay too;
//! 6. the token whose CDF interval (kept tokens in index order, renormalised) holds `u`.
//!
//! The penalties are applied **in place** to the logits row (it is recomputed every step), so
//! sampling the same tensor twice penalises twice. Token ids `≥ vocab` in the history are
//! ignored. Logits must be finite or −inf, with at least one finite.

use bytemuck::{Pod, Zeroable};

use super::step::StepValues;
use super::{key, rows_cols};
use crate::gpu::{DType, Encoder, GpuError, Tensor};

const SHADER: &str = include_str!("../../shaders/sample.wgsl");
/// One workgroup does everything: the row is small, and the filters need whole-row decisions.
const WG: u32 = 256;
/// Vocabularies must be smaller: the kernels carry token indices in f32, exact below 2^24.
pub const MAX_VOCAB: usize = 1 << 24;

/// Sampling settings; `Default` is plain sampling at temperature 1 with every filter off.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SampleParams {
    /// > 0. Tiny values approach greedy (the largest logit gets all the mass).
    pub temperature: f32,
    /// 0 = off.
    pub top_k: u32,
    /// In (0, 1]; 1 = off.
    pub top_p: f32,
    /// > 0; 1 = off.
    pub repetition_penalty: f32,
    /// 0 = off.
    pub presence_penalty: f32,
    /// Uniform in [0, 1), from the caller's seeded RNG.
    pub u: f32,
}

impl Default for SampleParams {
    fn default() -> Self {
        SampleParams { temperature: 1.0, top_k: 0, top_p: 1.0, repetition_penalty: 1.0, presence_penalty: 0.0, u: 0.0 }
    }
}

/// The previous tokens the penalties look at: `ids[..len]` (u32) for the repetition penalty,
/// `ids[presence_from..len]` for the presence penalty.
pub struct History<'a> {
    pub ids: &'a Tensor,
    pub len: usize,
    pub presence_from: usize,
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    vocab: u32,
    row: u32,
    _pad: [u32; 2],
}

/// Words of the `seen` scratch tensor `sample` needs for a vocabulary (two bits a token).
pub fn seen_words(vocab: usize) -> usize {
    vocab.div_ceil(16)
}

fn row_params(logits: &Tensor, row: usize, out: &Tensor) -> Params {
    let (rows, vocab) = rows_cols(&logits.shape);
    assert!(row < rows, "logits row {row} of {rows}");
    assert!(vocab < MAX_VOCAB, "vocab {vocab}: indices must be exact in f32");
    assert!(logits.dtype == DType::F32 && out.dtype == DType::U32 && out.numel() == 1, "logits f32, out one u32");
    Params { vocab: vocab as u32, row: row as u32, _pad: [0; 2] }
}

/// `out[0]` = index of the largest logit of `logits[row]` (`[vocab]` or `[rows, vocab]`),
/// the lowest index among ties.
pub fn argmax(enc: &mut Encoder, logits: &Tensor, row: usize, out: &Tensor) {
    let params = row_params(logits, row, out);
    let kernel = enc.gpu.kernel(key(enc.gpu, "sample", "argmax").konst("WG", WG), SHADER);
    enc.dispatch(&kernel, bytemuck::bytes_of(&params), &[logits.binding(), out.binding()], [1, 1, 1]);
}

/// `out[0]` = a token drawn from `logits[row]` as the module documentation describes, also
/// written at `history.ids[history.len]` when that is inside it. `seen` is scratch of at
/// least [`seen_words`] u32 (any contents). Penalises `logits[row]` in place.
pub fn sample(enc: &mut Encoder, logits: &Tensor, row: usize, history: &History, params: &SampleParams, seen: &Tensor, out: &Tensor) -> Result<(), GpuError> {
    assert!(history.len <= history.ids.numel(), "history");
    let now = StepValues::new(0).sampling(params, history.len, history.presence_from).upload(enc.gpu)?;
    sample_step(enc, logits, row, history.ids, &now, seen, out);
    Ok(())
}

/// [`sample`] with the settings, the draw and the history length read from the step buffer
/// `now` ([`StepValues::sampling`]) when the dispatch runs: the decode loop's recorded sampler.
pub fn sample_step(enc: &mut Encoder, logits: &Tensor, row: usize, history: &Tensor, now: &Tensor, seen: &Tensor, out: &Tensor) {
    let p = row_params(logits, row, out);
    assert!(history.dtype == DType::U32, "history ids");
    assert!(seen.numel() >= seen_words(p.vocab as usize) && seen.dtype == DType::U32, "seen scratch");
    let kernel = enc.gpu.kernel(key(enc.gpu, "sample", "sample").konst("WG", WG), SHADER);
    let tensors = [logits.binding(), out.binding(), history.binding(), seen.binding(), now.binding()];
    enc.dispatch(&kernel, bytemuck::bytes_of(&p), &tensors, [1, 1, 1]);
}

/// The lowest index of the largest value.
pub fn argmax_ref(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &v) in logits.iter().enumerate() {
        if v > logits[best] {
            best = i;
        }
    }
    best as u32
}

/// The logits after the repetition and presence penalties, each once per distinct token.
pub fn penalized_ref(logits: &[f32], history: &[u32], presence_from: usize, params: &SampleParams) -> Vec<f32> {
    let mut l = logits.to_vec();
    // 1: in the history; 2: also in its presence part.
    let mut seen = vec![0u8; l.len()];
    for (j, &t) in history.iter().enumerate() {
        if let Some(s) = seen.get_mut(t as usize) {
            *s |= if j >= presence_from { 3 } else { 1 };
        }
    }
    for (v, s) in l.iter_mut().zip(seen) {
        if s != 0 {
            let p = params.repetition_penalty;
            *v = if *v < 0.0 { *v * p } else { *v / p };
        }
        if s == 3 {
            *v -= params.presence_penalty;
        }
    }
    l
}

/// The probabilities `sample` draws from: penalties, temperature, top-k, top-p, renormalised
/// (f64; removed tokens 0).
pub fn sample_probs_ref(logits: &[f32], history: &[u32], presence_from: usize, params: &SampleParams) -> Vec<f64> {
    let l = penalized_ref(logits, history, presence_from, params);
    let l_max = l.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    let t = params.temperature as f64;
    let mut e: Vec<f64> = l.iter().map(|&v| if v == l_max { 1.0 } else { ((v - l_max) as f64 / t).exp() }).collect();
    let k = params.top_k as usize;
    if k > 0 && k < l.len() {
        let mut sorted = l.clone();
        sorted.sort_by(|a, b| b.total_cmp(a));
        let kth = sorted[k - 1];
        for (w, &v) in e.iter_mut().zip(&l) {
            if v < kth {
                *w = 0.0;
            }
        }
    }
    if params.top_p < 1.0 {
        let total: f64 = e.iter().sum();
        // Mass of the strictly larger kept tokens, per token.
        let mut order: Vec<usize> = (0..l.len()).filter(|&i| e[i] > 0.0).collect();
        order.sort_by(|&a, &b| l[b].total_cmp(&l[a]));
        let mut above = vec![0.0; l.len()];
        let (mut acc, mut run) = (0.0, 0.0);
        for (n, &i) in order.iter().enumerate() {
            if n > 0 && l[i] < l[order[n - 1]] {
                acc += run;
                run = 0.0;
            }
            above[i] = acc;
            run += e[i];
        }
        for i in order {
            if above[i] >= params.top_p as f64 * total {
                e[i] = 0.0;
            }
        }
    }
    let total: f64 = e.iter().sum();
    e.iter().map(|w| w / total).collect()
}

/// The token `sample` chooses: the first whose cumulative probability exceeds `u`.
pub fn sample_ref(logits: &[f32], history: &[u32], presence_from: usize, params: &SampleParams) -> u32 {
    let probs = sample_probs_ref(logits, history, presence_from, params);
    let mut cdf = 0.0;
    let mut last = 0;
    for (i, &q) in probs.iter().enumerate() {
        if q > 0.0 {
            cdf += q;
            last = i;
            if cdf > params.u as f64 {
                return i as u32;
            }
        }
    }
    last as u32
}
