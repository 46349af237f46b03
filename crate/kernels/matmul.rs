//! `y = x·Wᵀ (+ bias)` and `y += x·Wᵀ (+ bias)` for weight matrices in any [`Format`]:
//! a GEMV for the few rows of decode (one pass over the weights), a tiled GEMM otherwise
//! (see [`Tuning`] for how the adapter changes that). All accumulate in f32 and run once per
//! weight part, writing that part's columns of `y`. Two fusions ride along ([`MatmulOpts`]):
//! an RMSNorm of `x` before it (a decoder norm and the projection after it in one pass), and
//! SiLU·mul after it (the gate|up projection writing the MLP's activation directly).

use bytemuck::{Pod, Zeroable};

use super::key;
use super::quant::{Format, Matrix};
use crate::gpu::{grid, Caps, Encoder, Tensor, MAX_GROUPS_PER_DIM};

const SHADER: &str = include_str!("../../shaders/matmul.wgsl");

/// Up to this many rows of `x` share one GEMV dispatch (one pass over the weights).
pub const GEMV_MAX_M: usize = 4;

/// GEMM output tile (the shader's BM = BN).
const TILE: usize = 64;
/// The most rows (output features) a weight matrix may have: one GEMM tile of rows per
/// workgroup along x. Configs are checked against it on loading.
pub const MAX_ROWS: usize = MAX_GROUPS_PER_DIM as usize * TILE;

/// Which division of the work to use. Every choice is correct on every adapter; they differ
/// in speed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Tuning {
    /// `Cpu` on a CPU implementation (`Caps::cpu`: lavapipe, SwiftShader), else `Gpu`.
    #[default]
    Auto,
    /// For m ≤ 4 the GEMV streaming the weights at DRAM speed: 128–256 invocations a
    /// workgroup, in row groups that each read contiguous vec4<u32> units of a few rows,
    /// reduced through subgroups where the adapter has them; the tiled GEMM for larger m.
    Gpu,
    /// Few long GEMV workgroups (up to 128 weight rows; several adjacent steps per
    /// invocation), for every m, 4 rows of x per dispatch. On lavapipe each load instruction
    /// is a loop over the SIMD lanes, so what counts is loads per FMA: an x slice kept in
    /// registers serves 128 rows, and streaming the weights beats the GEMM, whose
    /// workgroup-memory loads cost as much as global ones (int4 2048×2048 at m = 512: 20 vec
    /// 11 GFLOP/s).
    Cpu,
}

/// The options of [`matmul_with`]; [`matmul`] and [`matmul_acc`] fill them in.
#[derive(Clone, Copy, Default)]
pub struct MatmulOpts<'a> {
    /// `[n]`, added to every row of the output (before SiLU·mul).
    pub bias: Option<&'a Tensor>,
    /// `y += …` instead of `y = …`.
    pub accumulate: bool,
    /// `x` RMS-normalised first (Qwen3's `RMSNorm`: `x · rsqrt(mean(x²) + eps) ⊙ weight`,
    /// weight `[k]`) in the same pass, from the raw residual stream: the decoder's norms need
    /// no dispatch of their own.
    pub rms_norm: Option<(&'a Tensor, f32)>,
    /// `W`'s rows are (gate, up) pairs ([`Matrix::upload_pairs`]) and `y` (`[m, n/2]`) gets
    /// `silu(gate_i) · up_i` (+ bias on both first): the MLP's activation, written directly.
    pub silu_mul: bool,
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
    eps: f32,
}

/// `y = x·Wᵀ + bias`: `x` is `[m, k]`, `w` is `[n, k]`, `bias` `[n]`, `y` `[m, n]` (all f32).
pub fn matmul(enc: &mut Encoder, x: &Tensor, w: &Matrix, bias: Option<&Tensor>, y: &Tensor) {
    matmul_with(enc, x, w, y, &MatmulOpts { bias, ..Default::default() });
}

/// `y += x·Wᵀ + bias`: the residual add fused into o_proj / down_proj (and the ViT's proj/fc2).
pub fn matmul_acc(enc: &mut Encoder, x: &Tensor, w: &Matrix, bias: Option<&Tensor>, y: &Tensor) {
    matmul_with(enc, x, w, y, &MatmulOpts { bias, accumulate: true, ..Default::default() });
}

/// `y (+)= x·Wᵀ (+ bias)` as `opts` say: per weight part, the GEMV for up to
/// [`GEMV_MAX_M`] rows of `x` (with [`Tuning::Cpu`] for every m, one dispatch per 4 rows),
/// else one GEMM dispatch.
pub fn matmul_with(enc: &mut Encoder, x: &Tensor, w: &Matrix, y: &Tensor, opts: &MatmulOpts) {
    let (m, k) = super::rows_cols(&x.shape);
    assert_eq!(k, w.k, "matmul: x is [{m}, {k}] but W is [{}, {}]", w.n, w.k);
    let out_n = if opts.silu_mul { w.n / 2 } else { w.n };
    assert_eq!(y.numel(), m * out_n, "matmul: y {:?} for [{m}, {out_n}]", y.shape);
    if let Some(b) = opts.bias {
        assert_eq!(b.numel(), w.n, "matmul bias");
    }
    if let Some((g, _)) = opts.rms_norm {
        assert_eq!(g.numel(), k, "matmul: RMSNorm weight {:?} for k = {k}", g.shape);
    }
    if opts.silu_mul {
        let even = w.parts.iter().all(|p| p.rows.start % 2 == 0 && p.rows.len() % 2 == 0);
        assert!(even, "matmul: SiLU·mul needs (gate, up) row pairs (Matrix::upload_pairs)");
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
    let entry = match (gemv, cpu) {
        (false, _) => "gemm",
        (true, false) => "gemv",
        (true, true) => "gemv_cpu",
    };
    let base = key(enc.gpu, "matmul", entry)
        .flag("W_F32", w.format == Format::F32)
        .flag("W_F16", w.format == Format::F16)
        .flag("W_Q4", w.format == Format::Q4)
        .flag("VEC4", vec4)
        .flag("X4", x4)
        .flag("BIAS", opts.bias.is_some())
        .flag("RMS", opts.rms_norm.is_some())
        .flag("SILU", opts.silu_mul);
    let units = w.k.div_ceil(unit(w.format, vec4));
    for part in &w.parts {
        let rows = part.rows.len();
        let mut bindings = vec![x.binding(), part.data.binding(), y.binding()];
        bindings.extend(part.scales.as_ref().map(Tensor::binding));
        bindings.extend(opts.bias.map(Tensor::binding));
        bindings.extend(opts.rms_norm.map(|(g, _)| g.binding()));
        let mut params = Params {
            m: m as u32,
            n: out_n as u32,
            col0: part.rows.start as u32,
            rows: rows as u32,
            k: w.k as u32,
            row_words: w.format.row_words(w.k) as u32,
            scale_words: w.format.scale_words(w.k) as u32,
            m0: 0,
            mm: 0,
            wg_rows: 0,
            acc: opts.accumulate as u32,
            eps: opts.rms_norm.map_or(0.0, |(_, eps)| eps),
        };
        if !gemv {
            let groups = [rows.div_ceil(TILE) as u32, m.div_ceil(TILE) as u32, 1];
            assert!(groups.iter().all(|&g| g <= MAX_GROUPS_PER_DIM), "matmul: [{m}, {rows}] tiles");
            let kernel = enc.gpu.kernel(base.clone().flag("GEMM", true), SHADER);
            enc.dispatch(&kernel, bytemuck::bytes_of(&params), &bindings, groups);
            continue;
        }
        for m0 in (0..m).step_by(GEMV_MAX_M) {
            let mm = (m - m0).min(GEMV_MAX_M);
            params.m0 = m0 as u32;
            params.mm = mm as u32;
            let (key, wg_rows) = if cpu {
                let g = GemvCpu::new(units, mm, x4, w.format, opts, caps);
                params.wg_rows = g.rows;
                let key = base.clone().flag("GEMV", true).flag("GEMV_CPU", true).flag("TAIL", g.tail);
                (key.konst("WG", g.wg).konst("MB", g.mb).konst("SPL", g.spl).konst("RED", g.red), g.rows)
            } else {
                let g = GemvGpu::new(units, rows, mm, opts, caps);
                let key = base.clone().flag("GEMV", true).konst("M", mm as u32).konst("WG", g.wg).konst("TPR", g.tpr);
                (key.konst("RPT", g.rpt).konst("U", g.u).konst("RC", g.rc).konst("RED", g.red), g.wg / g.tpr * g.rpt)
            };
            let kernel = enc.gpu.kernel(key, SHADER);
            let groups = grid(rows.div_ceil(wg_rows as usize) as u32);
            enc.dispatch(&kernel, bytemuck::bytes_of(&params), &bindings, groups);
        }
    }
}

/// Elements per unit of a weight row: a vec4<u32>, or one word when rows do not allow vec4 loads.
fn unit(format: Format, vec4: bool) -> usize {
    match (format, vec4) {
        (Format::Q4, _) => 32,
        (Format::F16, true) => 8,
        (Format::F32, true) => 4,
        (Format::F16, false) => 2,
        (Format::F32, false) => 1,
    }
}

/// The GPU GEMV's division of work (the shader's constants).
struct GemvGpu {
    /// Invocations per workgroup.
    wg: u32,
    /// Invocations per row group (a power of two), each reading every TPR-th unit of a row.
    tpr: u32,
    /// Weight rows per row group (even: a SiLU pair stays in one group).
    rpt: u32,
    /// Units each invocation loads before using any.
    u: u32,
    /// Lanes reduced by subgroup shuffles (1 without subgroups).
    rc: u32,
    /// Floats of workgroup memory for the rest of the reduction.
    red: u32,
}

impl GemvGpu {
    fn new(units: usize, rows: usize, m: usize, opts: &MatmulOpts, caps: &Caps) -> GemvGpu {
        // 32 lanes of 16 bytes: a row group reads 512 contiguous bytes of a row per step
        // (whole cache lines everywhere), and its sums fit one subgroup on most GPUs.
        let tpr = units.next_power_of_two().clamp(1, 32) as u32;
        let rpt = 2;
        let u = units.div_ceil(tpr as usize).clamp(1, 4) as u32;
        let outs = (rpt as usize + opts.rms_norm.is_some() as usize) * m;
        let rc = if caps.subgroups { tpr.min(caps.subgroup_min_size.max(1)) } else { 1 };
        let limits = &caps.limits;
        let most = limits.max_compute_invocations_per_workgroup.min(limits.max_compute_workgroup_size_x);
        // 256 invocations when the matrix still gives enough workgroups to fill a GPU
        // (the head, gate|up), else 128 (twice the workgroups).
        let big = 256.min(most);
        let groups_at = |wg: u32| rows.div_ceil((wg / tpr * rpt) as usize);
        let mut wg = if groups_at(big) >= 512 { big } else { 128.min(most) };
        let red_at = |wg: u32| if rc < tpr { wg / rc * outs as u32 } else { 1 };
        // Workgroup memory stays within the adapter's (WebGPU's 16 KiB at least).
        while 4 * red_at(wg) > limits.max_compute_workgroup_storage_size && wg > tpr {
            wg /= 2;
        }
        GemvGpu { wg, tpr, rpt, u, rc, red: red_at(wg) }
    }
}

/// The CPU GEMV's division of work (the shader's constants and weight rows per workgroup).
struct GemvCpu {
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
    /// Floats of the partial-sum table.
    red: u32,
}

impl GemvCpu {
    fn new(units: usize, m: usize, x4: bool, format: Format, opts: &MatmulOpts, caps: &Caps) -> GemvCpu {
        let steps = units.div_ceil(2);
        // x rows not made of whole vec4s (k % 4 != 0, never in the model) cost four times the
        // loads, and their long variants take seconds to compile on lavapipe: keep them short.
        // Two x rows at most per pass: their x slices must stay in registers.
        let mb = if x4 { m.min(2) } else { 1 };
        // An invocation takes several steps per row, so the per-row reduction is paid for more
        // work, as many as keep its x slices in registers (measured on lavapipe: more steps
        // spill them to memory and run at half speed).
        let spl = match format {
            Format::Q4 => 2,
            Format::F16 => 4,
            Format::F32 => 8,
        };
        let spl = if x4 { (spl / mb).clamp(1, steps) } else { 1 };
        let spl = spl.max(steps.div_ceil(256));
        let wg = steps.div_ceil(spl);
        // The partial-sum table: (rows + 1 with RMS) · m outputs × (columns + 1) floats within
        // 12 KiB, a column per subgroup (at least the smallest subgroup size) or per invocation.
        let cols = if caps.subgroups { wg.div_ceil(caps.subgroup_min_size.max(1) as usize) } else { wg };
        let rms = opts.rms_norm.is_some() as usize;
        // At least 2 (a SiLU pair): with cols ≤ 256 and m ≤ 4 the table stays within 12.1 KiB.
        let fit = (3072 / (cols + 1) / m).saturating_sub(rms);
        let rows = fit.clamp(2, 128) & !(opts.silu_mul as usize);
        GemvCpu {
            wg: wg as u32,
            rows: rows as u32,
            mb: mb as u32,
            spl: spl as u32,
            tail: 2 * wg * spl != units,
            red: ((rows + rms) * m * (cols + 1)) as u32,
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

/// The SiLU·mul epilogue on rows of interleaved (gate, up) columns: `silu(gate) · up` per pair.
pub fn silu_pairs_ref(y: &[f32]) -> Vec<f32> {
    y.chunks(2).map(|p| (p[0] as f64 / (1.0 + (-p[0] as f64).exp()) * p[1] as f64) as f32).collect()
}
