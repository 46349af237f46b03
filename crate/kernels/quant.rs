//! Weight matrices on the GPU: `[n, k]` row-major (one row per output feature, as a torch
//! Linear stores it) in f32, packed f16, or int4 groups of 32 along k, split by rows into parts
//! that each fit one storage binding (the tied 151936-row embedding/head needs two even at int4).
//!
//! int4 layout (no shader-f16 needed), per row, with `groups = ceil(k / 32)`:
//! - `data`: `groups × 4` words; word `4g + w` holds elements `32g + 8w + j` (j = 0..8) in bits
//!   `4j..4j+4` as unsigned `q`, dequantised as `(q − 8) · d_g`.
//! - `scales`: `ceil(groups / 2)` words of packed f16 `d_g` (group `2i` in the low half).
//!
//! `d = m / −8` where `m` is the group's value of largest magnitude (ggml's Q4_0 choice: the
//! extreme lands exactly on −8, using all 16 levels); elements past `k` are stored as q = 8 (0).

use std::ops::Range;

use crate::gpu::{row_chunks, DType, Gpu, GpuError, Tensor, UPLOAD_CHUNK};

pub const GROUP: usize = 32;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Format {
    F32,
    F16,
    Q4,
}

impl Format {
    /// Words per stored row of `k` values in `data`.
    pub fn row_words(self, k: usize) -> usize {
        match self {
            Format::F32 => k,
            Format::F16 => k.div_ceil(2),
            Format::Q4 => k.div_ceil(GROUP) * 4,
        }
    }
    /// Words per stored row in `scales` (int4 only).
    pub fn scale_words(self, k: usize) -> usize {
        match self {
            Format::Q4 => k.div_ceil(GROUP).div_ceil(2),
            _ => 0,
        }
    }
}

/// Rows `rows` of the matrix, in their own buffers.
pub struct Part {
    pub rows: Range<usize>,
    pub data: Tensor,
    /// int4 scales; `None` for f32/f16.
    pub scales: Option<Tensor>,
}

pub struct Matrix {
    pub n: usize,
    pub k: usize,
    pub format: Format,
    pub parts: Vec<Part>,
}

impl Matrix {
    /// Encodes `w` (`[n, k]` row-major f32) in `format` and uploads it in binding-sized parts.
    /// `max_part_bytes` lowers the split size below the adapter's limit (tests use it).
    pub fn upload(gpu: &Gpu, w: &[f32], n: usize, k: usize, format: Format, max_part_bytes: Option<u64>) -> Result<Matrix, GpuError> {
        assert_eq!(w.len(), n * k, "matrix data for [{n}, {k}]");
        Self::upload_rows(gpu, n, k, format, max_part_bytes, |rows| Ok(w[rows.start * k..rows.end * k].to_vec()))
    }

    /// Like [`Matrix::upload`], but asks `fetch` for the f32 rows of one part at a time, so a
    /// large matrix never exists whole as f32 in memory.
    pub fn upload_rows<E: From<GpuError>>(
        gpu: &Gpu,
        n: usize,
        k: usize,
        format: Format,
        max_part_bytes: Option<u64>,
        mut fetch: impl FnMut(Range<usize>) -> Result<Vec<f32>, E>,
    ) -> Result<Matrix, E> {
        Self::upload_encoded(gpu, n, k, format, max_part_bytes, |rows| {
            let w = fetch(rows.clone())?;
            assert_eq!(w.len(), rows.len() * k, "rows {rows:?} of a [{n}, {k}] matrix");
            Ok(encode(&w, k, format))
        })
    }

    /// Like [`Matrix::upload_rows`] for rows already in `format` (a pre-quantized model folder):
    /// `fetch` gives one part's `data` and `scales` words as [`encode`] lays them out.
    pub fn upload_encoded<E: From<GpuError>>(
        gpu: &Gpu,
        n: usize,
        k: usize,
        format: Format,
        max_part_bytes: Option<u64>,
        fetch: impl FnMut(Range<usize>) -> Result<(Vec<u32>, Vec<u32>), E>,
    ) -> Result<Matrix, E> {
        Self::upload_parts(gpu, n, k, format, max_part_bytes, 1, fetch)
    }

    /// Two `[n, k]` matrices `a` and `b` as one `[2n, k]` matrix of interleaved rows
    /// (a₀, b₀, a₁, b₁, …; parts split between pairs), so that one GEMV workgroup meets both
    /// outputs of a pair: gate_proj and up_proj for `MatmulOpts::silu_mul`. `fetch` gives rows
    /// `rows` of `a` and of `b` encoded (as [`Matrix::upload_encoded`]'s does); stored formats
    /// are unchanged, the interleaving happens here.
    pub fn upload_encoded_pairs<E: From<GpuError>>(
        gpu: &Gpu,
        n: usize,
        k: usize,
        format: Format,
        max_part_bytes: Option<u64>,
        mut fetch: impl FnMut(Range<usize>) -> Result<[(Vec<u32>, Vec<u32>); 2], E>,
    ) -> Result<Matrix, E> {
        let (row_words, scale_words) = (format.row_words(k), format.scale_words(k));
        Self::upload_parts(gpu, 2 * n, k, format, max_part_bytes, 2, |rows| {
            let [(ad, asc), (bd, bsc)] = fetch(rows.start / 2..rows.end / 2)?;
            Ok((interleave_rows(&ad, &bd, row_words), interleave_rows(&asc, &bsc, scale_words)))
        })
    }

    /// [`Matrix::upload_encoded_pairs`] from f32 rows (tests and benchmarks).
    pub fn upload_pairs(gpu: &Gpu, a: &[f32], b: &[f32], n: usize, k: usize, format: Format, max_part_bytes: Option<u64>) -> Result<Matrix, GpuError> {
        assert!(a.len() == n * k && b.len() == n * k, "pair data for [{n}, {k}]");
        Self::upload_encoded_pairs(gpu, n, k, format, max_part_bytes, |r| {
            Ok([encode(&a[r.start * k..r.end * k], k, format), encode(&b[r.start * k..r.end * k], k, format)])
        })
    }

    /// Parts of whole multiples of `align` rows (and at most one binding each).
    fn upload_parts<E: From<GpuError>>(
        gpu: &Gpu,
        n: usize,
        k: usize,
        format: Format,
        max_part_bytes: Option<u64>,
        align: usize,
        mut fetch: impl FnMut(Range<usize>) -> Result<(Vec<u32>, Vec<u32>), E>,
    ) -> Result<Matrix, E> {
        let limit = max_part_bytes.unwrap_or(u64::MAX).min(gpu.caps.max_binding());
        let (row_words, scale_words) = (format.row_words(k), format.scale_words(k));
        // Each part is filled in blocks of about UPLOAD_CHUNK bytes of rows (whole multiples of
        // `align`), so no part-sized copy of the weights is ever held in memory.
        let block = (UPLOAD_CHUNK / (4 * row_words).max(1) / align).max(1) * align;
        let mut parts = Vec::new();
        let blocks = row_chunks(n.div_ceil(align), (align * 4 * row_words) as u64, limit)?;
        for rows in blocks.into_iter().map(|b| b.start * align..(b.end * align).min(n)) {
            let data = gpu.empty(DType::U32, &[rows.len(), row_words])?;
            let scales = match format {
                Format::Q4 => Some(gpu.empty(DType::U32, &[rows.len(), scale_words])?),
                _ => None,
            };
            for r in (rows.start..rows.end).step_by(block) {
                let sub = r..(r + block).min(rows.end);
                let (d, s) = fetch(sub.clone())?;
                assert_eq!((d.len(), s.len()), (sub.len() * row_words, sub.len() * scale_words), "rows {sub:?} of a [{n}, {k}] {format:?} matrix");
                let at = (sub.start - rows.start) as u64 * 4;
                gpu.write_bytes(&data, at * row_words as u64, bytemuck::cast_slice(&d));
                if let Some(scales) = &scales {
                    gpu.write_bytes(scales, at * scale_words as u64, bytemuck::cast_slice(&s));
                }
            }
            parts.push(Part { rows, data, scales });
        }
        Ok(Matrix { n, k, format, parts })
    }

    /// Bytes on the GPU (weights and scales), for bandwidth figures.
    pub fn bytes(&self) -> u64 {
        self.parts.iter().map(|p| p.data.bytes() + p.scales.as_ref().map_or(0, Tensor::bytes)).sum()
    }
}

/// Rows of `row_len` values from `a` and `b` in turn: a₀, b₀, a₁, b₁, … (as many rows each).
pub fn interleave_rows<T: Copy>(a: &[T], b: &[T], row_len: usize) -> Vec<T> {
    assert_eq!(a.len(), b.len(), "interleaved halves");
    if row_len == 0 {
        return Vec::new();
    }
    a.chunks(row_len).zip(b.chunks(row_len)).flat_map(|(ra, rb)| ra.iter().chain(rb)).copied().collect()
}

/// Encodes rows of `k` values: the `data` words and (int4) the `scales` words.
pub fn encode(w: &[f32], k: usize, format: Format) -> (Vec<u32>, Vec<u32>) {
    match format {
        Format::F32 => (bytemuck::cast_slice(w).to_vec(), Vec::new()),
        Format::F16 => {
            let mut out = Vec::with_capacity(w.len() / k.max(1) * format.row_words(k));
            for row in w.chunks(k) {
                for pair in row.chunks(2) {
                    let lo = half::f16::from_f32(pair[0]).to_bits() as u32;
                    let hi = pair.get(1).map_or(0, |&v| half::f16::from_f32(v).to_bits() as u32);
                    out.push(lo | hi << 16);
                }
            }
            (out, Vec::new())
        }
        Format::Q4 => quantize_q4(w, k),
    }
}

fn quantize_q4(w: &[f32], k: usize) -> (Vec<u32>, Vec<u32>) {
    let groups = k.div_ceil(GROUP);
    let rows = w.len() / k.max(1);
    let mut data = Vec::with_capacity(rows * groups * 4);
    let mut scales = Vec::with_capacity(rows * Format::Q4.scale_words(k));
    for row in w.chunks(k) {
        let mut row_scales = Vec::with_capacity(groups + 1);
        for g in row.chunks(GROUP) {
            let m = g.iter().fold(0f32, |m, &v| if v.abs() > m.abs() { v } else { m });
            // Quantise against the scale as stored (f16), so the reference dequantises exactly.
            let d = half::f16::from_f32(m / -8.0);
            let inv = if d.to_f32() != 0.0 { 1.0 / d.to_f32() } else { 0.0 };
            let mut q = [8u32; GROUP];
            for (qi, &v) in q.iter_mut().zip(g) {
                *qi = ((v * inv).round() + 8.0).clamp(0.0, 15.0) as u32;
            }
            for word in q.chunks(8) {
                data.push(word.iter().enumerate().fold(0u32, |acc, (j, &n)| acc | n << (4 * j)));
            }
            row_scales.push(d.to_bits() as u32);
        }
        row_scales.resize(groups.next_multiple_of(2), 0);
        scales.extend(row_scales.chunks(2).map(|p| p[0] | p[1] << 16));
    }
    (data, scales)
}

/// The values the GPU computes with: `w` after encoding in `format` and decoding again.
pub fn dequantized(w: &[f32], k: usize, format: Format) -> Vec<f32> {
    let (data, scales) = encode(w, k, format);
    let (rw, sw) = (format.row_words(k), format.scale_words(k));
    let rows = w.len() / k.max(1);
    let mut out = Vec::with_capacity(w.len());
    for r in 0..rows {
        let d = &data[r * rw..(r + 1) * rw];
        for i in 0..k {
            out.push(match format {
                Format::F32 => f32::from_bits(d[i]),
                Format::F16 => half::f16::from_bits((d[i / 2] >> (16 * (i % 2))) as u16).to_f32(),
                Format::Q4 => {
                    let q = (d[i / 8] >> (4 * (i % 8))) & 15;
                    let g = i / GROUP;
                    let s = half::f16::from_bits((scales[r * sw + g / 2] >> (16 * (g % 2))) as u16);
                    (q as f32 - 8.0) * s.to_f32()
                }
            });
        }
    }
    out
}
