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

#[test]
fn arena_reuses_buffers_and_trim_lets_go_of_unused_ones() {
    use qwen3_vl_webgpu::gpu::{Arena, DType};
    // A device of its own: other tests allocate on the shared ones concurrently.
    let gpu = Gpu::new_blocking(Some(Profile::Minimum)).unwrap();
    let before = gpu.memory.live();
    let arena = Arena::new(&gpu, 64);
    // 50 rows take the size class of 64 rows: 64 · 3 · 4 bytes.
    let t = arena.rows(&gpu, DType::F32, 50, 3).unwrap();
    assert_eq!((t.shape.clone(), t.buffer.size()), (vec![50, 3], 768));
    let first = t.buffer.clone();
    let view = t.view(&[150]);
    drop(t);
    assert!(arena.rows(&gpu, DType::F32, 40, 3).unwrap().buffer != first, "lent out while a view lives");
    drop(view);
    assert_eq!(gpu.memory.live(), before + 768 + 768, "given back, still held for reuse");
    // A shorter chunk reuses the smallest buffer that holds it; past the largest chunk, the
    // size is exact.
    let again = arena.rows(&gpu, DType::F32, 40, 3).unwrap();
    let big = arena.rows(&gpu, DType::F32, 100, 3).unwrap();
    assert_eq!((again.buffer.size(), big.buffer.size(), gpu.memory.live()), (768, 1200, before + 768 + 768 + 1200));
    drop((again, big));
    // A trim keeps what was lent since the previous one: all three, then the one a short
    // call took, then nothing.
    arena.trim();
    assert_eq!(gpu.memory.live(), before + 768 + 768 + 1200);
    drop(arena.rows(&gpu, DType::F32, 7, 3).unwrap());
    arena.trim();
    assert_eq!(gpu.memory.live(), before + 768);
    arena.trim();
    assert_eq!(gpu.memory.live(), before);
    // A tensor outliving its arena frees its buffer itself.
    let t = arena.rows(&gpu, DType::U32, 1, 1).unwrap();
    drop(arena);
    assert_eq!(gpu.memory.live(), before + 4);
    drop(t);
    assert_eq!(gpu.memory.live(), before);
}

/// The test knob: the device itself is created with the small limits, so wgpu rejects any
/// larger buffer (and hence binding), and the crate refuses such tensors with a typed error.
#[test]
fn forced_small_limits_bind_the_device() {
    use qwen3_vl_webgpu::gpu::{DType, GpuError};
    for profile in [Profile::Full, Profile::Minimum] {
        let gpu = Gpu::with_max_binding_blocking(profile, 8 << 10).unwrap();
        assert_eq!(gpu.caps.max_binding(), 8 << 10);
        assert_eq!(gpu.device.limits().max_storage_buffer_binding_size, 8 << 10);
        assert!(gpu.empty(DType::F32, &[2048]).is_ok());
        assert!(matches!(gpu.empty(DType::F32, &[2049]), Err(GpuError::TooLarge { .. })));
        let scope = gpu.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let _ = gpu.device.create_buffer(&wgpu::BufferDescriptor { label: None, size: 16 << 10, usage: wgpu::BufferUsages::STORAGE, mapped_at_creation: false });
        assert!(pollster::block_on(scope.pop()).is_some(), "wgpu accepted a 16 KiB buffer under an 8 KiB limit");
    }
}
