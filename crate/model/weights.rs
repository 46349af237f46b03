//! Weights by transformers module path, like candle's `VarBuilder`:
//! `w.pp("model.language_model").pp("layers.3").get("self_attn.q_proj.weight", &[n, k])`,
//! each read checked against the shape the config implies. [`expected_tensors`] lists every
//! tensor a Qwen3-VL checkpoint must hold; [`validate`] checks a checkpoint against it.
//! Weight paths are spelled here and nowhere else.

use std::collections::HashSet;
use std::fmt::Display;
use std::ops::Range;

use crate::kernels::quant::{encode, Format};

use super::quantized::stored_q4;
use super::{Checkpoint, LoadError, Qwen3VLConfig, SafetensorsFile, TensorInfo};

/// A view of a checkpoint under a module-path prefix.
#[derive(Clone)]
pub struct Weights<'a> {
    checkpoint: &'a Checkpoint,
    prefix: String,
}

impl<'a> Weights<'a> {
    pub fn new(checkpoint: &'a Checkpoint) -> Self {
        Weights { checkpoint, prefix: String::new() }
    }

    /// Pushes one or more path segments: `pp("layers.3")`, `pp(format_args!("blocks.{i}"))`.
    pub fn pp(&self, segment: impl Display) -> Weights<'a> {
        Weights { checkpoint: self.checkpoint, prefix: self.path(&segment.to_string()) }
    }

    /// The full tensor name of `name` under this prefix.
    pub fn path(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}.{name}", self.prefix)
        }
    }

    pub fn contains(&self, name: &str) -> bool {
        self.checkpoint.find(&self.path(name)).is_ok()
    }

    /// The header entry of `name`, which must have `shape`.
    pub fn info(&self, name: &str, shape: &[usize]) -> Result<(&'a SafetensorsFile, &'a TensorInfo), LoadError> {
        let path = self.path(name);
        let (file, info) = self.checkpoint.find(&path)?;
        check_shape(file, &path, info, shape)?;
        Ok((file, info))
    }

    /// The whole tensor `name` as f32, checked to have `shape`.
    pub fn get(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>, LoadError> {
        let (file, _) = self.info(name, shape)?;
        file.tensor_f32(&self.path(name))
    }

    /// Rows `rows` of `name` (checked to have `shape`) as f32, reading only those rows.
    pub fn rows(&self, name: &str, shape: &[usize], rows: Range<usize>) -> Result<Vec<f32>, LoadError> {
        let (file, _) = self.info(name, shape)?;
        file.rows_f32(&self.path(name), rows)
    }

    /// Rows `rows` of the matrix `name` (logical `shape`, flattened to `[shape[0], rest]`)
    /// encoded in `format` (`data` and `scales` words): read as stored when the folder is
    /// pre-quantized, else read as f32 and encoded.
    pub fn encoded_rows(&self, name: &str, shape: &[usize], rows: Range<usize>, format: Format) -> Result<(Vec<u32>, Vec<u32>), LoadError> {
        let path = self.path(name);
        match stored_q4(self.checkpoint, &path, shape)? {
            Some(q4) if format == Format::Q4 => q4.rows(rows),
            Some(_) => Err(LoadError::StoredFormat { requested: format }),
            None => Ok(encode(&self.rows(name, shape, rows)?, shape[1..].iter().product(), format)),
        }
    }
}

/// Whether the model uploads `name` as a weight matrix in the chosen GPU format (int4 by
/// default): every Linear weight, the patch embedding, `embed_tokens` and `lm_head`. The rest
/// (norms, biases, the position-embedding table) stays f32.
pub fn is_matrix(name: &str, shape: &[usize]) -> bool {
    shape.len() >= 2 && !name.ends_with("pos_embed.weight")
}

fn check_shape(file: &SafetensorsFile, tensor: &str, info: &TensorInfo, shape: &[usize]) -> Result<(), LoadError> {
    if info.shape == shape {
        return Ok(());
    }
    Err(LoadError::Shape {
        file: file.name.clone(),
        tensor: tensor.into(),
        expected: shape.to_vec(),
        actual: info.shape.clone(),
    })
}

/// Every tensor a checkpoint for `config` holds, with its shape, in module order.
/// `lm_head.weight` only when the embeddings are untied; rotary `inv_freq` buffers are not saved.
/// `config` must have passed [`Qwen3VLConfig::validate`], which bounds the layer counts and
/// every product below.
pub fn expected_tensors(config: &Qwen3VLConfig) -> Vec<(String, Vec<usize>)> {
    let mut out = List(Vec::new());
    let t = &config.text_config;
    let (h, hd, inter) = (t.hidden_size, t.head_dim, t.intermediate_size);
    let (q, kv) = (t.num_attention_heads * hd, t.num_key_value_heads * hd);
    let lm = "model.language_model";
    out.add(format!("{lm}.embed_tokens.weight"), &[t.vocab_size, h]);
    for i in 0..t.num_hidden_layers {
        let l = format!("{lm}.layers.{i}");
        for (proj, n, k) in [("q_proj", q, h), ("k_proj", kv, h), ("v_proj", kv, h), ("o_proj", h, q)] {
            out.add(format!("{l}.self_attn.{proj}.weight"), &[n, k]);
            if t.attention_bias {
                out.add(format!("{l}.self_attn.{proj}.bias"), &[n]);
            }
        }
        out.add(format!("{l}.self_attn.q_norm.weight"), &[hd]);
        out.add(format!("{l}.self_attn.k_norm.weight"), &[hd]);
        out.add(format!("{l}.mlp.gate_proj.weight"), &[inter, h]);
        out.add(format!("{l}.mlp.up_proj.weight"), &[inter, h]);
        out.add(format!("{l}.mlp.down_proj.weight"), &[h, inter]);
        out.add(format!("{l}.input_layernorm.weight"), &[h]);
        out.add(format!("{l}.post_attention_layernorm.weight"), &[h]);
    }
    out.add(format!("{lm}.norm.weight"), &[h]);

    let v = &config.vision_config;
    let d = v.hidden_size;
    let vis = "model.visual";
    // Conv3d with kernel = stride = (temporal, patch, patch): [out, in, t, p, p].
    let (tp, p) = (v.temporal_patch_size, v.patch_size);
    out.add(format!("{vis}.patch_embed.proj.weight"), &[d, v.in_channels, tp, p, p]);
    out.add(format!("{vis}.patch_embed.proj.bias"), &[d]);
    out.add(format!("{vis}.pos_embed.weight"), &[v.num_position_embeddings, d]);
    for i in 0..v.depth {
        let b = format!("{vis}.blocks.{i}");
        out.with_bias(format!("{b}.norm1"), &[d]);
        out.with_bias(format!("{b}.norm2"), &[d]);
        out.with_bias(format!("{b}.attn.qkv"), &[3 * d, d]);
        out.with_bias(format!("{b}.attn.proj"), &[d, d]);
        out.with_bias(format!("{b}.mlp.linear_fc1"), &[v.intermediate_size, d]);
        out.with_bias(format!("{b}.mlp.linear_fc2"), &[d, v.intermediate_size]);
    }
    // Mergers concatenate spatial_merge_size² patches; the deepstack ones norm after that.
    let merged = d * v.spatial_merge_size * v.spatial_merge_size;
    let mut merger = |m: String, norm: usize| {
        out.with_bias(format!("{m}.norm"), &[norm]);
        out.with_bias(format!("{m}.linear_fc1"), &[merged, merged]);
        out.with_bias(format!("{m}.linear_fc2"), &[v.out_hidden_size, merged]);
    };
    merger(format!("{vis}.merger"), d);
    for k in 0..v.deepstack_visual_indexes.len() {
        merger(format!("{vis}.deepstack_merger_list.{k}"), merged);
    }

    if !config.tie_word_embeddings {
        out.add("lm_head.weight".into(), &[t.vocab_size, h]);
    }
    out.0
}

struct List(Vec<(String, Vec<usize>)>);

impl List {
    fn add(&mut self, name: String, shape: &[usize]) {
        self.0.push((name, shape.to_vec()));
    }
    /// `name.weight` of `shape` and `name.bias` of `[shape[0]]` (a Linear or a LayerNorm).
    fn with_bias(&mut self, name: String, shape: &[usize]) {
        self.add(format!("{name}.weight"), shape);
        self.add(format!("{name}.bias"), &shape[..1]);
    }
}

/// What [`validate`] found besides errors.
#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    /// Tensors expected and found.
    pub tensors: usize,
    pub parameters: u64,
    /// Tensors in the checkpoint the model does not use, sorted.
    pub unexpected: Vec<String>,
}

/// Checks that every tensor `config` implies is in `checkpoint` with its shape and a float
/// dtype (or, in a pre-quantized folder, a matrix as int4 words of that logical shape); the first
/// that is not is the error. Extra tensors are listed, not errors.
pub fn validate(config: &Qwen3VLConfig, checkpoint: &Checkpoint) -> Result<Report, LoadError> {
    config.validate()?;
    let expected = expected_tensors(config);
    let mut parameters = 0u64;
    let mut known: HashSet<String> = HashSet::new();
    for (name, shape) in &expected {
        parameters += shape.iter().product::<usize>() as u64;
        if is_matrix(name, shape) {
            if let Some(q4) = stored_q4(checkpoint, name, shape)? {
                known.extend(q4.tensor_names());
                continue;
            }
        }
        let (file, info) = checkpoint.find(name)?;
        check_shape(file, name, info, shape)?;
        if !info.dtype.is_float() {
            return Err(LoadError::Dtype {
                file: file.name.clone(),
                tensor: name.clone(),
                dtype: format!("{:?}", info.dtype),
                reason: "which cannot be read as f32",
            });
        }
        known.insert(name.clone());
    }
    let mut unexpected: Vec<String> = checkpoint.names().filter(|n| !known.contains(*n)).map(String::from).collect();
    unexpected.sort();
    Ok(Report { tensors: expected.len(), parameters, unexpected })
}
