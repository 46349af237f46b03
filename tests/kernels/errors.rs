//! Errors from the GPU layer are values, never panics: a validation error injected through the
//! public API (a bind group wgpu rejects, as an over-limit binding once was) and a lost device
//! come back as `GpuError`s from the next check, allocation or read-back.

use qwen3_vl_webgpu::gpu::{grid, DType, Encoder, Gpu, GpuError, KernelKey, Profile};
use qwen3_vl_webgpu::kernels::copy::copy;

const COPY: &str = include_str!("../../shaders/copy.wgsl");

#[test]
fn validation_error_is_an_error_not_a_panic() {
    // A device of its own: its errors must not reach the other tests.
    let gpu = Gpu::new_blocking(Some(Profile::Minimum)).unwrap();
    let words: Vec<u32> = (0..64).collect();
    let (src, dst) = (gpu.upload_u32(&words, &[64]).unwrap(), gpu.poisoned(DType::U32, &[64]).unwrap());
    let kernel = gpu.kernel(KernelKey::new("copy", "copy_vec4").konst("WG", 256).flag("SUBGROUPS", false), COPY);
    // A storage binding at offset 4: WebGPU requires 256-byte alignment.
    let misaligned = wgpu::BindingResource::Buffer(wgpu::BufferBinding { buffer: &src.buffer, offset: 4, size: None });
    let params = [16u32, 0, 0, 0];
    let mut enc = Encoder::new(&gpu);
    enc.dispatch(&kernel, bytemuck::cast_slice(&params), &[misaligned, dst.binding()], grid(1));
    enc.submit();
    let err = gpu.read_u32_blocking(&dst).expect_err("a rejected bind group must fail the read-back");
    eprintln!("{err}");
    let GpuError::Validation(message) = &err else { panic!("expected a validation error, got {err:?}") };
    assert!(!err.to_string().contains('\n') && message.contains("create_bind_group"), "{err}");
    // Reported once; the device still works.
    gpu.check().unwrap();
    let mut enc = Encoder::new(&gpu);
    copy(&mut enc, &src, &dst);
    enc.submit();
    assert_eq!(gpu.read_u32_blocking(&dst).unwrap(), words);
}

#[test]
fn lost_device_is_an_error_not_a_panic() {
    let gpu = Gpu::new_blocking(Some(Profile::Minimum)).unwrap();
    let (src, dst) = (gpu.upload_u32(&[1, 2, 3, 4], &[4]).unwrap(), gpu.empty(DType::U32, &[4]).unwrap());
    gpu.device.destroy();
    gpu.wait();
    let lost = |r: Result<(), GpuError>, what: &str| match r {
        Err(GpuError::Lost(_)) => {}
        other => panic!("{what}: expected the device's loss, got {other:?}"),
    };
    lost(gpu.check(), "check");
    lost(gpu.empty(DType::F32, &[16]).map(drop), "allocation");
    let mut enc = Encoder::new(&gpu);
    copy(&mut enc, &src, &dst);
    enc.submit();
    lost(gpu.read_u32_blocking(&dst).map(drop), "read-back");
    assert!(gpu.check().unwrap_err().to_string().contains("load the model again"));
}
