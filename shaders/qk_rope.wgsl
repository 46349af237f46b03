// The attention's inputs from the fused q/k/v projection, one workgroup per (token, head):
// Qwen3's per-head RMSNorm of q and k (q_norm, k_norm), rotate-half RoPE with the step
// buffer's cos/sin rows (interleaved MRoPE, built on the CPU), q written out for attention,
// and k with the head's v appended to the KV cache at row past + token.
//   qkv  [t, q_heads + 2·kv_heads, D] f32 (q heads, k heads, v heads)
//   q    [t, q_heads, D] f32
//   K, V [kv_heads, capacity, D] packed f16, or f32 with KV_F32
// The norm and the rotation are rms_norm's and rope's expressions in the same order, with the
// same workgroup size, so this equals those kernels run one after the other.

#include "common/reduce.wgsl"
#include "common/step.wgsl"

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
@group(0) @binding(2) var<storage, read> q_weight: array<f32>;
@group(0) @binding(3) var<storage, read> k_weight: array<f32>;
@group(0) @binding(4) var<storage, read> now: Step;
@group(0) @binding(5) var<storage, read_write> q_out: array<f32>;
#if KV_F32
@group(0) @binding(6) var<storage, read_write> k_cache: array<vec2<f32>>;
@group(0) @binding(7) var<storage, read_write> v_cache: array<vec2<f32>>;

fn kv_word(v: vec2<f32>) -> vec2<f32> {
    return v;
}
#else
@group(0) @binding(6) var<storage, read_write> k_cache: array<u32>;
@group(0) @binding(7) var<storage, read_write> v_cache: array<u32>;

fn kv_word(v: vec2<f32>) -> u32 {
    return pack2x16float(v);
}
#endif

const HALF: u32 = D / 2u;

// A k head after rotation: the cache stores neighbouring pairs, the rotation pairs j, j + HALF.
var<workgroup> rotated: array<f32, D>;

@compute @workgroup_size(WG)
fn qk_norm_rope_append(lane: Lane, @builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let head = wg.x;
    let i = wg.z * nwg.y + wg.y;
    if (i >= p.t) {
        return; // the whole workgroup: uniform
    }
    let heads = p.q_heads + 2u * p.kv_heads;
    let is_q = head < p.q_heads;
    let base = (i * heads + head) * D;
    var ss = 0.0;
    for (var j = lane.idx; j < D; j += WG) {
        let v = qkv[base + j];
        ss += v * v;
    }
    let inv = inverseSqrt(wg_sum(ss, lane) / f32(D) + p.eps);
    for (var j = lane.idx; j < HALF; j += WG) {
        var wa = k_weight[j];
        var wb = k_weight[j + HALF];
        if (is_q) {
            wa = q_weight[j];
            wb = q_weight[j + HALF];
        }
        let a = qkv[base + j] * inv * wa;
        let b = qkv[base + j + HALF] * inv * wb;
        let c = now.rot[i * HALF + j];
        let s = now.rot[(now.rows + i) * HALF + j];
        let ra = a * c - b * s;
        let rb = b * c + a * s;
        if (is_q) {
            let at = (i * p.q_heads + head) * D + j;
            q_out[at] = ra;
            q_out[at + HALF] = rb;
        } else {
            rotated[j] = ra;
            rotated[j + HALF] = rb;
        }
    }
    if (is_q) {
        return; // uniform: the head is the workgroup's
    }
    workgroupBarrier();
    let h = head - p.q_heads;
    let row = (h * p.capacity + now.past + i) * HALF;
    let v = (i * heads + p.q_heads + p.kv_heads + h) * D;
    for (var m = lane.idx; m < HALF; m += WG) {
        k_cache[row + m] = kv_word(vec2<f32>(rotated[2u * m], rotated[2u * m + 1u]));
        v_cache[row + m] = kv_word(vec2<f32>(qkv[v + 2u * m], qkv[v + 2u * m + 1u]));
    }
}
