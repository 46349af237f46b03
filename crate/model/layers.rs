//! The GPU building blocks the towers share, loaded by their transformers names.

use crate::gpu::{Encoder, Gpu, Tensor};
use crate::kernels::matmul::{matmul, matmul_acc, matmul_with, MatmulOpts};
use crate::kernels::norm::{layer_norm, rms_norm};
use crate::kernels::quant::{Format, Matrix};

use super::{ModelError, Weights};

/// `nn.Linear`: weight `[out, in]` in the chosen format, optional f32 bias.
pub struct Linear {
    pub weight: Matrix,
    pub bias: Option<Tensor>,
}

impl Linear {
    /// Loads `{name}.weight` (`[n, k]`, read one binding-sized part at a time) and, when `bias`,
    /// `{name}.bias`.
    pub fn load(gpu: &Gpu, w: &Weights, name: &str, n: usize, k: usize, bias: bool, format: Format) -> Result<Linear, ModelError> {
        Self::load_shaped(gpu, w, name, &[n, k], bias, format)
    }

    /// [`Linear::load`] for a weight stored with more dimensions, flattened to `[shape[0], rest]`
    /// (the patch embedding's Conv3d, whose stride equals its kernel, is such a Linear).
    pub fn load_shaped(gpu: &Gpu, w: &Weights, name: &str, shape: &[usize], bias: bool, format: Format) -> Result<Linear, ModelError> {
        let w = w.pp(name);
        let n = shape[0];
        let weight = load_matrix(gpu, &w, "weight", shape, format)?;
        let bias = if bias { Some(gpu.upload_f32(&w.get("bias", &[n])?, &[n])?) } else { None };
        Ok(Linear { weight, bias })
    }

    /// Loads several Linears sharing an input as one matrix, their outputs side by side
    /// (q_proj | k_proj | v_proj): one pass over x and one dispatch instead of several. With
    /// `bias`, their biases side by side too.
    pub fn load_fused(gpu: &Gpu, w: &Weights, names: &[&str], ns: &[usize], k: usize, bias: bool, format: Format) -> Result<Linear, ModelError> {
        let n: usize = ns.iter().sum();
        // Encoding is per row, so the fused rows are the parts' encoded rows one after another.
        let weight = Matrix::upload_encoded(gpu, n, k, format, None, |rows| {
            let (mut data, mut scales) = (Vec::new(), Vec::new());
            let mut start = 0;
            for (name, &ni) in names.iter().zip(ns) {
                let r = rows.start.max(start)..rows.end.min(start + ni);
                if r.start < r.end {
                    let (d, s) = w.encoded_rows(&format!("{name}.weight"), &[ni, k], r.start - start..r.end - start, format)?;
                    data.extend(d);
                    scales.extend(s);
                }
                start += ni;
            }
            Ok::<_, ModelError>((data, scales))
        })?;
        let bias = match bias {
            true => {
                let mut b = Vec::with_capacity(n);
                for (name, &ni) in names.iter().zip(ns) {
                    b.extend(w.pp(name).get("bias", &[ni])?);
                }
                Some(gpu.upload_f32(&b, &[n])?)
            }
            false => None,
        };
        Ok(Linear { weight, bias })
    }

    /// Loads two bias-free Linears of the same shape sharing an input (gate_proj, up_proj) as
    /// one matrix of interleaved row pairs ([`Matrix::upload_encoded_pairs`]): one pass over x,
    /// one dispatch, and with [`MatmulOpts::silu_mul`] the MLP's activation written directly.
    /// Stored formats are read as they are; the interleaving happens at upload.
    pub fn load_pairs(gpu: &Gpu, w: &Weights, names: [&str; 2], n: usize, k: usize, format: Format) -> Result<Linear, ModelError> {
        let [a, b] = names.map(|name| format!("{name}.weight"));
        let weight = Matrix::upload_encoded_pairs(gpu, n, k, format, None, |rows| {
            Ok::<_, ModelError>([w.encoded_rows(&a, &[n, k], rows.clone(), format)?, w.encoded_rows(&b, &[n, k], rows, format)?])
        })?;
        Ok(Linear { weight, bias: None })
    }

    pub fn out_features(&self) -> usize {
        self.weight.n
    }

    /// `y = x·Wᵀ + b`.
    pub fn forward(&self, enc: &mut Encoder, x: &Tensor, y: &Tensor) {
        matmul(enc, x, &self.weight, self.bias.as_ref(), y);
    }

    /// `y += x·Wᵀ + b` (the residual stream).
    pub fn forward_acc(&self, enc: &mut Encoder, x: &Tensor, y: &Tensor) {
        matmul_acc(enc, x, &self.weight, self.bias.as_ref(), y);
    }

    /// `y (+)= x·Wᵀ + b` with the fusions `opts` ask for (its bias is this layer's).
    pub fn forward_with(&self, enc: &mut Encoder, x: &Tensor, y: &Tensor, opts: MatmulOpts) {
        matmul_with(enc, x, &self.weight, y, &MatmulOpts { bias: self.bias.as_ref(), ..opts });
    }
}

/// The matrix `name` (logical `shape`, flattened to `[shape[0], rest]`) in `format`, one
/// binding-sized part at a time, from f32 or from a pre-quantized folder's stored words.
pub fn load_matrix(gpu: &Gpu, w: &Weights, name: &str, shape: &[usize], format: Format) -> Result<Matrix, ModelError> {
    let (n, k) = (shape[0], shape[1..].iter().product());
    Matrix::upload_encoded(gpu, n, k, format, None, |rows| Ok::<_, ModelError>(w.encoded_rows(name, shape, rows, format)?))
}

/// `nn.LayerNorm` with weight and bias (the ViT's eps is 1e-6).
pub struct LayerNorm {
    pub weight: Tensor,
    pub bias: Tensor,
    pub eps: f32,
}

impl LayerNorm {
    pub fn load(gpu: &Gpu, w: &Weights, name: &str, dim: usize, eps: f32) -> Result<LayerNorm, ModelError> {
        let w = w.pp(name);
        Ok(LayerNorm {
            weight: gpu.upload_f32(&w.get("weight", &[dim])?, &[dim])?,
            bias: gpu.upload_f32(&w.get("bias", &[dim])?, &[dim])?,
            eps,
        })
    }
    pub fn forward(&self, enc: &mut Encoder, x: &Tensor, y: &Tensor) {
        layer_norm(enc, x, &self.weight, &self.bias, y, self.eps);
    }
}

/// Qwen3's `RMSNorm`.
pub struct RmsNorm {
    pub weight: Tensor,
    pub eps: f32,
}

impl RmsNorm {
    pub fn load(gpu: &Gpu, w: &Weights, name: &str, dim: usize, eps: f32) -> Result<RmsNorm, ModelError> {
        Self::load_fused(gpu, w, &[name], dim, eps)
    }
    /// Norms of `dim` sharing `eps` (a layer's q_norm and k_norm), their weights one after the
    /// other in one tensor `[names.len(), dim]`: one binding for the kernel that applies them.
    pub fn load_fused(gpu: &Gpu, w: &Weights, names: &[&str], dim: usize, eps: f32) -> Result<RmsNorm, ModelError> {
        let mut weight = Vec::with_capacity(names.len() * dim);
        for name in names {
            weight.extend(w.pp(name).get("weight", &[dim])?);
        }
        Ok(RmsNorm { weight: gpu.upload_f32(&weight, &[names.len(), dim])?, eps })
    }
    pub fn forward(&self, enc: &mut Encoder, x: &Tensor, y: &Tensor) {
        rms_norm(enc, x, &self.weight, y, self.eps);
    }
    /// This norm fused into the matmul after it ([`MatmulOpts::rms_norm`]).
    pub fn prologue(&self) -> Option<(&Tensor, f32)> {
        Some((&self.weight, self.eps))
    }
}
