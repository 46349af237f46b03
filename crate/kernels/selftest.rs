//! One compact randomized case per WGSL file and kernel variant (both matmul layouts for every
//! weight format, each attention kernel with both cache types, …) against the CPU references, at
//! odd sizes, outputs poisoned (NaN) first. The browser runs it through the wasm face's
//! `selftest()`; tests/kernels/selftest.rs runs the same cases natively under both profiles.
//! Async: in the browser a readback may only be awaited. Tolerances are those of the native
//! kernel tests (tests/kernels/*.rs, where each is justified), relative to max |reference|.

use crate::gpu::{DType, Encoder, Gpu, GpuError, RowSplit, Tensor};
use crate::testing::{cache_rows, f16_round, filled_cache, rel_err, Rng, StepInput, AMP, NORM_EPS};

use super::attention::{attention_ref, causal_keys, decode_attention, decode_scratch, prefill_attention, vit_attention, vit_attention_ref, KvCache, MAX_DECODE_QUERIES};
use super::copy::copy;
use super::elementwise::{add, add_ref, gelu, gelu_ref, Gelu};
use super::embed::{embed, embed_ref, gather4, gather4_ref, scatter_add_rows, scatter_rows_ref};
use super::matmul::{matmul_ref, matmul_with, silu_pairs_ref, MatmulOpts, Tuning};
use super::norm::{layer_norm, layer_norm_ref, rms_norm, rms_norm_ref};
use super::qk_rope::qk_norm_rope_append;
use super::quant::{dequantized, interleave_rows, Format, Matrix};
use super::rope::{apply_rope, apply_rope_ref};
use super::sample::{argmax, argmax_ref, sample, sample_ref, seen_words, History, SampleParams};

/// One kernel checked: its largest error relative to max |reference| (for discrete outputs,
/// the number of wrong values) and the bound it must meet.
#[derive(Clone, Debug)]
pub struct Case {
    pub name: String,
    pub max_err: f32,
    pub tol: f32,
}

impl Case {
    /// NaN (an unwritten output) never passes.
    pub fn ok(&self) -> bool {
        self.max_err <= self.tol
    }
}

/// f32 math against f64 references (norms, matmul sums, attention): tests/kernels' 1e-5.
const TOL_SUM: f32 = 1e-5;
/// Per-element f32 math (elementwise, rope, gather4): 1e-6.
const TOL_ELEM: f32 = 1e-6;

/// Every case on `gpu`, in a fixed order.
pub async fn run(gpu: &Gpu) -> Result<Vec<Case>, GpuError> {
    let rng = &mut Rng::new(2026);
    let mut out = Vec::new();
    copy_case(gpu, rng, &mut out).await?;
    norm_cases(gpu, rng, &mut out).await?;
    elementwise_cases(gpu, rng, &mut out).await?;
    rope_case(gpu, rng, &mut out).await?;
    qk_rope_case(gpu, rng, &mut out).await?;
    embed_cases(gpu, rng, &mut out).await?;
    matmul_cases(gpu, rng, &mut out).await?;
    attention_cases(gpu, rng, &mut out).await?;
    sample_cases(gpu, rng, &mut out).await?;
    Ok(out)
}

fn case(name: impl Into<String>, max_err: f32, tol: f32) -> Case {
    Case { name: name.into(), max_err, tol }
}

/// Runs what `record` records, then reads `t` back.
async fn after(gpu: &Gpu, t: &Tensor, record: impl FnOnce(&mut Encoder)) -> Result<Vec<f32>, GpuError> {
    let mut enc = Encoder::new(gpu);
    record(&mut enc);
    enc.submit();
    gpu.read_f32(t).await
}

/// Wrong values among `got` (discrete outputs must be exact).
fn mismatches<T: PartialEq>(got: &[T], want: &[T]) -> f32 {
    (got.len().abs_diff(want.len()) + got.iter().zip(want).filter(|(a, b)| a != b).count()) as f32
}

async fn copy_case(gpu: &Gpu, rng: &mut Rng, out: &mut Vec<Case>) -> Result<(), GpuError> {
    let src: Vec<u32> = (0..4 * 1001).map(|_| rng.next_u64() as u32).collect();
    let (s, d) = (gpu.upload_u32(&src, &[src.len()])?, gpu.poisoned(DType::U32, &[src.len()])?);
    let mut enc = Encoder::new(gpu);
    copy(&mut enc, &s, &d);
    enc.submit();
    out.push(case("copy: 4004 words", mismatches(&gpu.read_u32(&d).await?, &src), 0.0));
    Ok(())
}

async fn norm_cases(gpu: &Gpu, rng: &mut Rng, out: &mut Vec<Case>) -> Result<(), GpuError> {
    let (rows, dim) = (5, 301);
    let x = rng.vec(rows * dim, 3.0);
    let (w, b) = (rng.vec(dim, 1.5), rng.vec(dim, 0.5));
    let (gx, gw, gb) = (gpu.upload_f32(&x, &[rows, dim])?, gpu.upload_f32(&w, &[dim])?, gpu.upload_f32(&b, &[dim])?);
    let y = gpu.poisoned(DType::F32, &[rows, dim])?;
    let got = after(gpu, &y, |e| rms_norm(e, &gx, &gw, &y, 1e-6)).await?;
    out.push(case("norm: rms_norm 5x301", rel_err(&got, &rms_norm_ref(&x, &w, 1e-6)), TOL_SUM));
    // An offset mean exercises the two-pass variance.
    let x: Vec<f32> = x.iter().map(|v| v + 5.0).collect();
    let gx = gpu.upload_f32(&x, &[rows, dim])?;
    let y = gpu.poisoned(DType::F32, &[rows, dim])?;
    let got = after(gpu, &y, |e| layer_norm(e, &gx, &gw, &gb, &y, 1e-6)).await?;
    out.push(case("norm: layer_norm 5x301", rel_err(&got, &layer_norm_ref(&x, &w, &b, 1e-6)), TOL_SUM));
    Ok(())
}

async fn elementwise_cases(gpu: &Gpu, rng: &mut Rng, out: &mut Vec<Case>) -> Result<(), GpuError> {
    for kind in [Gelu::Tanh, Gelu::Erf] {
        let x = rng.vec(1027, 6.0);
        let gx = gpu.upload_f32(&x, &[x.len()])?;
        let y = gpu.poisoned(DType::F32, &[x.len()])?;
        let got = after(gpu, &y, |e| gelu(e, kind, &gx, &y)).await?;
        out.push(case(format!("elementwise: gelu {kind:?} 1027"), rel_err(&got, &gelu_ref(kind, &x)), TOL_ELEM));
    }
    let (a, b) = (rng.vec(77, 1.0), rng.vec(77, 1.0));
    let (ga, gb) = (gpu.upload_f32(&a, &[77])?, gpu.upload_f32(&b, &[77])?);
    let got = after(gpu, &ga, |e| add(e, &ga, &gb)).await?;
    // One f32 addition per element, the same on both sides.
    out.push(case("elementwise: add 77", rel_err(&got, &add_ref(&a, &b)), 0.0));
    Ok(())
}

async fn qk_rope_case(gpu: &Gpu, rng: &mut Rng, out: &mut Vec<Case>) -> Result<(), GpuError> {
    // 3 tokens of 4 q and 2 kv heads of 16 after 5 cached rows, in caches of both kinds.
    let (t, qh, kvh, d, past) = (3, 4, 2, 16, 5);
    for dtype in [DType::F16, DType::F32] {
        let step = StepInput::random(rng, t, qh, kvh, d);
        let [q, k, v] = step.reference();
        let cache = KvCache::new(gpu, kvh, past + t, d, dtype)?;
        let (gqkv, norms, now) = step.upload(gpu, &cache, past)?;
        let y = gpu.poisoned(DType::F32, &[t, qh, d])?;
        let got_q = after(gpu, &y, |e| qk_norm_rope_append(e, &gqkv, (&norms, NORM_EPS), &now, &cache, &y)).await?;
        let rows = |all: Vec<f32>| cache_rows(&all, &cache, past..past + t);
        let (got_k, got_v) = (rows(gpu.read_f32(&cache.k).await?), rows(gpu.read_f32(&cache.v).await?));
        let what = format!("{qh}/{kvh} heads d{d} t{t} past{past} {dtype:?} cache");
        out.push(case(format!("qk_rope: q normed + rotated, {what}"), rel_err(&got_q, &q), TOL_SUM));
        // An f16 cache rounds each value by up to 2^-11 of itself.
        let tol = if dtype == DType::F16 { TOL_SUM + 1.0 / 2048.0 } else { TOL_SUM };
        out.push(case(format!("qk_rope: k, v appended, {what}"), rel_err(&got_k, &k).max(rel_err(&got_v, &v)), tol));
    }
    Ok(())
}

async fn rope_case(gpu: &Gpu, rng: &mut Rng, out: &mut Vec<Case>) -> Result<(), GpuError> {
    // 7 rows of 5 heads of 10; heads 1..4 rotated, the others must stay as they were.
    let (t, heads, d) = (7, 5, 10);
    let (cos, sin) = (rng.vec(t * d / 2, 1.0), rng.vec(t * d / 2, 1.0));
    let x = rng.vec(t * heads * d, 2.0);
    let mut want = x.clone();
    apply_rope_ref(&mut want, &cos, &sin, d / 2, heads - 2, d);
    let gx = gpu.upload_f32(&x, &[t, heads, d])?;
    let (gc, gs) = (gpu.upload_f32(&cos, &[t, d / 2])?, gpu.upload_f32(&sin, &[t, d / 2])?);
    let got = after(gpu, &gx, |e| apply_rope(e, &gx, &gc, &gs, heads - 2, d)).await?;
    out.push(case("rope: 7x5x10, 3 heads from 1", rel_err(&got, &want), TOL_ELEM));
    Ok(())
}

async fn embed_cases(gpu: &Gpu, rng: &mut Rng, out: &mut Vec<Case>) -> Result<(), GpuError> {
    // The int4 table in parts of 5 rows; ids from every part, and past the table (zeros).
    let (n, k) = (37, 70);
    let w = rng.vec(n * k, 1.0);
    let mut ids: Vec<u32> = (0..41).map(|_| rng.below(n as u64) as u32).collect();
    ids.extend([n as u32 - 1, n as u32]);
    let table = Matrix::upload(gpu, &w, n, k, Format::Q4, Some(4 * Format::Q4.row_words(k) as u64 * 5))?;
    let gids = gpu.upload_u32(&ids, &[ids.len()])?;
    let y = gpu.poisoned(DType::F32, &[ids.len(), k])?;
    let got = after(gpu, &y, |e| embed(e, &table, &gids, &y)).await?;
    // Copies of stored values: exact.
    out.push(case("embed: q4 37x70 in 8 parts", rel_err(&got, &embed_ref(&dequantized(&w, k, Format::Q4), k, &ids)), 0.0));

    // h holds rows 3..14 of the sequence: position 2 lies before it, 14 after it.
    let (t, d, row0) = (11, 7, 3);
    let h = rng.vec(t * d, 1.0);
    let pos: Vec<u32> = vec![12, 2, 5, 14];
    let feat = rng.vec(pos.len() * d, 1.0);
    let (gh, gp, gf) = (gpu.upload_f32(&h, &[t, d])?, gpu.upload_u32(&pos, &[pos.len()])?, gpu.upload_f32(&feat, &[pos.len(), d])?);
    let got = after(gpu, &gh, |e| scatter_add_rows(e, &gh, row0, &gp, &gf)).await?;
    let mut want = h.clone();
    scatter_rows_ref(&mut want, d, row0, &pos, &feat, true);
    out.push(case("embed: scatter_add_rows 11x7 from row 3", rel_err(&got, &want), 0.0));

    let (rows, dim, m) = (9, 7, 6);
    let table = rng.vec(rows * dim, 1.0);
    let idx: Vec<u32> = (0..4 * m).map(|_| rng.below(rows as u64) as u32).collect();
    let wts = rng.vec(4 * m, 1.0);
    let (gt, gi, gw) = (gpu.upload_f16(&table, &[rows, dim])?, gpu.upload_u32(&idx, &[m, 4])?, gpu.upload_f32(&wts, &[m, 4])?);
    let y = gpu.poisoned(DType::F32, &[m, dim])?;
    let got = after(gpu, &y, |e| gather4(e, &gt, &gi, &gw, &y)).await?;
    out.push(case("embed: gather4 f16 9x7", rel_err(&got, &gather4_ref(&f16_round(&table), dim, &idx, &wts)), TOL_ELEM));
    Ok(())
}

async fn matmul_cases(gpu: &Gpu, rng: &mut Rng, out: &mut Vec<Case>) -> Result<(), GpuError> {
    // k = 70: the int4 tail group is padding; n = 37: no multiple of a row block or tile; the
    // weights in two parts. GEMV (m ≤ 4) and GEMM (m = 37) with the GPU layout, the CPU layout
    // (what lavapipe and SwiftShader take) at m = 5; bias, then accumulation, alternate.
    let (n, k) = (37, 70);
    for format in [Format::F32, Format::F16, Format::Q4] {
        for (i, (m, tuning)) in [(3, Tuning::Gpu), (37, Tuning::Gpu), (5, Tuning::Cpu)].into_iter().enumerate() {
            let (x, w, b, y0) = (rng.vec(m * k, 1.0), rng.vec(n * k, 1.0), rng.vec(n, 1.0), rng.vec(m * n, 2.0));
            let mat = Matrix::upload(gpu, &w, n, k, format, Some(4 * (20 * format.row_words(k)) as u64))?;
            let (gx, gb) = (gpu.upload_f32(&x, &[m, k])?, gpu.upload_f32(&b, &[n])?);
            let acc = i % 2 == 1;
            let y = if acc { gpu.upload_f32(&y0, &[m, n])? } else { gpu.poisoned(DType::F32, &[m, n])? };
            let opts = MatmulOpts { bias: (!acc).then_some(&gb), accumulate: acc, tuning, ..Default::default() };
            let got = after(gpu, &y, |e| matmul_with(e, &gx, &mat, &y, &opts)).await?;
            let mut want = matmul_ref(&x, m, &dequantized(&w, k, format), n, k, (!acc).then_some(&b[..]));
            if acc {
                want.iter_mut().zip(&y0).for_each(|(w, y)| *w += y);
            }
            let kind = if tuning == Tuning::Gpu && m > 4 { "GEMM" } else { "GEMV" };
            let name = format!("matmul: {kind} {format:?} {m}x{n}x{k} {tuning:?} layout{}", if acc { " +=" } else { " + bias" });
            out.push(case(name, rel_err(&got, &want), TOL_SUM));
        }
    }
    // The decoder's fusions on int4, each layout: RMSNorm before, SiLU·mul after (19 gate/up
    // pairs, interleaved, in parts of 10 pairs).
    let (pairs, k) = (19, 70);
    for (m, tuning) in [(3, Tuning::Gpu), (37, Tuning::Gpu), (5, Tuning::Cpu)] {
        let (x, g, wg, wu) = (rng.vec(m * k, 1.0), rng.vec(k, 1.5), rng.vec(pairs * k, 1.0), rng.vec(pairs * k, 1.0));
        let mat = Matrix::upload_pairs(gpu, &wg, &wu, pairs, k, Format::Q4, Some(4 * (20 * Format::Q4.row_words(k)) as u64))?;
        let (gx, gg) = (gpu.upload_f32(&x, &[m, k])?, gpu.upload_f32(&g, &[k])?);
        let y = gpu.poisoned(DType::F32, &[m, pairs])?;
        let opts = MatmulOpts { rms_norm: Some((&gg, 1e-6)), silu_mul: true, tuning, ..Default::default() };
        let got = after(gpu, &y, |e| matmul_with(e, &gx, &mat, &y, &opts)).await?;
        let w = interleave_rows(&dequantized(&wg, k, Format::Q4), &dequantized(&wu, k, Format::Q4), k);
        let want = silu_pairs_ref(&matmul_ref(&rms_norm_ref(&x, &g, 1e-6), m, &w, 2 * pairs, k, None));
        let kind = if tuning == Tuning::Gpu && m > 4 { "GEMM" } else { "GEMV" };
        out.push(case(format!("matmul: {kind} Q4 rms_norm + silu_mul {m}x{pairs}x{k} {tuning:?} layout"), rel_err(&got, &want), TOL_SUM));
    }
    Ok(())
}

async fn attention_cases(gpu: &Gpu, rng: &mut Rng, out: &mut Vec<Case>) -> Result<(), GpuError> {
    // (q heads, kv heads, head dim, queries, past): GQA ×2 and ×4.
    for dtype in [DType::F16, DType::F32] {
        let (qh, kvh, d, t, past) = (4, 2, 32, 9, 40);
        let (cache, k, v) = filled_cache(gpu, rng, kvh, d, past + t, dtype)?;
        let q = rng.vec(t * qh * d, AMP);
        let gq = gpu.upload_f32(&q, &[t, qh, d])?;
        let y = gpu.poisoned(DType::F32, &[t, qh * d])?;
        let got = after(gpu, &y, |e| prefill_attention(e, &gq, &cache, past, &y)).await?;
        let want = attention_ref(&q, &k, &v, qh, kvh, d, &causal_keys(t, past));
        out.push(case(format!("attention: kv_append + prefill {qh}/{kvh} heads d{d} t{t} past{past} {dtype:?} cache"), rel_err(&got, &want), TOL_SUM));

        // Decode from the q|k|v projection: its keys and values appended, then attended to.
        let (qh, kvh, d, t, past) = (8, 2, 64, 3, 300);
        let (cache, k, v) = filled_cache(gpu, rng, kvh, d, past, dtype)?;
        let step = StepInput::random(rng, t, qh, kvh, d);
        let (qkv, norms, now) = step.upload(gpu, &cache, past)?;
        let scratch = decode_scratch(gpu, &cache, qh, MAX_DECODE_QUERIES)?;
        let y = gpu.poisoned(DType::F32, &[t, qh * d])?;
        let got = after(gpu, &y, |e| decode_attention(e, &qkv, (&norms, NORM_EPS), &cache, &now, &scratch, &y)).await?;
        let [q, k_new, v_new] = step.reference();
        let (kc, vc) = (cache_rows(&gpu.read_f32(&cache.k).await?, &cache, 0..past + t), cache_rows(&gpu.read_f32(&cache.v).await?, &cache, 0..past + t));
        let what = format!("{qh}/{kvh} heads d{d} t{t} past{past} {dtype:?} cache");
        let cached_err = rel_err(&kc[..k.len()], &k).max(rel_err(&vc[..v.len()], &v));
        let appended_err = rel_err(&kc[k.len()..], &k_new).max(rel_err(&vc[v.len()..], &v_new));
        // The appended rows: an f16 cache rounds each value by up to 2^-11 of itself.
        let tol = if dtype == DType::F16 { TOL_SUM + 1.0 / 2048.0 } else { TOL_SUM };
        out.push(case(format!("attention: decode's k, v appended, {what}"), cached_err.max(appended_err), tol));
        let want = attention_ref(&q, &kc, &vc, qh, kvh, d, &causal_keys(t, past));
        out.push(case(format!("attention: decode {what}"), rel_err(&got, &want), TOL_SUM));
    }
    // The rows in parts of 4: the second segment's keys lie in three parts.
    let (heads, d, cu) = (2, 16, [0u32, 5, 12]);
    let (n, w) = (cu[2] as usize, 3 * heads * d);
    // q and k at AMP, v at 1 (the qkv rows are [q | k | v]).
    let qkv: Vec<f32> = (0..n * w).map(|i| rng.sym(if i / (heads * d) % 3 == 2 { 1.0 } else { AMP })).collect();
    let gqkv = RowSplit::build(n, w, 4, |r| gpu.upload_f32(&qkv[r.start * w..r.end * w], &[r.len(), w]))?;
    let gcu = gpu.upload_u32(&cu, &[3])?;
    let mut got = Vec::new();
    for (j, p) in gqkv.parts.iter().enumerate() {
        let (y, state) = (gpu.poisoned(DType::F32, &[p.rows.len(), heads * d])?, gpu.poisoned(DType::F32, &[p.rows.len(), heads, 2])?);
        got.extend(after(gpu, &y, |e| vit_attention(e, &gqkv, heads, &cu, &gcu, j, &state, &y)).await?);
    }
    out.push(case("attention: vit 2 heads d16 segments [0, 5, 12] in parts of 4", rel_err(&got, &vit_attention_ref(&qkv, heads, d, &cu)), TOL_SUM));
    Ok(())
}

async fn sample_cases(gpu: &Gpu, rng: &mut Rng, out: &mut Vec<Case>) -> Result<(), GpuError> {
    let vocab = 1001;
    let logits = rng.vec(2 * vocab, 5.0);
    let gl = gpu.upload_f32(&logits, &[2, vocab])?;
    let picked = gpu.poisoned(DType::U32, &[1])?;
    let mut enc = Encoder::new(gpu);
    argmax(&mut enc, &gl, 1, &picked);
    enc.submit();
    let got = gpu.read_u32(&picked).await?;
    out.push(case("sample: argmax 2x1001 row 1", mismatches(&got, &[argmax_ref(&logits[vocab..])]), 0.0));

    // Probabilities 0.1, 0.2, 0.3, 0.4 with top-k 3 and top-p 0.6 keep {3, 2} as 3/7, 4/7, and a
    // repetition penalty on token 1 (filtered anyway): u = 0.44 lies well inside token 3's
    // interval, so both sides must give exactly 3.
    let logits: Vec<f32> = [0.1f32, 0.2, 0.3, 0.4].iter().map(|p| p.ln()).collect();
    let params = SampleParams { top_k: 3, top_p: 0.6, repetition_penalty: 1.3, u: 0.44, ..Default::default() };
    let history = [1u32];
    let (gl, gh) = (gpu.upload_f32(&logits, &[1, 4])?, gpu.upload_u32(&history, &[1])?);
    let seen = gpu.poisoned(DType::U32, &[seen_words(4)])?;
    let picked = gpu.poisoned(DType::U32, &[1])?;
    let mut enc = Encoder::new(gpu);
    sample(&mut enc, &gl, 0, &History { ids: &gh, len: 1, presence_from: 0 }, &params, &seen, &picked)?;
    enc.submit();
    let got = gpu.read_u32(&picked).await?;
    out.push(case("sample: top-k 3, top-p 0.6, repetition 1.3", mismatches(&got, &[sample_ref(&logits, &history, 0, &params)]), 0.0));
    Ok(())
}
