//! Elementwise ops: the two GELUs of the ViT (tanh form in the blocks, exact erf form in the
//! patch mergers), and residual adds. Vectorised by 4 when the length allows it. (The decoder
//! MLP's SiLU·mul is the gate|up matmul's epilogue: kernels/matmul.rs.)

use bytemuck::{Pod, Zeroable};

use super::key;
use crate::gpu::{grid, Encoder, Tensor};

const SHADER: &str = include_str!("../../shaders/elementwise.wgsl");
const WG: u32 = 256;

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    n: u32,
    _pad: [u32; 3],
}

/// Records `entry` over `n` elements (vec4s when `n % 4 == 0`).
fn record(enc: &mut Encoder, entry: &'static str, n: usize, inplace: bool, tensors: &[&Tensor]) {
    if n == 0 {
        return;
    }
    let vec4 = n.is_multiple_of(4);
    let w = if vec4 { 4 } else { 1 };
    let k = key(enc.gpu, "elementwise", entry).flag("VEC4", vec4).flag("INPLACE", inplace).konst("WG", WG);
    let kernel = enc.gpu.kernel(k, SHADER);
    let params = Params { n: (n / w) as u32, _pad: [0; 3] };
    let bindings: Vec<_> = tensors.iter().map(|t| t.binding()).collect();
    enc.dispatch(&kernel, bytemuck::bytes_of(&params), &bindings, grid(((n / w) as u32).div_ceil(WG)));
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gelu {
    /// `0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))`: `gelu_pytorch_tanh`, the ViT blocks.
    Tanh,
    /// `0.5·x·(1 + erf(x/√2))`: `nn.GELU()`, the patch mergers.
    Erf,
}

impl Gelu {
    fn entry(self) -> &'static str {
        match self {
            Gelu::Tanh => "gelu_tanh",
            Gelu::Erf => "gelu_erf",
        }
    }
}

/// `y = gelu(x)`.
pub fn gelu(enc: &mut Encoder, kind: Gelu, x: &Tensor, y: &Tensor) {
    assert_eq!(x.numel(), y.numel(), "gelu: x {:?}, y {:?}", x.shape, y.shape);
    record(enc, kind.entry(), x.numel(), false, &[x, y]);
}

/// `x = gelu(x)`.
pub fn gelu_inplace(enc: &mut Encoder, kind: Gelu, x: &Tensor) {
    record(enc, kind.entry(), x.numel(), true, &[x]);
}

/// `a += b` (same element count).
pub fn add(enc: &mut Encoder, a: &Tensor, b: &Tensor) {
    assert_eq!(a.numel(), b.numel(), "add: a {:?}, b {:?}", a.shape, b.shape);
    record(enc, "add", a.numel(), false, &[a, b]);
}

pub fn gelu_ref(kind: Gelu, x: &[f32]) -> Vec<f32> {
    x.iter()
        .map(|&v| {
            let v = v as f64;
            let g = match kind {
                Gelu::Tanh => 0.5 * v * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (v + 0.044715 * v * v * v)).tanh()),
                Gelu::Erf => 0.5 * v * (1.0 + erf_ref(v * std::f64::consts::FRAC_1_SQRT_2)),
            };
            g as f32
        })
        .collect()
}

pub fn add_ref(a: &[f32], b: &[f32]) -> Vec<f32> {
    a.iter().zip(b).map(|(x, y)| x + y).collect()
}

/// erf in f64 to ~1e-15 without a math library's erf: the everywhere-positive series
/// `erf x = 2/√π · e^(−x²) · Σ 2ⁿ x^(2n+1) / (1·3···(2n+1))` below |x| = 3 (no cancellation),
/// and above it Laplace's continued fraction `erfc x = e^(−x²)/√π / (x + ½/(x + 1/(x + 3/2/(x + …))))`.
pub fn erf_ref(x: f64) -> f64 {
    let a = x.abs();
    let r = if a < 3.0 {
        let (mut term, mut sum, mut n) = (a, a, 0.0);
        while term > 1e-17 * sum {
            n += 1.0;
            term *= 2.0 * a * a / (2.0 * n + 1.0);
            sum += term;
        }
        2.0 / std::f64::consts::PI.sqrt() * (-a * a).exp() * sum
    } else {
        let mut f = a;
        for k in (1..=100).rev() {
            f = a + k as f64 / 2.0 / f;
        }
        1.0 - (-a * a).exp() / std::f64::consts::PI.sqrt() / f
    };
    r.copysign(x)
}
