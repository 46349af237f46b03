//! The language model, `Qwen3VLTextModel` + `lm_head`: a Qwen3 decoder (pre-norm, q/k
//! RMSNorm per head, GQA, interleaved MRoPE, SwiGLU) whose first layers also receive the
//! DeepStack visual features. A prompt runs in chunks of positions whose activations fit one
//! binding each, every chunk writing its keys and values into the cache and attending to all
//! of it.

use std::ops::Range;

use crate::gpu::{row_chunks, spans, Arena, DType, Encoder, Gpu, GpuError, RowSplit, Tensor};
use crate::kernels::attention::{decode_attention, decode_scratch, decode_split, prefill_attention, DecodeScratch, KvCache, MAX_DECODE_QUERIES};
use crate::kernels::embed::{embed, scatter_add_rows, scatter_rows};
use crate::kernels::matmul::{matmul, MatmulOpts};
use crate::kernels::qk_rope::qk_norm_rope_append;
use crate::kernels::quant::{Format, Matrix};
use crate::kernels::rope::mrope_table;
use crate::kernels::step::StepValues;

use super::layers::{load_matrix, Linear, RmsNorm};
use super::{ModelError, Qwen3VLTextConfig, VisionOutput, Weights};

pub(super) struct DecoderLayer {
    input_layernorm: RmsNorm,
    post_attention_layernorm: RmsNorm,
    /// q_proj, k_proj and v_proj fused: each output row is [q | k | v].
    qkv_proj: Linear,
    o_proj: Linear,
    /// q_norm and k_norm, their weights in one tensor `[2, head_dim]`.
    qk_norm: RmsNorm,
    /// gate_proj and up_proj fused, their rows interleaved (gate_i, up_i): the SiLU·mul
    /// epilogue writes the MLP's activation directly.
    gate_up_proj: Linear,
    down_proj: Linear,
}

pub struct TextModel {
    pub config: Qwen3VLTextConfig,
    pub(super) embed_tokens: Matrix,
    pub(super) layers: Vec<DecoderLayer>,
    pub(super) norm: RmsNorm,
    /// `None` when tied to `embed_tokens`.
    lm_head: Option<Matrix>,
    /// Positions per prefill chunk (see [`TextModel::chunk_rows`]).
    chunk_rows: usize,
}

/// Visual features entering the decoder (the vision tower's output for one or more images and
/// videos): the call's token rows `rows` (one per merged token, in the output's order) take
/// the merger's output, and after decoder layer `l` get DeepStack feature `l` added.
pub struct VisualInput {
    pub rows: Vec<u32>,
    pub features: VisionOutput,
}

/// The tokens of one call: `ids` (already validated < vocab) with their M-RoPE `positions`
/// (t, h, w per token) at cache positions `past..`, and the visual features their rows take.
#[derive(Clone, Copy)]
pub struct TextInput<'a> {
    pub ids: &'a [u32],
    pub positions: &'a [[u32; 3]],
    pub past: usize,
    pub visual: &'a [VisualInput],
}

/// The caches and scratch a conversation keeps between calls.
pub struct TextState {
    pub caches: Vec<KvCache>,
    pub(super) decode_scratch: DecodeScratch,
    /// The activations of prefill chunks and decode steps, reused from call to call.
    arena: Arena,
}

impl TextState {
    /// Lets go of the activation buffers no call took since the previous trim (a long
    /// prompt's chunk buffers, once only shorter calls follow).
    pub fn trim(&self) {
        self.arena.trim();
    }
}

/// The activations of `t` positions that every decoder layer reads and writes in turn.
pub(super) struct LayerBuffers {
    /// The residual stream `[t, hidden]`, updated in place by each layer.
    pub(super) x: Tensor,
    qkv: Tensor,
    /// A prefill's normed and rotated q (decode attention makes its own from `qkv`).
    q: Tensor,
    attn: Tensor,
    act: Tensor,
}

impl LayerBuffers {
    pub(super) fn new(gpu: &Gpu, c: &Qwen3VLTextConfig, t: usize) -> Result<Self, ModelError> {
        Self::with(c, t, |shape| gpu.empty(DType::F32, shape))
    }

    /// The buffers, each `[t, ...]` f32 made by `f32s` for its shape.
    fn with(c: &Qwen3VLTextConfig, t: usize, f32s: impl Fn(&[usize]) -> Result<Tensor, GpuError>) -> Result<Self, ModelError> {
        let (h, d, qh, kvh) = (c.hidden_size, c.head_dim, c.num_attention_heads, c.num_key_value_heads);
        Ok(LayerBuffers {
            x: f32s(&[t, h])?,
            qkv: f32s(&[t, (qh + 2 * kvh) * d])?,
            q: f32s(&[t, qh, d])?,
            attn: f32s(&[t, qh * d])?,
            act: f32s(&[t, c.intermediate_size])?,
        })
    }
}

/// How a layer attends to the cache: split-K decode for a few rows (its position and splits
/// in the step buffer), or prefill tiles after `past` cached positions.
pub(super) enum Attend<'a> {
    Decode(&'a DecodeScratch),
    Prefill { past: usize },
}

impl DecoderLayer {
    /// `Qwen3VLTextDecoderLayer`: the rows of `a.x` through attention and the MLP, each added
    /// to the residual stream; their keys and values go into `cache` at the step's rows. Five
    /// dispatches in decode (with the attention's combine fused, else six), six in a prefill.
    pub(super) fn forward(&self, enc: &mut Encoder, a: &LayerBuffers, cache: &KvCache, now: &Tensor, attend: &Attend) {
        // input_layernorm → q|k|v in one pass over the residual stream.
        let attn_in = MatmulOpts { rms_norm: self.input_layernorm.prologue(), ..Default::default() };
        self.qkv_proj.forward_with(enc, &a.x, &a.qkv, attn_in);
        // q_norm, k_norm, the rotary embedding and the cache append: inside decode's
        // attention, in their own pass before a prefill's.
        let qk_norm = (&self.qk_norm.weight, self.qk_norm.eps);
        match attend {
            Attend::Decode(scratch) => decode_attention(enc, &a.qkv, qk_norm, cache, now, scratch, &a.attn),
            Attend::Prefill { past } => {
                qk_norm_rope_append(enc, &a.qkv, qk_norm, now, cache, &a.q);
                prefill_attention(enc, &a.q, cache, *past, &a.attn);
            }
        }
        self.o_proj.forward_acc(enc, &a.attn, &a.x);
        // post_attention_layernorm → gate|up → SiLU·mul in one pass over the residual stream.
        let mlp_in = MatmulOpts { rms_norm: self.post_attention_layernorm.prologue(), silu_mul: true, ..Default::default() };
        self.gate_up_proj.forward_with(enc, &a.x, &a.act, mlp_in);
        self.down_proj.forward_acc(enc, &a.act, &a.x);
    }
}

impl TextModel {
    /// Loads `model.language_model.*` (`w` at the checkpoint root) and the head.
    pub fn load(gpu: &Gpu, w: &Weights, c: &Qwen3VLTextConfig, tied: bool, format: Format) -> Result<Self, ModelError> {
        let lm = w.pp("model.language_model");
        let (h, d) = (c.hidden_size, c.head_dim);
        let (qd, kvd, eps) = (c.num_attention_heads * d, c.num_key_value_heads * d, c.rms_norm_eps as f32);
        let vocab = c.vocab_size;
        let emb = lm.pp("embed_tokens");
        let embed_tokens = load_matrix(gpu, &emb, "weight", &[vocab, h], format)?;
        let layers = (0..c.num_hidden_layers)
            .map(|i| {
                let l = lm.pp(format_args!("layers.{i}"));
                let a = l.pp("self_attn");
                // In checkpoint order (`expected_tensors`), so a pre-quantized folder's shards
                // are read, and hashed, front to back.
                Ok(DecoderLayer {
                    qkv_proj: Linear::load_fused(gpu, &a, &["q_proj", "k_proj", "v_proj"], &[qd, kvd, kvd], h, c.attention_bias, format)?,
                    o_proj: Linear::load(gpu, &a, "o_proj", h, qd, c.attention_bias, format)?,
                    qk_norm: RmsNorm::load_fused(gpu, &a, &["q_norm", "k_norm"], d, eps)?,
                    gate_up_proj: Linear::load_pairs(gpu, &l.pp("mlp"), ["gate_proj", "up_proj"], c.intermediate_size, h, format)?,
                    down_proj: Linear::load(gpu, &l.pp("mlp"), "down_proj", h, c.intermediate_size, false, format)?,
                    input_layernorm: RmsNorm::load(gpu, &l, "input_layernorm", h, eps)?,
                    post_attention_layernorm: RmsNorm::load(gpu, &l, "post_attention_layernorm", h, eps)?,
                })
            })
            .collect::<Result<_, ModelError>>()?;
        let norm = RmsNorm::load(gpu, &lm, "norm", h, eps)?;
        let lm_head = if tied {
            None
        } else {
            Some(load_matrix(gpu, w, "lm_head.weight", &[vocab, h], format)?)
        };
        // The widest per-position activation: the MLP's (SiLU·mul is fused into gate|up, so it
        // holds intermediate_size), q|k|v, the residual stream (which visual rows replace), or
        // the chunk's logits.
        let widest = [c.intermediate_size, qd + 2 * kvd, h, vocab].into_iter().max().unwrap_or(1);
        let (row_bytes, limit) = (4 * widest as u64, gpu.caps.max_binding());
        let chunk_rows = (limit / row_bytes) as usize;
        if chunk_rows == 0 {
            return Err(GpuError::TooLarge { what: "one position's activations in the decoder".into(), bytes: row_bytes, limit }.into());
        }
        Ok(TextModel { config: c.clone(), embed_tokens, layers, norm, lm_head, chunk_rows })
    }

    /// Positions per prefill chunk on this model's device: as many as keep every activation of
    /// a chunk (the widest is the MLP's or, for a real vocabulary, its logits) within one binding.
    pub fn chunk_rows(&self) -> usize {
        self.chunk_rows
    }

    /// KV caches of `dtype` (F16 or F32) for `capacity` positions in every layer.
    pub fn new_state(&self, gpu: &Gpu, capacity: usize, dtype: DType) -> Result<TextState, ModelError> {
        let c = &self.config;
        let caches = (0..c.num_hidden_layers)
            .map(|_| KvCache::new(gpu, c.num_key_value_heads, capacity, c.head_dim, dtype))
            .collect::<Result<Vec<_>, _>>()?;
        let decode_scratch = decode_scratch(gpu, &caches[0], c.num_attention_heads, MAX_DECODE_QUERIES)?;
        Ok(TextState { caches, decode_scratch, arena: Arena::new(gpu, self.chunk_rows) })
    }

    pub(super) fn head(&self) -> &Matrix {
        self.lm_head.as_ref().unwrap_or(&self.embed_tokens)
    }

    /// The step buffer's values for tokens at cache rows `past..` with M-RoPE `positions`
    /// (t, h, w per token): their rotary rows and, for few enough tokens, decode attention's
    /// splits.
    pub(super) fn step_values(&self, state: &TextState, past: usize, positions: &[[u32; 3]]) -> StepValues {
        let c = &self.config;
        let t = positions.len();
        let (cos, sin) = mrope_table(positions, c.rope.mrope_section, c.rope.rope_theta as f32, c.head_dim);
        let values = StepValues::new(past).rotary(&cos, &sin, t);
        match t <= MAX_DECODE_QUERIES {
            true => values.attention(decode_split(&state.caches[0], c.num_attention_heads, t, past)),
            false => values,
        }
    }

    /// Runs `ids` (already validated < vocab) with M-RoPE `positions` (t, h, w per token) at
    /// cache positions `past..past+t`, writing their keys and values into the caches. Returns
    /// the logits of every position (`all_logits`, as long as they fit one binding) or of the
    /// last only.
    #[allow(clippy::too_many_arguments)]
    pub fn forward(
        &self,
        enc: &mut Encoder,
        state: &TextState,
        ids: &[u32],
        positions: &[[u32; 3]],
        past: usize,
        visual: Option<&VisualInput>,
        all_logits: bool,
    ) -> Result<Tensor, ModelError> {
        let hidden = self.hidden_states(enc, state, ids, positions, past, visual.map(std::slice::from_ref).unwrap_or_default(), all_logits)?;
        self.lm_head(enc, &hidden, 0..hidden.rows)
    }

    /// [`TextModel::forward`] up to the head, one chunk of positions after the other: the
    /// final-normed hidden states (`model.norm`'s output, `[t, hidden]` in chunk-sized parts)
    /// of every position (`all_positions`) or of the last only (`[1, hidden]`).
    #[allow(clippy::too_many_arguments)]
    pub fn hidden_states(
        &self,
        enc: &mut Encoder,
        state: &TextState,
        ids: &[u32],
        positions: &[[u32; 3]],
        past: usize,
        visual: &[VisualInput],
        all_positions: bool,
    ) -> Result<RowSplit, ModelError> {
        let input = TextInput { ids, positions, past, visual };
        let mut parts = Vec::new();
        for rows in spans(ids.len(), self.chunk_rows) {
            parts.extend(self.prefill_chunk(enc, state, &input, rows, all_positions)?);
        }
        Ok(RowSplit::from_parts(self.config.hidden_size, parts))
    }

    /// Positions `rows` (at most [`TextModel::chunk_rows`]) of the call's tokens: writes their
    /// keys and values into the caches (earlier chunks must be recorded already) and returns
    /// their final-normed hidden states with `all_positions`, the last position's when `rows`
    /// ends the call, else nothing. The visual rows that fall in the chunk take their features.
    pub fn prefill_chunk(&self, enc: &mut Encoder, state: &TextState, input: &TextInput, rows: Range<usize>, all_positions: bool) -> Result<Option<Tensor>, ModelError> {
        let gpu = enc.gpu;
        let c = &self.config;
        let TextInput { ids, positions, past, visual } = *input;
        assert_eq!(positions.len(), ids.len(), "one position per token");
        assert!(rows.start < rows.end && rows.end <= ids.len() && rows.len() <= self.chunk_rows, "chunk {rows:?} of {} ids", ids.len());
        let last = rows.end == ids.len();
        let (t, row0, past) = (rows.len(), rows.start, past + rows.start);
        assert!(past + t <= state.caches[0].capacity, "{past} + {t} positions exceed the cache");
        let h = c.hidden_size;
        let now = self.step_values(state, past, &positions[rows.clone()]).upload(gpu)?;
        let attend = match t <= MAX_DECODE_QUERIES {
            true => Attend::Decode(&state.decode_scratch),
            false => Attend::Prefill { past },
        };
        let a = LayerBuffers::with(c, t, |shape| Ok(state.arena.rows(gpu, DType::F32, t, shape[1..].iter().product())?.view(shape)))?;
        embed(enc, &self.embed_tokens, &gpu.upload_u32(&ids[rows.clone()], &[t])?, &a.x);
        // The parts of each visual input's features with tokens in this chunk, and those tokens.
        let mut features = Vec::new();
        for v in visual {
            for (i, part) in v.features.embeds.parts.iter().enumerate() {
                let at = &v.rows[part.rows.clone()];
                if at.iter().any(|&r| rows.contains(&(r as usize))) {
                    features.push((v, i, gpu.upload_u32(at, &[at.len()])?));
                }
            }
        }
        for (input, i, at) in &features {
            scatter_rows(enc, &a.x, row0, at, &input.features.embeds.parts[*i].tensor);
        }
        for (l, layer) in self.layers.iter().enumerate() {
            layer.forward(enc, &a, &state.caches[l], &now, &attend);
            for (input, i, at) in &features {
                if let Some(ds) = input.features.deepstack.get(l) {
                    scatter_add_rows(enc, &a.x, row0, at, &ds.parts[*i].tensor);
                }
            }
        }
        if all_positions {
            let hidden = state.arena.rows(gpu, DType::F32, t, h)?;
            self.norm.forward(enc, &a.x, &hidden);
            Ok(Some(hidden))
        } else if last {
            // Only the last position feeds generation: norm it alone.
            let one = || state.arena.rows(gpu, DType::F32, 1, h);
            let (x_last, hidden) = (one()?, one()?);
            enc.copy(&a.x.buffer, ((t - 1) * h * 4) as u64, &x_last.buffer, 0, (h * 4) as u64);
            self.norm.forward(enc, &x_last, &hidden);
            Ok(Some(hidden))
        } else {
            Ok(None)
        }
    }

    /// `lm_head` on rows `rows` of the final-normed `hidden` states: their logits,
    /// `[rows.len(), vocab]`, which must fit one storage binding ([`TextModel::logits_chunks`]
    /// cuts longer prompts).
    pub fn lm_head(&self, enc: &mut Encoder, hidden: &RowSplit, rows: Range<usize>) -> Result<Tensor, ModelError> {
        let gpu = enc.gpu;
        let (n, h, vocab) = (rows.len(), self.config.hidden_size, self.config.vocab_size);
        assert!(hidden.cols == h && rows.end <= hidden.rows, "rows {rows:?} of hidden states [{}, {}]", hidden.rows, hidden.cols);
        gpu.check_binding(&format!("the logits of {n} positions"), 4 * (n * vocab) as u64)?;
        let x = hidden.rows(enc, rows)?;
        let logits = gpu.empty(DType::F32, &[n, vocab])?;
        matmul(enc, &x, self.head(), None, &logits);
        Ok(logits)
    }

    /// Cuts `positions` rows into consecutive ranges whose logits fit one storage binding, and
    /// hold at most `max_rows` rows where given (tests cut tiny models into several chunks).
    pub fn logits_chunks(&self, gpu: &Gpu, positions: usize, max_rows: Option<usize>) -> Result<Vec<Range<usize>>, ModelError> {
        let row_bytes = 4 * self.config.vocab_size as u64;
        let limit = max_rows.map_or(u64::MAX, |r| (r as u64).saturating_mul(row_bytes)).min(gpu.caps.max_binding());
        Ok(row_chunks(positions, row_bytes, limit)?)
    }
}
