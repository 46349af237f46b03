use qwen3_vl_webgpu::gpu::{DType, Encoder};
use qwen3_vl_webgpu::kernels::embed::*;
use qwen3_vl_webgpu::kernels::quant::{dequantized, Format, Matrix};
use qwen3_vl_webgpu::kernels::rope::block_major;
use qwen3_vl_webgpu::testing::{assert_close, f16_round, Rng};

use crate::gpus;

#[test]
fn embed_gathers_rows_of_every_format_across_parts() {
    let mut rng = Rng::new(31);
    for gpu in gpus() {
        for &(n, k) in &[(37, 70), (9, 1), (20, 7), (300, 2048)] {
            let w = rng.vec(n * k, 1.0);
            // Ids from every part, repeats, and ids past the table (zeros by contract).
            let mut ids: Vec<u32> = (0..41).map(|_| rng.below(n as u64) as u32).collect();
            ids.extend([0, n as u32 - 1, n as u32, u32::MAX]);
            for format in [Format::F32, Format::F16, Format::Q4] {
                // Parts of 5 rows: several dispatches, the last one short.
                let m = Matrix::upload(gpu, &w, n, k, format, Some(4 * format.row_words(k) as u64 * 5)).unwrap();
                assert!(m.parts.len() > 1);
                let gids = gpu.upload_u32(&ids, &[ids.len()]).unwrap();
                let out = gpu.poisoned(DType::F32, &[ids.len(), k]).unwrap();
                let mut enc = Encoder::new(gpu);
                embed(&mut enc, &m, &gids, &out);
                enc.submit();
                let got = gpu.read_f32_blocking(&out).unwrap();
                // Copies of stored values (int4: a small integer times an f16 scale, exact in
                // f32): bit-exact.
                let want = embed_ref(&dequantized(&w, k, format), k, &ids);
                assert_close(&format!("embed {format:?} {n}x{k} {:?}", gpu.caps.profile), &got, &want, 0.0);
            }
        }
    }
}

/// h holds rows row0.. of a sequence (a prefill chunk): positions before or after it are
/// skipped.
#[test]
fn scatter_sets_and_adds_rows() {
    let mut rng = Rng::new(32);
    for gpu in gpus() {
        for &(t, d, row0) in &[(1, 1, 0), (11, 7, 0), (13, 12, 5), (40, 2048, 3), (9, 5, 17)] {
            let h = rng.vec(t * d, 1.0);
            // Distinct rows in a shuffled order, plus some before and past h.
            let mut pos: Vec<u32> = (row0 as u32..(row0 + t) as u32).filter(|_| rng.below(2) == 0).collect();
            pos.reverse();
            pos.push((row0 + t + 3) as u32);
            pos.extend((0..row0 as u32).filter(|_| rng.below(3) == 0));
            let feat = rng.vec(pos.len() * d, 1.0);
            for add in [false, true] {
                let gh = gpu.upload_f32(&h, &[t, d]).unwrap();
                let gp = gpu.upload_u32(&pos, &[pos.len()]).unwrap();
                let gf = gpu.upload_f32(&feat, &[pos.len(), d]).unwrap();
                let mut enc = Encoder::new(gpu);
                if add {
                    scatter_add_rows(&mut enc, &gh, row0, &gp, &gf);
                } else {
                    scatter_rows(&mut enc, &gh, row0, &gp, &gf);
                }
                enc.submit();
                let mut want = h.clone();
                scatter_rows_ref(&mut want, d, row0, &pos, &feat, add);
                // Copies and single f32 additions, identical on both sides.
                let what = format!("scatter add={add} {t}x{d} from row {row0} {:?}", gpu.caps.profile);
                assert_close(&what, &gpu.read_f32_blocking(&gh).unwrap(), &want, 0.0);
            }
        }
    }
}

#[test]
fn pos_interp_matches_hand_computed_taps() {
    // A 5×5 table resampled to a 2×4 grid. Rows sample at i·4/1 = [0, 4]; columns at
    // i·4/3 = [0, 1.3333334, 2.6666667, 4] (f32), so column fractions are 0.33333337 and
    // 0.66666675, and the weights 1 − d, 1 − |d − 1| in f32. Taps past the table clamp to row 4.
    type Taps = ([u32; 2], [f32; 2]);
    let rows: [Taps; 2] = [([0, 1], [1.0, 0.0]), ([4, 4], [1.0, 0.0])];
    let cols: [Taps; 4] = [
        ([0, 1], [1.0, 0.0]),
        ([1, 2], [0.6666666, 0.33333337]),
        ([2, 3], [0.33333325, 0.66666675]),
        ([4, 4], [1.0, 0.0]),
    ];
    let (idx, w) = pos_interp(&[[1, 2, 4]], 2, 5);
    // Block-major: block 0 = patches (0,0) (0,1) (1,0) (1,1), block 1 = (0,2) (0,3) (1,2) (1,3).
    for (k, &(r, c)) in block_major(2, 4, 2).iter().enumerate() {
        let ((ht, hw), (wt, ww)) = (rows[r], cols[c]);
        let want_idx = [ht[0] * 5 + wt[0], ht[0] * 5 + wt[1], ht[1] * 5 + wt[0], ht[1] * 5 + wt[1]];
        assert_eq!(idx[4 * k..4 * k + 4], want_idx, "patch {k}");
        assert_eq!(w[4 * k..4 * k + 4], [hw[0] * ww[0], hw[0] * ww[1], hw[1] * ww[0], hw[1] * ww[1]], "patch {k}");
    }
    // transformers' output for this grid, token by token.
    assert_eq!(idx[..12], [0, 1, 5, 6, 1, 2, 6, 7, 20, 21, 20, 21]);
    assert_eq!(idx[28..], [24, 24, 24, 24]);
    // Frames repeat.
    let (idx2, w2) = pos_interp(&[[2, 2, 4]], 2, 5);
    assert_eq!((idx2, w2), ([idx.clone(), idx].concat(), [w.clone(), w].concat()));
}

#[test]
fn pos_interp_weights_blend_a_linear_table_exactly() {
    // On the 48×48 grid with E[i·48 + j] = (i, j), bilinear weights reproduce the sample point:
    // Σ w = 1 and Σ w·E = (linspace_h[r], linspace_w[c]) up to f32 rounding.
    let (t, h, w) = (1, 18, 26);
    let (idx, wt) = pos_interp(&[[t, h, w]], 2, 48);
    for (k, &(r, c)) in block_major(h, w, 2).iter().enumerate() {
        let (ks, ws) = (&idx[4 * k..4 * k + 4], &wt[4 * k..4 * k + 4]);
        assert!(ks.iter().all(|&i| i < 48 * 48));
        let sum: f32 = ws.iter().sum();
        let at = |f: fn(u32) -> u32| ks.iter().zip(ws).map(|(&i, &x)| f(i) as f32 * x).sum::<f32>();
        let (y, x) = (at(|i| i / 48), at(|i| i % 48));
        let want = |n: usize, i: usize| 47.0 * i as f32 / (n - 1) as f32;
        assert!((sum - 1.0).abs() < 1e-6, "patch {k}: weights sum to {sum}");
        assert!((y - want(h, r)).abs() < 1e-4 && (x - want(w, c)).abs() < 1e-4, "patch {k}: ({y}, {x})");
    }
}

#[test]
fn gather4_matches_reference() {
    let mut rng = Rng::new(33);
    for gpu in gpus() {
        // (table rows, dim, grids): random ids at odd sizes, then the ViT's real table shape
        // with the interpolation of a 2-frame grid.
        for &(rows, dim, grid) in &[(5, 1, [1, 2, 4]), (9, 7, [1, 2, 2]), (2304, 1024, [2, 8, 6])] {
            let table = rng.vec(rows * dim, 1.0);
            let (idx, w) = if rows == 2304 {
                pos_interp(&[grid], 2, 48)
            } else {
                let n = grid.iter().product::<usize>();
                ((0..4 * n).map(|_| rng.below(rows as u64) as u32).collect(), rng.vec(4 * n, 1.0))
            };
            let n = idx.len() / 4;
            for dtype in [DType::F32, DType::F16] {
                let (gt, stored) = match dtype {
                    DType::F16 => (gpu.upload_f16(&table, &[rows, dim]).unwrap(), f16_round(&table)),
                    _ => (gpu.upload_f32(&table, &[rows, dim]).unwrap(), table.clone()),
                };
                let gi = gpu.upload_u32(&idx, &[n, 4]).unwrap();
                let gw = gpu.upload_f32(&w, &[n, 4]).unwrap();
                let out = gpu.poisoned(DType::F32, &[n, dim]).unwrap();
                let mut enc = Encoder::new(gpu);
                gather4(&mut enc, &gt, &gi, &gw, &out);
                enc.submit();
                // Same products summed in the same order; a fused multiply-add on the GPU
                // moves each step by under an ulp: 1e-6 of the largest value.
                let what = format!("gather4 {dtype:?} {rows}x{dim} {:?}", gpu.caps.profile);
                assert_close(&what, &gpu.read_f32_blocking(&out).unwrap(), &gather4_ref(&stored, dim, &idx, &w), 1e-6);
            }
        }
    }
}
