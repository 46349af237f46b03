// y[m, col0 + r] (+)= Σ_k x[m, k] · W[r, k] (+ bias[col0 + r]) for the rows r of one weight
// part (kernels/quant.rs has the formats), accumulating in f32, with two fusions:
//   RMS:  x is RMS-normalised first, x · rsqrt(mean(x²) + eps) ⊙ g, in the same pass: x ⊙ g
//         is what meets the weights and the row's rsqrt (from Σx², summed alongside) scales
//         the dot products, so no normalised copy of x exists.
//   SILU: W's rows are interleaved (gate_i, up_i) pairs; the pair's outputs meet in the
//         epilogue and y[m, i] (+)= silu(gate_i) · up_i, y holding n/2 columns.
// Three layouts (kernels/matmul.rs picks one):
//   gemv:     M ≤ 4 rows of x on a GPU. Row groups of TPR invocations walk RPT weight rows
//             together, each invocation streaming whole vec4<u32> units TPR apart (a group
//             reads contiguous memory), U units loaded before any is used; the group's sums
//             meet through subgroup shuffles (RC lanes) and, past those, workgroup memory.
//   gemv_cpu: up to 4 rows of x on a CPU adapter. Each workgroup owns wg_rows weight rows and
//             streams them once per pass of MB ≤ 2 x rows: WG invocations split each row along
//             k, SPL adjacent 32-byte steps each, keeping their x slices in registers for all
//             the rows; per-row partial sums meet in workgroup memory.
//   gemm:     any m (prefill, the ViT). A 64×64 output tile per workgroup, k in steps of 32
//             (one int4 group): both operand tiles are decoded to f32 in workgroup memory
//             (k-major, 16 KiB together) and each of 64 invocations accumulates an 8×8 micro-tile.
// Flags: W_F32 | W_F16 | W_Q4 (weight format), VEC4 (weight rows are whole vec4<u32> units:
// always for int4, for f32/f16 when k allows), X4 (k % 4 == 0: x rows are whole vec4s),
// BIAS, RMS, SILU, SUBGROUPS, and the layout's GEMV (+ GEMV_CPU) or GEMM with its constants.
// Named W_* because the flag F16 would enable shader-f16.

struct Params {
    m: u32,
    // Columns of y (the matrix's n, or n / 2 with SILU), and the weight rows this part covers:
    // col0 .. col0 + rows.
    n: u32,
    col0: u32,
    rows: u32,
    k: u32,
    // Stored words per weight row.
    row_words: u32,
    // int4: scale words per row.
    scale_words: u32,
    // gemv*: the rows m0 .. m0 + mm of x (and y) this dispatch serves; gemv_cpu: weight rows
    // per workgroup.
    m0: u32,
    mm: u32,
    wg_rows: u32,
    // y += … (else y = …).
    acc: u32,
    // RMS: the norm's epsilon.
    eps: f32,
}

// Optional bindings follow the fixed ones in order: scales, bias, the norm's weight.
#if W_Q4
const B_SCALES = 4u;
const B_OPT = 5u;
#else
const B_OPT = 4u;
#endif
#if BIAS
const B_BIAS = B_OPT;
const B_NORM = B_OPT + 1u;
#else
const B_NORM = B_OPT;
#endif

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
@group(0) @binding(B_SCALES) var<storage, read> scales: array<u32>;
#endif
#if BIAS
@group(0) @binding(B_BIAS) var<storage, read> bias: array<f32>;
#endif
#if RMS
#if X4
@group(0) @binding(B_NORM) var<storage, read> norm_w: array<vec4<f32>>;
#else
@group(0) @binding(B_NORM) var<storage, read> norm_w: array<f32>;
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

// x[row, e .. e + 4] and (RMS) the norm's weight[e .. e + 4], zero past k (the last unit or
// tile of a row may reach past it).
#if X4
fn x_vec4(row: u32, e: u32) -> vec4<f32> {
    if (e >= p.k) {
        return vec4<f32>(0.0);
    }
    return x[(row * p.k + e) / 4u];
}
#if RMS
fn norm_vec4(e: u32) -> vec4<f32> {
    if (e >= p.k) {
        return vec4<f32>(0.0);
    }
    return norm_w[e / 4u];
}
#endif
#else
// Branch-free (clamped reads, then zeros): this path is rare, and compiles much faster.
fn clamped(e: u32) -> vec4<u32> {
    return min(vec4<u32>(e) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(p.k - 1u));
}
fn in_k(e: u32, v: vec4<f32>) -> vec4<f32> {
    return select(vec4<f32>(0.0), v, vec4<u32>(e) + vec4<u32>(0u, 1u, 2u, 3u) < vec4<u32>(p.k));
}
fn x_vec4(row: u32, e: u32) -> vec4<f32> {
    let i = row * p.k + clamped(e);
    return in_k(e, vec4<f32>(x[i.x], x[i.y], x[i.z], x[i.w]));
}
#if RMS
fn norm_vec4(e: u32) -> vec4<f32> {
    let i = clamped(e);
    return in_k(e, vec4<f32>(norm_w[i.x], norm_w[i.y], norm_w[i.z], norm_w[i.w]));
}
#endif
#endif

#if RMS
// The rsqrt that normalises a row whose squares sum to `ss`.
fn rms_scale(ss: f32) -> f32 {
    return inverseSqrt(ss / f32(p.k) + p.eps);
}
#endif

#if W_Q4
// f16 scale of int4 group `g` of part row `r`.
fn q4_scale(r: u32, g: u32) -> f32 {
    let v = unpack2x16float(scales[r * p.scale_words + g / 2u]);
    return select(v.x, v.y, (g & 1u) == 1u);
}
#endif

// Pre-activation column `c` of this part with its bias.
fn biased(c: u32, v: f32) -> f32 {
#if BIAS
    return v + bias[p.col0 + c];
#else
    return v;
#endif
}

// y[row, j] = v, or += v.
fn put(row: u32, j: u32, v: f32) {
    let i = row * p.n + j;
    var out = v;
    if (p.acc != 0u) {
        out += y[i];
    }
    y[i] = out;
}

// Pre-activation column `c` of this part for x row `row`.
fn store(row: u32, c: u32, v: f32) {
    put(row, p.col0 + c, biased(c, v));
}

#if SILU
// The pair at columns c (gate, even) and c + 1 (up): silu(gate) · up. e^88 is below f32's
// maximum, and past it the quotient is already ~0 at f32 precision.
fn store_pair(row: u32, c: u32, gate: f32, up: f32) {
    let g = biased(c, gate);
    put(row, (p.col0 + c) / 2u, g / (1.0 + exp(min(-g, 88.0))) * biased(c + 1u, up));
}
#endif

// ---------------------------------------------------------------------------------------------
#if GEMV

// One unit of x (UNIT elements), prepared once and reused for all the rows it meets.
struct XUnit {
    v: array<vec4<f32>, XV>,
    // int4: Σ x over the group, so the −8 offset costs one multiply per group, not per weight.
    sum: f32,
    // RMS: Σ x² of the raw values.
    sq: f32,
}

// int4: nibble j of a word is masked in place (value q·16^j, exact in f32) instead of shifted
// down, and x is pre-scaled by 16^-j to match: one and + convert + fma per weight.
const NIB_MASK = vec4<u32>(0xFu, 0xF0u, 0xF00u, 0xF000u);
const NIB_SCALE = vec4<f32>(1.0, 1.0 / 16.0, 1.0 / 256.0, 1.0 / 4096.0);

fn x_unit(row: u32, unit: u32) -> XUnit {
    var u: XUnit;
    u.sum = 0.0;
    u.sq = 0.0;
    for (var i = 0u; i < XV; i++) {
        let e = unit * UNIT + 4u * i;
        var v = x_vec4(row, e);
#if RMS
        if (UNIT < 4u) {
            // A unit of one or two values: the rest of the vec4 belongs to the next units.
            v = select(vec4<f32>(0.0), v, vec4<u32>(0u, 1u, 2u, 3u) < vec4<u32>(UNIT));
        }
        u.sq += dot(v, v);
        v *= norm_vec4(e);
#endif
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

// The scale of unit `u` of part row `r`: with int4 a unit is one group.
fn unit_scale(r: u32, u: u32) -> f32 {
#if W_Q4
    return q4_scale(r, u);
#else
    return 1.0;
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

#if GEMV_CPU

// Per-output partial sums (wg_rows · mm outputs, then with RMS mm sums of squares), one per
// subgroup or, without subgroups, per invocation; rows padded by one so the column reads of
// the final sums spread over banks. RED (from the caller) is what the largest use needs.
var<workgroup> red: array<f32, RED>;

@compute @workgroup_size(WG)
fn gemv_cpu(ids: GemvIds) {
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
    let outs = p.wg_rows * p.mm;
    // x rows mp .. mp + MB per pass: more would not stay in registers. Later passes re-read
    // this workgroup's rows of W from cache.
    for (var mp = 0u; mp < p.mm; mp += MB) {
        // Step s covers units 2j and 2j + 1, j = lane·SPL + s: 32 contiguous bytes of a row
        // (int4 groups 2j and 2j + 1 share a scale word), SPL steps in a row per invocation
        // (on a CPU a SIMD group runs all its rows before the next group starts, and longer
        // runs stream better). Its x is loaded once and serves all wg_rows rows.
        var xu: array<array<XUnit, 2>, SPL * MB>;
        var sq = array<f32, MB>();
        for (var s = 0u; s < SPL; s++) {
            let u = 2u * (lane * SPL + s);
            for (var c = 0u; c < MB; c++) {
                // A missing last row of an odd mm repeats the one before; it is never stored.
                let mi = p.m0 + min(mp + c, p.mm - 1u);
                xu[s * MB + c][0] = x_unit(mi, u);
                xu[s * MB + c][1] = x_unit(mi, u + 1u);
                sq[c] += xu[s * MB + c][0].sq + xu[s * MB + c][1].sq;
            }
        }
        // Slot outs + c holds the sums of squares of x row c (RMS).
        for (var ri = 0u; ri <= p.wg_rows; ri++) {
            // Rows past the part's end redo its last row; their sums are never stored.
            let r = min(r0 + ri, p.rows - 1u);
            // Explicitly zeroed: Chromium 156 (Tint + SwiftShader) does not re-zero a loop
            // body's `var` without an initializer on each iteration, as WGSL requires.
            var acc = array<f32, MB>();
            if (ri == p.wg_rows) {
#if RMS
                acc = sq;
#else
                break;
#endif
            } else {
                for (var s = 0u; s < SPL; s++) {
                    let j = lane * SPL + s;
                    let u = 2u * j;
#if TAIL
                    // Only when the units do not split evenly: steps past the row's end, and
                    // a lone last unit (its x is zero past k; its load is skipped).
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
#if SILU
    let per = p.wg_rows / 2u;
#else
    let per = p.wg_rows;
#endif
    // Output v is (weight row, or pair, v / mm; x row v % mm).
    for (var v = lane; v < per * p.mm; v += WG) {
        let c = v % p.mm;
        var scale = 1.0;
#if RMS
        var ss = 0.0;
        for (var i = 0u; i < cols; i++) {
            ss += red[(outs + c) * stride + i];
        }
        scale = rms_scale(ss);
#endif
#if SILU
        let ri = 2u * (v / p.mm);
#else
        let ri = v / p.mm;
#endif
        var total = 0.0;
#if SILU
        var up = 0.0;
#endif
        for (var i = 0u; i < cols; i++) {
            total += red[(ri * p.mm + c) * stride + i];
#if SILU
            up += red[((ri + 1u) * p.mm + c) * stride + i];
#endif
        }
        if (r0 + ri < p.rows) {
#if SILU
            store_pair(p.m0 + c, r0 + ri, scale * total, scale * up);
#else
            store(p.m0 + c, r0 + ri, scale * total);
#endif
        }
    }
}

#else

// Per invocation: RPT rows × M x rows of dot products, then with RMS the M sums of squares.
#if RMS
const OUTS = RPT * M + M;
#else
const OUTS = RPT * M;
#endif

// Partial sums of the RC-lane pieces of each row group when RC < TPR (RED = WG / RC · OUTS);
// one unused float otherwise.
var<workgroup> red: array<f32, RED>;

@compute @workgroup_size(WG)
fn gemv(ids: GemvIds) {
    let lane = ids.lane;
    let lk = lane % TPR;
    // This group's first weight row; rows past the part's end redo its last row, never stored.
    let r0 = ((ids.wg.y * ids.nwg.x + ids.wg.x) * (WG / TPR) + lane / TPR) * RPT;
    var rows: array<u32, RPT>;
    for (var r = 0u; r < RPT; r++) {
        rows[r] = min(r0 + r, p.rows - 1u);
    }
    let units = (p.k + UNIT - 1u) / UNIT;
    var acc = array<f32, OUTS>();
    for (var u0 = lk; u0 < units; u0 += U * TPR) {
        // All U · RPT weight units in flight before the first is used (a unit past the row's
        // end is a repeat of its last, weighted zero below).
        var wu: array<vec4<u32>, U * RPT>;
        var d: array<f32, U * RPT>;
        for (var j = 0u; j < U; j++) {
            let u = min(u0 + j * TPR, units - 1u);
            for (var r = 0u; r < RPT; r++) {
                wu[j * RPT + r] = w_unit(rows[r], u);
                d[j * RPT + r] = unit_scale(rows[r], u);
            }
        }
        for (var j = 0u; j < U; j++) {
            let u = u0 + j * TPR;
            if (u < units) {
                for (var c = 0u; c < M; c++) {
                    let xu = x_unit(p.m0 + c, u);
                    for (var r = 0u; r < RPT; r++) {
                        acc[r * M + c] += unit_dot(wu[j * RPT + r], d[j * RPT + r], xu);
                    }
#if RMS
                    acc[RPT * M + c] += xu.sq;
#endif
                }
            }
        }
    }
#if SUBGROUPS
    // Butterfly sums over aligned runs of RC lanes (RC at most the smallest subgroup size, so
    // a run never straddles subgroups): every lane of a run ends with the run's total.
    for (var o = 0u; o < OUTS; o++) {
        for (var s = 1u; s < RC; s <<= 1u) {
            acc[o] += subgroupShuffleXor(acc[o], s);
        }
    }
#endif
    if (RC < TPR) {
        if (lk % RC == 0u) {
            for (var o = 0u; o < OUTS; o++) {
                red[lane / RC * OUTS + o] = acc[o];
            }
        }
        workgroupBarrier();
        if (lk == 0u) {
            for (var o = 0u; o < OUTS; o++) {
                var t = 0.0;
                for (var i = 0u; i < TPR / RC; i++) {
                    t += red[(lane / RC + i) * OUTS + o];
                }
                acc[o] = t;
            }
        }
    }
    if (lk == 0u) {
        for (var c = 0u; c < M; c++) {
#if RMS
            let scale = rms_scale(acc[RPT * M + c]);
#else
            let scale = 1.0;
#endif
#if SILU
            for (var r = 0u; r < RPT; r += 2u) {
                if (r0 + r < p.rows) {
                    store_pair(p.m0 + c, r0 + r, scale * acc[r * M + c], scale * acc[(r + 1u) * M + c]);
                }
            }
#else
            for (var r = 0u; r < RPT; r++) {
                if (r0 + r < p.rows) {
                    store(p.m0 + c, r0 + r, scale * acc[r * M + c]);
                }
            }
#endif
        }
    }
}

#endif
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

// Stores a 4×4 block (c[j][i] is row row0 + i, column col0 + j, scaled by s[i]), clipped at
// the edges. The bounds are run-time values, so the loops stay loops: unrolled, these 16
// stores with their bias and accumulate loads made up most of the shader's compile time on
// lavapipe.
fn store_block(c: mat4x4<f32>, s: vec4<f32>, row0: u32, col0: u32) {
    let ni = min(4u, p.m - min(row0, p.m));
    let nj = min(4u, p.rows - min(col0, p.rows));
    for (var i = 0u; i < ni; i++) {
#if SILU
        // Columns pair up within the block (col0 is even, so is every part's row count).
        for (var j = 0u; j < nj; j += 2u) {
            store_pair(row0 + i, col0 + j, s[i] * c[j][i], s[i] * c[j + 1u][i]);
        }
#else
        for (var j = 0u; j < nj; j++) {
            store(row0 + i, col0 + j, s[i] * c[j][i]);
        }
#endif
    }
}

// a·bᵀ: column j is a · b[j].
fn outer(a: vec4<f32>, b: vec4<f32>) -> mat4x4<f32> {
    return mat4x4<f32>(a * b.x, a * b.y, a * b.z, a * b.w);
}

// x rows r.x .. r.w at k = e .. e + 4, transposed (column t holds the 4 rows at k = e + t),
// normalised with RMS (their squares added to `ss` first).
fn x_block(r: vec4<u32>, e: u32, ss: ptr<function, vec4<f32>>) -> mat4x4<f32> {
    let v = mat4x4<f32>(x_vec4(r.x, e), x_vec4(r.y, e), x_vec4(r.z, e), x_vec4(r.w, e));
#if RMS
    *ss += vec4<f32>(dot(v[0], v[0]), dot(v[1], v[1]), dot(v[2], v[2]), dot(v[3], v[3]));
    let g = norm_vec4(e);
    return transpose(mat4x4<f32>(v[0] * g, v[1] * g, v[2] * g, v[3] * g));
#else
    return transpose(v);
#endif
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
    // RMS: Σ x² of the loaded rows over this invocation's share of k.
    var ss = vec4<f32>(0.0);
    for (var k0 = 0u; k0 < p.k; k0 += BK) {
        let e = k0 + 8u * o;
        let xlo = x_block(xr, e, &ss);
        let xhi = x_block(xr, e + 4u, &ss);
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
    // Row scales: the four loaders of rows 4q .. 4q + 4 meet in the (now free) x tile.
    var s0 = vec4<f32>(1.0);
    var s1 = vec4<f32>(1.0);
#if RMS
    xs[o * 16u + q] = ss;
    workgroupBarrier();
    var t0 = vec4<f32>(0.0);
    var t1 = vec4<f32>(0.0);
    for (var i = 0u; i < 4u; i++) {
        t0 += xs[i * 16u + 2u * ty];
        t1 += xs[i * 16u + 2u * ty + 1u];
    }
    s0 = inverseSqrt(t0 / f32(p.k) + p.eps);
    s1 = inverseSqrt(t1 / f32(p.k) + p.eps);
#endif
    let row = m0 + 8u * ty;
    let col = c0 + 8u * tx;
    store_block(c00, s0, row, col);
    store_block(c01, s0, row, col + 4u);
    store_block(c10, s1, row + 4u, col);
    store_block(c11, s1, row + 4u, col + 4u);
}
#endif
