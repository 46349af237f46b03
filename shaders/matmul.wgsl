// y[m, col0 + r] (+)= Σ_k x[m, k] · W[r, k] (+ bias[col0 + r]) for the rows r of one weight
// part (kernels/quant.rs has the formats), accumulating in f32.
//   gemv: mm ≤ 4 rows of x (decode). Each workgroup owns wg_rows weight rows and streams
//         them once (per pass of MB ≤ 2 x rows): WG invocations split each row along k in
//         32-byte steps, SPL each, keeping their x slices in registers for all the rows;
//         per-row partial sums meet in workgroup memory.
//   gemm: any m (prefill, the ViT). A 64×64 output tile per workgroup, k in steps of 32 (one
//         int4 group): both operand tiles are decoded to f32 in workgroup memory (k-major,
//         16 KiB together) and each of 64 invocations accumulates an 8×8 micro-tile.
// Flags: W_F32 | W_F16 | W_Q4 (weight format), VEC4 (weight rows are whole vec4<u32> units:
// always for int4, for f32/f16 when k allows), X4 (k % 4 == 0: x rows are whole vec4s),
// BIAS, SUBGROUPS; GEMV (constants WG, MB, SPL; flags TAIL, ADJ) or GEMM picks the section.
// Named W_* because the flag F16 would enable shader-f16.

struct Params {
    m: u32,
    // Columns of y (the matrix's full n) and the columns this part writes: col0 .. col0 + rows.
    n: u32,
    col0: u32,
    rows: u32,
    k: u32,
    // Stored words per weight row.
    row_words: u32,
    // int4: scale words per row.
    scale_words: u32,
    // gemv: the rows m0 .. m0 + mm of x (and y) this dispatch serves, and weight rows per
    // workgroup.
    m0: u32,
    mm: u32,
    wg_rows: u32,
    // y += … (else y = …).
    acc: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
#if X4
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
#else
@group(0) @binding(1) var<storage, read> x: array<f32>;
#endif
#if VEC4
@group(0) @binding(2) var<storage, read> w: array<vec4<u32>>;
#else
@group(0) @binding(2) var<storage, read> w: array<u32>;
#endif
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
#if W_Q4
@group(0) @binding(4) var<storage, read> scales: array<u32>;
#endif
#if BIAS
#if W_Q4
@group(0) @binding(5) var<storage, read> bias: array<f32>;
#else
@group(0) @binding(4) var<storage, read> bias: array<f32>;
#endif
#endif

// Elements per stored unit of a weight row (a vec4<u32>, or one u32 without VEC4), and the
// vec4s of x they meet.
#if W_Q4
const UNIT = 32u;
#endif
#if W_F16
#if VEC4
const UNIT = 8u;
#else
const UNIT = 2u;
#endif
#endif
#if W_F32
#if VEC4
const UNIT = 4u;
#else
const UNIT = 1u;
#endif
#endif
const XV = (UNIT + 3u) / 4u;

// x[row, e .. e + 4], zero past k (the last unit or tile of a row may reach past it).
fn x_vec4(row: u32, e: u32) -> vec4<f32> {
#if X4
    if (e >= p.k) {
        return vec4<f32>(0.0);
    }
    return x[(row * p.k + e) / 4u];
#else
    // Branch-free (clamped reads, then zeros): this path is rare, and compiles much faster.
    let i = row * p.k + min(vec4<u32>(e) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(p.k - 1u));
    let v = vec4<f32>(x[i.x], x[i.y], x[i.z], x[i.w]);
    return select(vec4<f32>(0.0), v, vec4<u32>(e) + vec4<u32>(0u, 1u, 2u, 3u) < vec4<u32>(p.k));
#endif
}

// Output column `c` of this part for x row `row`: adds the bias and, accumulating, the old value.
fn store(row: u32, c: u32, v: f32) {
    let i = row * p.n + p.col0 + c;
    var out = v;
#if BIAS
    out += bias[p.col0 + c];
#endif
    if (p.acc != 0u) {
        out += y[i];
    }
    y[i] = out;
}

// ---------------------------------------------------------------------------------------------
#if GEMV

// One unit of x (UNIT elements), prepared once and reused for all the workgroup's rows.
struct XUnit {
    v: array<vec4<f32>, XV>,
    // int4: Σ x over the group, so the −8 offset costs one multiply per group, not per weight.
    sum: f32,
}

// int4: nibble j of a word is masked in place (value q·16^j, exact in f32) instead of shifted
// down, and x is pre-scaled by 16^-j to match: one and + convert + fma per weight.
const NIB_MASK = vec4<u32>(0xFu, 0xF0u, 0xF00u, 0xF000u);
const NIB_SCALE = vec4<f32>(1.0, 1.0 / 16.0, 1.0 / 256.0, 1.0 / 4096.0);

fn x_unit(row: u32, unit: u32) -> XUnit {
    var u: XUnit;
    u.sum = 0.0;
    for (var i = 0u; i < XV; i++) {
        let v = x_vec4(row, unit * UNIT + 4u * i);
#if W_Q4
        u.sum += dot(v, vec4<f32>(1.0));
        u.v[i] = v * NIB_SCALE;
#else
        u.v[i] = v;
#endif
    }
    return u;
}

// Σ over one unit of W[r] · x; `d` is the int4 group's scale (1 otherwise).
fn unit_dot(wu: vec4<u32>, d: f32, xu: XUnit) -> f32 {
#if W_Q4
    // Four running sums, added up once per unit.
    var s = vec4<f32>(0.0);
    for (var i = 0u; i < 4u; i++) {
        s += vec4<f32>(vec4<u32>(wu[i]) & NIB_MASK) * xu.v[2u * i];
        s += vec4<f32>(vec4<u32>(wu[i] >> 16u) & NIB_MASK) * xu.v[2u * i + 1u];
    }
    return d * (dot(s, vec4<f32>(1.0)) - 8.0 * xu.sum);
#endif
#if W_F16
#if VEC4
    let a = vec4<f32>(unpack2x16float(wu.x), unpack2x16float(wu.y));
    let b = vec4<f32>(unpack2x16float(wu.z), unpack2x16float(wu.w));
    return dot(a, xu.v[0]) + dot(b, xu.v[1]);
#else
    return dot(unpack2x16float(wu.x), xu.v[0].xy);
#endif
#endif
#if W_F32
#if VEC4
    return dot(bitcast<vec4<f32>>(wu), xu.v[0]);
#else
    return bitcast<f32>(wu.x) * xu.v[0].x;
#endif
#endif
}

fn w_unit(r: u32, unit: u32) -> vec4<u32> {
#if VEC4
    return w[r * (p.row_words / 4u) + unit];
#else
    return vec4<u32>(w[r * p.row_words + unit], 0u, 0u, 0u);
#endif
}

// Per-output partial sums (wg_rows · mm outputs), one per subgroup or, without subgroups, per
// invocation; rows padded by one so the column reads of the final sums spread over banks.
// 12 KiB: the caller sizes wg_rows to fit.
var<workgroup> red: array<f32, 3072>;

// Step s of invocation `lane`: interleaved (consecutive invocations read consecutive pieces:
// coalesced on a GPU) or, with ADJ, adjacent (each invocation reads SPL pieces in a row: on a
// CPU a SIMD group runs all its rows before the next group starts, and longer runs stream
// better).
fn step_of(lane: u32, s: u32) -> u32 {
#if ADJ
    return lane * SPL + s;
#else
    return lane + s * WG;
#endif
}

struct GemvIds {
    @builtin(local_invocation_index) lane: u32,
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
#if SUBGROUPS
    @builtin(subgroup_invocation_id) sg_lane: u32,
    @builtin(subgroup_size) sg_size: u32,
#endif
}

@compute @workgroup_size(WG)
fn gemv(ids: GemvIds) {
    let lane = ids.lane;
    let r0 = (ids.wg.y * ids.nwg.x + ids.wg.x) * p.wg_rows;
    let units = (p.k + UNIT - 1u) / UNIT;
#if SUBGROUPS
    let col = lane / ids.sg_size;
    let cols = (WG + ids.sg_size - 1u) / ids.sg_size;
#else
    let col = lane;
    let cols = WG;
#endif
    let stride = cols + 1u;
    // x rows mp .. mp + MB per pass: more would not stay in registers. Later passes re-read
    // this workgroup's rows of W from cache.
    for (var mp = 0u; mp < p.mm; mp += MB) {
        // Step s covers units 2j and 2j + 1, j = lane + s·WG: 32 contiguous bytes of a row
        // (int4 groups 2j and 2j + 1 share a scale word), consecutive across invocations.
        // Its x is loaded once and serves all wg_rows rows.
        var xu: array<array<XUnit, 2>, SPL * MB>;
        for (var s = 0u; s < SPL; s++) {
            let u = 2u * step_of(lane, s);
            for (var c = 0u; c < MB; c++) {
                // A missing last row of an odd mm repeats the one before; it is never stored.
                let mi = p.m0 + min(mp + c, p.mm - 1u);
                xu[s * MB + c][0] = x_unit(mi, u);
                xu[s * MB + c][1] = x_unit(mi, u + 1u);
            }
        }
        for (var ri = 0u; ri < p.wg_rows; ri++) {
            // Rows past the part's end redo its last row; their sums are never stored.
            let r = min(r0 + ri, p.rows - 1u);
            // Explicitly zeroed: Chromium 156 (Tint + SwiftShader) does not re-zero a loop
            // body's `var` without an initializer on each iteration, as WGSL requires.
            var acc = array<f32, MB>();
            for (var s = 0u; s < SPL; s++) {
                let j = step_of(lane, s);
                let u = 2u * j;
#if TAIL
                // Only when the units do not split evenly: steps past the row's end, and a
                // lone last unit (its x is zero past k; its load is skipped).
                if (u >= units) {
                    continue;
                }
                let two = u + 1u < units;
#else
                let two = true;
#endif
                let w0 = w_unit(r, u);
                var w1 = vec4<u32>(0u);
                if (two) {
                    w1 = w_unit(r, u + 1u);
                }
#if W_Q4
                let d = unpack2x16float(scales[r * p.scale_words + j]);
#else
                let d = vec2<f32>(1.0);
#endif
                for (var c = 0u; c < MB; c++) {
                    acc[c] += unit_dot(w0, d.x, xu[s * MB + c][0]) + unit_dot(w1, d.y, xu[s * MB + c][1]);
                }
            }
            for (var c = 0u; c < MB; c++) {
#if SUBGROUPS
                // Each subgroup sums in registers; one value per subgroup meets in memory.
                let t = subgroupAdd(acc[c]);
                let keep = ids.sg_lane == 0u;
#else
                let t = acc[c];
                let keep = true;
#endif
                if (keep && mp + c < p.mm) {
                    red[(ri * p.mm + mp + c) * stride + col] = t;
                }
            }
        }
    }
    workgroupBarrier();
    // Output v is (weight row v / mm, x row v % mm).
    for (var v = lane; v < p.wg_rows * p.mm; v += WG) {
        var total = 0.0;
        for (var i = 0u; i < cols; i++) {
            total += red[v * stride + i];
        }
        let r = r0 + v / p.mm;
        if (r < p.rows) {
            store(p.m0 + v % p.mm, r, total);
        }
    }
}

#endif
// ---------------------------------------------------------------------------------------------
#if GEMM

// A 64×64 output tile per workgroup of 64 invocations, each an 8×8 micro-tile held as four
// 4×4 matrices (explicit values, not arrays a compiler might keep in memory).
const BM = 64u;
const BN = 64u;
const BK = 32u;

// k-major, so 4 consecutive rows (columns) at one k are one vec4: the micro-tile reads and
// the tile writes are whole vec4s.
var<workgroup> xs: array<vec4<f32>, BK * BM / 4u>;
var<workgroup> ws: array<vec4<f32>, BK * BN / 4u>;

#if W_Q4
// f16 scale of int4 group `g` of part row `r`.
fn q4_scale(r: u32, g: u32) -> f32 {
    let v = unpack2x16float(scales[r * p.scale_words + g / 2u]);
    return select(v.x, v.y, (g & 1u) == 1u);
}
#endif

// W[r, e .. e + 8] (part row r, zero past k; e a multiple of 8) as two vec4.
fn w8(r: u32, e: u32) -> mat2x4<f32> {
    let base = r * p.row_words;
#if W_Q4
    // One word of an int4 group (rows are whole groups, zero-padded).
    let word = w[(base + e / 8u) / 4u][(e / 8u) % 4u];
    let d = q4_scale(r, e / 32u);
    let lo = (vec4<u32>(word) >> vec4<u32>(0u, 4u, 8u, 12u)) & vec4<u32>(15u);
    let hi = (vec4<u32>(word) >> vec4<u32>(16u, 20u, 24u, 28u)) & vec4<u32>(15u);
    return mat2x4<f32>((vec4<f32>(lo) - 8.0) * d, (vec4<f32>(hi) - 8.0) * d);
#endif
#if W_F16
#if VEC4
    // One vec4 of words, wholly in the row or (past its last word) wholly not.
    var u = vec4<u32>(0u);
    if (e / 2u < p.row_words) {
        u = w[(base + e / 2u) / 4u];
    }
#else
    var u = vec4<u32>(0u);
    for (var j = 0u; j < 4u; j++) {
        if (e / 2u + j < p.row_words) {
            u[j] = w[base + e / 2u + j];
        }
    }
#endif
    return mat2x4<f32>(vec4<f32>(unpack2x16float(u.x), unpack2x16float(u.y)),
                       vec4<f32>(unpack2x16float(u.z), unpack2x16float(u.w)));
#endif
#if W_F32
#if VEC4
    var lo = vec4<f32>(0.0);
    var hi = vec4<f32>(0.0);
    if (e < p.k) {
        lo = bitcast<vec4<f32>>(w[(base + e) / 4u]);
    }
    if (e + 4u < p.k) {
        hi = bitcast<vec4<f32>>(w[(base + e) / 4u + 1u]);
    }
    return mat2x4<f32>(lo, hi);
#else
    var v: array<f32, 8>;
    for (var j = 0u; j < 8u; j++) {
        if (e + j < p.k) {
            v[j] = bitcast<f32>(w[base + e + j]);
        }
    }
    return mat2x4<f32>(v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7]);
#endif
#endif
}

// Stores a 4×4 block (c[j][i] is row row0 + i, column col0 + j), clipped at the edges. The
// bounds are run-time values, so the loops stay loops: unrolled, these 16 stores with their
// bias and accumulate loads made up most of the shader's compile time on lavapipe.
fn store_block(c: mat4x4<f32>, row0: u32, col0: u32) {
    let ni = min(4u, p.m - min(row0, p.m));
    let nj = min(4u, p.rows - min(col0, p.rows));
    for (var j = 0u; j < nj; j++) {
        for (var i = 0u; i < ni; i++) {
            store(row0 + i, col0 + j, c[j][i]);
        }
    }
}

// a·bᵀ: column j is a · b[j].
fn outer(a: vec4<f32>, b: vec4<f32>) -> mat4x4<f32> {
    return mat4x4<f32>(a * b.x, a * b.y, a * b.z, a * b.w);
}

@compute @workgroup_size(64)
fn gemm(@builtin(local_invocation_index) lane: u32, @builtin(workgroup_id) wg: vec3<u32>) {
    let c0 = wg.x * BN;
    let m0 = wg.y * BM;
    // Loading, invocation (q, o) fills rows 4q .. 4q + 4 of both tiles at tile k 8o .. 8o + 8:
    // it reads 8 consecutive k of 4 rows and writes 8 vec4s, 4 rows each.
    let q = lane % 16u;
    let o = lane / 16u;
    let xr = min(vec4<u32>(m0 + 4u * q) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(p.m - 1u));
    let wr = min(vec4<u32>(c0 + 4u * q) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(p.rows - 1u));
    // Computing, it owns output rows m0 + 8·ty .. and columns c0 + 8·tx ...
    let tx = lane % 8u;
    let ty = lane / 8u;
    var c00 = mat4x4<f32>();
    var c01 = mat4x4<f32>();
    var c10 = mat4x4<f32>();
    var c11 = mat4x4<f32>();
    for (var k0 = 0u; k0 < p.k; k0 += BK) {
        let e = k0 + 8u * o;
        // Transposed, column t of each matrix holds the 4 rows at one k.
        let xlo = transpose(mat4x4<f32>(x_vec4(xr.x, e), x_vec4(xr.y, e), x_vec4(xr.z, e), x_vec4(xr.w, e)));
        let xhi = transpose(mat4x4<f32>(x_vec4(xr.x, e + 4u), x_vec4(xr.y, e + 4u), x_vec4(xr.z, e + 4u), x_vec4(xr.w, e + 4u)));
        let w0 = w8(wr.x, e);
        let w1 = w8(wr.y, e);
        let w2 = w8(wr.z, e);
        let w3 = w8(wr.w, e);
        let wlo = transpose(mat4x4<f32>(w0[0], w1[0], w2[0], w3[0]));
        let whi = transpose(mat4x4<f32>(w0[1], w1[1], w2[1], w3[1]));
        for (var t = 0u; t < 4u; t++) {
            xs[(8u * o + t) * (BM / 4u) + q] = xlo[t];
            xs[(8u * o + 4u + t) * (BM / 4u) + q] = xhi[t];
            ws[(8u * o + t) * (BN / 4u) + q] = wlo[t];
            ws[(8u * o + 4u + t) * (BN / 4u) + q] = whi[t];
        }
        workgroupBarrier();
        for (var kk = 0u; kk < BK; kk++) {
            let a0 = xs[kk * (BM / 4u) + 2u * ty];
            let a1 = xs[kk * (BM / 4u) + 2u * ty + 1u];
            let b0 = ws[kk * (BN / 4u) + 2u * tx];
            let b1 = ws[kk * (BN / 4u) + 2u * tx + 1u];
            c00 += outer(a0, b0);
            c01 += outer(a0, b1);
            c10 += outer(a1, b0);
            c11 += outer(a1, b1);
        }
        workgroupBarrier();
    }
    let row = m0 + 8u * ty;
    let col = c0 + 8u * tx;
    store_block(c00, row, col);
    store_block(c01, row, col + 4u);
    store_block(c10, row + 4u, col);
    store_block(c11, row + 4u, col + 4u);
}
#endif
