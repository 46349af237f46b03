// Qwen3's per-head RMSNorm (q_norm or k_norm) and rotate-half RoPE with the step buffer's
// cos/sin rows (interleaved MRoPE, built on the CPU), of one head of the fused q|k|v
// projection, by the WG invocations of a 1-D workgroup. The includer binds `qkv`
// (array<f32>), `qk_norm` (q_norm's weight then k_norm's, [2, D]) and `now` (a Step), and
// includes common/reduce.wgsl. The norm and the rotation are rms_norm's and rope's
// expressions in the same order, so this equals those kernels run one after the other.

const HALF: u32 = D / 2u;

var<workgroup> rotated: array<f32, D>;

// The head at qkv[base..base + D] of the step's token `i`, normed with weight `norm` (0: q_norm,
// 1: k_norm), into `rotated`, which every invocation may read once this returns (until its next
// call). Every invocation must reach it: it has barriers.
fn norm_rope_head(base: u32, norm: u32, i: u32, eps: f32, lane: Lane) {
    var ss = 0.0;
    for (var j = lane.idx; j < D; j += WG) {
        let v = qkv[base + j];
        ss += v * v;
    }
    // wg_sum's barriers also keep this call's writes after everyone's reads of the last one.
    let inv = inverseSqrt(wg_sum(ss, lane) / f32(D) + eps);
    let w = norm * D;
    for (var j = lane.idx; j < HALF; j += WG) {
        let a = qkv[base + j] * inv * qk_norm[w + j];
        let b = qkv[base + j + HALF] * inv * qk_norm[w + j + HALF];
        let c = now.rot[i * HALF + j];
        let s = now.rot[(now.rows + i) * HALF + j];
        rotated[j] = a * c - b * s;
        rotated[j + HALF] = b * c + a * s;
    }
    workgroupBarrier();
}
