//! `y = x·Wᵀ (+ bias)` and `y += x·Wᵀ (+ bias)` for weight matrices in any [`Format`]:
//! a GEMV for the few rows of decode (one pass over the weights), a tiled GEMM otherwise
//! (see [`Tuning`] for how the adapter changes that). Both accumulate in f32 and run once per
//! weight part, writing that part's columns of `y`.

use bytemuck::{Pod, Zeroable};

use super::key;
use super::quant::{Format, Matrix};
use crate::gpu::{grid, Caps, Encoder, Tensor, MAX_GROUPS_PER_DIM};

const SHADER: &str = include_str!("../../shaders/matmul.wgsl");

/// Up to this many rows of `x` share one GEMV dispatch (one pass over the weights; in the
/// shader, two rows per pass over a workgroup's rows, the second from cache).
pub const GEMV_MAX_M: usize = 4;

/// GEMM output tile (the shader's BM = BN).
const TILE: usize = 64;
/// The most rows (output features) a weight matrix may have: one GEMM tile of rows per
/// workgroup along x. Configs are checked against it on loading.
pub const MAX_ROWS: usize = MAX_GROUPS_PER_DIM as usize * TILE;

/// Which division of the work to use. Every choice is correct on every adapter; they differ
/// in speed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tuning {
    /// `Cpu` on a CPU implementation (`Caps::cpu`: lavapipe, SwiftShader), else `Gpu`.
    Auto,
    /// The GEMV for m ≤ 4 with many small workgroups (4 weight rows each) to fill a GPU's
    /// cores; the tiled GEMM for larger m.
    Gpu,
    /// Few long GEMV workgroups (up to 128 weight rows; several adjacent steps per
    /// invocation), for every m, 4 rows of x per dispatch. On lavapipe each load instruction
    /// is a loop over the SIMD lanes, so what counts is loads per FMA: an x slice kept in
    /// registers serves 128 rows, and streaming the weights beats the GEMM, whose
    /// workgroup-memory loads cost as much as global ones (int4 2048×2048 at m = 512: 20 vs
    /// 11 GFLOP/s).
    Cpu,
}

/// The options of [`matmul_with`]; [`matmul`] and [`matmul_acc`] fill them in.
pub struct MatmulOpts<'a> {
    /// `[n]`, added to every row of the output.
    pub bias: Option<&'a Tensor>,
    /// `y += x·Wᵀ (+ bias)` instead of `y = …`.
    pub accumulate: bool,
    pub tuning: Tuning,
}

/// The shader's `Params` (documented there).
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    m: u32,
    n: u32,
    col0: u32,
    rows: u32,
    k: u32,
    row_words: u32,
    scale_words: u32,
    m0: u32,
    mm: u32,
    wg_rows: u32,
    acc: u32,
    _pad: u32,
}

/// `y = x·Wᵀ + bias`: `x` is `[m, k]`, `w` is `[n, k]`, `bias` `[n]`, `y` `[m, n]` (all f32).
pub fn matmul(enc: &mut Encoder, x: &Tensor, w: &Matrix, bias: Option<&Tensor>, y: &Tensor) {
    matmul_with(enc, x, w, y, &MatmulOpts { bias, accumulate: false, tuning: Tuning::Auto });
}

/// `y += x·Wᵀ + bias`: the residual add fused into o_proj / down_proj (and the ViT's proj/fc2).
pub fn matmul_acc(enc: &mut Encoder, x: &Tensor, w: &Matrix, bias: Option<&Tensor>, y: &Tensor) {
    matmul_with(enc, x, w, y, &MatmulOpts { bias, accumulate: true, tuning: Tuning::Auto });
}

/// `y (+)= x·Wᵀ (+ bias)` as `opts` say: per weight part, the GEMV for up to
/// [`GEMV_MAX_M`] rows of `x` (with [`Tuning::Cpu`] for every m, one dispatch per 4 rows),
/// else one GEMM dispatch.
pub fn matmul_with(enc: &mut Encoder, x: &Tensor, w: &Matrix, y: &Tensor, opts: &MatmulOpts) {
    let (m, k) = super::rows_cols(&x.shape);
    assert_eq!(k, w.k, "matmul: x is [{m}, {k}] but W is [{}, {}]", w.n, w.k);
    assert_eq!(y.numel(), m * w.n, "matmul: y {:?} for [{m}, {}]", y.shape, w.n);
    if let Some(b) = opts.bias {
        assert_eq!(b.numel(), w.n, "matmul bias");
    }
    let caps = &enc.gpu.caps;
    let cpu = match opts.tuning {
        Tuning::Auto => caps.cpu,
        t => t == Tuning::Cpu,
    };
    let vec4 = w.format.row_words(w.k).is_multiple_of(4);
    // Vector x loads line up with the weight units only when those are vec4s too.
    let x4 = vec4 && w.k.is_multiple_of(4);
    let gemv = m <= GEMV_MAX_M || cpu;
    let base = key(enc.gpu, "matmul", if gemv { "gemv" } else { "gemm" })
        .flag("W_F32", w.format == Format::F32)
        .flag("W_F16", w.format == Format::F16)
        .flag("W_Q4", w.format == Format::Q4)
        .flag("VEC4", vec4)
        .flag("X4", x4)
        .flag("BIAS", opts.bias.is_some());
    for part in &w.parts {
        let rows = part.rows.len();
        let mut bindings = vec![x.binding(), part.data.binding(), y.binding()];
        bindings.extend(part.scales.as_ref().map(Tensor::binding));
        bindings.extend(opts.bias.map(Tensor::binding));
        let mut params = Params {
            m: m as u32,
            n: w.n as u32,
            col0: part.rows.start as u32,
            rows: rows as u32,
            k: w.k as u32,
            row_words: w.format.row_words(w.k) as u32,
            scale_words: w.format.scale_words(w.k) as u32,
            m0: 0,
            mm: 0,
            wg_rows: 0,
            acc: opts.accumulate as u32,
            _pad: 0,
        };
        if gemv {
            for m0 in (0..m).step_by(GEMV_MAX_M) {
                let mm = (m - m0).min(GEMV_MAX_M);
                let g = Gemv::new(w, mm, vec4, x4, cpu, caps);
                let key = base
                    .clone()
                    .flag("GEMV", true)
                    .flag("TAIL", g.tail)
                    .flag("ADJ", cpu)
                    .konst("WG", g.wg)
                    .konst("MB", g.mb)
                    .konst("SPL", g.spl);
                let kernel = enc.gpu.kernel(key, SHADER);
                params.m0 = m0 as u32;
                params.mm = mm as u32;
                params.wg_rows = g.rows;
                let groups = grid(rows.div_ceil(g.rows as usize) as u32);
                enc.dispatch(&kernel, bytemuck::bytes_of(&params), &bindings, groups);
            }
        } else {
            let groups = [rows.div_ceil(TILE) as u32, m.div_ceil(TILE) as u32, 1];
            assert!(groups.iter().all(|&g| g <= MAX_GROUPS_PER_DIM), "matmul: [{m}, {rows}] tiles");
            let kernel = enc.gpu.kernel(base.clone().flag("GEMM", true), SHADER);
            enc.dispatch(&kernel, bytemuck::bytes_of(&params), &bindings, groups);
        }
    }
}

/// The GEMV's division of work (the shader's constants).
struct Gemv {
    /// Invocations per workgroup, splitting each row along k.
    wg: u32,
    /// Weight rows per workgroup.
    rows: u32,
    /// x rows per pass over the workgroup's weights.
    mb: u32,
    /// Steps (two units each) per invocation and row.
    spl: u32,
    /// The steps do not cover the units exactly: the shader checks the row's end.
    tail: bool,
}

impl Gemv {
    fn new(w: &Matrix, m: usize, vec4: bool, x4: bool, cpu: bool, caps: &Caps) -> Gemv {
        // Elements per unit: a vec4<u32>, or one word when rows do not allow vec4 loads.
        let unit = match (w.format, vec4) {
            (Format::Q4, _) => 32,
            (Format::F16, true) => 8,
            (Format::F32, true) => 4,
            (Format::F16, false) => 2,
            (Format::F32, false) => 1,
        };
        let units = w.k.div_ceil(unit);
        let steps = units.div_ceil(2);
        // x rows not made of whole vec4s (k % 4 != 0, never in the model) cost four times the
        // loads, and their long variants take seconds to compile on lavapipe: keep them short.
        // Two x rows at most per pass: their x slices must stay in registers.
        let mb = if x4 { m.min(2) } else { 1 };
        // On a CPU an invocation takes several steps per row, so the per-row reduction is paid
        // for more work, as many as keep its x slices in registers (measured on lavapipe:
        // more steps spill them to memory and run at half speed).
        let cpu_spl = match w.format {
            Format::Q4 => 2,
            Format::F16 => 4,
            Format::F32 => 8,
        };
        let spl = if cpu && x4 { (cpu_spl / mb).clamp(1, steps) } else { 1 };
        let spl = spl.max(steps.div_ceil(256));
        let wg = steps.div_ceil(spl);
        // The partial-sum table: rows · m outputs × (columns + 1) in the shader's 3072 floats,
        // a column per subgroup (at least the smallest subgroup size) or per invocation.
        let cols = if caps.subgroups { wg.div_ceil(caps.subgroup_min_size.max(1) as usize) } else { wg };
        // (At least 2: cols ≤ 256 and m ≤ 4.)
        let fit = 3072 / (cols + 1) / m;
        let rows = if cpu { fit.min(128) } else { fit.min(4) };
        Gemv {
            wg: wg as u32,
            rows: rows as u32,
            mb: mb as u32,
            spl: spl as u32,
            tail: 2 * wg * spl != units,
        }
    }
}

/// `x·Wᵀ (+ bias)` with `w` the (dequantised) `[n, k]` matrix; plain loops, f64 sums.
pub fn matmul_ref(x: &[f32], m: usize, w: &[f32], n: usize, k: usize, bias: Option<&[f32]>) -> Vec<f32> {
    assert!(x.len() == m * k && w.len() == n * k);
    let mut y = vec![0f32; m * n];
    for i in 0..m {
        for j in 0..n {
            let mut s = 0f64;
            for l in 0..k {
                s += x[i * k + l] as f64 * w[j * k + l] as f64;
            }
            y[i * n + j] = s as f32 + bias.map_or(0.0, |b| b[j]);
        }
    }
    y
}
