use qwen3_vl_webgpu::gpu::{DType, Encoder, Gpu, Tensor};
use qwen3_vl_webgpu::kernels::matmul::*;
use qwen3_vl_webgpu::kernels::norm::rms_norm_ref;
use qwen3_vl_webgpu::kernels::quant::{dequantized, interleave_rows, Format, Matrix};
use qwen3_vl_webgpu::testing::{assert_close, Rng};

use crate::gpus;

// Against the f64 reference on the *dequantised* weights the only difference is f32 rounding
// in the sums: each output adds k products in f32 (per invocation, then across invocations; or
// k-sequentially in the GEMM's tiles), an error of ~√k·2⁻²⁴ of the terms' scale typically and
// k·2⁻²⁴ at worst; the int4 GEMV forms Σq·x − 8·Σx per group, whose cancellation costs a few
// bits more. For k ≤ 2048 and outputs ~√k times the terms, 1e-5 of the largest output holds
// that with a margin (seen: at most 2e-6, the GEMM at k = 2048).
const TOL: f32 = 1e-5;

const FORMATS: [Format; 3] = [Format::F32, Format::F16, Format::Q4];

struct Case {
    m: usize,
    n: usize,
    k: usize,
    /// Rows per weight part (the split a 151936-row head needs, forced at small sizes).
    part_rows: Option<usize>,
}

/// What rides along the product (each combination is its own kernel variant).
#[derive(Clone, Copy, Debug, Default)]
struct Fused {
    bias: bool,
    acc: bool,
    /// RMSNorm prologue.
    rms: bool,
    /// SiLU·mul epilogue: the case's n counts (gate, up) pairs, 2n weight rows.
    silu: bool,
}

/// Runs one matmul on the GPU and checks it against the composed references, accumulating
/// into random `y` when asked.
fn check(gpu: &Gpu, rng: &mut Rng, c: &Case, format: Format, f: Fused, tuning: Tuning) {
    let Case { m, n, k, part_rows } = *c;
    let rows = if f.silu { 2 * n } else { n };
    let x = rng.vec(m * k, 1.0);
    let w = rng.vec(rows * k, 1.0);
    let b = rng.vec(rows, 1.0);
    let g = rng.vec(k, 1.5);
    let limit = part_rows.map(|r| 4 * (r * format.row_words(k)) as u64);
    let (mat, wq) = if f.silu {
        // Pairs from the two halves: what Linear::load_pairs makes of gate_proj and up_proj.
        let (gate, up) = w.split_at(n * k);
        let mat = Matrix::upload_pairs(gpu, gate, up, n, k, format, limit).unwrap();
        (mat, interleave_rows(&dequantized(gate, k, format), &dequantized(up, k, format), k))
    } else {
        (Matrix::upload(gpu, &w, n, k, format, limit).unwrap(), dequantized(&w, k, format))
    };
    if let Some(r) = part_rows {
        assert_eq!(mat.parts.len(), rows.div_ceil(r & !(f.silu as usize)), "parts");
    }
    let gx = gpu.upload_f32(&x, &[m, k]).unwrap();
    let gb = gpu.upload_f32(&b, &[rows]).unwrap();
    let gg = gpu.upload_f32(&g, &[k]).unwrap();
    let y0 = rng.vec(m * n, 2.0);
    let gy: Tensor = if f.acc { gpu.upload_f32(&y0, &[m, n]).unwrap() } else { gpu.poisoned(DType::F32, &[m, n]).unwrap() };
    let opts = MatmulOpts { bias: f.bias.then_some(&gb), accumulate: f.acc, rms_norm: f.rms.then_some((&gg, 1e-6)), silu_mul: f.silu, tuning };
    let mut enc = Encoder::new(gpu);
    matmul_with(&mut enc, &gx, &mat, &gy, &opts);
    enc.submit();
    let got = gpu.read_f32_blocking(&gy).unwrap();
    let xn = if f.rms { rms_norm_ref(&x, &g, 1e-6) } else { x };
    let mut want = matmul_ref(&xn, m, &wq, rows, k, f.bias.then_some(&b[..]));
    if f.silu {
        want = silu_pairs_ref(&want);
    }
    if f.acc {
        want.iter_mut().zip(&y0).for_each(|(w, y)| *w += y);
    }
    let what = format!("{m}x{n}x{k} {format:?} parts={} {f:?} {tuning:?} {:?}", mat.parts.len(), gpu.caps.profile);
    assert_close(&what, &got, &want, TOL);
}

/// Every format and both tunings at awkward sizes: k not a multiple of 4, 8 or 32 (the int4
/// tail group is padding), n not a multiple of the row block or tile. The (bias, accumulate)
/// combinations rotate with the case, so over the cases each format meets bias and
/// accumulation on and off under each tuning (every combination for every case would take
/// minutes to compile on lavapipe); `fuse` says which fusions ride along.
fn check_all(cases: &[Case], fuse: &[(bool, bool)]) {
    const COMBOS: [(bool, bool); 4] = [(false, false), (true, false), (false, true), (true, true)];
    let mut rng = Rng::new(11);
    for gpu in gpus() {
        for (i, c) in cases.iter().enumerate() {
            for (f, format) in FORMATS.into_iter().enumerate() {
                let (rms, silu) = fuse[(i + f) % fuse.len()];
                let (bias, acc) = COMBOS[(i + f) % 4];
                check(gpu, &mut rng, c, format, Fused { bias, acc, rms, silu }, Tuning::Gpu);
                let (bias, acc) = COMBOS[(i + f + 2) % 4];
                check(gpu, &mut rng, c, format, Fused { bias, acc, rms, silu }, Tuning::Cpu);
            }
        }
    }
}

const GEMV_CASES: [Case; 6] = [
    Case { m: 1, n: 1, k: 1, part_rows: None },
    Case { m: 1, n: 37, k: 70, part_rows: None },
    Case { m: 1, n: 5, k: 7, part_rows: None },
    Case { m: 2, n: 19, k: 64, part_rows: Some(8) },
    Case { m: 3, n: 33, k: 36, part_rows: None },
    Case { m: 4, n: 21, k: 1000, part_rows: Some(10) },
];

const GEMM_CASES: [Case; 3] = [
    Case { m: 5, n: 67, k: 70, part_rows: None },
    Case { m: 7, n: 3, k: 36, part_rows: None },
    Case { m: 300, n: 150, k: 1000, part_rows: Some(100) },
];

#[test]
fn gemv_matches_reference() {
    check_all(&GEMV_CASES, &[(false, false)]);
}

#[test]
fn gemm_matches_reference() {
    check_all(&GEMM_CASES, &[(false, false)]);
}

/// The RMSNorm prologue and the SiLU·mul epilogue, alone and together, in every layout.
#[test]
fn fused_norm_and_silu_match_reference() {
    let fuse = [(true, false), (false, true), (true, true)];
    check_all(&GEMV_CASES, &fuse);
    check_all(&GEMM_CASES, &fuse);
}

/// Standard normal samples (Box–Muller), as trained weights roughly are.
fn normal(rng: &mut Rng, n: usize) -> Vec<f32> {
    (0..n)
        .map(|_| {
            let (u, v) = (rng.uniform().max(1e-12), rng.uniform());
            (-2.0 * u.ln()).sqrt() * (std::f32::consts::TAU * v).cos()
        })
        .collect()
}

/// A real-sized int4 projection (2048 → 1024; decode and prefill, both tunings, so the GEMV,
/// the GEMM and the chunked GEMV) against the reference on the dequantised weights, and its
/// quantisation error against the unquantised f32 matmul, reported so a change to the encoding
/// shows.
///
/// Bound: rounding to the step d = max|w_g|/8 errs uniformly within ±d/2 (variance d²/12),
/// independent of w and x, so ‖y_q − y‖/‖y‖ ≈ √(E[d²]/12)/σ_w. For 32 normal weights
/// √E[max|w|²] ≈ 2.39σ (sampled), giving 2.39/8/√12 ≈ 8.6% (a little less: each group's
/// extreme is exact); uniform weights would give 6.1%. Asserted within [6%, 11%].
#[test]
fn q4_real_size_and_quantisation_error() {
    let (n, k) = (1024, 2048);
    let mut rng = Rng::new(12);
    let w = normal(&mut rng, n * k);
    let wq = dequantized(&w, k, Format::Q4);
    for m in [1, 64] {
        let x = normal(&mut rng, m * k);
        let exact = matmul_ref(&x, m, &w, n, k, None);
        let want = matmul_ref(&x, m, &wq, n, k, None);
        for gpu in gpus() {
            let mat = Matrix::upload(gpu, &w, n, k, Format::Q4, None).unwrap();
            let gx = gpu.upload_f32(&x, &[m, k]).unwrap();
            for tuning in [Tuning::Gpu, Tuning::Cpu] {
                let gy = gpu.poisoned(DType::F32, &[m, n]).unwrap();
                let mut enc = Encoder::new(gpu);
                matmul_with(&mut enc, &gx, &mat, &gy, &MatmulOpts { tuning, ..Default::default() });
                enc.submit();
                let got = gpu.read_f32_blocking(&gy).unwrap();
                let what = format!("int4 {m}x{n}x{k} {tuning:?} {:?}", gpu.caps.profile);
                assert_close(&what, &got, &want, TOL);
                let norm = |v: &mut dyn Iterator<Item = f32>| v.map(|e| (e as f64).powi(2)).sum::<f64>().sqrt();
                let rel = norm(&mut got.iter().zip(&exact).map(|(g, e)| g - e)) / norm(&mut exact.iter().copied());
                eprintln!("{what}: relative RMS error vs f32 weights {:.2}%", 100.0 * rel);
                assert!((0.06..0.11).contains(&rel), "{what}: int4 error {rel} outside the expected ~8.6%");
            }
        }
    }
}
