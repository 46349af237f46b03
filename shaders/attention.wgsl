// Attention: the f16 KV cache append, tiled causal GQA prefill (and, with VIT, the vision
// tower's bidirectional attention within cu_seqlens segments), and split-K decode + combine.
// The ViT's rows may be split over several buffers: a VIT dispatch takes the queries of one
// part and the keys of one part, and carries each row's softmax state (max, sum, unnormalised
// output) to the next dispatch in memory.
//
// D (head dim, a multiple of 8) comes from Rust; every size below derives from it. Rows of q,
// k, v and out are read as 8-dim chunks: two vec4<f32>, or one vec4<u32> of packed f16.
// KV cache: K and V each [kv_heads, capacity, D] packed f16 (one head's keys contiguous), or
// f32 with KV_F32 (the exact-parity path).
// Softmax: f32, online (running max m, running sum l); q is pre-scaled by D^-0.5·log2(e) so
// the exponentials are exp2. Keys outside a row's range get weight exactly 0.

#include "common/step.wgsl"

const D8: u32 = D / 8u;
// "No key yet": finite, so exp2(NEG - m) is 0 rather than NaN.
const NEG: f32 = -1.0e30;

struct Params {
    // Work items: words to append, query rows per kv head (positions × q heads per kv head),
    // ViT tokens, or partial rows to combine.
    n: u32,
    // q heads per kv head (1 for the ViT).
    ratio: u32,
    // Heads in a q / out row.
    q_heads: u32,
    kv_heads: u32,
    // Position of the first query row; the cache holds positions 0..past+queries.
    past: u32,
    // Cache rows per head.
    capacity: u32,
    // ViT: segments (cu_seqlens holds segments + 1 offsets).
    segments: u32,
    // Decode: the vec4 index where the per-split (max, sum) pairs start in the partials
    // (its split length and count are the step buffer's).
    ml_offset: u32,
    // D^-0.5 · log2(e).
    scale: f32,
    // ViT: global index of the first query row and of the first key row in their parts, the
    // key part's rows, and FIRST | LAST (this dispatch starts / ends the rows' softmax).
    q_row0: u32,
    kv_row0: u32,
    kv_rows: u32,
    flags: u32,
    // Decode: q_norm's and k_norm's eps.
    eps: f32,
    _p1: u32,
    _p2: u32,
}

const FIRST: u32 = 1u;
const LAST: u32 = 2u;

@group(0) @binding(0) var<uniform> p: Params;

// Each entry point uses its own subset; variables sharing a binding number never meet in one.
@group(0) @binding(1) var<storage, read> q: array<vec4<f32>>;      // q, or the ViT's [rows, 3, heads, D] qkv
#if KV_F32
alias KvWords = vec4<f32>;
#else
alias KvWords = vec4<u32>;
#endif
#if DECODE
// Decode writes its step's keys and values before it reads them.
@group(0) @binding(2) var<storage, read_write> kc: array<KvWords>;  // K cache
@group(0) @binding(3) var<storage, read_write> vc: array<KvWords>;  // V cache
#else
@group(0) @binding(2) var<storage, read> kc: array<KvWords>;       // K cache
@group(0) @binding(3) var<storage, read> vc: array<KvWords>;       // V cache
#endif
@group(0) @binding(4) var<storage, read_write> out: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> cu_seqlens: array<u32>;   // ViT
@group(0) @binding(3) var<storage, read_write> vit_out: array<vec4<f32>>; // and the running output
@group(0) @binding(4) var<storage, read> vit_kv: array<vec4<f32>>;  // the qkv part holding the keys
@group(0) @binding(5) var<storage, read_write> vit_ml: array<vec2<f32>>; // per row and head: max, sum
#if DECODE
// Decode: 1 the q|k|v projection, 2 K, 3 V, 4 partials, 5 the step buffer, 6 q_norm's and
// k_norm's weights; FUSED with its combine, 7 the output and 8 per (row block, kv head) the
// count of splits finished.
@group(0) @binding(1) var<storage, read> qkv: array<f32>;
@group(0) @binding(4) var<storage, read_write> partial: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read> now: Step;
@group(0) @binding(6) var<storage, read> qk_norm: array<f32>;
#if FUSED
@group(0) @binding(7) var<storage, read_write> dout: array<vec4<f32>>;
@group(0) @binding(8) var<storage, read_write> done: array<atomic<u32>>;
#endif
#endif
#if COMBINE
@group(0) @binding(1) var<storage, read> partial: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> now: Step;
@group(0) @binding(3) var<storage, read_write> dout: array<vec4<f32>>;
#endif
@group(0) @binding(1) var<storage, read> k_new: array<vec2<f32>>;  // append
@group(0) @binding(2) var<storage, read> v_new: array<vec2<f32>>;
#if KV_F32
@group(0) @binding(3) var<storage, read_write> k_store: array<vec2<f32>>;
@group(0) @binding(4) var<storage, read_write> v_store: array<vec2<f32>>;

fn kv_word(v: vec2<f32>) -> vec2<f32> {
    return v;
}
#else
@group(0) @binding(3) var<storage, read_write> k_store: array<u32>;
@group(0) @binding(4) var<storage, read_write> v_store: array<u32>;

fn kv_word(v: vec2<f32>) -> u32 {
    return pack2x16float(v);
}
#endif

struct Chunk {
    a: vec4<f32>,
    b: vec4<f32>,
}

// Chunk `i` (cache row · D8 + chunk) of the K or V cache as 8 floats.
#if KV_F32
fn k_chunk(i: u32) -> Chunk {
    return Chunk(kc[2u * i], kc[2u * i + 1u]);
}

fn v_chunk(i: u32) -> Chunk {
    return Chunk(vc[2u * i], vc[2u * i + 1u]);
}
#else
fn unpack8(w: vec4<u32>) -> Chunk {
    return Chunk(vec4<f32>(unpack2x16float(w.x), unpack2x16float(w.y)), vec4<f32>(unpack2x16float(w.z), unpack2x16float(w.w)));
}

fn k_chunk(i: u32) -> Chunk {
    return unpack8(kc[i]);
}

fn v_chunk(i: u32) -> Chunk {
    return unpack8(vc[i]);
}
#endif

// ---------------------------------------------------------------------------------------------
// Append: new k, v [t, kv_heads, D] f32 into cache rows past..past+t, one thread per f16 pair.

const APPEND_WG: u32 = 256u;

@compute @workgroup_size(APPEND_WG)
fn kv_append(@builtin(local_invocation_index) li: u32, @builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let w = (wg.y * nwg.x + wg.x) * APPEND_WG + li;
    if (w >= p.n) {
        return;
    }
    let pairs = D / 2u;
    let row = w / pairs;                 // i · kv_heads + h
    let h = row % p.kv_heads;
    let i = row / p.kv_heads;
    let dst = (h * p.capacity + p.past + i) * pairs + w % pairs;
    k_store[dst] = kv_word(k_new[w]);
    v_store[dst] = kv_word(v_new[w]);
}

// ---------------------------------------------------------------------------------------------
// Prefill / ViT: a workgroup takes PR query rows of one kv head (ratio-major: row g is position
// g / ratio, q head kvh·ratio + g % ratio, so GQA heads share every loaded key) and streams the
// block's keys through in tiles of PK. Thread t owns RG groups of 4 rows (a group's rows are the
// components of its vec4s) in both phases: it scores keys t % D8 + {0,1,2,3}·D8 of the tile for
// them, then accumulates their output chunk t % D8 over the tile's keys; so each row's max,
// sum and output stay with one set of threads. Register tiles give several multiply-adds per
// load: software adapters (lavapipe, SwiftShader) are bound by loads, one lane at a time.

const PR: u32 = min(64u, 2048u / D);   // the block's q (PR·D floats) fills at most 8 KiB
const PG: u32 = PR / 4u;               // row groups of 4
// Row groups per thread: two reuse each loaded key twice as often, which pays up to D = 64;
// beyond, the larger register tile costs more than it saves (measured on lavapipe).
const RG: u32 = max(1u, min(2u, 128u / D));
const PWG: u32 = PG / RG * D8;
const PK: u32 = 4u * D8;

var<workgroup> pq: array<vec4<f32>, PR * D / 4u>;   // [row][chunk][2]
var<workgroup> pp: array<vec4<f32>, PK * PG>;       // probabilities [key][row group]
var<workgroup> pred: array<vec4<f32>, PG * D8>;     // per row group and chunk: max, then sum

#if VIT
// Row j of a qkv part: [q all heads | k all heads | v all heads], each head D wide.
fn qkv_at(j: u32, part: u32, h: u32, c: u32) -> u32 {
    return ((j * 3u + part) * p.q_heads + h) * (D / 4u) + 2u * c;
}

fn key_chunk(j: u32, kvh: u32, c: u32) -> Chunk {
    let base = qkv_at(j - p.kv_row0, 1u, kvh, c);
    return Chunk(vit_kv[base], vit_kv[base + 1u]);
}

fn value_chunk(j: u32, kvh: u32, c: u32) -> Chunk {
    let base = qkv_at(j - p.kv_row0, 2u, kvh, c);
    return Chunk(vit_kv[base], vit_kv[base + 1u]);
}

fn query_chunk(i: u32, h: u32, c: u32) -> Chunk {
    let base = qkv_at(i - p.q_row0, 0u, h, c);
    return Chunk(q[base], q[base + 1u]);
}

// The keys token i sees in this dispatch: its segment [start, end) (cu_seqlens starts at 0 and
// ends at the last token) within the key part's rows; empty when they do not meet.
fn keys_of(i: u32) -> vec2<u32> {
    var lo = 0u;
    var hi = p.segments;
    while (hi - lo > 1u) {
        let mid = (lo + hi) / 2u;
        if (cu_seqlens[mid] <= i) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    let end = p.kv_row0 + p.kv_rows;
    let first = clamp(cu_seqlens[lo], p.kv_row0, end);
    return vec2<u32>(first, clamp(cu_seqlens[lo + 1u], first, end));
}

// Element index of row i's output chunk c of head h.
fn out_at(i: u32, h: u32, c: u32) -> u32 {
    return ((i - p.q_row0) * p.q_heads + h) * (D / 4u) + 2u * c;
}

fn store_row(i: u32, h: u32, c: u32, o: Chunk) {
    let base = out_at(i, h, c);
    vit_out[base] = o.a;
    vit_out[base + 1u] = o.b;
}
#else
fn key_chunk(j: u32, kvh: u32, c: u32) -> Chunk {
    return k_chunk((kvh * p.capacity + j) * D8 + c);
}

fn value_chunk(j: u32, kvh: u32, c: u32) -> Chunk {
    return v_chunk((kvh * p.capacity + j) * D8 + c);
}

fn query_chunk(i: u32, h: u32, c: u32) -> Chunk {
    let base = (i * p.q_heads + h) * (D / 4u) + 2u * c;
    return Chunk(q[base], q[base + 1u]);
}

// Causal: the query at position past + i sees keys 0..=past + i.
fn keys_of(i: u32) -> vec2<u32> {
    return vec2<u32>(0u, p.past + i + 1u);
}

fn store_row(i: u32, h: u32, c: u32, o: Chunk) {
    let base = (i * p.q_heads + h) * (D / 4u) + 2u * c;
    out[base] = o.a;
    out[base + 1u] = o.b;
}
#endif

// Column u of m (row u's values) times f[u].
fn scale_columns(m: mat4x4<f32>, f: vec4<f32>) -> mat4x4<f32> {
    return mat4x4<f32>(m[0] * f.x, m[1] * f.y, m[2] * f.z, m[3] * f.w);
}

// The 4-row block of the q tile at row group rg, chunk k, half `half`: columns are rows.
fn q_rows(rg: u32, k: u32, half: u32) -> mat4x4<f32> {
    let base = 2u * (4u * rg * D8 + k) + half;
    return mat4x4<f32>(pq[base], pq[base + 2u * D8], pq[base + 4u * D8], pq[base + 6u * D8]);
}

// Whether key j is in each row's range [lo, hi).
fn sees(j: u32, lo: vec4<u32>, hi: vec4<u32>) -> vec4<bool> {
    return (vec4<u32>(j) >= lo) & (vec4<u32>(j) < hi);
}

@compute @workgroup_size(PWG)
fn prefill(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let kvh = wg.z;
    let g0 = (wg.y * nwg.x + wg.x) * PR;
    if (g0 >= p.n) {
        return; // the whole workgroup: uniform
    }
    let c = t % D8;
    // Per row group of this thread: positions, heads and key ranges of its 4 rows. Rows past
    // the end compute like the last row and write nothing.
    var pos: array<vec4<u32>, RG>;
    var head: array<vec4<u32>, RG>;
    var lo: array<vec4<u32>, RG>;
    var hi: array<vec4<u32>, RG>;
    for (var gi = 0u; gi < RG; gi++) {
        let rg = (t / D8) * RG + gi;
        let g = min(vec4<u32>(g0 + 4u * rg) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(p.n - 1u));
        pos[gi] = vec4<u32>(p.q_row0) + g / p.ratio;
        head[gi] = vec4<u32>(kvh * p.ratio) + g % p.ratio;
        for (var u = 0u; u < 4u; u++) {
            let range = keys_of(pos[gi][u]);
            lo[gi][u] = range.x;
            hi[gi][u] = range.y;
            let qc = query_chunk(pos[gi][u], head[gi][u], c);
            let at = 2u * ((4u * rg + u) * D8 + c);
            pq[at] = qc.a * p.scale;
            pq[at + 1u] = qc.b * p.scale;
        }
    }
    // The block's keys: from its first row's start to its last row's end.
    let first = keys_of(p.q_row0 + g0 / p.ratio).x;
    let last = keys_of(p.q_row0 + (min(g0 + PR, p.n) - 1u) / p.ratio).y;
    workgroupBarrier();

    var m: array<vec4<f32>, RG>;
    var l: array<vec4<f32>, RG>;
    var acc_a: array<mat4x4<f32>, RG>;
    var acc_b: array<mat4x4<f32>, RG>;
    for (var gi = 0u; gi < RG; gi++) {
        m[gi] = vec4<f32>(NEG);
    }
#if VIT
    // Go on from the state an earlier dispatch left for these rows (key parts before this one).
    if ((p.flags & FIRST) == 0u) {
        for (var gi = 0u; gi < RG; gi++) {
            let rg = (t / D8) * RG + gi;
            for (var u = 0u; u < 4u; u++) {
                if (g0 + 4u * rg + u < p.n) {
                    let ml = vit_ml[(pos[gi][u] - p.q_row0) * p.q_heads + head[gi][u]];
                    m[gi][u] = ml.x;
                    // A row's sum is spread over its D8 threads: one of them brings the old one.
                    l[gi][u] = select(0.0, ml.y, c == 0u);
                    let base = out_at(pos[gi][u], head[gi][u], c);
                    acc_a[gi][u] = vit_out[base];
                    acc_b[gi][u] = vit_out[base + 1u];
                }
            }
        }
    }
#endif
    for (var j0 = first; j0 < last; j0 += PK) {
        let key = vec4<u32>(j0 + c) + vec4<u32>(0u, D8, 2u * D8, 3u * D8);
        let kl = min(key, vec4<u32>(last - 1u));
        // Column k of s[gi]: key k's scores for the group's 4 rows. Zeroed by an explicit
        // initializer: Chromium 156 (Tint + SwiftShader) does not re-zero a loop body's `var`
        // without one on each iteration, as WGSL requires.
        var s = array<mat4x4<f32>, RG>();
        for (var k = 0u; k < D8; k++) {
            let k0 = key_chunk(kl.x, kvh, k);
            let k1 = key_chunk(kl.y, kvh, k);
            let k2 = key_chunk(kl.z, kvh, k);
            let k3 = key_chunk(kl.w, kvh, k);
            for (var gi = 0u; gi < RG; gi++) {
                let rg = (t / D8) * RG + gi;
                let qa = q_rows(rg, k, 0u);
                let qb = q_rows(rg, k, 1u);
                s[gi] += mat4x4<f32>(k0.a * qa + k0.b * qb, k1.a * qa + k1.b * qb, k2.a * qa + k2.b * qb, k3.a * qa + k3.b * qb);
            }
        }
        let neg = vec4<f32>(NEG);
        for (var gi = 0u; gi < RG; gi++) {
            let x = max(select(neg, s[gi][0], sees(key.x, lo[gi], hi[gi])), select(neg, s[gi][1], sees(key.y, lo[gi], hi[gi])));
            let y = max(select(neg, s[gi][2], sees(key.z, lo[gi], hi[gi])), select(neg, s[gi][3], sees(key.w, lo[gi], hi[gi])));
            pred[((t / D8) * RG + gi) * D8 + c] = max(x, y);
        }
        workgroupBarrier();
        for (var gi = 0u; gi < RG; gi++) {
            let rg = (t / D8) * RG + gi;
            var m_new = m[gi];
            for (var k = 0u; k < D8; k++) {
                m_new = max(m_new, pred[rg * D8 + k]);
            }
            let alpha = exp2(m[gi] - m_new);
            m[gi] = m_new;
            let zero = vec4<f32>(0.0);
            let e0 = select(zero, exp2(s[gi][0] - m_new), sees(key.x, lo[gi], hi[gi]));
            let e1 = select(zero, exp2(s[gi][1] - m_new), sees(key.y, lo[gi], hi[gi]));
            let e2 = select(zero, exp2(s[gi][2] - m_new), sees(key.z, lo[gi], hi[gi]));
            let e3 = select(zero, exp2(s[gi][3] - m_new), sees(key.w, lo[gi], hi[gi]));
            l[gi] = l[gi] * alpha + (e0 + e1) + (e2 + e3);
            pp[c * PG + rg] = e0;
            pp[(c + D8) * PG + rg] = e1;
            pp[(c + 2u * D8) * PG + rg] = e2;
            pp[(c + 3u * D8) * PG + rg] = e3;
            acc_a[gi] = scale_columns(acc_a[gi], alpha);
            acc_b[gi] = scale_columns(acc_b[gi], alpha);
        }
        workgroupBarrier();
        let keys = min(PK, last - j0);
        for (var k = 0u; k < keys; k++) {
            let v = value_chunk(j0 + k, kvh, c);
            for (var gi = 0u; gi < RG; gi++) {
                let e = pp[k * PG + (t / D8) * RG + gi];
                acc_a[gi] += mat4x4<f32>(v.a * e.x, v.a * e.y, v.a * e.z, v.a * e.w);
                acc_b[gi] += mat4x4<f32>(v.b * e.x, v.b * e.y, v.b * e.z, v.b * e.w);
            }
        }
    }
    // Each row's sum is spread over its D8 threads.
    for (var gi = 0u; gi < RG; gi++) {
        pred[((t / D8) * RG + gi) * D8 + c] = l[gi];
    }
    workgroupBarrier();
    for (var gi = 0u; gi < RG; gi++) {
        let rg = (t / D8) * RG + gi;
        var l_row = vec4<f32>(0.0);
        for (var k = 0u; k < D8; k++) {
            l_row += pred[rg * D8 + k];
        }
        var inv = 1.0 / l_row;
#if VIT
        // Key parts follow: keep the output unnormalised, and the rows' max and sum.
        let more = (p.flags & LAST) == 0u;
        if (more) {
            inv = vec4<f32>(1.0);
        }
#endif
        let a = scale_columns(acc_a[gi], inv);
        let b = scale_columns(acc_b[gi], inv);
        for (var u = 0u; u < 4u; u++) {
            if (g0 + 4u * rg + u < p.n) {
                store_row(pos[gi][u], head[gi][u], c, Chunk(a[u], b[u]));
#if VIT
                if (more && c == 0u) {
                    vit_ml[(pos[gi][u] - p.q_row0) * p.q_heads + head[gi][u]] = vec2<f32>(m[gi][u], l_row[u]);
                }
#endif
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Decode pass 1: workgroup (split, row block, kv head) takes RB query rows of one kv head
// from the q|k|v projection, normed and rotated as qk_rope.wgsl does. The step's keys of that
// kv head, normed and rotated, and its values go into the cache by the workgroups whose split
// holds their positions, before they read the split's keys (one dispatch: no append kernel).
// Then against the keys of the split, in tiles of DK: thread t scores keys t + {0,1,2,3}·DWG (the
// components of its vec4s) for every row, then accumulates output chunk t % D8 of every row
// over the tile's keys ≡ t / D8 (mod DKL). All threads share each row's running max, so the
// DKL key lanes' partial outputs add up without rescaling. Writes, per row and split, the
// unnormalised output and (max, sum); the combine pass merges the splits, or with FUSED the
// last workgroup of each (row block, kv head) to finish does. The position and the splits
// come from the step buffer, the workgroup counts too (an indirect dispatch).

const DWG: u32 = 64u;
const DK: u32 = 4u * DWG;
const DKL: u32 = DWG / D8;
// The decode shapes (the constant RB, rows per workgroup) exist only in decode's variants.
#if DECODE
const RB4: u32 = (RB + 3u) / 4u;
const WG: u32 = DWG;
#include "common/reduce.wgsl"
#include "common/head_rope.wgsl"

var<workgroup> dq: array<vec4<f32>, RB * D / 4u>;   // [row][chunk][2]
var<workgroup> dp: array<vec4<f32>, DK * RB4>;      // probabilities [key][row / 4]
var<workgroup> dmx: array<f32, RB * DWG>;           // per-thread max [row][thread]
var<workgroup> dmx2: array<f32, RB * 8u>;
var<workgroup> dlast: u32;

// 8 floats of `rotated` from float 8·c, and of the q|k|v projection from float `at`.
fn rotated_chunk(c: u32) -> Chunk {
    let j = 8u * c;
    return Chunk(vec4<f32>(rotated[j], rotated[j + 1u], rotated[j + 2u], rotated[j + 3u]), vec4<f32>(rotated[j + 4u], rotated[j + 5u], rotated[j + 6u], rotated[j + 7u]));
}

fn qkv_chunk(at: u32) -> Chunk {
    return Chunk(vec4<f32>(qkv[at], qkv[at + 1u], qkv[at + 2u], qkv[at + 3u]), vec4<f32>(qkv[at + 4u], qkv[at + 5u], qkv[at + 6u], qkv[at + 7u]));
}

// Chunk `i` of the K cache, or with `is_v` the V cache, becomes `c`: k_chunk's inverse.
fn store_chunk(is_v: bool, i: u32, c: Chunk) {
#if KV_F32
    if (is_v) {
        vc[2u * i] = c.a;
        vc[2u * i + 1u] = c.b;
    } else {
        kc[2u * i] = c.a;
        kc[2u * i + 1u] = c.b;
    }
#else
    let w = vec4<u32>(pack2x16float(c.a.xy), pack2x16float(c.a.zw), pack2x16float(c.b.xy), pack2x16float(c.b.zw));
    if (is_v) {
        vc[i] = w;
    } else {
        kc[i] = w;
    }
#endif
}

@compute @workgroup_size(DWG)
fn decode(lane: Lane, @builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = lane.idx;
    let split = wg.x;
    let kvh = wg.z;
    let g0 = wg.y * RB;
    let start = split * now.split_len;
    let end = min(start + now.split_len, now.past + p.n / p.ratio);

    // The step's keys and values in this split into the cache. Every row block of the kv head
    // writes them, the same values, so a block reading a row another is writing sees them.
    let heads = p.q_heads + 2u * p.kv_heads;
    for (var i = 0u; i < p.n / p.ratio; i++) {
        let pos = now.past + i;
        if (pos < start || pos >= end) {
            continue; // uniform: the split is the workgroup's
        }
        norm_rope_head((i * heads + p.q_heads + kvh) * D, 1u, i, p.eps, lane);
        let row = (kvh * p.capacity + pos) * D8;
        let v = (i * heads + p.q_heads + p.kv_heads + kvh) * D;
        for (var c = t; c < D8; c += DWG) {
            store_chunk(false, row + c, rotated_chunk(c));
            store_chunk(true, row + c, qkv_chunk(v + 8u * c));
        }
    }
    // The block's q rows, normed, rotated and pre-scaled.
    for (var r = 0u; r < RB; r++) {
        let g = min(g0 + r, p.n - 1u);
        let i = g / p.ratio;
        norm_rope_head((i * heads + kvh * p.ratio + g % p.ratio) * D, 0u, i, p.eps, lane);
        for (var c = t; c < D8; c += DWG) {
            let q8 = rotated_chunk(c);
            dq[r * (D / 4u) + 2u * c] = q8.a * p.scale;
            dq[r * (D / 4u) + 2u * c + 1u] = q8.b * p.scale;
        }
    }
    // Per row: keys below `hi` are visible; running max and sum; output chunk t % D8.
    var hi: array<u32, RB>;
    var m: array<f32, RB>;
    var l: array<f32, RB>;
    var acc: array<vec4<f32>, 2u * RB>;
    for (var r = 0u; r < RB; r++) {
        hi[r] = min(end, now.past + min(g0 + r, p.n - 1u) / p.ratio + 1u);
        m[r] = NEG;
    }
    // The cache rows written above, then dq.
    storageBarrier();
    workgroupBarrier();

    let key_lane = t / D8;
    let c = t % D8;
    for (var j0 = start; j0 < end; j0 += DK) {
        let key = vec4<u32>(j0 + t) + vec4<u32>(0u, DWG, 2u * DWG, 3u * DWG);
        let kl = (kvh * p.capacity + min(key, vec4<u32>(end - 1u))) * D8;
        var s = array<vec4<f32>, RB>(); // initialized explicitly: see prefill's `s`
        for (var k = 0u; k < D8; k++) {
            let c0 = k_chunk(kl.x + k);
            let c1 = k_chunk(kl.y + k);
            let c2 = k_chunk(kl.z + k);
            let c3 = k_chunk(kl.w + k);
            // Columns are the 4 keys.
            let ka = mat4x4<f32>(c0.a, c1.a, c2.a, c3.a);
            let kb = mat4x4<f32>(c0.b, c1.b, c2.b, c3.b);
            for (var r = 0u; r < RB; r++) {
                s[r] += dq[2u * (r * D8 + k)] * ka + dq[2u * (r * D8 + k) + 1u] * kb;
            }
        }
        for (var r = 0u; r < RB; r++) {
            let sr = select(vec4<f32>(NEG), s[r], key < vec4<u32>(hi[r]));
            dmx[r * DWG + t] = max(max(sr.x, sr.y), max(sr.z, sr.w));
        }
        workgroupBarrier();
        if (t < RB * 8u) {
            var mx = NEG;
            for (var k = 0u; k < DWG / 8u; k++) {
                mx = max(mx, dmx[t * (DWG / 8u) + k]);
            }
            dmx2[t] = mx;
        }
        workgroupBarrier();
        var alpha: array<f32, RB>;
        for (var r = 0u; r < RB; r++) {
            var m_new = m[r];
            for (var k = 0u; k < 8u; k++) {
                m_new = max(m_new, dmx2[r * 8u + k]);
            }
            alpha[r] = exp2(m[r] - m_new);
            m[r] = m_new;
            let e = select(vec4<f32>(0.0), exp2(s[r] - m_new), key < vec4<u32>(hi[r]));
            dp[t * RB4 + r / 4u][r % 4u] = e.x;
            dp[(t + DWG) * RB4 + r / 4u][r % 4u] = e.y;
            dp[(t + 2u * DWG) * RB4 + r / 4u][r % 4u] = e.z;
            dp[(t + 3u * DWG) * RB4 + r / 4u][r % 4u] = e.w;
        }
        workgroupBarrier();
        for (var r = 0u; r < RB; r++) {
            acc[2u * r] *= alpha[r];
            acc[2u * r + 1u] *= alpha[r];
            l[r] *= alpha[r];
        }
        let keys = min(DK, end - j0);
        for (var k = key_lane; k < keys; k += DKL) {
            let vv = v_chunk((kvh * p.capacity + j0 + k) * D8 + c);
            let va = vv.a;
            let vb = vv.b;
            for (var r = 0u; r < RB; r++) {
                let e = dp[k * RB4 + r / 4u][r % 4u];
                l[r] += e;
                acc[2u * r] += e * va;
                acc[2u * r + 1u] += e * vb;
            }
        }
        workgroupBarrier();
    }

    // Add up the key lanes' outputs and sums (in dp and dmx, free now), one row at a time.
    for (var r = 0u; r < RB; r++) {
        dp[2u * t] = acc[2u * r];
        dp[2u * t + 1u] = acc[2u * r + 1u];
        dmx[t] = l[r];
        workgroupBarrier();
        let g = g0 + r;
        if (t < D8 && g < p.n) {
            var a = vec4<f32>(0.0);
            var b = vec4<f32>(0.0);
            var l_sum = 0.0;
            for (var k = 0u; k < DKL; k++) {
                a += dp[2u * (k * D8 + t)];
                b += dp[2u * (k * D8 + t) + 1u];
                l_sum += dmx[k * D8];
            }
            let slot = out_row(g, kvh) * now.splits + split;
            partial[slot * (D / 4u) + 2u * t] = a;
            partial[slot * (D / 4u) + 2u * t + 1u] = b;
            if (t == 0u) {
                partial[p.ml_offset + slot] = vec4<f32>(m[r], l_sum, 0.0, 0.0);
            }
        }
        workgroupBarrier();
    }
#if FUSED
    // Release this workgroup's partials, count it, and let the last one to finish acquire
    // everyone's and combine. storageBarrier() is a device-scope fence in naga's output (the
    // caller checks Caps::device_fence); the count is reset for the next layer.
    storageBarrier();
    let counter = wg.z * nwg.y + wg.y;
    if (t == 0u) {
        dlast = u32(atomicAdd(&done[counter], 1u) == now.splits - 1u);
    }
    if (workgroupUniformLoad(&dlast) == 1u) {
        storageBarrier();
        for (var r = 0u; r < RB; r++) {
            if (g0 + r < p.n) {
                combine_row(out_row(g0 + r, kvh), t);
            }
        }
        if (t == 0u) {
            atomicStore(&done[counter], 0u);
        }
    }
#endif
}

// The output row (position × q head) of row g of kv head kvh's block rows.
fn out_row(g: u32, kvh: u32) -> u32 {
    return (g / p.ratio) * p.q_heads + kvh * p.ratio + g % p.ratio;
}
#endif

// Decode pass 2: one workgroup per output row (position × q head) rescales the splits'
// partial outputs to their common max and normalises by the total sum.

const CWG: u32 = 64u;

#if MERGE
// Output row `row` from its splits' partials, by the CWG threads t of one workgroup.
fn combine_row(row: u32, t: u32) {
    let first = row * now.splits;
    var mx = NEG;
    for (var s = 0u; s < now.splits; s++) {
        mx = max(mx, partial[p.ml_offset + first + s].x);
    }
    var total = 0.0;
    for (var s = 0u; s < now.splits; s++) {
        let ml = partial[p.ml_offset + first + s];
        total += exp2(ml.x - mx) * ml.y;
    }
    for (var k = t; k < D / 4u; k += CWG) {
        var o = vec4<f32>(0.0);
        for (var s = 0u; s < now.splits; s++) {
            o += exp2(partial[p.ml_offset + first + s].x - mx) * partial[(first + s) * (D / 4u) + k];
        }
        dout[row * (D / 4u) + k] = o / total;
    }
}
#endif

#if COMBINE
@compute @workgroup_size(CWG)
fn combine(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) wg: vec3<u32>) {
    combine_row(wg.x, t);
}
#endif
