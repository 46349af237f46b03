//! Row gathers and scatters around the embeddings: token embedding lookup from a weight
//! matrix in any [`Format`], visual features scattered into (or added onto) the token rows,
//! and the ViT's bilinearly interpolated absolute position embedding.
//!
//! Token ids live on the GPU, where nothing can reject them: the caller validates them on the
//! CPU before upload (the tokenizer only emits ids below the vocabulary size). As a safety net
//! the shader writes zeros for an id at or past the table's rows instead of reading out of
//! bounds; likewise scatter positions past `h` are skipped and gather4 indices are clamped.

use bytemuck::{Pod, Zeroable};

use super::key;
use super::quant::{Format, Matrix};
use super::rope::block_major;
use crate::gpu::{grid, DType, Encoder, Tensor};

const SHADER: &str = include_str!("../../shaders/embed.wgsl");
const WG: u32 = 256;

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct EmbedParams {
    tokens: u32,
    dim: u32,
    row_words: u32,
    scale_words: u32,
    row0: u32,
    rows: u32,
    last: u32,
    _pad: u32,
}

/// `out[t] = table[ids[t]]` (dequantised to f32): ids `[t]` u32, out `[t, table.k]` f32.
/// One dispatch per row part of the table; each writes only the tokens whose ids it holds.
pub fn embed(enc: &mut Encoder, table: &Matrix, ids: &Tensor, out: &Tensor) {
    let tokens = ids.numel();
    assert_eq!(ids.dtype, DType::U32, "embed ids");
    assert_eq!(out.numel(), tokens * table.k, "embed: out {:?} for {tokens} ids of {}", out.shape, table.k);
    let (row_words, scale_words) = (table.format.row_words(table.k), table.format.scale_words(table.k));
    if tokens * row_words == 0 {
        return;
    }
    let entry = match table.format {
        Format::F32 => "embed_f32",
        Format::F16 => "embed_f16",
        Format::Q4 => "embed_q4",
    };
    let kernel = enc.gpu.kernel(key(enc.gpu, "embed", entry).konst("WG", WG), SHADER);
    for (i, part) in table.parts.iter().enumerate() {
        let params = EmbedParams {
            tokens: tokens as u32,
            dim: table.k as u32,
            row_words: row_words as u32,
            scale_words: scale_words as u32,
            row0: part.rows.start as u32,
            rows: part.rows.len() as u32,
            last: (i + 1 == table.parts.len()) as u32,
            _pad: 0,
        };
        let mut bindings = vec![ids.binding(), part.data.binding(), out.binding()];
        bindings.extend(part.scales.as_ref().map(Tensor::binding));
        let groups = grid(((tokens * row_words) as u32).div_ceil(WG));
        enc.dispatch(&kernel, bytemuck::bytes_of(&params), &bindings, groups);
    }
}

/// [`embed`] on the CPU over the table's values as stored (`quant::dequantized`).
pub fn embed_ref(table: &[f32], dim: usize, ids: &[u32]) -> Vec<f32> {
    let rows = table.len() / dim;
    ids.iter()
        .flat_map(|&id| match (id as usize) < rows {
            true => table[id as usize * dim..][..dim].to_vec(),
            false => vec![0.0; dim],
        })
        .collect()
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct ScatterParams {
    n: u32,
    h_rows: u32,
    dim: u32,
    row0: u32,
}

fn scatter(enc: &mut Encoder, entry: &'static str, h: &Tensor, row0: usize, pos: &Tensor, feat: &Tensor) {
    let dim = *h.shape.last().unwrap();
    let n = pos.numel();
    assert_eq!(pos.dtype, DType::U32, "{entry} positions");
    assert_eq!(feat.numel(), n * dim, "{entry}: feat {:?} for {n} rows of {dim}", feat.shape);
    if n * dim == 0 {
        return;
    }
    let vec4 = dim.is_multiple_of(4);
    let w = if vec4 { 4 } else { 1 };
    let kernel = enc.gpu.kernel(key(enc.gpu, "embed", entry).flag("VEC4", vec4).konst("WG", WG), SHADER);
    let params = ScatterParams { n: n as u32, h_rows: (h.numel() / dim) as u32, dim: (dim / w) as u32, row0: row0 as u32 };
    let groups = grid(((n * dim / w) as u32).div_ceil(WG));
    enc.dispatch(&kernel, bytemuck::bytes_of(&params), &[pos.binding(), feat.binding(), h.binding()], groups);
}

/// `h[pos[i] - row0] = feat[i]`: the merger's features replace the image/video pad tokens'
/// embeddings. h `[t, d]` holds rows `row0..row0 + t` of the sequence (a prefill chunk), pos
/// `[n]` u32 (distinct rows; those outside h are skipped), feat `[n, d]`.
pub fn scatter_rows(enc: &mut Encoder, h: &Tensor, row0: usize, pos: &Tensor, feat: &Tensor) {
    scatter(enc, "scatter_set", h, row0, pos, feat);
}

/// `h[pos[i] - row0] += feat[i]`: DeepStack features added at the visual positions, as
/// [`scatter_rows`]. Positions must be distinct (two adds to one row would race).
pub fn scatter_add_rows(enc: &mut Encoder, h: &Tensor, row0: usize, pos: &Tensor, feat: &Tensor) {
    scatter(enc, "scatter_add", h, row0, pos, feat);
}

/// [`scatter_rows`] (`add` false) or [`scatter_add_rows`] on the CPU.
pub fn scatter_rows_ref(h: &mut [f32], dim: usize, row0: usize, pos: &[u32], feat: &[f32], add: bool) {
    for (&p, f) in pos.iter().zip(feat.chunks(dim)) {
        let Some(r) = (p as usize).checked_sub(row0) else { continue };
        let Some(row) = h.get_mut(r * dim..(r + 1) * dim) else { continue };
        for (x, v) in row.iter_mut().zip(f) {
            *x = if add { *x + v } else { *v };
        }
    }
}

/// Table row taps `[floor, floor + 1]` (clamped to the table) and their weights for patch `i`
/// of an axis of `n` patches sampling a `side`-long table, as transformers 5.x's
/// `_interpolation_axis_taps_weights` (bilinear, align_corners) computes them in f32:
/// `src = i·(side−1) / max(n−1, 1)`, `d = src − floor(src)`, weights `1 − |d − k|` for k = 0, 1.
fn axis_taps(i: usize, n: usize, side: usize) -> ([u32; 2], [f32; 2]) {
    let src = (i * (side - 1)) as f32 / (n.max(2) - 1) as f32;
    let floor = src.floor();
    let d = src - floor;
    let taps = [0, 1].map(|k| (floor as u32 + k).min(side as u32 - 1));
    (taps, [0.0, 1.0].map(|k: f32| (1.0 - (d - k).abs()).max(0.0)))
}

/// The four table rows and bilinear weights of every ViT patch, resampling the learned
/// `side × side` position table (48 × 48) to each grid `(t, h, w)` as transformers 5.x's
/// `Qwen3VLVisionModel` does (`get_vision_interpolation_indices_and_weights`, bilinear,
/// align_corners; bit-identical to 5.23's output, which also sums the four products in
/// [`gather4`]'s order and keeps the weights in f32 whatever the table's dtype): taps
/// `(h0, w0), (h0, w1), (h1, w0), (h1, w1)` at `row·side + col`, weights the f32 products of the
/// per-axis weights. Patches in [`block_major`] order, each frame of a grid repeating. Returns
/// `(idx, weights)`, each `[n, 4]` flattened, for [`gather4`].
pub fn pos_interp(grids: &[[usize; 3]], merge: usize, side: usize) -> (Vec<u32>, Vec<f32>) {
    let (mut idx, mut weights) = (Vec::new(), Vec::new());
    for &[t, h, w] in grids {
        let rows: Vec<_> = (0..h).map(|i| axis_taps(i, h, side)).collect();
        let cols: Vec<_> = (0..w).map(|i| axis_taps(i, w, side)).collect();
        let coords = block_major(h, w, merge);
        for _ in 0..t {
            for &(r, c) in &coords {
                let ((ht, hw), (wt, ww)) = (rows[r], cols[c]);
                for a in 0..2 {
                    for b in 0..2 {
                        idx.push(ht[a] * side as u32 + wt[b]);
                        weights.push(hw[a] * ww[b]);
                    }
                }
            }
        }
    }
    (idx, weights)
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Gather4Params {
    n: u32,
    dim: u32,
    table_rows: u32,
    _pad: u32,
}

/// `out[i] = Σ_j weights[i, j] · table[idx[i, j]]`, j = 0..3 in order: table `[rows, dim]` f32
/// or packed f16, idx `[n, 4]` u32, weights `[n, 4]` f32, out `[n, dim]` f32.
pub fn gather4(enc: &mut Encoder, table: &Tensor, idx: &Tensor, weights: &Tensor, out: &Tensor) {
    let dim = *table.shape.last().unwrap();
    let n = idx.numel() / 4;
    assert_eq!(idx.dtype, DType::U32, "gather4 idx");
    assert!(idx.numel() == 4 * n && weights.numel() == 4 * n, "gather4: idx {:?}, weights {:?}", idx.shape, weights.shape);
    assert_eq!(out.numel(), n * dim, "gather4: out {:?} for {n} rows of {dim}", out.shape);
    let entry = match table.dtype {
        DType::F32 => "gather4_f32",
        DType::F16 => "gather4_f16",
        DType::U32 => panic!("gather4: a u32 table"),
    };
    if n * dim == 0 {
        return;
    }
    let kernel = enc.gpu.kernel(key(enc.gpu, "embed", entry).konst("WG", WG), SHADER);
    let params = Gather4Params { n: n as u32, dim: dim as u32, table_rows: (table.numel() / dim) as u32, _pad: 0 };
    let groups = grid(((n * dim) as u32).div_ceil(WG));
    let bindings = [idx.binding(), weights.binding(), out.binding(), table.binding()];
    enc.dispatch(&kernel, bytemuck::bytes_of(&params), &bindings, groups);
}

/// [`gather4`] on the CPU, summing in the same order in f32.
pub fn gather4_ref(table: &[f32], dim: usize, idx: &[u32], weights: &[f32]) -> Vec<f32> {
    let mut out = Vec::with_capacity(idx.len() / 4 * dim);
    for (k, w) in idx.chunks(4).zip(weights.chunks(4)) {
        let row = |j: usize| &table[k[j] as usize * dim..][..dim];
        out.extend((0..dim).map(|c| ((row(0)[c] * w[0] + row(1)[c] * w[1]) + row(2)[c] * w[2]) + row(3)[c] * w[3]));
    }
    out
}
