use qwen3_vl_webgpu::gpu::{DType, Encoder, Gpu, RowSplit, Tensor};
use qwen3_vl_webgpu::kernels::attention::*;
use qwen3_vl_webgpu::kernels::qk_rope::qk_norm_rope_append;
use qwen3_vl_webgpu::testing::{assert_close, cache_rows, f16_round, filled_cache, Rng, StepInput, AMP, NORM_EPS};

use crate::gpus;

// The kernels and references see the same inputs (k and v rounded to f16 as the cache stores
// them), so what differs is f32 against f64: dot products of ≤ 256 terms, exp2 of pre-scaled
// scores (a few ulp), and the weighted sums of v, which one thread accumulates key by key: a
// random walk of about sqrt(keys)·6e-8 relative to max |v|, ~3e-6 at the 3000 keys of the
// largest prefill (measured 2e-6; decode splits its keys and stays under 1e-6). With the score
// spread AMP gives, max |out| is within a small factor of max |v|, so 1e-5 leaves a margin
// while an off-by-one key or a lost rescale shows up far above it.
const TOL: f32 = 1e-5;

fn read(gpu: &Gpu, t: &Tensor) -> Vec<f32> {
    gpu.read_f32_blocking(t).unwrap()
}

#[test]
fn kv_append_writes_head_major_f16_and_f32() {
    let mut rng = Rng::new(10);
    for gpu in gpus() {
        for (&(kv_heads, d, len), dtype) in [(1, 8, 1), (3, 16, 7), (8, 128, 5)].iter().flat_map(|c| [(c, DType::F16), (c, DType::F32)]) {
            let (cache, k, v) = filled_cache(gpu, &mut rng, kv_heads, d, len, dtype).unwrap();
            for (t, want) in [(&cache.k, &k), (&cache.v, &v)] {
                let got = read(gpu, t);
                for h in 0..kv_heads {
                    for j in 0..cache.capacity {
                        let row = &got[(h * cache.capacity + j) * d..][..d];
                        if j < len {
                            // pack2x16float rounds to nearest like the host's f16 conversion.
                            assert_eq!(row, &want[(j * kv_heads + h) * d..][..d], "head {h} pos {j} {:?}", gpu.caps.profile);
                        } else {
                            assert!(row.iter().all(|x| x.is_nan()), "position {j} past the end was written");
                        }
                    }
                }
            }
        }
    }
    let gpu = gpus()[1];
    let too_big = KvCache::new(gpu, 8, 1 << 16 | 1, 128, DType::F16).err().expect("over the 128 MiB binding limit");
    assert!(too_big.to_string().contains("KV cache"), "{too_big}");
}

/// Every case with the f16 cache, and those up to ~1000 keys again with the f32 cache (the
/// same code path but for the loads, so the short cases cover it).
fn cache_kinds(cases: &[(usize, usize, usize, usize, usize)]) -> impl Iterator<Item = (&(usize, usize, usize, usize, usize), DType)> {
    cases.iter().flat_map(|c| [(c, DType::F16), (c, DType::F32)]).filter(|(c, dtype)| *dtype == DType::F16 || c.3 + c.4 <= 1100)
}

/// (q heads, kv heads, head dim, queries, past)
const PREFILL: &[(usize, usize, usize, usize, usize)] = &[
    (1, 1, 8, 1, 0),
    (2, 1, 8, 7, 0),
    (4, 1, 16, 5, 2),
    (4, 4, 32, 9, 40),
    (8, 2, 64, 33, 3),
    (16, 8, 128, 3, 17),
    (2, 2, 256, 10, 5),
    // A few hundred queries over a few thousand keys, GQA ×2.
    (2, 1, 128, 300, 2700),
];

/// Runs every case of `cases` through `attend` (which records the kernel: q, cache, past,
/// out) on both profiles and cache dtypes, against the causal reference.
fn check_causal(name: &str, seed: u64, cases: &[(usize, usize, usize, usize, usize)], attend: impl Fn(&mut Encoder, &Tensor, &KvCache, usize, &Tensor)) {
    let mut rng = Rng::new(seed);
    for gpu in gpus() {
        for (&(q_heads, kv_heads, d, t, past), dtype) in cache_kinds(cases) {
            let (cache, k, v) = filled_cache(gpu, &mut rng, kv_heads, d, past + t, dtype).unwrap();
            let q = rng.vec(t * q_heads * d, AMP);
            let gq = gpu.upload_f32(&q, &[t, q_heads, d]).unwrap();
            let out = gpu.poisoned(DType::F32, &[t, q_heads * d]).unwrap();
            let mut enc = Encoder::new(gpu);
            attend(&mut enc, &gq, &cache, past, &out);
            enc.submit();
            let want = attention_ref(&q, &k, &v, q_heads, kv_heads, d, &causal_keys(t, past));
            let what = format!("{name} {q_heads}/{kv_heads} heads d{d} t{t} past{past} {dtype:?} cache {:?}", gpu.caps.profile);
            assert_close(&what, &read(gpu, &out), &want, TOL);
        }
    }
}

#[test]
fn prefill_attention_matches_reference() {
    check_causal("prefill", 11, PREFILL, prefill_attention);
}

/// (q heads, kv heads, head dim, queries, past)
const DECODE: &[(usize, usize, usize, usize, usize)] = &[
    (1, 1, 8, 1, 0),
    (2, 1, 64, 1, 6),
    (4, 2, 64, 4, 100),
    (8, 2, 128, 3, 1000),
    (2, 2, 256, 2, 300),
    (4, 1, 128, 1, 4095),
    // Qwen3-VL-2B's heads at 4K, and one long context (few heads to keep the test fast).
    (16, 8, 128, 1, 4095),
    (2, 1, 128, 1, 32767),
];

#[test]
fn decode_attention_matches_reference() {
    // The minimum profile combines the splits in a second pass, the full one (lavapipe has
    // device-scope barriers) in the last workgroup of each head: both run here.
    let mut rng = Rng::new(12);
    for gpu in gpus() {
        for (&(q_heads, kv_heads, d, t, past), dtype) in cache_kinds(DECODE) {
            let (cache, k, v) = filled_cache(gpu, &mut rng, kv_heads, d, past, dtype).unwrap();
            let step = StepInput::random(&mut rng, t, q_heads, kv_heads, d);
            let (qkv, norms, now) = step.upload(gpu, &cache, past).unwrap();
            let scratch = decode_scratch(gpu, &cache, q_heads, MAX_DECODE_QUERIES).unwrap();
            let out = gpu.poisoned(DType::F32, &[t, q_heads * d]).unwrap();
            let mut enc = Encoder::new(gpu);
            decode_attention(&mut enc, &qkv, (&norms, NORM_EPS), &cache, &now, &scratch, &out);
            enc.submit();
            let what = format!("decode {q_heads}/{kv_heads} heads d{d} t{t} past{past} {dtype:?} cache {:?}", gpu.caps.profile);
            let want = decode_reference(gpu, &step, &cache, (&k, &v), past, &what);
            assert_close(&what, &read(gpu, &out), &want, TOL);
        }
    }
}

/// What decode attention of `step` must have given over `cache`, which held `cached` (k and v
/// of positions `0..past`) before it ran: checks the rows it appended against the reference
/// (k within an f16 rounding where the cache is f16, v as the host rounds it) and that it
/// wrote no other row, then returns `attention_ref` of the reference's q over the cache as the
/// kernel left it.
fn decode_reference(gpu: &Gpu, step: &StepInput, cache: &KvCache, cached: (&[f32], &[f32]), past: usize, what: &str) -> Vec<f32> {
    let [q, k_new, v_new] = step.reference();
    let (all_k, all_v) = (read(gpu, &cache.k), read(gpu, &cache.v));
    let (t, f16) = (step.t, cache.k.dtype == DType::F16);
    let (k, v) = (cache_rows(&all_k, cache, 0..past + t), cache_rows(&all_v, cache, 0..past + t));
    let at = cached.0.len();
    assert!(k[..at] == *cached.0 && v[..at] == *cached.1, "{what}: cached rows changed");
    assert_close(&format!("appended k, {what}"), &k[at..], &k_new, if f16 { TOL + 1.0 / 2048.0 } else { TOL });
    assert_eq!(v[at..], if f16 { f16_round(&v_new) } else { v_new }, "appended v, {what}");
    let rest = past + t..cache.capacity;
    assert!(cache_rows(&all_k, cache, rest.clone()).iter().chain(&cache_rows(&all_v, cache, rest)).all(|x| x.is_nan()), "{what}: rows after the step written");
    attention_ref(&q, &k, &v, step.q_heads, step.kv_heads, step.d, &causal_keys(t, past))
}

/// Decode attention is the prefill path it replaces for a step's few tokens
/// (`qk_norm_rope_append`, then `prefill_attention`): the same cache rows, bit for bit (one
/// norm-and-rotate function, the same workgroup size for head_dim ≤ 128), and the same
/// outputs within TOL (the two kernels add up in different orders).
#[test]
fn decode_attention_equals_append_then_prefill() {
    let (q_heads, kv_heads, d, past) = (16, 8, 128, 300);
    for gpu in gpus() {
        for (t, dtype) in [(1, DType::F16), (3, DType::F32)] {
            let [(fused, ..), (plain, ..)] = [0, 1].map(|_| filled_cache(gpu, &mut Rng::new(15), kv_heads, d, past, dtype).unwrap());
            let step = StepInput::random(&mut Rng::new(16), t, q_heads, kv_heads, d);
            let (qkv, norms, now) = step.upload(gpu, &fused, past).unwrap();
            let scratch = decode_scratch(gpu, &fused, q_heads, MAX_DECODE_QUERIES).unwrap();
            let [out, plain_out] = [0, 1].map(|_| gpu.poisoned(DType::F32, &[t, q_heads * d]).unwrap());
            let q = gpu.poisoned(DType::F32, &[t, q_heads, d]).unwrap();
            let mut enc = Encoder::new(gpu);
            decode_attention(&mut enc, &qkv, (&norms, NORM_EPS), &fused, &now, &scratch, &out);
            qk_norm_rope_append(&mut enc, &qkv, (&norms, NORM_EPS), &now, &plain, &q);
            prefill_attention(&mut enc, &q, &plain, past, &plain_out);
            enc.submit();
            let what = format!("t{t} {dtype:?} cache {:?}", gpu.caps.profile);
            let rows = |c: &KvCache, x: &Tensor| cache_rows(&read(gpu, x), c, 0..past + t);
            assert!(rows(&fused, &fused.k) == rows(&plain, &plain.k) && rows(&fused, &fused.v) == rows(&plain, &plain.v), "{what}: caches differ");
            assert_close(&what, &read(gpu, &out), &read(gpu, &plain_out), TOL);
        }
    }
}

/// Layers share one scratch: with the splits combined by the last workgroup of each head, its
/// counters must be back at zero for the next dispatch. Two dispatches in one submission (each
/// on its own cache), over enough keys for many splits, each against the reference.
#[test]
fn decode_attention_reuses_its_scratch() {
    let mut rng = Rng::new(14);
    let (q_heads, kv_heads, d, past) = (4, 2, 64, 2000);
    for gpu in gpus() {
        assert_eq!(gpu.caps.device_fence, gpu.caps.profile == qwen3_vl_webgpu::gpu::Profile::Full, "lavapipe fences at device scope");
        let caches: Vec<_> = (0..2).map(|_| filled_cache(gpu, &mut rng, kv_heads, d, past, DType::F16).unwrap()).collect();
        let scratch = decode_scratch(gpu, &caches[0].0, q_heads, 1).unwrap();
        assert!(decode_split(&caches[0].0, q_heads, 1, past).splits > 1);
        let steps: Vec<_> = (0..2).map(|_| StepInput::random(&mut rng, 1, q_heads, kv_heads, d)).collect();
        let outs: Vec<Tensor> = (0..2).map(|_| gpu.poisoned(DType::F32, &[1, q_heads * d]).unwrap()).collect();
        let inputs: Vec<_> = steps.iter().zip(&caches).map(|(s, (c, ..))| s.upload(gpu, c, past).unwrap()).collect();
        let mut enc = Encoder::new(gpu);
        for (((qkv, norms, now), (cache, ..)), out) in inputs.iter().zip(&caches).zip(&outs) {
            decode_attention(&mut enc, qkv, (norms, NORM_EPS), cache, now, &scratch, out);
        }
        enc.submit();
        for (i, ((step, (cache, k, v)), out)) in steps.iter().zip(&caches).zip(&outs).enumerate() {
            let what = format!("dispatch {i} {:?}", gpu.caps.profile);
            let want = decode_reference(gpu, step, cache, (k, v), past, &what);
            assert_close(&what, &read(gpu, out), &want, TOL);
        }
        assert!(gpu.read_u32_blocking(&scratch.counters).unwrap().iter().all(|&c| c == 0), "counters reset");
    }
}

/// The ViT's attention with its rows split over buffers of `part` rows: a segment longer than
/// a part visits every part holding its keys, carrying the softmax state in memory. Outputs
/// and state poisoned, so a row left unwritten or a first dispatch reading stale state shows.
#[test]
fn vit_attention_matches_reference() {
    let mut rng = Rng::new(13);
    // (heads, head dim, segment offsets, rows per part)
    let cases: &[(usize, usize, &[u32], usize)] = &[
        (2, 64, &[0, 1, 8, 308], 308),
        (3, 16, &[0, 5], 5),
        (16, 64, &[0, 100, 200], 200),
        // Ragged parts: a 300-key segment over 9 parts, segments starting mid-part.
        (2, 64, &[0, 1, 8, 308], 37),
        (3, 16, &[0, 5, 6, 47], 3),
        (1, 8, &[0, 13, 250], 64),
        (4, 32, &[0, 4, 8, 12, 16, 20], 4),
    ];
    for gpu in gpus() {
        for &(heads, d, cu, part) in cases {
            let (n, w) = (*cu.last().unwrap() as usize, 3 * heads * d);
            // q and k at AMP, v at 1 (the qkv rows are [q | k | v]).
            let qkv: Vec<f32> = (0..n * w).map(|i| rng.sym(if i / (heads * d) % 3 == 2 { 1.0 } else { AMP })).collect();
            let gqkv = RowSplit::build(n, w, part, |r| gpu.upload_f32(&qkv[r.start * w..r.end * w], &[r.len(), w])).unwrap();
            let gcu = gpu.upload_u32(cu, &[cu.len()]).unwrap();
            let mut enc = Encoder::new(gpu);
            let outs: Vec<Tensor> = (0..gqkv.parts.len())
                .map(|j| {
                    let rows = gqkv.parts[j].rows.len();
                    let out = gpu.poisoned(DType::F32, &[rows, heads * d]).unwrap();
                    let state = gpu.poisoned(DType::F32, &[rows, heads, 2]).unwrap();
                    vit_attention(&mut enc, &gqkv, heads, cu, &gcu, j, &state, &out);
                    out
                })
                .collect();
            enc.submit();
            let want = vit_attention_ref(&qkv, heads, d, cu);
            let what = format!("vit {heads} heads d{d} segments {cu:?} in parts of {part} {:?}", gpu.caps.profile);
            let got: Vec<f32> = outs.iter().flat_map(|o| read(gpu, o)).collect();
            assert_close(&what, &got, &want, TOL);
        }
    }
}
