use qwen3_vl_webgpu::kernels::quant::*;
use qwen3_vl_webgpu::testing::{f16_round, Rng};

use crate::gpus;

#[test]
fn encodings_round_trip_within_their_precision() {
    let mut rng = Rng::new(3);
    for &(n, k) in &[(1, 1), (3, 31), (5, 33), (2, 64), (7, 100)] {
        let w = rng.vec(n * k, 2.0);
        assert_eq!(dequantized(&w, k, Format::F32), w);
        assert_eq!(dequantized(&w, k, Format::F16), f16_round(&w));
        let q = dequantized(&w, k, Format::Q4);
        for (r, (row, qrow)) in w.chunks(k).zip(q.chunks(k)).enumerate() {
            for (g, (grp, qgrp)) in row.chunks(GROUP).zip(qrow.chunks(GROUP)).enumerate() {
                let m = grp.iter().fold(0f32, |m, v| m.max(v.abs()));
                // Step d = m/8: rounding errs by at most d/2, the clamped +m end by d (plus f16).
                for (a, b) in grp.iter().zip(qgrp) {
                    assert!((a - b).abs() <= m / 8.0 * 1.01, "row {r} group {g}: {a} -> {b}");
                }
                // The extreme value is represented exactly (up to the f16 scale).
                let ext = grp.iter().fold(0f32, |e, &v| if v.abs() > e.abs() { v } else { e });
                let i = grp.iter().position(|&v| v == ext).unwrap();
                assert!((qgrp[i] - ext).abs() <= ext.abs() * 1e-3);
            }
        }
    }
}

#[test]
fn matrices_split_under_the_binding_limit() {
    let mut rng = Rng::new(4);
    let (n, k) = (37, 70);
    let w = rng.vec(n * k, 1.0);
    for gpu in gpus() {
        for format in [Format::F32, Format::F16, Format::Q4] {
            let row_bytes = 4 * format.row_words(k) as u64;
            let m = Matrix::upload(gpu, &w, n, k, format, Some(row_bytes * 5)).unwrap();
            assert_eq!(m.parts.len(), n.div_ceil(5));
            assert_eq!(m.parts.last().unwrap().rows, 35..37);
            assert!(m.parts.iter().all(|p| p.data.bytes() <= row_bytes * 5));
            // Read back every part: the words equal the CPU encoding of those rows.
            let (data, _) = encode(&w, k, format);
            let got: Vec<u32> = m.parts.iter().flat_map(|p| gpu.read_u32_blocking(&p.data).unwrap()).collect();
            assert_eq!(got, data);
        }
    }
}

/// A part larger than one upload block is written block by block (UPLOAD_CHUNK bytes of rows
/// each): data and scales read back equal to the whole matrix's encoding.
#[test]
fn matrices_upload_in_blocks() {
    let mut rng = Rng::new(5);
    let k = 4096;
    let n = qwen3_vl_webgpu::gpu::UPLOAD_CHUNK / (4 * Format::Q4.row_words(k)) + 37;
    let w = rng.vec(n * k, 1.0);
    let (data, scales) = encode(&w, k, Format::Q4);
    for gpu in gpus() {
        let m = Matrix::upload(gpu, &w, n, k, Format::Q4, None).unwrap();
        assert_eq!(m.parts.len(), 1);
        assert_eq!(gpu.read_u32_blocking(&m.parts[0].data).unwrap(), data);
        assert_eq!(gpu.read_u32_blocking(m.parts[0].scales.as_ref().unwrap()).unwrap(), scales);
    }
}

/// Gate/up pairs: rows interleaved (a₀, b₀, a₁, …), data and scales alike, and parts cut
/// between pairs even when the limit allows an odd number of rows.
#[test]
fn pairs_interleave_and_split_between_pairs() {
    let mut rng = Rng::new(5);
    let (n, k) = (19, 70);
    let (a, b) = (rng.vec(n * k, 1.0), rng.vec(n * k, 1.0));
    let gpu = gpus()[1];
    for format in [Format::F32, Format::F16, Format::Q4] {
        let row_bytes = 4 * format.row_words(k) as u64;
        let m = Matrix::upload_pairs(gpu, &a, &b, n, k, format, Some(row_bytes * 5)).unwrap();
        assert_eq!(m.n, 2 * n);
        assert!(m.parts.iter().all(|p| p.rows.start % 2 == 0 && p.rows.len() == 4.min(2 * n - p.rows.start)), "{:?}", m.parts.iter().map(|p| p.rows.clone()).collect::<Vec<_>>());
        let ((da, sa), (db, sb)) = (encode(&a, k, format), encode(&b, k, format));
        let data: Vec<u32> = m.parts.iter().flat_map(|p| gpu.read_u32_blocking(&p.data).unwrap()).collect();
        assert_eq!(data, interleave_rows(&da, &db, format.row_words(k)));
        if format == Format::Q4 {
            let scales: Vec<u32> = m.parts.iter().flat_map(|p| gpu.read_u32_blocking(p.scales.as_ref().unwrap()).unwrap()).collect();
            assert_eq!(scales, interleave_rows(&sa, &sb, format.scale_words(k)));
        }
    }
    assert_eq!(interleave_rows(&[1, 2, 3, 4], &[5, 6, 7, 8], 2), [1, 2, 5, 6, 3, 4, 7, 8]);
}
