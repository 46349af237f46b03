//! Every kernel against its CPU reference, on random data at awkward sizes, with outputs
//! poisoned (NaN) before each run, under both the adapter's full profile and the WebGPU
//! minimum profile. Tolerances are relative to the largest reference value (see
//! `testing::rel_err`) and justified where they are set.

mod attention;
mod copy;
mod elementwise;
mod embed;
mod errors;
mod matmul;
mod norm;
mod qk_rope;
mod quant;
mod rope;
mod sample;
mod selftest;

use std::sync::OnceLock;

use qwen3_vl_webgpu::gpu::{Gpu, Profile};

/// The two devices every test runs on: what the adapter offers, and the WebGPU minimum.
pub fn gpus() -> [&'static Gpu; 2] {
    static FULL: OnceLock<Gpu> = OnceLock::new();
    static MIN: OnceLock<Gpu> = OnceLock::new();
    let make = |p| Gpu::new_blocking(Some(p)).expect("a WebGPU adapter (lavapipe: apt-get install mesa-vulkan-drivers)");
    [FULL.get_or_init(|| make(Profile::Full)), MIN.get_or_init(|| make(Profile::Minimum))]
}

#[test]
fn minimum_profile_is_the_webgpu_baseline() {
    let [full, min] = gpus();
    eprintln!("full profile: {:?}", full.caps);
    assert!(!min.caps.f16 && !min.caps.subgroups);
    let base = wgpu::Limits::default();
    assert_eq!(min.caps.limits.max_storage_buffer_binding_size, base.max_storage_buffer_binding_size);
    assert_eq!(min.caps.limits.max_compute_invocations_per_workgroup, 256);
    assert_eq!(min.caps.limits.max_compute_workgroup_storage_size, 16384);
    assert_eq!(min.caps.max_binding(), 128 << 20);
    // The full profile never asks for less than the baseline.
    assert!(full.caps.limits.max_storage_buffer_binding_size >= base.max_storage_buffer_binding_size);
}

#[test]
fn preprocessor_keeps_only_taken_branches() {
    use qwen3_vl_webgpu::gpu::preprocess;
    let src = "a\n#if X\nb\n#if Y\nc\n#else\nd\n#endif\n#else\ne\n#endif\nf\n";
    assert_eq!(preprocess(src, &["X"]).unwrap(), "a\nb\nd\nf\n");
    assert_eq!(preprocess(src, &["X", "Y"]).unwrap(), "a\nb\nc\nf\n");
    assert_eq!(preprocess(src, &["Y"]).unwrap(), "a\ne\nf\n");
    assert!(preprocess("#if X\n", &[]).is_err());
    assert!(preprocess("#endif\n", &[]).is_err());
    assert!(preprocess("#include \"nope.wgsl\"\n", &[]).is_err());
}

#[test]
fn memory_counter_follows_tensors_and_their_views() {
    // A device of its own: other tests allocate on the shared ones concurrently.
    let gpu = Gpu::new_blocking(Some(Profile::Minimum)).unwrap();
    let before = gpu.memory.live();
    let t = gpu.empty(qwen3_vl_webgpu::gpu::DType::F16, &[3, 5]).unwrap();
    assert_eq!(gpu.memory.live(), before + 32, "15 halves round up to 8 words");
    let view = t.view(&[15]);
    drop(t);
    assert_eq!(gpu.memory.live(), before + 32, "a view keeps the buffer alive");
    drop(view);
    assert_eq!(gpu.memory.live(), before);
    assert!(gpu.memory.peak() >= before + 32);
}
