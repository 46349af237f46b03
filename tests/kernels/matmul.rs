use qwen3_vl_webgpu::gpu::{DType, Encoder, Gpu, Tensor};
use qwen3_vl_webgpu::kernels::matmul::*;
use qwen3_vl_webgpu::kernels::quant::{dequantized, Format, Matrix};
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

/// Runs one matmul on the GPU and checks it, with bias and/or accumulation into random `y`.
fn check(gpu: &Gpu, rng: &mut Rng, c: &Case, format: Format, with_bias: bool, acc: bool, tuning: Tuning) {
    let Case { m, n, k, part_rows } = *c;
    let x = rng.vec(m * k, 1.0);
    let w = rng.vec(n * k, 1.0);
    let b = rng.vec(n, 1.0);
    let limit = part_rows.map(|r| 4 * (r * format.row_words(k)) as u64);
    let mat = Matrix::upload(gpu, &w, n, k, format, limit).unwrap();
    if let Some(r) = part_rows {
        assert_eq!(mat.parts.len(), n.div_ceil(r), "parts");
    }
    let gx = gpu.upload_f32(&x, &[m, k]).unwrap();
    let gb = gpu.upload_f32(&b, &[n]).unwrap();
    let y0 = rng.vec(m * n, 2.0);
    let gy: Tensor = if acc { gpu.upload_f32(&y0, &[m, n]).unwrap() } else { gpu.poisoned(DType::F32, &[m, n]).unwrap() };
    let mut enc = Encoder::new(gpu);
    matmul_with(&mut enc, &gx, &mat, &gy, &MatmulOpts { bias: with_bias.then_some(&gb), accumulate: acc, tuning });
    enc.submit();
    let got = gpu.read_f32_blocking(&gy).unwrap();
    let mut want = matmul_ref(&x, m, &dequantized(&w, k, format), n, k, with_bias.then_some(&b[..]));
    if acc {
        want.iter_mut().zip(&y0).for_each(|(w, y)| *w += y);
    }
    let what = format!(
        "{m}x{n}x{k} {format:?} parts={} bias={with_bias} acc={acc} {tuning:?} {:?}",
        mat.parts.len(),
        gpu.caps.profile
    );
    assert_close(&what, &got, &want, TOL);
}

/// Every format and both tunings at awkward sizes: k not a multiple of 4, 8 or 32 (the int4
/// tail group is padding), n not a multiple of the row block or tile. The (bias, accumulate)
/// combinations rotate with the case, so over the cases each format meets bias and
/// accumulation on and off under each tuning (every combination for every case would take
/// minutes to compile on lavapipe).
fn check_all(cases: &[Case]) {
    const COMBOS: [(bool, bool); 4] = [(false, false), (true, false), (false, true), (true, true)];
    let mut rng = Rng::new(11);
    for gpu in gpus() {
        for (i, c) in cases.iter().enumerate() {
            for (f, format) in FORMATS.into_iter().enumerate() {
                let (bias, acc) = COMBOS[(i + f) % 4];
                check(gpu, &mut rng, c, format, bias, acc, Tuning::Gpu);
                let (bias, acc) = COMBOS[(i + f + 2) % 4];
                check(gpu, &mut rng, c, format, bias, acc, Tuning::Cpu);
            }
        }
    }
}

#[test]
fn gemv_matches_reference() {
    check_all(&[
        Case { m: 1, n: 1, k: 1, part_rows: None },
        Case { m: 1, n: 37, k: 70, part_rows: None },
        Case { m: 1, n: 5, k: 7, part_rows: None },
        Case { m: 2, n: 19, k: 64, part_rows: Some(8) },
        Case { m: 3, n: 33, k: 36, part_rows: None },
        Case { m: 4, n: 21, k: 1000, part_rows: Some(10) },
    ]);
}

#[test]
fn gemm_matches_reference() {
    check_all(&[
        Case { m: 5, n: 67, k: 70, part_rows: None },
        Case { m: 7, n: 3, k: 36, part_rows: None },
        Case { m: 300, n: 150, k: 1000, part_rows: Some(100) },
    ]);
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
                matmul_with(&mut enc, &gx, &mat, &gy, &MatmulOpts { bias: None, accumulate: false, tuning });
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
