//! Deterministic random numbers (the tests' data, the benchmarks' weights, and the seeded
//! sampler of `runtime::generate`: same seed, same tokens), the tolerance checks of the tests,
//! test data the native kernel tests and the in-browser selftest share, and the benchmarks'
//! CPU clock.

use std::ops::Range;

use crate::gpu::{DType, Encoder, Gpu, GpuError, Tensor};
use crate::kernels::attention::{decode_split, kv_append, KvCache, MAX_DECODE_QUERIES};
use crate::kernels::qk_rope::qk_norm_rope_append_ref;
use crate::kernels::step::StepValues;

/// CPU seconds this process has used (user + system, all threads: a software adapter's work
/// too), from /proc/self/stat in its fixed 100 Hz ticks; `None` where there is no such file.
/// The benchmarks' clock on a machine shared with other work, where wall time is noise.
pub fn cpu_secs() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name: utime and stime are the 12th and 13th.
    let fields: Vec<&str> = stat.rsplit(')').next()?.split_whitespace().collect();
    Some((fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?) / 100.0)
}

/// CPU seconds this thread has run (Linux's schedstat, in nanoseconds): unlike the wall clock,
/// it does not grow while other processes hold the cores. `None` where there is no such file.
pub fn thread_cpu_secs() -> Option<f64> {
    let ns: u64 = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?.split_whitespace().next()?.parse().ok()?;
    Some(ns as f64 / 1e9)
}

/// SplitMix64: tiny, seedable, identical on every platform.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }
    /// Uniform in [-a, a).
    pub fn sym(&mut self, a: f32) -> f32 {
        (2.0 * self.uniform() - 1.0) * a
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
    pub fn vec(&mut self, n: usize, a: f32) -> Vec<f32> {
        (0..n).map(|_| self.sym(a)).collect()
    }
}

/// Largest |got − want| relative to the largest |want| (so cancellation in a single element
/// does not dominate); infinite when any value is NaN or the lengths differ.
pub fn rel_err(got: &[f32], want: &[f32]) -> f32 {
    if got.len() != want.len() || got.iter().chain(want).any(|x| x.is_nan()) {
        return f32::INFINITY;
    }
    let scale = want.iter().fold(0f32, |m, x| m.max(x.abs())).max(f32::MIN_POSITIVE);
    got.iter().zip(want).fold(0f32, |m, (g, w)| m.max((g - w).abs())) / scale
}

/// Panics with the worst element when `rel_err(got, want) > tol`.
pub fn assert_close(what: &str, got: &[f32], want: &[f32], tol: f32) {
    let err = rel_err(got, want);
    if err <= tol {
        return;
    }
    assert_eq!(got.len(), want.len(), "{what}: length");
    let (i, g, w) = got
        .iter()
        .zip(want)
        .enumerate()
        .map(|(i, (g, w))| (i, *g, *w))
        .max_by(|a, b| {
            let da = if a.1.is_nan() { f32::INFINITY } else { (a.1 - a.2).abs() };
            let db = if b.1.is_nan() { f32::INFINITY } else { (b.1 - b.2).abs() };
            da.total_cmp(&db)
        })
        .unwrap();
    panic!("{what}: relative error {err:e} > {tol:e}; worst at [{i}]: got {g}, want {w}");
}

/// Rounds through f16, as a tensor stored in f16 on the GPU would be.
pub fn f16_round(x: &[f32]) -> Vec<f32> {
    x.iter().map(|&v| half::f16::from_f32(v).to_f32()).collect()
}

/// q and k amplitude in attention tests: scores then spread over several units, so the softmax
/// is far from uniform and the output does not shrink to the mean of v over long contexts.
pub const AMP: f32 = 2.0;

/// A cache of `dtype` whose every word is NaN, then `len` random positions appended in two
/// steps; returns it with the k and v (`[len, kv_heads, d]`) the kernels will read: rounded
/// to f16 for an f16 cache.
pub fn filled_cache(gpu: &Gpu, rng: &mut Rng, kv_heads: usize, d: usize, len: usize, dtype: DType) -> Result<(KvCache, Vec<f32>, Vec<f32>), GpuError> {
    // Spare capacity, room for a decode step: positions past `len` hold NaN until written.
    let cache = KvCache::new(gpu, kv_heads, len + MAX_DECODE_QUERIES, d, dtype)?;
    for t in [&cache.k, &cache.v] {
        gpu.queue.write_buffer(&t.buffer, 0, &vec![0xFF; t.bytes() as usize]);
    }
    let (k, v) = (rng.vec(len * kv_heads * d, AMP), rng.vec(len * kv_heads * d, 1.0));
    let first = len / 3;
    let mut enc = Encoder::new(gpu);
    let mut keep = Vec::new();
    for range in [0..first, first..len] {
        if range.is_empty() {
            continue;
        }
        let shape = [range.len(), kv_heads, d];
        let slice = |x: &[f32]| x[range.start * kv_heads * d..range.end * kv_heads * d].to_vec();
        let (gk, gv) = (gpu.upload_f32(&slice(&k), &shape)?, gpu.upload_f32(&slice(&v), &shape)?);
        kv_append(&mut enc, &cache, &gk, &gv, range.start);
        keep.push((gk, gv));
    }
    enc.submit();
    Ok(match dtype {
        DType::F16 => (cache, f16_round(&k), f16_round(&v)),
        _ => (cache, k, v),
    })
}

/// Rows `rows` of a KV cache tensor read back (`[kv_heads, capacity, head_dim]`), as
/// `[rows, kv_heads, head_dim]`: the order of the attention references' k and v.
pub fn cache_rows(all: &[f32], cache: &KvCache, rows: Range<usize>) -> Vec<f32> {
    let (d, cap) = (cache.head_dim, cache.capacity);
    rows.flat_map(|j| (0..cache.kv_heads).flat_map(move |h| (h * cap + j) * d..(h * cap + j + 1) * d)).map(|i| all[i]).collect()
}

/// The eps of [`StepInput`]'s norms.
pub const NORM_EPS: f32 = 1e-6;

/// Random inputs of the attention's first step for `t` tokens: their q|k|v projection rows
/// (`[t, (q_heads + 2·kv_heads)·d]`), q_norm's and k_norm's weights (`[2, d]`) and rotary
/// rows (`[t, d / 2]` each).
pub struct StepInput {
    pub t: usize,
    pub q_heads: usize,
    pub kv_heads: usize,
    pub d: usize,
    pub qkv: Vec<f32>,
    pub norms: Vec<f32>,
    pub cos: Vec<f32>,
    pub sin: Vec<f32>,
}

impl StepInput {
    pub fn random(rng: &mut Rng, t: usize, q_heads: usize, kv_heads: usize, d: usize) -> StepInput {
        let qkv = rng.vec(t * (q_heads + 2 * kv_heads) * d, 3.0);
        let norms = rng.vec(2 * d, 1.5);
        let (cos, sin) = (rng.vec(t * d / 2, 1.0), rng.vec(t * d / 2, 1.0));
        StepInput { t, q_heads, kv_heads, d, qkv, norms, cos, sin }
    }

    /// q `[t, q_heads, d]` and the k and v `[t, kv_heads, d]` that go into the cache.
    pub fn reference(&self) -> [Vec<f32>; 3] {
        let (qw, kw) = self.norms.split_at(self.d);
        qk_norm_rope_append_ref(&self.qkv, self.q_heads, self.kv_heads, self.d, qw, kw, NORM_EPS, &self.cos, &self.sin)
    }

    /// The q|k|v rows and the norms' weights on the GPU, and the step buffer for tokens at
    /// cache rows `past..` (with decode attention's splits over `cache`).
    pub fn upload(&self, gpu: &Gpu, cache: &KvCache, past: usize) -> Result<(Tensor, Tensor, Tensor), GpuError> {
        let qkv = gpu.upload_f32(&self.qkv, &[self.t, self.qkv.len() / self.t])?;
        let norms = gpu.upload_f32(&self.norms, &[2, self.d])?;
        let mut values = StepValues::new(past).rotary(&self.cos, &self.sin, self.t);
        if self.t <= MAX_DECODE_QUERIES {
            values = values.attention(decode_split(cache, self.q_heads, self.t, past));
        }
        Ok((qkv, norms, values.upload(gpu)?))
    }
}
