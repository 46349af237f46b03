// Row norms, one workgroup per row of `dim` values.
//   rms_norm:   y = x * rsqrt(mean(x²) + eps) * weight          (Qwen3 RMSNorm, also q/k norm)
//   layer_norm: y = (x - mean) * rsqrt(var + eps) * weight + bias (two passes: stable variance)

#include "common/reduce.wgsl"

struct Params {
    rows: u32,
    dim: u32,
    eps: f32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> weight: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
@group(0) @binding(4) var<storage, read> bias: array<f32>;

fn row_of(wg: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wg.y * nwg.x + wg.x;
}

@compute @workgroup_size(WG)
fn rms_norm(lane: Lane, @builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let row = row_of(wg, nwg);
    // Rows past the end still join the reductions (barriers need everyone) but write nothing.
    let base = min(row, p.rows - 1u) * p.dim;
    var ss = 0.0;
    for (var i = lane.idx; i < p.dim; i += WG) {
        let v = x[base + i];
        ss += v * v;
    }
    let inv = inverseSqrt(wg_sum(ss, lane) / f32(p.dim) + p.eps);
    if (row < p.rows) {
        for (var i = lane.idx; i < p.dim; i += WG) {
            y[base + i] = x[base + i] * inv * weight[i];
        }
    }
}

@compute @workgroup_size(WG)
fn layer_norm(lane: Lane, @builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let row = row_of(wg, nwg);
    let base = min(row, p.rows - 1u) * p.dim;
    var s = 0.0;
    for (var i = lane.idx; i < p.dim; i += WG) {
        s += x[base + i];
    }
    let mean = wg_sum(s, lane) / f32(p.dim);
    var ss = 0.0;
    for (var i = lane.idx; i < p.dim; i += WG) {
        let d = x[base + i] - mean;
        ss += d * d;
    }
    let inv = inverseSqrt(wg_sum(ss, lane) / f32(p.dim) + p.eps);
    if (row < p.rows) {
        for (var i = lane.idx; i < p.dim; i += WG) {
            y[base + i] = (x[base + i] - mean) * inv * weight[i] + bias[i];
        }
    }
}
