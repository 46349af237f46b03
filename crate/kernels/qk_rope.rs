//! The attention's inputs from the fused q/k/v projection in one kernel: Qwen3's per-head
//! RMSNorm of q and k, rotate-half RoPE with the step buffer's cos/sin rows (the text model's
//! interleaved MRoPE, tables from `rope::mrope_table`), q written out, k and v appended to the
//! KV cache. It replaces two norms, two rotations and the append: one dispatch per layer of a
//! prefill (decode attention does the same work itself: `attention::decode_attention`).

use bytemuck::{Pod, Zeroable};

use super::attention::{qkv_heads, KvCache};
use super::norm::rms_norm_ref;
use super::rope::apply_rope_ref;
use super::key;
use crate::gpu::{DType, Encoder, Tensor, MAX_GROUPS_PER_DIM};

const SHADER: &str = include_str!("../../shaders/qk_rope.wgsl");

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    t: u32,
    q_heads: u32,
    kv_heads: u32,
    capacity: u32,
    eps: f32,
    _pad: [u32; 3],
}

/// For `qkv` `[t, (q_heads + 2·kv_heads)·head_dim]` (q, k, v heads side by side): q heads
/// normed by q_norm, k heads by k_norm (`qk_norm`: their weights, `[2, head_dim]`, and eps), both rotated with
/// the rotary rows of the step buffer `now` (one per token; `step::StepValues::rotary`), q
/// into `q` (`[t, q_heads, head_dim]`), k and the unchanged v into `cache` rows `now.past..+t`,
/// which must lie within its capacity.
pub fn qk_norm_rope_append(enc: &mut Encoder, qkv: &Tensor, qk_norm: (&Tensor, f32), now: &Tensor, cache: &KvCache, q: &Tensor) {
    let (kvh, d) = (cache.kv_heads, cache.head_dim);
    let (t, q_heads) = qkv_heads(qkv, cache);
    assert_eq!(q.numel(), t * q_heads * d, "q out {:?}", q.shape);
    let (weights, eps) = qk_norm;
    assert_eq!(weights.numel(), 2 * d, "q_norm and k_norm weights of {d}");
    if t == 0 {
        return;
    }
    let wg = if d <= 128 { 64 } else { 256 };
    let k = key(enc.gpu, "qk_rope", "qk_norm_rope_append").flag("KV_F32", cache.k.dtype == DType::F32).konst("D", d as u32).konst("WG", wg);
    let kernel = enc.gpu.kernel(k, SHADER);
    let params = Params { t: t as u32, q_heads: q_heads as u32, kv_heads: kvh as u32, capacity: cache.capacity as u32, eps, _pad: [0; 3] };
    let bindings = [qkv.binding(), weights.binding(), now.binding(), q.binding(), cache.k.binding(), cache.v.binding()];
    let y = (t as u32).min(MAX_GROUPS_PER_DIM);
    enc.dispatch(&kernel, bytemuck::bytes_of(&params), &bindings, [(q_heads + kvh) as u32, y, (t as u32).div_ceil(y)]);
}

/// [`qk_norm_rope_append`] on the CPU: rms_norm then rope, as transformers orders them.
/// Returns q `[t, q_heads, d]` and the k, v `[t, kv_heads, d]` it appends.
#[allow(clippy::too_many_arguments)]
pub fn qk_norm_rope_append_ref(qkv: &[f32], q_heads: usize, kv_heads: usize, d: usize, q_norm: &[f32], k_norm: &[f32], eps: f32, cos: &[f32], sin: &[f32]) -> [Vec<f32>; 3] {
    let heads = q_heads + 2 * kv_heads;
    let part = |from: usize, n: usize| -> Vec<f32> { qkv.chunks(heads * d).flat_map(|row| row[from * d..(from + n) * d].to_vec()).collect() };
    let mut q = rms_norm_ref(&part(0, q_heads), q_norm, eps);
    let mut k = rms_norm_ref(&part(q_heads, kv_heads), k_norm, eps);
    apply_rope_ref(&mut q, cos, sin, d / 2, q_heads, 0);
    apply_rope_ref(&mut k, cos, sin, d / 2, kv_heads, 0);
    [q, k, part(q_heads + kv_heads, kv_heads)]
}
