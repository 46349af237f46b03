//! The step buffer: the values that change from one decode step to the next (cache position,
//! attention splits, sampling settings and draw, rotary rows), in one small buffer the kernels
//! read (`shaders/common/step.wgsl`, bound as `now`). A recorded step then replays unchanged
//! and the host writes only these bytes per token; one-shot callers upload a buffer per call.

use bytemuck::{Pod, Zeroable};

use super::sample::SampleParams;
use crate::gpu::{DType, Gpu, GpuError, Tensor};

/// The shader's `Step` without its rotary table.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
struct Header {
    past: u32,
    splits: u32,
    split_len: u32,
    _p0: u32,
    attn_groups: [u32; 3],
    hist_len: u32,
    presence_from: u32,
    temperature: f32,
    top_k: u32,
    top_p: f32,
    repetition_penalty: f32,
    presence_penalty: f32,
    u: f32,
    rows: u32,
}

const HEADER_WORDS: usize = std::mem::size_of::<Header>() / 4;

/// Byte offset of the attention's indirect dispatch arguments.
pub const ATTENTION_ARGS: u64 = 16;

/// How decode attention divides the keys this step (from `attention::decode_split`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecodeSplit {
    pub splits: u32,
    pub split_len: u32,
    /// Workgroups: splits × row blocks × kv heads.
    pub groups: [u32; 3],
}

/// The values of one step, built up by the parts that use them.
#[derive(Clone, Debug)]
pub struct StepValues {
    header: Header,
    /// cos rows then sin rows.
    rot: Vec<f32>,
}

impl StepValues {
    /// A step whose first token goes to cache row `past`.
    pub fn new(past: usize) -> Self {
        StepValues { header: Header { past: past as u32, ..Header::default() }, rot: Vec::new() }
    }

    /// The rotary rows (`[rows, half]` each) of the step's tokens.
    pub fn rotary(mut self, cos: &[f32], sin: &[f32], rows: usize) -> Self {
        assert!(cos.len() == sin.len() && cos.len().is_multiple_of(rows.max(1)), "rotary rows");
        self.header.rows = rows as u32;
        self.rot = cos.iter().chain(sin).copied().collect();
        self
    }

    pub fn attention(mut self, split: DecodeSplit) -> Self {
        self.header.splits = split.splits;
        self.header.split_len = split.split_len;
        self.header.attn_groups = split.groups;
        self
    }

    /// Sampling with `params` (its `u` included) over `history[..hist_len]`; the chosen token
    /// is written at `history[hist_len]`.
    pub fn sampling(mut self, params: &SampleParams, hist_len: usize, presence_from: usize) -> Self {
        let SampleParams { temperature, top_k, top_p, repetition_penalty, presence_penalty, u } = *params;
        assert!(temperature > 0.0 && top_p > 0.0 && top_p <= 1.0 && repetition_penalty > 0.0, "{params:?}");
        assert!((0.0..1.0).contains(&u), "u = {u} must be in [0, 1)");
        let h = &mut self.header;
        (h.hist_len, h.presence_from) = (hist_len as u32, presence_from.min(hist_len) as u32);
        (h.temperature, h.top_k, h.top_p, h.u) = (temperature, top_k, top_p, u);
        (h.repetition_penalty, h.presence_penalty) = (repetition_penalty, presence_penalty);
        self
    }

    /// The buffer's bytes.
    pub fn bytes(&self) -> Vec<u8> {
        let mut b = bytemuck::bytes_of(&self.header).to_vec();
        b.extend_from_slice(bytemuck::cast_slice(&self.rot));
        b
    }

    /// A buffer of these values, for one-shot use.
    pub fn upload(&self, gpu: &Gpu) -> Result<Tensor, GpuError> {
        let t = step_buffer(gpu, self.rot.len())?;
        gpu.write_buffer(&t.buffer, 0, &self.bytes());
        Ok(t)
    }
}

/// A step buffer with room for `rot` rotary values (cos and sin of every row; at least one,
/// as the shader's runtime-sized table requires).
pub fn step_buffer(gpu: &Gpu, rot: usize) -> Result<Tensor, GpuError> {
    gpu.empty_indirect(DType::U32, &[HEADER_WORDS + rot.max(1)])
}
