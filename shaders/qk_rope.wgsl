// The attention's inputs from the fused q/k/v projection, one workgroup per (token, head):
// Qwen3's per-head RMSNorm of q and k (q_norm, k_norm) and rotate-half RoPE (common/head_rope),
// q written out for attention, and k with the head's v appended to the KV cache at row
// past + token. (Decode attention does the same work itself: attention.wgsl.)
//   qkv     [t, q_heads + 2·kv_heads, D] f32 (q heads, k heads, v heads)
//   qk_norm [2, D] f32: q_norm's weight, then k_norm's
//   q       [t, q_heads, D] f32
//   K, V    [kv_heads, capacity, D] packed f16, or f32 with KV_F32

#include "common/reduce.wgsl"
#include "common/step.wgsl"
#include "common/head_rope.wgsl"

struct Params {
    t: u32,
    q_heads: u32,
    kv_heads: u32,
    capacity: u32,
    eps: f32,
    _p0: u32,
    _p1: u32,
    _p2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> qkv: array<f32>;
@group(0) @binding(2) var<storage, read> qk_norm: array<f32>;
@group(0) @binding(3) var<storage, read> now: Step;
@group(0) @binding(4) var<storage, read_write> q_out: array<f32>;
#if KV_F32
@group(0) @binding(5) var<storage, read_write> k_cache: array<vec2<f32>>;
@group(0) @binding(6) var<storage, read_write> v_cache: array<vec2<f32>>;

fn kv_word(v: vec2<f32>) -> vec2<f32> {
    return v;
}
#else
@group(0) @binding(5) var<storage, read_write> k_cache: array<u32>;
@group(0) @binding(6) var<storage, read_write> v_cache: array<u32>;

fn kv_word(v: vec2<f32>) -> u32 {
    return pack2x16float(v);
}
#endif

@compute @workgroup_size(WG)
fn qk_norm_rope_append(lane: Lane, @builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let head = wg.x;
    let i = wg.z * nwg.y + wg.y;
    if (i >= p.t) {
        return; // the whole workgroup: uniform
    }
    let heads = p.q_heads + 2u * p.kv_heads;
    let is_q = head < p.q_heads;
    norm_rope_head((i * heads + head) * D, select(1u, 0u, is_q), i, p.eps, lane);
    if (is_q) {
        let at = (i * p.q_heads + head) * D;
        for (var j = lane.idx; j < D; j += WG) {
            q_out[at + j] = rotated[j];
        }
        return; // uniform: the head is the workgroup's
    }
    let h = head - p.q_heads;
    let row = (h * p.capacity + now.past + i) * HALF;
    let v = (i * heads + p.q_heads + p.kv_heads + h) * D;
    for (var m = lane.idx; m < HALF; m += WG) {
        k_cache[row + m] = kv_word(vec2<f32>(rotated[2u * m], rotated[2u * m + 1u]));
        v_cache[row + m] = kv_word(vec2<f32>(qkv[v + 2u * m], qkv[v + 2u * m + 1u]));
    }
}
