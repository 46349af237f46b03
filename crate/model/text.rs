//! The language model, `Qwen3VLTextModel` + `lm_head`: a Qwen3 decoder (pre-norm, q/k
//! RMSNorm per head, GQA, interleaved MRoPE, SwiGLU) whose first layers also receive the
//! DeepStack visual features.

use std::ops::Range;

use crate::gpu::{row_chunks, DType, Encoder, Gpu, Tensor};
use crate::kernels::attention::{decode_attention, kv_append, prefill_attention, KvCache, MAX_DECODE_QUERIES};
use crate::kernels::embed::{embed, scatter_add_rows, scatter_rows};
use crate::kernels::matmul::{matmul, MatmulOpts};
use crate::kernels::quant::{Format, Matrix};
use crate::kernels::rope::{apply_rope, mrope_table};

use super::layers::{load_matrix, Linear, RmsNorm};
use super::{ModelError, Qwen3VLTextConfig, Weights};

struct DecoderLayer {
    input_layernorm: RmsNorm,
    post_attention_layernorm: RmsNorm,
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
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
    embed_tokens: Matrix,
    layers: Vec<DecoderLayer>,
    norm: RmsNorm,
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
    decode_scratch: Tensor,
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
                    q_proj: Linear::load(gpu, &a, "q_proj", qd, h, c.attention_bias, format)?,
                    k_proj: Linear::load(gpu, &a, "k_proj", kvd, h, c.attention_bias, format)?,
                    v_proj: Linear::load(gpu, &a, "v_proj", kvd, h, c.attention_bias, format)?,
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
        let decode_scratch = crate::kernels::attention::decode_scratch(gpu, &caches[0], c.num_attention_heads, MAX_DECODE_QUERIES)?;
        Ok(TextState { caches, decode_scratch })
    }

    fn head(&self) -> &Matrix {
        self.lm_head.as_ref().unwrap_or(&self.embed_tokens)
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
        let (h, d, qh, kvh) = (c.hidden_size, c.head_dim, c.num_attention_heads, c.num_key_value_heads);
        let f32s = |shape: &[usize]| gpu.empty(DType::F32, shape);
        let (cos, sin) = mrope_table(positions, c.rope.mrope_section, c.rope.rope_theta as f32, d);
        let (cos, sin) = (gpu.upload_f32(&cos, &[t, d / 2])?, gpu.upload_f32(&sin, &[t, d / 2])?);
        let ids = gpu.upload_u32(ids, &[t])?;
        let x = f32s(&[t, h])?;
        embed(enc, &self.embed_tokens, &ids, &x);
        if let Some(v) = visual {
            scatter_rows(enc, &x, v.positions, v.embeds);
        }
        let (normed, q, k, v) = (f32s(&[t, h])?, f32s(&[t, qh, d])?, f32s(&[t, kvh, d])?, f32s(&[t, kvh, d])?);
        // Projections before the per-head norm (a kernel cannot read and write one buffer).
        let (q_lin, k_lin) = (f32s(&[t, qh * d])?, f32s(&[t, kvh * d])?);
        let attn = f32s(&[t, qh * d])?;
        let act = f32s(&[t, c.intermediate_size])?;
        for (l, layer) in self.layers.iter().enumerate() {
            let cache = &state.caches[l];
            layer.input_layernorm.forward(enc, &x, &normed);
            layer.q_proj.forward(enc, &normed, &q_lin);
            layer.k_proj.forward(enc, &normed, &k_lin);
            layer.v_proj.forward(enc, &normed, &v.view(&[t, kvh * d]));
            layer.q_norm.forward(enc, &q_lin.view(&[t * qh, d]), &q);
            layer.k_norm.forward(enc, &k_lin.view(&[t * kvh, d]), &k);
            apply_rope(enc, &q, &cos, &sin, qh, 0);
            apply_rope(enc, &k, &cos, &sin, kvh, 0);
            kv_append(enc, cache, &k, &v, past);
            if t <= MAX_DECODE_QUERIES {
                decode_attention(enc, &q, cache, past, &state.decode_scratch, &attn);
            } else {
                prefill_attention(enc, &q, cache, past, &attn);
            }
            layer.o_proj.forward_acc(enc, &attn, &x);
            // post_attention_layernorm → gate|up → SiLU·mul in one pass over the residual stream.
            let mlp_in = MatmulOpts { rms_norm: layer.post_attention_layernorm.prologue(), silu_mul: true, ..Default::default() };
            layer.gate_up_proj.forward_with(enc, &x, &act, mlp_in);
            layer.down_proj.forward_acc(enc, &act, &x);
            if let Some(ds) = visual.and_then(|v| v.deepstack.get(l).map(|f| (v.positions, f))) {
                scatter_add_rows(enc, &x, ds.0, ds.1);
            }
        }
        let rows = if all_positions { t } else { 1 };
        let hidden = f32s(&[rows, h])?;
        if all_positions {
            self.norm.forward(enc, &x, &hidden);
        } else {
            // Only the last position feeds generation: norm it alone.
            let x_last = f32s(&[1, h])?;
            enc.copy(&x.buffer, ((t - 1) * h * 4) as u64, &x_last.buffer, 0, (h * 4) as u64);
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
