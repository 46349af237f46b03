use qwen3_vl_webgpu::gpu::{DType, Encoder};
use qwen3_vl_webgpu::kernels::elementwise::*;
use qwen3_vl_webgpu::testing::{assert_close, Rng};

use crate::gpus;

// f32 arithmetic against f64 references: exp/division/erf each within a few ulp, so 1e-6 of
// the largest value covers every element with room for a GPU's looser exp (WGSL allows
// 3 + 2|x| ulp).
const TOL: f32 = 1e-6;

#[test]
fn erf_reference_matches_known_values() {
    // Values of erf from CPython's math.erf (double precision).
    let known = [
        (0.1, 0.1124629160182849),
        (0.5, 0.5204998778130465),
        (1.0, 0.8427007929497149),
        (1.5, 0.9661051464753108),
        (2.0, 0.9953222650189527),
        (2.9999, 0.9999778955735178),
        (3.0, 0.9999779095030014),
        (3.5, 0.9999992569016276),
        (4.0, 0.9999999845827421),
        (5.0, 0.9999999999984626),
        (6.0, 1.0),
    ];
    for (x, want) in known {
        assert!((erf_ref(x) - want).abs() < 1e-15, "erf({x}) = {} not {want}", erf_ref(x));
        assert_eq!(erf_ref(-x), -erf_ref(x));
    }
    assert_eq!(erf_ref(0.0), 0.0);
}

#[test]
fn gelu_matches_reference_in_and_out_of_place() {
    let mut rng = Rng::new(22);
    for gpu in gpus() {
        for kind in [Gelu::Tanh, Gelu::Erf] {
            for &n in &[1, 7, 12, 1027, 64 * 4096] {
                let x = rng.vec(n, 6.0);
                let want = gelu_ref(kind, &x);
                let gx = gpu.upload_f32(&x, &[n]).unwrap();
                let gy = gpu.poisoned(DType::F32, &[n]).unwrap();
                let mut enc = Encoder::new(gpu);
                gelu(&mut enc, kind, &gx, &gy);
                gelu_inplace(&mut enc, kind, &gx);
                enc.submit();
                let what = format!("gelu {kind:?} {n} {:?}", gpu.caps.profile);
                assert_close(&what, &gpu.read_f32_blocking(&gy).unwrap(), &want, TOL);
                assert_close(&format!("{what} in place"), &gpu.read_f32_blocking(&gx).unwrap(), &want, TOL);
            }
        }
    }
}

#[test]
fn gelu_erf_is_accurate_everywhere() {
    // The error of erf itself, not only near the largest values: on a dense grid over [−8, 8]
    // (and at edges and huge inputs), |gelu − ref| less one f32 rounding of the result, over
    // |x|/2, is erf's error. The shader's fits hold it to 7e-8 on the CPU; 1e-7 fails a
    // 1.5e-7-accurate approximation such as Abramowitz-Stegun 7.1.26.
    let mut x: Vec<f32> = (0..40_000).map(|i| -8.0 + 16.0 * i as f32 / 40_000.0).collect();
    x.extend([0.0, -0.0, 1e-30, -1e-6, 0.99999994, 1.0, 3.9999998, 4.0, 1e30, -1e30, 3e38]);
    let want = gelu_ref(Gelu::Erf, &x);
    for gpu in gpus() {
        let gx = gpu.upload_f32(&x, &[x.len()]).unwrap();
        let gy = gpu.poisoned(DType::F32, &[x.len()]).unwrap();
        let mut enc = Encoder::new(gpu);
        gelu(&mut enc, Gelu::Erf, &gx, &gy);
        enc.submit();
        let got = gpu.read_f32_blocking(&gy).unwrap();
        for ((&v, &g), &w) in x.iter().zip(&got).zip(&want) {
            let rounding = w.abs() as f64 * f32::EPSILON as f64;
            let err = ((g as f64 - w as f64).abs() - rounding).max(0.0) / (0.5 * v.abs() as f64);
            assert!(g == w || err <= 1e-7, "gelu_erf({v}) = {g}, want {w} ({:?})", gpu.caps.profile);
        }
    }
}

#[test]
fn add_matches_reference() {
    let mut rng = Rng::new(23);
    for gpu in gpus() {
        for &n in &[1, 7, 2048, 2049, 1024 * 33] {
            let (a, b) = (rng.vec(n, 4.0), rng.vec(n, 4.0));
            let ga = gpu.upload_f32(&a, &[n]).unwrap();
            let gb = gpu.upload_f32(&b, &[n]).unwrap();
            let mut enc = Encoder::new(gpu);
            add(&mut enc, &ga, &gb);
            enc.submit();
            // One f32 addition, the same on both sides: exact.
            assert_close(&format!("add {n} {:?}", gpu.caps.profile), &gpu.read_f32_blocking(&ga).unwrap(), &add_ref(&a, &b), 0.0);
        }
    }
}
