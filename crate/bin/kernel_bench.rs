//! Kernel benchmark at Qwen3-VL-2B shapes (and 4B for the fused decoder projections). Prints one table: time per call, achieved GB/s or
//! GFLOP/s, and for bandwidth-bound kernels the ratio to a vec4 copy measured in the same run.
//!
//! `cargo run --release --bin kernel-bench -- [--profile full|minimum] [--iters N] [--reps R] [--clock gpu|cpu] [--only NAME]`
//!
//! `--only` keeps the rows whose kernel name contains NAME (case-insensitive; the copy row is
//! always measured): a full table takes minutes on lavapipe. Each time is the median of R
//! batches of N calls (default 1 and 20), for a machine shared with other work; `--clock cpu`
//! measures process CPU time instead of GPU/wall time (see [`Clock`]; Linux only).

use qwen3_vl_webgpu::gpu::{DType, Encoder, Gpu, Profile, RowSplit, Tensor, Timer};
use qwen3_vl_webgpu::kernels::attention::{decode_attention, decode_scratch, kv_append, prefill_attention, vit_attention, KvCache};
use qwen3_vl_webgpu::kernels::matmul::MatmulOpts;
use qwen3_vl_webgpu::kernels::quant::{encode, Format, Matrix};
use qwen3_vl_webgpu::kernels::sample::{argmax, sample_step, seen_words, SampleParams};
use qwen3_vl_webgpu::kernels::step::StepValues;
use qwen3_vl_webgpu::kernels::{copy, matmul, norm};
use qwen3_vl_webgpu::testing::{cpu_secs, Rng, StepInput, NORM_EPS};

struct Row {
    kernel: String,
    shape: String,
    seconds: f64,
    /// Bytes the kernel must move at least once (for GB/s), and useful flops (for GFLOP/s).
    bytes: f64,
    flops: f64,
}

/// What a time is measured in.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Clock {
    /// GPU timestamps where the adapter has them, else wall time.
    Gpu,
    /// The process's CPU time, for a CPU adapter (lavapipe) on a machine shared with other
    /// work: the time other processes take the cores is not counted, so ratios between
    /// kernels hold still. It sums all threads, so it is not wall time; and it ticks at
    /// 10 ms, so batches should take a second or more (raise --iters).
    Cpu,
}

/// Seconds per call of `work` by `clock`: the median over `reps` batches of `iters` calls.
fn time(gpu: &Gpu, (reps, clock): (u32, Clock), iters: u32, work: &dyn Fn(&mut Encoder)) -> f64 {
    let mut warm = Encoder::new(gpu);
    work(&mut warm);
    warm.submit();
    gpu.wait();
    let mut times: Vec<f64> = (0..reps.max(1)).map(|_| batch(gpu, clock, iters, work)).collect();
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

fn batch(gpu: &Gpu, clock: Clock, iters: u32, work: &dyn Fn(&mut Encoder)) -> f64 {
    if clock == Clock::Cpu {
        let start = cpu_secs().expect("checked in main");
        let mut enc = Encoder::new(gpu);
        (0..iters).for_each(|_| work(&mut enc));
        enc.submit();
        gpu.wait();
        return (cpu_secs().expect("checked in main") - start) / iters as f64;
    }
    let timer = Timer::new(gpu, 1);
    let start = std::time::Instant::now();
    let mut enc = Encoder::new(gpu);
    match &timer {
        Some(t) => enc.timed(t, 0, |enc| (0..iters).for_each(|_| work(enc))),
        None => (0..iters).for_each(|_| work(&mut enc)),
    }
    enc.submit();
    gpu.wait();
    let wall = start.elapsed().as_secs_f64();
    let gpu_time = timer.map(|t| pollster::block_on(t.read(gpu)).expect("timestamps")[0]);
    gpu_time.filter(|&s| s > 0.0).unwrap_or(wall) / iters as f64
}

fn f32s(gpu: &Gpu, rng: &mut Rng, shape: &[usize]) -> Tensor {
    gpu.upload_f32(&rng.vec(shape.iter().product(), 1.0), shape).unwrap()
}

fn main() {
    let mut profile = Profile::from_env();
    let mut iters = 20u32;
    let mut only = None;
    let mut reps = 1u32;
    let mut clock = Clock::Gpu;
    let args: Vec<String> = std::env::args().skip(1).collect();
    for pair in args.chunks(2) {
        match (pair[0].as_str(), pair.get(1).map(String::as_str)) {
            ("--profile", Some("minimum")) => profile = Profile::Minimum,
            ("--profile", Some("full")) => profile = Profile::Full,
            ("--iters", Some(n)) if n.parse::<u32>().is_ok() => iters = n.parse().unwrap(),
            ("--reps", Some(n)) if n.parse::<u32>().is_ok() => reps = n.parse().unwrap(),
            ("--clock", Some("gpu")) => clock = Clock::Gpu,
            ("--clock", Some("cpu")) if cpu_secs().is_some() => clock = Clock::Cpu,
            ("--only", Some(name)) => only = Some(name.to_lowercase()),
            _ => {
                eprintln!("usage: kernel-bench [--profile full|minimum] [--iters N] [--reps R] [--clock gpu|cpu] [--only NAME]");
                std::process::exit(2);
            }
        }
    }
    let gpu = Gpu::new_blocking(Some(profile)).unwrap_or_else(|e| {
        eprintln!("error: {e}");
        std::process::exit(1)
    });
    let caps = &gpu.caps;
    println!(
        "adapter: {} ({}), profile {:?}, f16 {}, subgroups {} ({}–{}), timestamps {}",
        caps.adapter, caps.backend, caps.profile, caps.f16, caps.subgroups, caps.subgroup_min_size, caps.subgroup_max_size, caps.timestamps
    );
    let timing = (reps, clock);
    let want = |kernel: &str| only.as_ref().is_none_or(|o| kernel.to_lowercase().contains(o));
    let mut rng = Rng::new(7);
    let mut rows = Vec::new();

    // The bandwidth reference: a 64 MiB vec4 copy (read + write).
    let words = 16usize << 20;
    let (src, dst) = (gpu.upload_u32(&vec![1; words], &[words]).unwrap(), gpu.empty(DType::U32, &[words]).unwrap());
    let s = time(&gpu, timing, iters, &|enc| copy::copy(enc, &src, &dst));
    rows.push(Row { kernel: "copy vec4".into(), shape: "64 MiB".into(), seconds: s, bytes: 2.0 * 4.0 * words as f64, flops: 0.0 });

    for (t, d) in [(1usize, 2048usize), (512, 2048)].into_iter().filter(|_| want("rms_norm")) {
        let (x, w, y) = (f32s(&gpu, &mut rng, &[t, d]), f32s(&gpu, &mut rng, &[d]), gpu.empty(DType::F32, &[t, d]).unwrap());
        let s = time(&gpu, timing, iters, &|enc| norm::rms_norm(enc, &x, &w, &y, 1e-6));
        rows.push(Row { kernel: "rms_norm".into(), shape: format!("{t}×{d}"), seconds: s, bytes: 4.0 * (2 * t * d + d) as f64, flops: 0.0 });
    }

    // Matmuls at Qwen3-VL-2B's shapes: q/o (2048→2048), gate|up fused (2048→12288 is two
    // 6144s; one 6144 shown), down (6144→2048), the tied head (2048→151936, split in parts).
    let shapes = [(2048usize, 2048usize), (2048, 6144), (6144, 2048), (2048, 151936)];
    for format in [Format::Q4, Format::F16] {
        for &(k, n) in &shapes {
            let gemm_m = 512usize.min((gpu.caps.max_binding() / (4 * n as u64)) as usize / 32 * 32);
            let ms: Vec<usize> = [(1usize, "GEMV"), (gemm_m, "GEMM")].into_iter().filter(|(_, kind)| want(&format!("{kind} {format:?}"))).map(|(m, _)| m).collect();
            if ms.is_empty() {
                continue;
            }
            // Random weights of the right size without a 1.2 GB f32 copy: one random part reused.
            let w = Matrix::upload_rows(&gpu, n, k, format, None, |r| Ok::<_, qwen3_vl_webgpu::gpu::GpuError>(rng.vec(r.len() * k, 0.05))).unwrap();
            for m in ms {
                let (x, y) = (f32s(&gpu, &mut rng, &[m, k]), gpu.empty(DType::F32, &[m, n]).unwrap());
                let s = time(&gpu, timing, if m == 1 { iters } else { 2 }, &|enc| matmul::matmul(enc, &x, &w, None, &y));
                let kind = if m == 1 { "GEMV" } else { "GEMM" };
                rows.push(Row {
                    kernel: format!("{kind} {format:?}"),
                    shape: format!("{m}×{k} → {n}"),
                    seconds: s,
                    bytes: (w.bytes() + 4 * (m * (k + n)) as u64) as f64,
                    flops: 2.0 * (m * n * k) as f64,
                });
            }
        }
    }

    // The decoder's fused projections at 2B and 4B shapes: gate|up with the SiLU·mul epilogue
    // (decode, and a 512-token prefill for the GEMM's), q_proj with the RMSNorm prologue, and
    // gate|up with both (the whole MLP front half of a decode step).
    for format in [Format::Q4, Format::F16] {
        for (size, h, inter, qd) in [("2B", 2048usize, 6144usize, 2048usize), ("4B", 2560, 9728, 4096)] {
            let variants = [("GEMV", "+SiLU", 1usize, inter, true, false), ("GEMV", "+norm", 1, qd, false, true), ("GEMV", "+norm+SiLU", 1, inter, true, true), ("GEMM", "+SiLU", 512, inter, true, false)];
            for (kind, fused, m, n, silu, rms) in variants {
                let kernel = format!("{kind} {format:?} {fused}");
                if !want(&kernel) || (kind == "GEMM" && size == "4B") {
                    continue;
                }
                let w = if silu {
                    let half = |r: std::ops::Range<usize>, rng: &mut Rng| encode(&rng.vec(r.len() * h, 0.05), h, format);
                    Matrix::upload_encoded_pairs(&gpu, n, h, format, None, |r| Ok::<_, qwen3_vl_webgpu::gpu::GpuError>([half(r.clone(), &mut rng), half(r, &mut rng)])).unwrap()
                } else {
                    Matrix::upload_rows(&gpu, n, h, format, None, |r| Ok::<_, qwen3_vl_webgpu::gpu::GpuError>(rng.vec(r.len() * h, 0.05))).unwrap()
                };
                let (x, g, y) = (f32s(&gpu, &mut rng, &[m, h]), f32s(&gpu, &mut rng, &[h]), gpu.empty(DType::F32, &[m, n]).unwrap());
                let opts = MatmulOpts { rms_norm: rms.then_some((&g, 1e-6)), silu_mul: silu, ..Default::default() };
                let s = time(&gpu, timing, if m == 1 { iters } else { 2 }, &|enc| matmul::matmul_with(enc, &x, &w, &y, &opts));
                let shape = if silu { format!("{m}×{h} → 2×{n} → {n}") } else { format!("{m}×{h} → {n}") };
                rows.push(Row {
                    kernel,
                    shape: format!("{shape} ({size})"),
                    seconds: s,
                    bytes: (w.bytes() + 4 * (m * (h + n) + if rms { h } else { 0 }) as u64) as f64,
                    flops: 2.0 * (m * w.n * h) as f64,
                });
            }
        }
    }

    if want("ViT attention") {
        // ViT attention over one 1200-patch image (16 heads × 64), bidirectional.
        let n = 1200usize;
        let qkv = RowSplit::from_parts(3 * 16 * 64, vec![f32s(&gpu, &mut rng, &[n, 3 * 16 * 64])]);
        let cu = [0, n as u32];
        let gcu = gpu.upload_u32(&cu, &[2]).unwrap();
        let (out, state) = (gpu.empty(DType::F32, &[n, 16 * 64]).unwrap(), gpu.empty(DType::F32, &[n, 16, 2]).unwrap());
        let s = time(&gpu, timing, 2, &|enc| vit_attention(enc, &qkv, 16, &cu, &gcu, 0, &state, &out));
        rows.push(Row { kernel: "ViT attention".into(), shape: "1200 tok, 16×64".into(), seconds: s, bytes: 4.0 * (4 * n * 1024) as f64, flops: 4.0 * (n * n * 1024) as f64 });
    }

    // Text attention over an f16 cache: 512-token prefill, and decode at 128 and 4K context.
    for (t, past) in [(512usize, 0usize), (1, 127), (1, 4095)].into_iter().filter(|&(t, _)| want(if t == 1 { "decode attention" } else { "prefill attention" })) {
        let cache = KvCache::new(&gpu, 8, 4096, 128, DType::F16).unwrap();
        let (k, v) = (f32s(&gpu, &mut rng, &[past + t, 8, 128]), f32s(&gpu, &mut rng, &[past + t, 8, 128]));
        let mut enc = Encoder::new(&gpu);
        kv_append(&mut enc, &cache, &k, &v, 0);
        enc.submit();
        let out = gpu.empty(DType::F32, &[t, 16 * 128]).unwrap();
        let keys = (past + t) as f64;
        let cache_bytes = 2.0 * 2.0 * keys * 8.0 * 128.0;
        if t == 1 {
            // From the q|k|v projection: q_norm, k_norm, the rotation and the append included.
            let (qkv, norms, now) = StepInput::random(&mut rng, 1, 16, 8, 128).upload(&gpu, &cache, past).unwrap();
            let scratch = decode_scratch(&gpu, &cache, 16, 1).unwrap();
            let s = time(&gpu, timing, iters, &|enc| decode_attention(enc, &qkv, (&norms, NORM_EPS), &cache, &now, &scratch, &out));
            rows.push(Row { kernel: "decode attention".into(), shape: format!("{} ctx, 16/8×128", past + t), seconds: s, bytes: cache_bytes, flops: 4.0 * keys * 16.0 * 128.0 });
        } else {
            let q = f32s(&gpu, &mut rng, &[t, 16, 128]);
            let s = time(&gpu, timing, 2, &|enc| prefill_attention(enc, &q, &cache, past, &out));
            rows.push(Row { kernel: "prefill attention".into(), shape: "512 causal, 16/8×128".into(), seconds: s, bytes: cache_bytes, flops: 2.0 * keys * keys * 16.0 * 128.0 });
        }
    }

    if want("argmax") || want("sample") {
        // Token choice over the real vocabulary: greedy, and Qwen's default sampling settings.
        let logits = f32s(&gpu, &mut rng, &[1, 151936]);
        let picked = gpu.empty(DType::U32, &[1]).unwrap();
        let s = time(&gpu, timing, iters, &|enc| argmax(enc, &logits, 0, &picked));
        rows.push(Row { kernel: "argmax".into(), shape: "151936".into(), seconds: s, bytes: 4.0 * 151936.0, flops: 0.0 });
        let hist = gpu.upload_u32(&(0..2000).collect::<Vec<u32>>(), &[2000]).unwrap();
        let seen = gpu.empty(DType::U32, &[seen_words(151936)]).unwrap();
        let params = SampleParams { temperature: 0.7, top_k: 20, top_p: 0.8, repetition_penalty: 1.0, presence_penalty: 1.5, u: 0.5 };
        let now = StepValues::new(0).sampling(&params, 2000, 1000).upload(&gpu).unwrap();
        let s = time(&gpu, timing, iters, &|enc| sample_step(enc, &logits, 0, &hist, &now, &seen, &picked));
        rows.push(Row { kernel: "sample (T .7, k 20, p .8)".into(), shape: "151936".into(), seconds: s, bytes: 4.0 * 151936.0, flops: 0.0 });
    }

    // The machine may be shared: copy again at the end and compare with the faster of the two.
    let s = time(&gpu, timing, iters, &|enc| copy::copy(enc, &src, &dst));
    rows.push(Row { kernel: "copy vec4 (again)".into(), shape: "64 MiB".into(), seconds: s, bytes: rows[0].bytes, flops: 0.0 });
    let copy_gbs = rows.iter().filter(|r| r.kernel.starts_with("copy")).map(|r| r.bytes / r.seconds / 1e9).fold(0.0, f64::max);
    println!("\n| kernel | shape | time | GB/s | GFLOP/s | vs copy |");
    println!("|---|---|---:|---:|---:|---:|");
    for r in &rows {
        let gbs = r.bytes / r.seconds / 1e9;
        let gflops = if r.flops > 0.0 { format!("{:.1}", r.flops / r.seconds / 1e9) } else { "–".into() };
        // Below ~8 flops per byte the kernel is bandwidth-bound on every GPU we target.
        let ratio = if r.flops < 8.0 * r.bytes { format!("{:.0}%", 100.0 * gbs / copy_gbs) } else { "–".into() };
        let time = if r.seconds < 1e-3 { format!("{:.1} µs", r.seconds * 1e6) } else { format!("{:.2} ms", r.seconds * 1e3) };
        println!("| {} | {} | {} | {:.2} | {} | {} |", r.kernel, r.shape, time, gbs, gflops, ratio);
    }
}
