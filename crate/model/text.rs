//! The language model, `Qwen3VLTextModel` + `lm_head`: a Qwen3 decoder (pre-norm, q/k
//! RMSNorm per head, GQA, interleaved MRoPE, SwiGLU) whose first layers also receive the
//! DeepStack visual features.

use std::ops::Range;

use crate::gpu::{row_chunks, DType, Encoder, Gpu, Tensor};
use crate::kernels::attention::{decode_attention, decode_scratch, decode_split, prefill_attention, DecodeScratch, KvCache, MAX_DECODE_QUERIES};
use crate::kernels::embed::{embed, scatter_add_rows, scatter_rows};
use crate::kernels::matmul::{matmul, MatmulOpts};
use crate::kernels::qk_rope::qk_norm_rope_append;
use crate::kernels::quant::{Format, Matrix};
use crate::kernels::rope::mrope_table;
use crate::kernels::step::StepValues;

use super::layers::{load_matrix, Linear, RmsNorm};
use super::{ModelError, Qwen3VLTextConfig, Weights};

pub(super) struct DecoderLayer {
    input_layernorm: RmsNorm,
    post_attention_layernorm: RmsNorm,
    /// q_proj, k_proj and v_proj fused: each output row is [q | k | v].
    qkv_proj: Linear,
    o_proj: Linear,
    q_norm: RmsNorm,
    k_norm: RmsNorm,
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
}

/// Visual features entering the decoder: rows `positions` of the sequence take `embeds`, and
/// after decoder layer `l` the rows get `deepstack[l]` added.
pub struct VisualInput<'a> {
    pub positions: &'a Tensor,
    pub embeds: &'a Tensor,
    pub deepstack: &'a [Tensor],
}

/// The caches and scratch a conversation keeps between calls.
pub struct TextState {
    pub caches: Vec<KvCache>,
    pub(super) decode_scratch: DecodeScratch,
}

/// The activations of `t` positions that every decoder layer reads and writes in turn.
pub(super) struct LayerBuffers {
    /// The residual stream `[t, hidden]`, updated in place by each layer.
    pub(super) x: Tensor,
    qkv: Tensor,
    q: Tensor,
    attn: Tensor,
    act: Tensor,
}

impl LayerBuffers {
    pub(super) fn new(gpu: &Gpu, c: &Qwen3VLTextConfig, t: usize) -> Result<Self, ModelError> {
        let (h, d, qh, kvh) = (c.hidden_size, c.head_dim, c.num_attention_heads, c.num_key_value_heads);
        let f32s = |shape: &[usize]| gpu.empty(DType::F32, shape);
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
    /// to the residual stream; their keys and values go into `cache` at the step's rows. Six
    /// dispatches (with the attention's combine fused, else seven).
    pub(super) fn forward(&self, enc: &mut Encoder, a: &LayerBuffers, cache: &KvCache, now: &Tensor, attend: &Attend) {
        // input_layernorm → q|k|v in one pass over the residual stream.
        let attn_in = MatmulOpts { rms_norm: self.input_layernorm.prologue(), ..Default::default() };
        self.qkv_proj.forward_with(enc, &a.x, &a.qkv, attn_in);
        qk_norm_rope_append(enc, &a.qkv, &self.q_norm.weight, &self.k_norm.weight, self.q_norm.eps, now, cache, &a.q);
        match attend {
            Attend::Decode(scratch) => decode_attention(enc, &a.q, cache, now, scratch, &a.attn),
            Attend::Prefill { past } => prefill_attention(enc, &a.q, cache, *past, &a.attn),
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
                    q_norm: RmsNorm::load(gpu, &a, "q_norm", d, eps)?,
                    k_norm: RmsNorm::load(gpu, &a, "k_norm", d, eps)?,
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
        Ok(TextModel { config: c.clone(), embed_tokens, layers, norm, lm_head })
    }

    /// KV caches of `dtype` (F16 or F32) for `capacity` positions in every layer.
    pub fn new_state(&self, gpu: &Gpu, capacity: usize, dtype: DType) -> Result<TextState, ModelError> {
        let c = &self.config;
        let caches = (0..c.num_hidden_layers)
            .map(|_| KvCache::new(gpu, c.num_key_value_heads, capacity, c.head_dim, dtype))
            .collect::<Result<Vec<_>, _>>()?;
        let decode_scratch = decode_scratch(gpu, &caches[0], c.num_attention_heads, MAX_DECODE_QUERIES)?;
        Ok(TextState { caches, decode_scratch })
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
        let hidden = self.hidden_states(enc, state, ids, positions, past, visual, all_logits)?;
        self.lm_head(enc, &hidden, 0..hidden.shape[0])
    }

    /// [`TextModel::forward`] up to the head: the final-normed hidden states (`model.norm`'s
    /// output, `[t, hidden]`) of every position (`all_positions`) or of the last only (`[1, hidden]`).
    #[allow(clippy::too_many_arguments)]
    pub fn hidden_states(
        &self,
        enc: &mut Encoder,
        state: &TextState,
        ids: &[u32],
        positions: &[[u32; 3]],
        past: usize,
        visual: Option<&VisualInput>,
        all_positions: bool,
    ) -> Result<Tensor, ModelError> {
        let gpu = enc.gpu;
        let c = &self.config;
        let t = ids.len();
        assert_eq!(positions.len(), t, "one position per token");
        assert!(past + t <= state.caches[0].capacity, "{past} + {t} positions exceed the cache");
        let h = c.hidden_size;
        let now = self.step_values(state, past, positions).upload(gpu)?;
        let attend = match t <= MAX_DECODE_QUERIES {
            true => Attend::Decode(&state.decode_scratch),
            false => Attend::Prefill { past },
        };
        let ids = gpu.upload_u32(ids, &[t])?;
        let a = LayerBuffers::new(gpu, c, t)?;
        embed(enc, &self.embed_tokens, &ids, &a.x);
        if let Some(v) = visual {
            scatter_rows(enc, &a.x, v.positions, v.embeds);
        }
        for (l, layer) in self.layers.iter().enumerate() {
            layer.forward(enc, &a, &state.caches[l], &now, &attend);
            if let Some(ds) = visual.and_then(|v| v.deepstack.get(l).map(|f| (v.positions, f))) {
                scatter_add_rows(enc, &a.x, ds.0, ds.1);
            }
        }
        let rows = if all_positions { t } else { 1 };
        let hidden = gpu.empty(DType::F32, &[rows, h])?;
        if all_positions {
            self.norm.forward(enc, &a.x, &hidden);
        } else {
            // Only the last position feeds generation: norm it alone.
            let x_last = gpu.empty(DType::F32, &[1, h])?;
            enc.copy(&a.x.buffer, ((t - 1) * h * 4) as u64, &x_last.buffer, 0, (h * 4) as u64);
            self.norm.forward(enc, &x_last, &hidden);
        }
        Ok(hidden)
    }

    /// `lm_head` on rows `rows` of the final-normed `hidden` states: their logits,
    /// `[rows.len(), vocab]`, which must fit one storage binding ([`TextModel::logits_chunks`]
    /// cuts longer prompts).
    pub fn lm_head(&self, enc: &mut Encoder, hidden: &Tensor, rows: Range<usize>) -> Result<Tensor, ModelError> {
        let gpu = enc.gpu;
        let (n, h, vocab) = (rows.len(), self.config.hidden_size, self.config.vocab_size);
        assert!(hidden.shape == [hidden.shape[0], h] && rows.end <= hidden.shape[0], "rows {rows:?} of hidden states {:?}", hidden.shape);
        gpu.check_binding(&format!("the logits of {n} positions"), 4 * (n * vocab) as u64)?;
        // A chunk from row 0 is a view; later ones are copied out (bindings take no offset).
        let x = if rows.start == 0 {
            hidden.view(&[n, h])
        } else {
            let x = gpu.empty(DType::F32, &[n, h])?;
            enc.copy(&hidden.buffer, (rows.start * h * 4) as u64, &x.buffer, 0, (n * h * 4) as u64);
            x
        };
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
