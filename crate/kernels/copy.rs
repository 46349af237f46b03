//! Buffer copy through a compute kernel (vec4 words): the bandwidth reference of the benchmarks.

use bytemuck::{Pod, Zeroable};

use super::key;
use crate::gpu::{grid, Encoder, Tensor};

const SHADER: &str = include_str!("../../shaders/copy.wgsl");
const WG: u32 = 256;

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    n: u32,
    _pad: [u32; 3],
}

/// Copies all of `src` into `dst`; both must hold a whole number of 16-byte words.
pub fn copy(enc: &mut Encoder, src: &Tensor, dst: &Tensor) {
    assert!(src.bytes().is_multiple_of(16) && src.bytes() == dst.bytes(), "copy: sizes must match and be multiples of 16 bytes");
    let n = (src.bytes() / 16) as u32;
    let kernel = enc.gpu.kernel(key(enc.gpu, "copy", "copy_vec4").konst("WG", WG), SHADER);
    let params = Params { n, _pad: [0; 3] };
    enc.dispatch(&kernel, bytemuck::bytes_of(&params), &[src.binding(), dst.binding()], grid(n.div_ceil(WG)));
}
