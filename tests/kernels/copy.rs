use qwen3_vl_webgpu::gpu::{DType, Encoder};
use qwen3_vl_webgpu::kernels::copy::copy;
use qwen3_vl_webgpu::testing::Rng;

use crate::gpus;

#[test]
fn copy_is_exact() {
    let mut rng = Rng::new(5);
    for gpu in gpus() {
        for words in [4usize, 28, 4 * 1001, 1 << 22] {
            let src: Vec<u32> = (0..words).map(|_| rng.next_u64() as u32).collect();
            let s = gpu.upload_u32(&src, &[words]).unwrap();
            let d = gpu.poisoned(DType::U32, &[words]).unwrap();
            let mut enc = Encoder::new(gpu);
            copy(&mut enc, &s, &d);
            enc.submit();
            assert!(gpu.read_u32_blocking(&d).unwrap() == src, "copy of {words} words");
        }
    }
}
