//! Rotary position embedding: the interleaved 3-axis MRoPE of the text decoder and the 2-D
//! RoPE of the ViT, both applied with rotate-half pairing (`j` with `j + head_dim/2`).
//!
//! The cos/sin tables are built here on the CPU, mirroring transformers' f32 arithmetic step by
//! step (5.x `Qwen3VLTextRotaryEmbedding`, `Qwen3VLVisionRotaryEmbedding`): angles reach ~3e4
//! rad, where a GPU's sin/cos are inexact and every f32 rounding of the angle shows. Checked
//! against transformers 5.23 / torch 2.15 on x86: the ViT angles are bit-identical, and so are
//! the text angles except where torch's own power is off (see [`inv_freq`]). The one
//! deliberate departure: cos/sin of the f32 angle are rounded correctly here, where torch's
//! vectorised f32 cos/sin are off by an ulp (6e-8) in ~5% of entries.

use bytemuck::{Pod, Zeroable};

use super::key;
use crate::gpu::{grid, Encoder, Tensor};

const SHADER: &str = include_str!("../../shaders/rope.wgsl");
const WG: u32 = 256;

/// `inv_freq[j] = 1 / base^(2j / dim)` for `j < dim/2`, as torch computes it in f32:
/// the exponent `(2j as f32) / dim`, the power, then the reciprocal, each rounded to f32.
/// The power here is correctly rounded; torch's vectorised one (SLEEF, ≤ 1 ulp, CPU-dependent)
/// is not always: for θ = 5e6, dim 128 it rounds j = 19 the other way, and at position 2.6e5
/// that frequency's angle then differs by 2.4e-4 rad. The ViT's (θ 1e4, dim 32) agree.
pub fn inv_freq(base: f32, dim: usize) -> Vec<f32> {
    (0..dim / 2)
        .map(|j| {
            let e = (2 * j) as f32 / dim as f32;
            1.0 / ((base as f64).powf(e as f64) as f32)
        })
        .collect()
}

fn cos_sin(angle: f32) -> (f32, f32) {
    let a = angle as f64;
    (a.cos() as f32, a.sin() as f32)
}

/// Which position axis (0 = T, 1 = H, 2 = W) frequency `j` takes in interleaved MRoPE:
/// transformers starts from T and overwrites `slice(1, 3·section[1], 3)` with H and
/// `slice(2, 3·section[2], 3)` with W (`section[0]` is implied: T keeps the rest).
fn mrope_axis(j: usize, section: [usize; 3]) -> usize {
    match j % 3 {
        1 if j < 3 * section[1] => 1,
        2 if j < 3 * section[2] => 2,
        _ => 0,
    }
}

/// Text MRoPE tables `(cos, sin)`, each `[t, head_dim/2]`, for per-token positions `(t, h, w)`
/// (text tokens have all three equal). Frequency `j` rotates with the axis `mrope_axis` picks:
/// `angle = pos[axis] as f32 · inv_freq[j]`, one f32 product as in transformers. Qwen3-VL:
/// section `[24, 20, 20]`, theta 5e6, head_dim 128.
pub fn mrope_table(positions: &[[u32; 3]], section: [usize; 3], theta: f32, head_dim: usize) -> (Vec<f32>, Vec<f32>) {
    assert!(head_dim.is_multiple_of(2), "mrope head_dim {head_dim} must be even");
    let inv = inv_freq(theta, head_dim);
    let mut cos = Vec::with_capacity(positions.len() * inv.len());
    let mut sin = Vec::with_capacity(positions.len() * inv.len());
    for pos in positions {
        for (j, f) in inv.iter().enumerate() {
            let (c, s) = cos_sin(pos[mrope_axis(j, section)] as f32 * f);
            cos.push(c);
            sin.push(s);
        }
    }
    (cos, sin)
}

/// `(row, col)` in the full patch grid of each of a frame's `h·w` patches, in the ViT's token
/// order: merged-block row, merged-block col, intra-block row, intra-block col.
pub fn block_major(h: usize, w: usize, merge: usize) -> Vec<(usize, usize)> {
    assert!(merge > 0 && h.is_multiple_of(merge) && w.is_multiple_of(merge), "grid {h}x{w} not divisible by merge {merge}");
    let mut out = Vec::with_capacity(h * w);
    for br in 0..h / merge {
        for bc in 0..w / merge {
            for ir in 0..merge {
                for ic in 0..merge {
                    out.push((br * merge + ir, bc * merge + ic));
                }
            }
        }
    }
    out
}

/// ViT 2-D RoPE tables `(cos, sin)`, each `[Σ t·h·w, head_dim/2]`, for grids `(t, h, w)` in
/// patches. With `q = head_dim/4` frequencies `f = 1/10000^(2i/(head_dim/2))`, a patch at
/// `(row, col)` gets angles `cat(row·f, col·f)`; tokens in [`block_major`] order, each frame
/// of a grid repeating the same coordinates.
pub fn vision_rope_table(grids: &[[usize; 3]], merge: usize, head_dim: usize) -> (Vec<f32>, Vec<f32>) {
    assert!(head_dim.is_multiple_of(4), "vision rope head_dim {head_dim} must be a multiple of 4");
    let inv = inv_freq(10000.0, head_dim / 2);
    let n: usize = grids.iter().map(|g| g[0] * g[1] * g[2]).sum();
    let mut cos = Vec::with_capacity(n * head_dim / 2);
    let mut sin = Vec::with_capacity(n * head_dim / 2);
    for &[t, h, w] in grids {
        let coords = block_major(h, w, merge);
        for _ in 0..t {
            for &(row, col) in &coords {
                for p in [row, col] {
                    for f in &inv {
                        let (c, s) = cos_sin(p as f32 * f);
                        cos.push(c);
                        sin.push(s);
                    }
                }
            }
        }
    }
    (cos, sin)
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    rows: u32,
    heads: u32,
    half: u32,
    row_stride: u32,
    offset: u32,
    _pad: [u32; 3],
}

/// Rotates, in place, `heads` consecutive heads starting at element `offset` of every row of
/// `x`, with head_dim = `2 · cos.shape[1]` and one table row per row of `x` (`rows =
/// cos.shape[0]`, row length `x.numel() / rows`). For q `[t, heads, d]`: `offset` 0. For the
/// ViT's packed qkv `[n, 3, heads, 64]`: `2·heads` heads from 0 rotates q and k together.
pub fn apply_rope(enc: &mut Encoder, x: &Tensor, cos: &Tensor, sin: &Tensor, heads: usize, offset: usize) {
    assert!(cos.shape.len() == 2 && cos.shape == sin.shape, "rope tables {:?} / {:?}", cos.shape, sin.shape);
    let (rows, half) = (cos.shape[0], cos.shape[1]);
    assert!(rows > 0 && x.numel().is_multiple_of(rows), "rope: {rows} table rows for x {:?}", x.shape);
    let row_stride = x.numel() / rows;
    assert!(offset + heads * 2 * half <= row_stride, "rope: heads past the end of a row of {row_stride}");
    let n = rows * heads * half;
    if n == 0 {
        return;
    }
    let kernel = enc.gpu.kernel(key(enc.gpu, "rope", "rope").konst("WG", WG), SHADER);
    let params = Params {
        rows: rows as u32,
        heads: heads as u32,
        half: half as u32,
        row_stride: row_stride as u32,
        offset: offset as u32,
        _pad: [0; 3],
    };
    let groups = grid((n as u32).div_ceil(WG));
    enc.dispatch(&kernel, bytemuck::bytes_of(&params), &[x.binding(), cos.binding(), sin.binding()], groups);
}

/// [`apply_rope`] on the CPU, as transformers writes it: `x·cos + rotate_half(x)·sin` in f32.
pub fn apply_rope_ref(x: &mut [f32], cos: &[f32], sin: &[f32], half: usize, heads: usize, offset: usize) {
    let rows = cos.len() / half;
    let row_stride = x.len() / rows;
    for r in 0..rows {
        for h in 0..heads {
            let base = r * row_stride + offset + h * 2 * half;
            for j in 0..half {
                let (c, s) = (cos[r * half + j], sin[r * half + j]);
                let (a, b) = (x[base + j], x[base + half + j]);
                x[base + j] = a * c + -b * s;
                x[base + half + j] = b * c + a * s;
            }
        }
    }
}
