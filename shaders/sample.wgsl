// Token selection from one row of logits by a single workgroup of WG invocations, writing only
// the chosen token id to out[0] (sample also appends it to the history: see below).
//   argmax: greedy, ties to the lowest index (torch.argmax).
//   sample: penalties (in place on the row) → temperature → top-k → top-p → inverse CDF with u.
// A token is kept iff the order-preserving u32 key of its penalised logit reaches a cutoff
// (temperature keeps the order, so the filters need no division). Two routes:
// - top-k ≤ WG, top-p alone, or a row of ≤ CAP tokens: one more pass over the row gathers the
//   largest tokens (a superset of the top k; for top-p alone, enough if their mass suffices)
//   into workgroup memory, and the filters and the draw happen there;
// - otherwise radix descent over the row finds each cutoff (16 thresholds a pass, at most 8
//   passes each for top-k and top-p), and a scan of per-invocation tiles finds the draw.
// Every sum runs in a fixed order, so the same inputs and u always give the same token.

// sample takes its settings, the draw u and the history length from the step buffer `now`
// (history[presence_from..hist_len] also gets the presence penalty) and writes the chosen
// token at history[hist_len] too.

#include "common/reduce.wgsl"
#include "common/step.wgsl"

struct Params {
    vocab: u32,
    row: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> logits: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<u32>;
@group(0) @binding(3) var<storage, read_write> history: array<u32>;
// Two bits per token (in history; in the presence part), rebuilt by every call.
@group(0) @binding(4) var<storage, read_write> seen: array<atomic<u32>>;
@group(0) @binding(5) var<storage, read> now: Step;

// Below every finite logit (a const may not be infinite).
const LOWEST: f32 = -0x1.fffffep+127f;

// Candidates gathered for the selection in workgroup memory.
const CAP: u32 = 2u * WG;

var<workgroup> red4: array<vec4<f32>, WG>;
var<workgroup> cand_l: array<f32, CAP>;
var<workgroup> cand_i: array<u32, CAP>;
var<workgroup> cand_e: array<f32, CAP>;
var<workgroup> cand_n: atomic<u32>;
var<workgroup> scan: array<f32, WG>;
var<workgroup> winner: atomic<u32>;
// Staging for values that steer control flow or must reach everyone (workgroupUniformLoad).
var<workgroup> uni_passes: u32;
var<workgroup> uni_t0: u32;
var<workgroup> uni_n: u32;
var<workgroup> uni_fits: u32;

// Monotone in the float order (−0 folded onto +0, so equal floats get equal keys).
fn key(v: f32) -> u32 {
    let b = select(bitcast<u32>(v), 0u, bitcast<u32>(v) == 0x80000000u);
    return select(b | 0x80000000u, ~b, (b & 0x80000000u) != 0u);
}

// Unnormalised probability; the max is pinned to 1 so a tiny temperature cannot make 0·inf.
fn mass(v: f32, l_max: f32, inv_t: f32) -> f32 {
    return exp(select((v - l_max) * inv_t, 0.0, v == l_max));
}

// Like wg_sum for four sums at once.
fn wg_sum4(v: vec4<f32>, lane: Lane) -> vec4<f32> {
#if SUBGROUPS
    let s = subgroupAdd(v);
    if (lane.sg_lane == 0u) {
        red4[lane.idx / lane.sg_size] = s;
    }
    workgroupBarrier();
    var t = red4[0];
    for (var i = 1u; i < (WG + lane.sg_size - 1u) / lane.sg_size; i++) {
        t += red4[i];
    }
#else
    red4[lane.idx] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (lane.idx < s) {
            red4[lane.idx] += red4[lane.idx + s];
        }
        workgroupBarrier();
    }
    let t = red4[0];
#endif
    workgroupBarrier();
    return t;
}

@compute @workgroup_size(WG)
fn argmax(lane: Lane) {
    let base = p.row * p.vocab;
    var best = LOWEST;
    var at = 0u;
    for (var i = lane.idx; i < p.vocab; i += WG) {
        let v = logits[base + i];
        if (v > best) {
            best = v;
            at = i;
        }
    }
    let m = wg_max(best, lane);
    // Indices are exact in f32 (vocab < 2^24): the max of −index is the lowest index.
    let first = wg_max(select(LOWEST, -f32(at), best == m), lane);
    if (lane.idx == 0u) {
        out[0] = u32(-first);
    }
}

// The sampled token: out[0], and the history's next entry for the penalties of later steps.
fn emit(tok: u32) {
    out[0] = tok;
    if (now.hist_len < arrayLength(&history)) {
        history[now.hist_len] = tok;
    }
}

// Repetition penalty (transformers) for every distinct token of history[..hist_len], then
// presence penalty (vLLM) for those of history[presence_from..]. The seen bits make each token
// claimed by exactly one invocation however often it repeats.
fn penalize(base: u32, lane: Lane) {
    let n = p.vocab;
    for (var w = lane.idx; w < (n + 15u) / 16u; w += WG) {
        atomicStore(&seen[w], 0u);
    }
    storageBarrier();
    for (var j = lane.idx; j < now.hist_len; j += WG) {
        let t = history[j];
        if (t < n) {
            atomicOr(&seen[t / 16u], select(1u, 3u, j >= now.presence_from) << (2u * (t % 16u)));
        }
    }
    storageBarrier();
    for (var j = lane.idx; j < now.hist_len; j += WG) {
        let t = history[j];
        if (t < n) {
            let sh = 2u * (t % 16u);
            let was = (atomicAnd(&seen[t / 16u], ~(3u << sh)) >> sh) & 3u;
            if (was != 0u) {
                var v = logits[base + t];
                v = select(v / now.repetition_penalty, v * now.repetition_penalty, v < 0.0);
                if (was == 3u) {
                    v -= now.presence_penalty;
                }
                logits[base + t] = v;
            }
        }
    }
    storageBarrier();
}

// The largest key t whose weight W(t) — the count (mass = false) or the mass of the tokens with
// key ≥ t and ≥ low — reaches `goal` (a count), or goal·W(low) (a fraction of the mass).
// Radix descent from the bits where `low` and `top` (the largest key) differ, 4 bits a pass.
fn search(base: u32, low: u32, top: u32, by_mass: bool, goal: f32, l_max: f32, inv_t: f32, lane: Lane) -> u32 {
    let bits0 = 32u - countLeadingZeros(low ^ top);
    if (lane.idx == 0u) {
        uni_passes = (bits0 + 3u) / 4u;
    }
    let passes = workgroupUniformLoad(&uni_passes);
    var lo = low & select(~((1u << bits0) - 1u), 0u, bits0 == 32u);
    var bits = bits0;
    var need = goal;
    for (var step = 0u; step < passes; step++) {
        let nb = min(4u, bits);
        let shift = bits - nb;
        let j0 = vec4<u32>(0u, 1u, 2u, 3u);
        let nj = vec4<u32>(1u << nb);
        // Thresholds past the range (nb < 4) compare as never reached.
        let t0 = select(vec4(0xffffffffu), vec4(lo) + (j0 << vec4(shift)), j0 < nj);
        let t1 = select(vec4(0xffffffffu), vec4(lo) + ((j0 + 4u) << vec4(shift)), j0 + 4u < nj);
        let t2 = select(vec4(0xffffffffu), vec4(lo) + ((j0 + 8u) << vec4(shift)), j0 + 8u < nj);
        let t3 = select(vec4(0xffffffffu), vec4(lo) + ((j0 + 12u) << vec4(shift)), j0 + 12u < nj);
        let start = max(lo, low);
        var a0 = vec4(0.0);
        var a1 = vec4(0.0);
        var a2 = vec4(0.0);
        var a3 = vec4(0.0);
        for (var i = lane.idx; i < p.vocab; i += WG) {
            let v = logits[base + i];
            let k = vec4(key(v));
            if (k.x >= start) {
                var w = vec4(1.0);
                if (by_mass) {
                    w = vec4(mass(v, l_max, inv_t));
                }
                a0 += select(vec4(0.0), w, k >= t0);
                a1 += select(vec4(0.0), w, k >= t1);
                a2 += select(vec4(0.0), w, k >= t2);
                a3 += select(vec4(0.0), w, k >= t3);
            }
        }
        let s0 = wg_sum4(a0, lane);
        let s1 = wg_sum4(a1, lane);
        let s2 = wg_sum4(a2, lane);
        let s3 = wg_sum4(a3, lane);
        // W(lo) on the first pass is the whole mass from `low` up.
        if (by_mass && step == 0u) {
            need = goal * s0.x;
        }
        var ws = array<f32, 16>(s0.x, s0.y, s0.z, s0.w, s1.x, s1.y, s1.z, s1.w,
                                s2.x, s2.y, s2.z, s2.w, s3.x, s3.y, s3.z, s3.w);
        // W(lo) ≥ need holds throughout, so j = 0 is always a valid answer.
        var j = 0u;
        for (var q = 1u; q < (1u << nb); q++) {
            if (ws[q] >= need) {
                j = q;
            }
        }
        lo += j << shift;
        bits = shift;
    }
    return max(lo, low);
}

// Exclusive prefix sum of x over the lanes in lane order, and the total (Hillis–Steele).
fn wg_scan(x: f32, lane: Lane) -> vec2<f32> {
    scan[lane.idx] = x;
    workgroupBarrier();
    for (var off = 1u; off < WG; off <<= 1u) {
        var add = 0.0;
        if (lane.idx >= off) {
            add = scan[lane.idx - off];
        }
        workgroupBarrier();
        scan[lane.idx] += add;
        workgroupBarrier();
    }
    let r = vec2(select(0.0, scan[max(lane.idx, 1u) - 1u], lane.idx > 0u), scan[WG - 1u]);
    workgroupBarrier();
    return r;
}

// Gathers every token at or above a threshold into cand_*, returning how many there are (only
// the first CAP are stored). The threshold is the row's minimum when the row fits, else the
// rank-th largest of the invocations' maxima: `rank` distinct tokens reach it, so the top
// `rank` tokens all do, and for well-spread logits about WG·ln(WG / (WG − rank)) tokens in
// all (21 for rank 20, 355 for 192). With `row_part`, also sums the masses of the whole row.
fn gather(base: u32, lane_max: f32, l_min: f32, rank: u32, row_part: ptr<function, f32>, with_mass: bool, l_max: f32, inv_t: f32, lane: Lane) -> u32 {
    if (p.vocab <= CAP) {
        if (lane.idx == 0u) {
            uni_t0 = key(l_min);
        }
    } else {
        cand_l[lane.idx] = lane_max;
        workgroupBarrier();
        var r = 0u;
        for (var d = 0u; d < WG; d++) {
            let m = cand_l[d];
            r += u32(m > lane_max || (m == lane_max && d < lane.idx));
        }
        if (r == rank - 1u) {
            uni_t0 = key(lane_max);
        }
    }
    if (lane.idx == 0u) {
        atomicStore(&cand_n, 0u);
    }
    let t0 = workgroupUniformLoad(&uni_t0);
    for (var i = lane.idx; i < p.vocab; i += WG) {
        let v = logits[base + i];
        if (with_mass) {
            *row_part += mass(v, l_max, inv_t);
        }
        if (key(v) >= t0) {
            let s = atomicAdd(&cand_n, 1u);
            if (s < CAP) {
                cand_l[s] = v;
                cand_i[s] = i;
            }
        }
    }
    workgroupBarrier();
    if (lane.idx == 0u) {
        uni_n = atomicLoad(&cand_n);
    }
    return workgroupUniformLoad(&uni_n);
}

// Candidates with a strictly larger value than slot s (the first n).
fn n_greater(s: u32, n: u32) -> u32 {
    var r = 0u;
    for (var d = 0u; d < n; d++) {
        r += u32(cand_l[d] > cand_l[s]);
    }
    return r;
}

// Their mass, summed in slot order.
fn mass_greater(s: u32, n: u32) -> f32 {
    var m = 0.0;
    for (var d = 0u; d < n; d++) {
        m += select(0.0, cand_e[d], cand_l[d] > cand_l[s]);
    }
    return m;
}

// Sorts the n gathered candidates by token index, two slots an invocation (2·lane, 2·lane + 1).
// The gather order varies from run to run, and index order is the one the inverse CDF needs, so
// every later sum runs in one fixed order.
fn sort_candidates(n: u32, lane: Lane) {
    let s0 = 2u * lane.idx;
    let s1 = s0 + 1u;
    let v0 = cand_l[s0];
    let i0 = cand_i[s0];
    let v1 = cand_l[s1];
    let i1 = cand_i[s1];
    var r0 = 0u;
    var r1 = 0u;
    for (var d = 0u; d < n; d++) {
        r0 += u32(cand_i[d] < i0);
        r1 += u32(cand_i[d] < i1);
    }
    workgroupBarrier();
    if (s0 < n) {
        cand_l[r0] = v0;
        cand_i[r0] = i0;
    }
    if (s1 < n) {
        cand_l[r1] = v1;
        cand_i[r1] = i1;
    }
    workgroupBarrier();
}

// The mass of candidate slot s if top-k keeps it (fewer than k strictly larger, so ties with
// the k-th value stay), else 0.
fn cand_mass(s: u32, n: u32, k_on: bool, l_max: f32, inv_t: f32) -> f32 {
    let kept = s < n && (!k_on || n_greater(s, n) < now.top_k);
    return select(0.0, mass(cand_l[s], l_max, inv_t), kept);
}

// Top-p against `goal` (top_p of the mass), then the inverse CDF, among the sorted candidates
// whose masses after top-k are e0 and e1 in this invocation's two slots.
fn draw_candidates(n: u32, e0: f32, e1: f32, goal: f32, lane: Lane) {
    let s0 = 2u * lane.idx;
    let s1 = s0 + 1u;
    cand_e[s0] = e0;
    cand_e[s1] = e1;
    workgroupBarrier();
    var w0 = e0;
    var w1 = e1;
    if (now.top_p < 1.0) {
        // Kept iff the mass of strictly larger tokens is below the goal, which keeps every
        // token tied with the last one needed.
        w0 = select(0.0, e0, mass_greater(s0, n) < goal);
        w1 = select(0.0, e1, mass_greater(s1, n) < goal);
    }
    // Inverse CDF in index order: the last slot with mass whose prefix is ≤ u·total (the first
    // with mass starts at 0, so one always qualifies).
    let pre = wg_scan(w0 + w1, lane);
    let target_mass = now.u * pre.y;
    if (lane.idx == 0u) {
        atomicStore(&winner, 0u);
    }
    workgroupBarrier();
    if (w0 > 0.0 && pre.x <= target_mass) {
        atomicMax(&winner, s0);
    }
    if (w1 > 0.0 && pre.x + w0 <= target_mass) {
        atomicMax(&winner, s1);
    }
    workgroupBarrier();
    if (lane.idx == 0u) {
        emit(cand_i[atomicLoad(&winner)]);
    }
}

// Inverse CDF over the kept tokens in index order. Invocation t owns the contiguous tile
// t·len.., the tiles' masses are scanned, and the owner of the tile holding u·total walks it.
fn pick(base: u32, cutoff: u32, l_max: f32, inv_t: f32, lane: Lane) {
    let len = (p.vocab + WG - 1u) / WG;
    let start = min(lane.idx * len, p.vocab);
    let end = min(start + len, p.vocab);
    var s = 0.0;
    for (var i = start; i < end; i++) {
        let v = logits[base + i];
        s += select(0.0, mass(v, l_max, inv_t), key(v) >= cutoff);
    }
    // Tile boundaries come from one scan, so consecutive tiles meet exactly; the last tile
    // with mass starting at or below the goal holds it (the first such starts at 0).
    let pre = wg_scan(s, lane);
    let before = pre.x;
    let goal = now.u * pre.y;
    if (lane.idx == 0u) {
        atomicStore(&winner, 0u);
    }
    workgroupBarrier();
    if (s > 0.0 && before <= goal) {
        atomicMax(&winner, lane.idx);
    }
    workgroupBarrier();
    if (lane.idx == atomicLoad(&winner)) {
        // The walk repeats the tile's sum in the same order; rounding past its end falls back
        // on the tile's last token with mass.
        let r = goal - before;
        var c = 0.0;
        var tok = start;
        for (var i = start; i < end; i++) {
            let v = logits[base + i];
            let w = select(0.0, mass(v, l_max, inv_t), key(v) >= cutoff);
            c += w;
            if (w > 0.0) {
                tok = i;
                if (c > r) {
                    break;
                }
            }
        }
        emit(tok);
    }
}

@compute @workgroup_size(WG)
fn sample(lane: Lane) {
    let base = p.row * p.vocab;
    if (now.hist_len > 0u && (now.repetition_penalty != 1.0 || now.presence_penalty != 0.0)) {
        penalize(base, lane);
    }
    var hi = LOWEST;
    var lo = -LOWEST;
    for (var i = lane.idx; i < p.vocab; i += WG) {
        let v = logits[base + i];
        hi = max(hi, v);
        lo = min(lo, v);
    }
    let l_max = wg_max(hi, lane);
    let l_min = -wg_max(-lo, lane);
    let inv_t = 1.0 / now.temperature;
    let k_on = now.top_k > 0u && now.top_k < p.vocab;
    let p_on = now.top_p < 1.0;
    // Usually everything happens in workgroup memory after one more pass over the row. With
    // top-k the candidates hold every token it keeps; with top-p alone on a long row they are
    // only the largest tokens, which hold the top-p set iff their mass reaches the goal.
    if (p.vocab <= CAP || (k_on && now.top_k <= WG) || (!k_on && p_on)) {
        let partial = !k_on && p.vocab > CAP;
        var row_part = 0.0;
        let n = gather(base, hi, l_min, select(3u * WG / 4u, now.top_k, k_on), &row_part, partial, l_max, inv_t, lane);
        if (n <= CAP) {
            sort_candidates(n, lane);
            let e0 = cand_mass(2u * lane.idx, n, k_on, l_max, inv_t);
            let e1 = cand_mass(2u * lane.idx + 1u, n, k_on, l_max, inv_t);
            var goal = 0.0;
            var fits = true;
            if (p_on) {
                let total = wg_sum(e0 + e1, lane);
                goal = now.top_p * total;
                if (partial) {
                    goal = now.top_p * wg_sum(row_part, lane);
                    if (lane.idx == 0u) {
                        uni_fits = u32(total >= goal);
                    }
                    fits = workgroupUniformLoad(&uni_fits) == 1u;
                }
            }
            if (fits) {
                draw_candidates(n, e0, e1, goal, lane);
                return;
            }
        }
    }
    // Otherwise thresholds by radix search and the inverse CDF over the whole row.
    let top = key(l_max);
    var cutoff = key(l_min);
    if (k_on) {
        cutoff = search(base, cutoff, top, false, f32(now.top_k), l_max, inv_t, lane);
    }
    if (now.top_p < 1.0) {
        cutoff = search(base, cutoff, top, true, now.top_p, l_max, inv_t, lane);
    }
    pick(base, cutoff, l_max, inv_t, lane);
}
