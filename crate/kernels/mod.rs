//! One module per op family: a thin wrapper that records the WGSL kernel from `shaders/`,
//! and beside it a CPU reference written as plain loops (`*_ref`) that the tests compare to.
//!
//! Conventions: activations are f32 row-major; a wrapper reads sizes from the tensors' shapes;
//! binding 0 is the op's parameter struct, bindings 1.. its tensors in the documented order.

pub mod attention;
pub mod copy;
pub mod elementwise;
pub mod embed;
pub mod matmul;
pub mod norm;
pub mod qk_rope;
pub mod quant;
pub mod rope;
pub mod sample;
pub mod selftest;
pub mod step;

use crate::gpu::{Gpu, KernelKey};

/// The key for `entry` of `shader` with the capability flags every kernel honours.
pub(crate) fn key(gpu: &Gpu, shader: &'static str, entry: &'static str) -> KernelKey {
    KernelKey::new(shader, entry).flag("SUBGROUPS", gpu.caps.subgroups)
}

/// Rows and row length of a tensor whose last dimension is the row.
pub(crate) fn rows_cols(shape: &[usize]) -> (usize, usize) {
    let cols = *shape.last().unwrap_or(&1);
    (shape.iter().product::<usize>() / cols.max(1), cols)
}
