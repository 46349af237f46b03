//! `[rows, cols]` tensors too large for one binding, stored as consecutive row ranges in
//! several buffers (the vision tower's residual stream and qkv of a large image, its merged
//! output, the hidden states of a long prompt). Kernels run per part; weight matrices split
//! the same way in `kernels::quant::Matrix`.

use std::ops::Range;

use super::{Encoder, Gpu, GpuError, Tensor};

pub struct RowSplit {
    pub rows: usize,
    pub cols: usize,
    /// In row order, each covering its `rows` with a `[rows.len(), cols]` tensor.
    pub parts: Vec<RowPart>,
}

pub struct RowPart {
    pub rows: Range<usize>,
    pub tensor: Tensor,
}

/// `0..n` cut into consecutive ranges of `step` (the last one shorter).
pub fn spans(n: usize, step: usize) -> impl Iterator<Item = Range<usize>> {
    let step = step.max(1);
    (0..n).step_by(step).map(move |r0| r0..(r0 + step).min(n))
}

impl RowSplit {
    /// The tensors, in row order, as one `[Σ rows, cols]` tensor.
    pub fn from_parts(cols: usize, tensors: Vec<Tensor>) -> RowSplit {
        let mut rows = 0;
        let parts = tensors
            .into_iter()
            .map(|tensor| {
                let n = tensor.numel() / cols.max(1);
                assert_eq!(n * cols, tensor.numel(), "a part of {:?} in rows of {cols}", tensor.shape);
                rows += n;
                RowPart { rows: rows - n..rows, tensor }
            })
            .collect();
        RowSplit { rows, cols, parts }
    }

    /// Parts of `part_rows` rows (the last one shorter), each made by `make` for its rows.
    pub fn build<E>(rows: usize, cols: usize, part_rows: usize, make: impl FnMut(Range<usize>) -> Result<Tensor, E>) -> Result<RowSplit, E> {
        Ok(Self::from_parts(cols, spans(rows, part_rows).map(make).collect::<Result<_, E>>()?))
    }

    /// The parts holding some of `rows`, with their indices.
    pub fn overlapping(&self, rows: Range<usize>) -> impl Iterator<Item = (usize, &RowPart)> {
        self.parts.iter().enumerate().filter(move |(_, p)| p.rows.start < rows.end && rows.start < p.rows.end)
    }

    /// Rows `rows` as one tensor: a view when they start a part and lie within it, else a new
    /// tensor the rows are copied into (bindings take whole buffers).
    pub fn rows(&self, enc: &mut Encoder, rows: Range<usize>) -> Result<Tensor, GpuError> {
        assert!(rows.start < rows.end && rows.end <= self.rows, "rows {rows:?} of {} rows", self.rows);
        let (n, cols) = (rows.len(), self.cols);
        if let Some((_, p)) = self.overlapping(rows.clone()).find(|(_, p)| p.rows.start == rows.start && rows.end <= p.rows.end) {
            return Ok(p.tensor.view(&[n, cols]));
        }
        let dtype = self.parts[0].tensor.dtype;
        let out = enc.gpu.empty(dtype, &[n, cols])?;
        let row_bytes = dtype.bytes(cols);
        assert_eq!(row_bytes, dtype.bytes(2 * cols) / 2, "copies of {dtype:?} rows of {cols} must be whole words");
        for (_, p) in self.overlapping(rows.clone()) {
            let (a, b) = (rows.start.max(p.rows.start), rows.end.min(p.rows.end));
            enc.copy(&p.tensor.buffer, (a - p.rows.start) as u64 * row_bytes, &out.buffer, (a - rows.start) as u64 * row_bytes, (b - a) as u64 * row_bytes);
        }
        Ok(out)
    }

    /// All rows, read back as f32 (after the work writing them was submitted).
    pub async fn read_f32(&self, gpu: &Gpu) -> Result<Vec<f32>, GpuError> {
        let mut out = Vec::with_capacity(self.rows * self.cols);
        for p in &self.parts {
            out.extend(gpu.read_f32(&p.tensor.view(&[p.rows.len(), self.cols])).await?);
        }
        Ok(out)
    }

    #[cfg(not(target_arch = "wasm32"))]
    pub fn read_f32_blocking(&self, gpu: &Gpu) -> Result<Vec<f32>, GpuError> {
        pollster::block_on(self.read_f32(gpu))
    }
}
