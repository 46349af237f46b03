//! Kernel benchmark at Qwen3-VL-2B shapes. Prints one table: time per call, achieved GB/s or
//! GFLOP/s, and for bandwidth-bound kernels the ratio to a vec4 copy measured in the same run.
//!
//! `cargo run --release --bin kernel-bench -- [--profile full|minimum] [--iters N]`

use qwen3_vl_webgpu::gpu::{DType, Encoder, Gpu, Profile, Tensor, Timer};
use qwen3_vl_webgpu::kernels::{copy, norm};
use qwen3_vl_webgpu::testing::Rng;

struct Row {
    kernel: String,
    shape: String,
    seconds: f64,
    /// Bytes the kernel must move at least once (for GB/s), and useful flops (for GFLOP/s).
    bytes: f64,
    flops: f64,
}

/// Seconds per call of `work`, from GPU timestamps when the adapter has them, else wall time.
fn time(gpu: &Gpu, iters: u32, work: &dyn Fn(&mut Encoder)) -> f64 {
    let mut warm = Encoder::new(gpu);
    work(&mut warm);
    warm.submit();
    gpu.wait();
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
    let args: Vec<String> = std::env::args().skip(1).collect();
    for pair in args.chunks(2) {
        match (pair[0].as_str(), pair.get(1).map(String::as_str)) {
            ("--profile", Some("minimum")) => profile = Profile::Minimum,
            ("--profile", Some("full")) => profile = Profile::Full,
            ("--iters", Some(n)) if n.parse::<u32>().is_ok() => iters = n.parse().unwrap(),
            _ => {
                eprintln!("usage: kernel-bench [--profile full|minimum] [--iters N]");
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
    let mut rng = Rng::new(7);
    let mut rows = Vec::new();

    // The bandwidth reference: a 64 MiB vec4 copy (read + write).
    let words = 16usize << 20;
    let (src, dst) = (gpu.upload_u32(&vec![1; words], &[words]).unwrap(), gpu.empty(DType::U32, &[words]).unwrap());
    let s = time(&gpu, iters, &|enc| copy::copy(enc, &src, &dst));
    rows.push(Row { kernel: "copy vec4".into(), shape: "64 MiB".into(), seconds: s, bytes: 2.0 * 4.0 * words as f64, flops: 0.0 });

    for (t, d) in [(1usize, 2048usize), (512, 2048)] {
        let (x, w, y) = (f32s(&gpu, &mut rng, &[t, d]), f32s(&gpu, &mut rng, &[d]), gpu.empty(DType::F32, &[t, d]).unwrap());
        let s = time(&gpu, iters, &|enc| norm::rms_norm(enc, &x, &w, &y, 1e-6));
        rows.push(Row { kernel: "rms_norm".into(), shape: format!("{t}×{d}"), seconds: s, bytes: 4.0 * (2 * t * d + d) as f64, flops: 0.0 });
    }

    let copy_gbs = rows[0].bytes / rows[0].seconds / 1e9;
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
