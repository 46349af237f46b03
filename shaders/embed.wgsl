// Row gathers and scatters around the embeddings.
//   embed_{f32,f16,q4}: out[t] = table[ids[t]] for the ids one row part of a weight matrix holds
//       (see crate/kernels/quant.rs for the formats); one invocation per stored word of a row.
//   scatter_set / scatter_add: h[pos[i] - row0] = feat[i] / … += feat[i] (visual features into
//       the token rows row0.. of a prefill chunk); per element, or per vec4 with VEC4.
//   gather4_{f32,f16}: out[i] = Σ_j w[i][j] · table[idx[i][j]] (the ViT's bilinear position
//       embedding), j = 0..3 summed in that order as transformers does.
// Indices from the CPU are never trusted to be in range: a bad one is skipped or clamped.
// Bindings are per entry point, so entries reuse binding numbers for different arrays.

#include "common/pack.wgsl"

#if VEC4
alias V = vec4<f32>;
#else
alias V = f32;
#endif

struct EmbedParams {
    tokens: u32,
    dim: u32,
    // Words per stored row in data and in scales (int4).
    row_words: u32,
    scale_words: u32,
    // This part holds table rows [row0, row0 + rows). The last part (last = 1) also answers
    // for ids past the table, with zeros.
    row0: u32,
    rows: u32,
    last: u32,
    _p0: u32,
}

struct ScatterParams {
    // Rows of feat, and rows of h: h holds positions row0 .. row0 + h_rows (others are skipped).
    n: u32,
    h_rows: u32,
    // Row length in V units.
    dim: u32,
    row0: u32,
}

struct Gather4Params {
    n: u32,
    dim: u32,
    table_rows: u32,
    _p0: u32,
}

@group(0) @binding(0) var<uniform> pe: EmbedParams;
@group(0) @binding(0) var<uniform> ps: ScatterParams;
@group(0) @binding(0) var<uniform> pg: Gather4Params;
@group(0) @binding(1) var<storage, read> ids: array<u32>;
@group(0) @binding(2) var<storage, read> data: array<u32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(4) var<storage, read> scales: array<u32>;

@group(0) @binding(2) var<storage, read> feat: array<V>;
@group(0) @binding(3) var<storage, read_write> h: array<V>;

@group(0) @binding(1) var<storage, read> idx4: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read> w4: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> table_f32: array<f32>;
@group(0) @binding(4) var<storage, read> table_f16: array<u32>;

fn index(lid: u32, wg: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return (wg.y * nwg.x + wg.x) * WG + lid;
}

// The embed invocation's token, word within the row, and the part-local row of its id, or
// `rows` when the id is past the table (write zeros); false when the id is not this part's.
struct Job {
    tok: u32,
    word: u32,
    row: u32,
    mine: bool,
}

fn embed_job(i: u32) -> Job {
    var j = Job(0u, 0u, 0u, false);
    if (i >= pe.tokens * pe.row_words) {
        return j;
    }
    j.tok = i / pe.row_words;
    j.word = i % pe.row_words;
    let id = ids[j.tok];
    j.row = min(id - pe.row0, pe.rows);
    j.mine = id >= pe.row0 && (j.row < pe.rows || pe.last == 1u);
    return j;
}

// Writes `v[e]` to element `first + e` of the token's output row, for e < count within dim.
fn put(j: Job, first: u32, count: u32, v: array<f32, 8>) {
    for (var e = 0u; e < count && first + e < pe.dim; e++) {
        out[j.tok * pe.dim + first + e] = v[e];
    }
}

@compute @workgroup_size(WG)
fn embed_f32(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let j = embed_job(index(lid, wg, nwg));
    if (!j.mine) {
        return;
    }
    var v: array<f32, 8>;
    if (j.row < pe.rows) {
        v[0] = bitcast<f32>(data[j.row * pe.row_words + j.word]);
    }
    put(j, j.word, 1u, v);
}

@compute @workgroup_size(WG)
fn embed_f16(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let j = embed_job(index(lid, wg, nwg));
    if (!j.mine) {
        return;
    }
    var v: array<f32, 8>;
    if (j.row < pe.rows) {
        let pair = unpack2x16float(data[j.row * pe.row_words + j.word]);
        v[0] = pair.x;
        v[1] = pair.y;
    }
    put(j, 2u * j.word, 2u, v);
}

@compute @workgroup_size(WG)
fn embed_q4(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let j = embed_job(index(lid, wg, nwg));
    if (!j.mine) {
        return;
    }
    var v: array<f32, 8>;
    if (j.row < pe.rows) {
        // Word w holds elements 8w..8w+8, all in group w/4.
        let word = data[j.row * pe.row_words + j.word];
        let g = j.word / 4u;
        let d = f16_pick(scales[j.row * pe.scale_words + g / 2u], g);
        let lo = (nibbles_lo(word) - 8.0) * d;
        let hi = (nibbles_hi(word) - 8.0) * d;
        v = array<f32, 8>(lo.x, lo.y, lo.z, lo.w, hi.x, hi.y, hi.z, hi.w);
    }
    put(j, 8u * j.word, 8u, v);
}

// Where element i of feat goes in h, or NONE for a position outside h (skipped).
const NONE: u32 = 0xffffffffu;

fn scatter_target(i: u32) -> u32 {
    let pos = ids[i / ps.dim];
    let at = pos - ps.row0;
    return select(at * ps.dim + i % ps.dim, NONE, pos < ps.row0 || at >= ps.h_rows);
}

@compute @workgroup_size(WG)
fn scatter_set(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(lid, wg, nwg);
    if (i >= ps.n * ps.dim) {
        return;
    }
    let at = scatter_target(i);
    if (at != NONE) {
        h[at] = feat[i];
    }
}

@compute @workgroup_size(WG)
fn scatter_add(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(lid, wg, nwg);
    if (i >= ps.n * ps.dim) {
        return;
    }
    let at = scatter_target(i);
    if (at != NONE) {
        h[at] += feat[i];
    }
}

fn gather4_sum(i: u32, e: vec4<f32>) -> f32 {
    let w = w4[i / pg.dim];
    return ((e.x * w.x + e.y * w.y) + e.z * w.z) + e.w * w.w;
}

// Flat element offsets of the four table entries for output element i (ids clamped in range).
fn gather4_at(i: u32) -> vec4<u32> {
    let k = min(idx4[i / pg.dim], vec4<u32>(pg.table_rows - 1u));
    return k * pg.dim + i % pg.dim;
}

@compute @workgroup_size(WG)
fn gather4_f32(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(lid, wg, nwg);
    if (i >= pg.n * pg.dim) {
        return;
    }
    let a = gather4_at(i);
    let e = vec4<f32>(table_f32[a.x], table_f32[a.y], table_f32[a.z], table_f32[a.w]);
    out[i] = gather4_sum(i, e);
}

@compute @workgroup_size(WG)
fn gather4_f16(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(lid, wg, nwg);
    if (i >= pg.n * pg.dim) {
        return;
    }
    let a = gather4_at(i);
    let e = vec4<f32>(
        f16_pick(table_f16[a.x / 2u], a.x),
        f16_pick(table_f16[a.y / 2u], a.y),
        f16_pick(table_f16[a.z / 2u], a.z),
        f16_pick(table_f16[a.w / 2u], a.w),
    );
    out[i] = gather4_sum(i, e);
}
