//! RMSNorm (Qwen3 decoder norms and the per-head q/k norms) and LayerNorm (the ViT).

use bytemuck::{Pod, Zeroable};

use super::{key, rows_cols};
use crate::gpu::{grid, Encoder, Tensor};

const SHADER: &str = include_str!("../../shaders/norm.wgsl");

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    rows: u32,
    dim: u32,
    eps: f32,
    _pad: u32,
}

fn record(enc: &mut Encoder, entry: &'static str, x: &Tensor, tensors: &[&Tensor], eps: f32) {
    let (rows, dim) = rows_cols(&x.shape);
    // Short rows (a 64- or 128-wide head) waste less of a smaller workgroup.
    let wg = if dim <= 128 { 64 } else { 256 };
    let kernel = enc.gpu.kernel(key(enc.gpu, "norm", entry).konst("WG", wg), SHADER);
    let params = Params { rows: rows as u32, dim: dim as u32, eps, _pad: 0 };
    let bindings: Vec<_> = std::iter::once(x).chain(tensors.iter().copied()).map(Tensor::binding).collect();
    enc.dispatch(&kernel, bytemuck::bytes_of(&params), &bindings, grid(rows as u32));
}

/// `y[r] = x[r] · rsqrt(mean(x[r]²) + eps) · weight` for every row of `x` (`[…, dim]`).
pub fn rms_norm(enc: &mut Encoder, x: &Tensor, weight: &Tensor, y: &Tensor, eps: f32) {
    assert_eq!(weight.numel(), *x.shape.last().unwrap(), "rms_norm weight");
    assert_eq!(x.numel(), y.numel(), "rms_norm output");
    record(enc, "rms_norm", x, &[weight, y], eps);
}

/// `y[r] = (x[r] − mean) · rsqrt(var + eps) · weight + bias`, biased variance as torch.
pub fn layer_norm(enc: &mut Encoder, x: &Tensor, weight: &Tensor, bias: &Tensor, y: &Tensor, eps: f32) {
    let dim = *x.shape.last().unwrap();
    assert!(weight.numel() == dim && bias.numel() == dim, "layer_norm weight/bias");
    assert_eq!(x.numel(), y.numel(), "layer_norm output");
    record(enc, "layer_norm", x, &[weight, y, bias], eps);
}

pub fn rms_norm_ref(x: &[f32], weight: &[f32], eps: f32) -> Vec<f32> {
    let dim = weight.len();
    x.chunks(dim)
        .flat_map(|row| {
            let ms = row.iter().map(|v| (v * v) as f64).sum::<f64>() / dim as f64;
            let inv = 1.0 / (ms + eps as f64).sqrt();
            row.iter().zip(weight).map(move |(v, w)| (*v as f64 * inv) as f32 * w)
        })
        .collect()
}

pub fn layer_norm_ref(x: &[f32], weight: &[f32], bias: &[f32], eps: f32) -> Vec<f32> {
    let dim = weight.len();
    x.chunks(dim)
        .flat_map(|row| {
            let mean = row.iter().map(|&v| v as f64).sum::<f64>() / dim as f64;
            let var = row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / dim as f64;
            let inv = 1.0 / (var + eps as f64).sqrt();
            row.iter()
                .zip(weight.iter().zip(bias))
                .map(move |(v, (w, b))| ((*v as f64 - mean) * inv) as f32 * w + b)
        })
        .collect()
}
