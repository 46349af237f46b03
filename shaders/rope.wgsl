// Rotary position embedding, rotate-half (NeoX) pairing, in place:
//   x[j]'        = x[j]·cos[j] − x[j+half]·sin[j]
//   x[j+half]'   = x[j+half]·cos[j] + x[j]·sin[j]        (j < half = head_dim / 2)
// One invocation per (row, head, j). Rows are `row_stride` apart and the rotated heads sit
// contiguously from `offset` within a row, so q and k of a packed qkv row rotate in place.
// The cos/sin tables (`[rows, half]`) come from the CPU: GPU sin/cos are too inexact at the
// large angles that long positions give.

struct Params {
    rows: u32,
    heads: u32,
    half: u32,
    row_stride: u32,
    offset: u32,
    _p0: u32,
    _p1: u32,
    _p2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;
@group(0) @binding(2) var<storage, read> cos_t: array<f32>;
@group(0) @binding(3) var<storage, read> sin_t: array<f32>;

@compute @workgroup_size(WG)
fn rope(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = (wg.y * nwg.x + wg.x) * WG + lid;
    if (i >= p.rows * p.heads * p.half) {
        return;
    }
    let j = i % p.half;
    let rh = i / p.half;
    let row = rh / p.heads;
    let head = rh % p.heads;
    let at = row * p.row_stride + p.offset + head * 2u * p.half + j;
    let c = cos_t[row * p.half + j];
    let s = sin_t[row * p.half + j];
    let a = x[at];
    let b = x[at + p.half];
    x[at] = a * c - b * s;
    x[at + p.half] = b * c + a * s;
}
