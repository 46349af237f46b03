use qwen3_vl_webgpu::gpu::{DType, Encoder, Gpu, Tensor};
use qwen3_vl_webgpu::kernels::attention::{kv_append, KvCache};
use qwen3_vl_webgpu::kernels::norm::rms_norm;
use qwen3_vl_webgpu::kernels::qk_rope::*;
use qwen3_vl_webgpu::kernels::rope::apply_rope;
use qwen3_vl_webgpu::testing::{assert_close, cache_rows, f16_round, Rng, StepInput, NORM_EPS};

use crate::gpus;

// q: the norm's f32 sum against the reference's f64 (as tests/kernels/norm.rs, 1e-5), then
// one rotation (an ulp). k in an f16 cache is also rounded by up to 2^-11 of itself.
const TOL: f32 = 1e-5;
const TOL_F16: f32 = TOL + 1.0 / 2048.0;

/// (q heads, kv heads, head dim, tokens, past)
const CASES: &[(usize, usize, usize, usize, usize)] = &[
    (1, 1, 8, 1, 0),
    (3, 1, 16, 5, 2),
    (6, 3, 24, 7, 11),
    (4, 2, 64, 3, 7),
    (16, 8, 128, 2, 100),
    (2, 2, 256, 9, 0),
];

/// A cache of `dtype` whose every word is NaN, so rows the kernel must not write show.
fn nan_cache(gpu: &Gpu, kv_heads: usize, capacity: usize, d: usize, dtype: DType) -> KvCache {
    let cache = KvCache::new(gpu, kv_heads, capacity, d, dtype).unwrap();
    for t in [&cache.k, &cache.v] {
        gpu.write_buffer(&t.buffer, 0, &vec![0xFF; t.bytes() as usize]);
    }
    cache
}

/// Rows `past..past + t` of each head of a cache tensor, as `[t, kv_heads, d]`, and whether
/// every other row is still NaN.
fn appended(gpu: &Gpu, t: &Tensor, cache: &KvCache, past: usize, n: usize) -> (Vec<f32>, bool) {
    let all = gpu.read_f32_blocking(t).unwrap();
    let others = [0..past, past + n..cache.capacity].into_iter().all(|rows| cache_rows(&all, cache, rows).iter().all(|x| x.is_nan()));
    (cache_rows(&all, cache, past..past + n), others)
}

#[test]
fn qk_norm_rope_append_matches_reference() {
    let mut rng = Rng::new(21);
    for gpu in gpus() {
        for &(qh, kvh, d, t, past) in CASES {
            for dtype in [DType::F16, DType::F32] {
                let step = StepInput::random(&mut rng, t, qh, kvh, d);
                let [q, k, v] = step.reference();
                let cache = nan_cache(gpu, kvh, past + t + 2, d, dtype);
                let (gqkv, norms, now) = step.upload(gpu, &cache, past).unwrap();
                let gq = gpu.poisoned(DType::F32, &[t, qh, d]).unwrap();
                let mut enc = Encoder::new(gpu);
                qk_norm_rope_append(&mut enc, &gqkv, (&norms, NORM_EPS), &now, &cache, &gq);
                enc.submit();
                let what = format!("{qh}/{kvh} heads d{d} t{t} past{past} {dtype:?} cache {:?}", gpu.caps.profile);
                assert_close(&format!("q {what}"), &gpu.read_f32_blocking(&gq).unwrap(), &q, TOL);
                let (got_k, k_rest) = appended(gpu, &cache.k, &cache, past, t);
                let (got_v, v_rest) = appended(gpu, &cache.v, &cache, past, t);
                assert!(k_rest && v_rest, "{what}: rows outside past..past + t were written");
                assert_close(&format!("k {what}"), &got_k, &k, if dtype == DType::F16 { TOL_F16 } else { TOL });
                // v is stored as it came, rounded to f16 as the host rounds.
                assert_eq!(got_v, if dtype == DType::F16 { f16_round(&v) } else { v }, "v {what}");
            }
        }
    }
}

/// The fused kernel against the kernels it replaces (rms_norm on q and k, rope on each, the
/// append): the same values, since it runs their expressions in their order.
#[test]
fn fused_equals_the_plain_kernels() {
    let mut rng = Rng::new(22);
    let (qh, kvh, d, t, past) = (16, 8, 128, 3, 5);
    for gpu in gpus() {
        let step = StepInput::random(&mut rng, t, qh, kvh, d);
        let (qw, kw) = step.norms.split_at(d);
        let part = |from: usize, n: usize| -> Vec<f32> { step.qkv.chunks((qh + 2 * kvh) * d).flat_map(|r| r[from * d..(from + n) * d].to_vec()).collect() };
        let up = |x: &[f32], shape: &[usize]| gpu.upload_f32(x, shape).unwrap();
        let (gqw, gkw, gcos, gsin) = (up(qw, &[d]), up(kw, &[d]), up(&step.cos, &[t, d / 2]), up(&step.sin, &[t, d / 2]));

        let plain = KvCache::new(gpu, kvh, past + t, d, DType::F16).unwrap();
        let (q_lin, k_lin, v) = (up(&part(0, qh), &[t * qh, d]), up(&part(qh, kvh), &[t * kvh, d]), up(&part(qh + kvh, kvh), &[t, kvh, d]));
        let (q, k) = (gpu.poisoned(DType::F32, &[t, qh, d]).unwrap(), gpu.poisoned(DType::F32, &[t, kvh, d]).unwrap());
        let mut enc = Encoder::new(gpu);
        rms_norm(&mut enc, &q_lin, &gqw, &q, NORM_EPS);
        rms_norm(&mut enc, &k_lin, &gkw, &k, NORM_EPS);
        apply_rope(&mut enc, &q, &gcos, &gsin, qh, 0);
        apply_rope(&mut enc, &k, &gcos, &gsin, kvh, 0);
        kv_append(&mut enc, &plain, &k, &v, past);
        enc.submit();

        let fused = KvCache::new(gpu, kvh, past + t, d, DType::F16).unwrap();
        let (gqkv, norms, now) = step.upload(gpu, &fused, past).unwrap();
        let fq = gpu.poisoned(DType::F32, &[t, qh, d]).unwrap();
        let mut enc = Encoder::new(gpu);
        qk_norm_rope_append(&mut enc, &gqkv, (&norms, NORM_EPS), &now, &fused, &fq);
        enc.submit();
        let read = |t: &Tensor| gpu.read_f32_blocking(t).unwrap();
        let profile = gpu.caps.profile;
        assert_eq!(read(&fq), read(&q), "q {profile:?}");
        assert_eq!(read(&fused.k), read(&plain.k), "k cache {profile:?}");
        assert_eq!(read(&fused.v), read(&plain.v), "v cache {profile:?}");
    }
}
