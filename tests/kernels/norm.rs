use qwen3_vl_webgpu::gpu::{DType, Encoder};
use qwen3_vl_webgpu::kernels::norm::*;
use qwen3_vl_webgpu::testing::{assert_close, Rng};

use crate::gpus;

// f32 arithmetic throughout; the reference accumulates in f64, so the difference is the
// GPU's f32 summation order and rsqrt: well under 1e-5 of the largest output.
const TOL: f32 = 1e-5;

#[test]
fn rms_norm_matches_reference() {
    let mut rng = Rng::new(1);
    for gpu in gpus() {
        // 65537 rows need a second row of workgroups (65535 per grid dimension).
        for &(rows, dim) in &[(1, 1), (3, 7), (5, 128), (2, 2048), (17, 300), (1, 6144), (65537, 3)] {
            let x = rng.vec(rows * dim, 3.0);
            let w = rng.vec(dim, 1.5);
            let gx = gpu.upload_f32(&x, &[rows, dim]).unwrap();
            let gw = gpu.upload_f32(&w, &[dim]).unwrap();
            let gy = gpu.poisoned(DType::F32, &[rows, dim]).unwrap();
            let mut enc = Encoder::new(gpu);
            rms_norm(&mut enc, &gx, &gw, &gy, 1e-6);
            enc.submit();
            let got = gpu.read_f32_blocking(&gy).unwrap();
            assert_close(&format!("rms_norm {rows}x{dim} {:?}", gpu.caps.profile), &got, &rms_norm_ref(&x, &w, 1e-6), TOL);
        }
    }
}

#[test]
fn layer_norm_matches_reference() {
    let mut rng = Rng::new(2);
    for gpu in gpus() {
        for &(rows, dim) in &[(1, 1), (3, 7), (9, 64), (4, 1024), (13, 4096), (2, 333)] {
            // An offset mean exercises the two-pass variance.
            let x: Vec<f32> = rng.vec(rows * dim, 2.0).iter().map(|v| v + 5.0).collect();
            let (w, b) = (rng.vec(dim, 1.0), rng.vec(dim, 0.5));
            let gx = gpu.upload_f32(&x, &[rows, dim]).unwrap();
            let gw = gpu.upload_f32(&w, &[dim]).unwrap();
            let gb = gpu.upload_f32(&b, &[dim]).unwrap();
            let gy = gpu.poisoned(DType::F32, &[rows, dim]).unwrap();
            let mut enc = Encoder::new(gpu);
            layer_norm(&mut enc, &gx, &gw, &gb, &gy, 1e-6);
            enc.submit();
            let got = gpu.read_f32_blocking(&gy).unwrap();
            assert_close(&format!("layer_norm {rows}x{dim} {:?}", gpu.caps.profile), &got, &layer_norm_ref(&x, &w, &b, 1e-6), TOL);
        }
    }
}
