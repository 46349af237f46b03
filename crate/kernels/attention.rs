//! Attention: the KV cache (packed f16, or f32 for exact parity) and its append, causal GQA
//! prefill, split-K decode (flash-decoding) straight from the q|k|v projection, and the vision
//! tower's bidirectional attention within segments, whose rows may lie in several buffers.
//!
//! Shapes: q `[t, q_heads, head_dim]` f32; new k, v `[t, kv_heads, head_dim]` f32 (already
//! normed and rotated; decode takes them unnormed, in its q|k|v rows); cache K and V
//! `[kv_heads, capacity, head_dim]` f16 or f32; outputs `[t, q_heads · head_dim]` f32. Query
//! row `i` sits at position `past + i` and sees cache positions `0..=past + i`, so append
//! first, then attend. `head_dim` must be a multiple of 8 (≤ 256) and `q_heads` a multiple of
//! `kv_heads`. Scale is `head_dim^-0.5`.

use std::ops::Range;

use bytemuck::{Pod, Zeroable};

use super::{key, rows_cols};
use super::step::{DecodeSplit, ATTENTION_ARGS};
use crate::gpu::{grid, DType, Encoder, Gpu, GpuError, KernelKey, RowSplit, Tensor};

const SHADER: &str = include_str!("../../shaders/attention.wgsl");

/// Keys per decode tile (the shader's `DK`).
const DECODE_TILE: usize = 256;
/// Decode aims for about this many workgroups so long contexts fill a large GPU.
const DECODE_TARGET_GROUPS: usize = 256;
/// Largest query count `decode_attention` takes (one token, or a few speculative ones).
pub const MAX_DECODE_QUERIES: usize = 4;

#[repr(C)]
#[derive(Clone, Copy, Default, Pod, Zeroable)]
struct Params {
    n: u32,
    ratio: u32,
    q_heads: u32,
    kv_heads: u32,
    past: u32,
    capacity: u32,
    segments: u32,
    ml_offset: u32,
    scale: f32,
    q_row0: u32,
    kv_row0: u32,
    kv_rows: u32,
    flags: u32,
    eps: f32,
    _pad: [u32; 2],
}

/// Whether the kernels take this head size: a multiple of 8 (the shader reads rows in 8-dim
/// chunks) up to 256 (its per-row state is sized by `D`). Configs are checked against it on
/// loading, so the assertion below is only ever a bug.
pub fn supports_head_dim(head_dim: usize) -> bool {
    head_dim.is_multiple_of(8) && (8..=256).contains(&head_dim)
}

/// The shader's `flags` of a ViT dispatch: it starts / ends its rows' softmax.
const FIRST: u32 = 1;
const LAST: u32 = 2;

fn check_head_dim(head_dim: usize) {
    assert!(supports_head_dim(head_dim), "attention head_dim {head_dim}: a multiple of 8 up to 256");
}

/// `head_dim^-0.5 · log2(e)`: the shader's softmax runs on exp2.
fn scale(head_dim: usize) -> f32 {
    ((head_dim as f64).powf(-0.5) * std::f64::consts::LOG2_E) as f32
}

fn u(x: usize) -> u32 {
    u32::try_from(x).expect("attention size fits u32")
}

/// One layer's keys and values, `[kv_heads, capacity, head_dim]` each, packed f16 (half the
/// memory and bandwidth) or f32 (what transformers keeps: the exact-parity path).
pub struct KvCache {
    pub k: Tensor,
    pub v: Tensor,
    pub kv_heads: usize,
    pub capacity: usize,
    pub head_dim: usize,
}

impl KvCache {
    /// Fails when one of K, V would exceed the adapter's binding limit (for 8 kv heads of 128
    /// in f16 at the WebGPU minimum of 128 MiB: 65536 positions).
    pub fn new(gpu: &Gpu, kv_heads: usize, capacity: usize, head_dim: usize, dtype: DType) -> Result<KvCache, GpuError> {
        check_head_dim(head_dim);
        assert!(matches!(dtype, DType::F16 | DType::F32), "KV cache dtype {dtype:?}");
        let shape = [kv_heads, capacity, head_dim];
        gpu.check_binding(&format!("KV cache {shape:?} ({dtype:?})"), dtype.bytes(kv_heads * capacity * head_dim))?;
        Ok(KvCache { k: gpu.empty(dtype, &shape)?, v: gpu.empty(dtype, &shape)?, kv_heads, capacity, head_dim })
    }

    /// The kernel key of `entry` for this cache's storage and head size.
    fn key(&self, gpu: &Gpu, entry: &'static str) -> KernelKey {
        key(gpu, "attention", entry).flag("KV_F32", self.k.dtype == DType::F32).konst("D", u(self.head_dim))
    }
}

/// Writes `k`, `v` (`[t, kv_heads, head_dim]` f32) into cache positions `past..past + t`.
pub fn kv_append(enc: &mut Encoder, cache: &KvCache, k: &Tensor, v: &Tensor, past: usize) {
    let (kvh, d) = (cache.kv_heads, cache.head_dim);
    assert!(k.shape.len() == 3 && k.shape[1..] == [kvh, d], "kv_append k {:?} vs cache [_, {kvh}, {d}]", k.shape);
    assert_eq!(k.shape, v.shape, "kv_append v");
    let t = k.shape[0];
    assert!(past + t <= cache.capacity, "kv_append: {past} + {t} positions exceed capacity {}", cache.capacity);
    let words = t * kvh * d / 2;
    let kernel = enc.gpu.kernel(cache.key(enc.gpu, "kv_append"), SHADER);
    let params = Params { n: u(words), kv_heads: u(kvh), past: u(past), capacity: u(cache.capacity), ..Default::default() };
    let bindings = [k.binding(), v.binding(), cache.k.binding(), cache.v.binding()];
    enc.dispatch(&kernel, bytemuck::bytes_of(&params), &bindings, grid(u(words.div_ceil(256))));
}

/// Query rows per prefill workgroup (the shader's `PR`).
fn prefill_rows(head_dim: usize) -> usize {
    (2048 / head_dim).min(64)
}

fn q_shape(q: &Tensor, cache: &KvCache, out: &Tensor) -> (usize, usize) {
    let d = cache.head_dim;
    assert!(q.shape.len() == 3 && q.shape[2] == d, "attention q {:?} vs head_dim {d}", q.shape);
    let (t, q_heads) = (q.shape[0], q.shape[1]);
    assert!(q_heads % cache.kv_heads == 0, "{q_heads} q heads over {} kv heads", cache.kv_heads);
    assert_eq!(out.numel(), t * q_heads * d, "attention out");
    (t, q_heads)
}

/// Causal attention of `q` (`[t, q_heads, head_dim]`, positions `past..past + t`) over the
/// cache, which must already hold positions `0..past + t`. Flash-attention tiles: a block of
/// query rows per workgroup, keys streamed, online softmax. For `t ≤ 4` prefer
/// [`decode_attention`], which also splits the keys.
pub fn prefill_attention(enc: &mut Encoder, q: &Tensor, cache: &KvCache, past: usize, out: &Tensor) {
    let (t, q_heads) = q_shape(q, cache, out);
    assert!(past + t <= cache.capacity, "prefill past {past} + {t} exceed capacity {}", cache.capacity);
    let ratio = q_heads / cache.kv_heads;
    let rows = t * ratio;
    let kernel = enc.gpu.kernel(cache.key(enc.gpu, "prefill"), SHADER);
    let params = Params {
        n: u(rows),
        ratio: u(ratio),
        q_heads: u(q_heads),
        kv_heads: u(cache.kv_heads),
        past: u(past),
        capacity: u(cache.capacity),
        scale: scale(cache.head_dim),
        ..Default::default()
    };
    let bindings = [q.binding(), cache.k.binding(), cache.v.binding(), out.binding()];
    let [x, y, _] = grid(u(rows.div_ceil(prefill_rows(cache.head_dim))));
    enc.dispatch(&kernel, bytemuck::bytes_of(&params), &bindings, [x, y, u(cache.kv_heads)]);
}

/// Rows per decode workgroup (the shader's `RB`; its q takes at most 4 KiB) and row blocks
/// per kv head, for `rows` query rows per kv head.
fn decode_blocks(rows: usize, head_dim: usize) -> (usize, usize) {
    let rmax = (1024 / head_dim).min(8);
    let blocks = rows.div_ceil(rmax);
    (rows.div_ceil(blocks), blocks)
}

/// Splits of the `keys` cache rows and keys per split (whole tiles), for `groups` workgroups
/// per split.
fn decode_splits(keys: usize, groups: usize) -> (usize, usize) {
    let tiles = keys.div_ceil(DECODE_TILE).max(1);
    let want = DECODE_TARGET_GROUPS.div_ceil(groups).clamp(1, tiles);
    let per = tiles.div_ceil(want);
    (tiles.div_ceil(per), per * DECODE_TILE)
}

/// Row blocks per kv head and the most splits any number of keys up to the cache's capacity
/// gets (see `decode_splits`), for `t` queries of `q_heads` heads.
fn decode_shape(cache: &KvCache, q_heads: usize, t: usize) -> (usize, usize) {
    let (_, blocks) = decode_blocks(t * (q_heads / cache.kv_heads), cache.head_dim);
    let tiles = cache.capacity.div_ceil(DECODE_TILE).max(1);
    (blocks, DECODE_TARGET_GROUPS.div_ceil(cache.kv_heads * blocks).clamp(1, tiles))
}

/// What `decode_attention` keeps between its workgroups: the splits' partial outputs, and per
/// (row block, kv head) how many splits have finished (all zero between dispatches).
pub struct DecodeScratch {
    pub partials: Tensor,
    pub counters: Tensor,
}

/// The scratch `decode_attention` needs for up to `queries` query rows of `q_heads` heads
/// over this cache (one serves every layer: layers run one after the other).
pub fn decode_scratch(gpu: &Gpu, cache: &KvCache, q_heads: usize, queries: usize) -> Result<DecodeScratch, GpuError> {
    let shapes = (1..=queries).map(|t| (t, decode_shape(cache, q_heads, t)));
    let floats = shapes.clone().map(|(t, (_, splits))| t * q_heads * splits * (cache.head_dim + 4)).max().unwrap_or(0);
    let blocks = shapes.map(|(_, (blocks, _))| blocks).max().unwrap_or(0);
    Ok(DecodeScratch { partials: gpu.empty(DType::F32, &[floats])?, counters: gpu.empty(DType::U32, &[blocks * cache.kv_heads])? })
}

/// How [`decode_attention`] of `t` queries of `q_heads` heads after `past` cached positions
/// divides the keys: the step buffer's attention values for that step.
pub fn decode_split(cache: &KvCache, q_heads: usize, t: usize, past: usize) -> DecodeSplit {
    let (blocks, _) = decode_shape(cache, q_heads, t);
    let (splits, split_len) = decode_splits(past + t, cache.kv_heads * blocks);
    DecodeSplit { splits: u(splits), split_len: u(split_len), groups: [u(splits), u(blocks), u(cache.kv_heads)] }
}

/// Tokens and q heads of the fused q|k|v projection's output `qkv` (`[t, (q_heads +
/// 2·kv_heads)·head_dim]`) for `cache`'s heads.
pub fn qkv_heads(qkv: &Tensor, cache: &KvCache) -> (usize, usize) {
    let (kvh, d) = (cache.kv_heads, cache.head_dim);
    let (t, width) = rows_cols(&qkv.shape);
    assert!(width % d == 0 && width / d > 2 * kvh, "qkv rows of {width} for {kvh} kv heads of {d}");
    (t, width / d - 2 * kvh)
}

/// Causal attention for the few tokens of a decode step (`t ≤ MAX_DECODE_QUERIES`) over a long
/// cache, which must already hold positions `0..past`, straight from their q|k|v projection
/// `qkv` (`[t, (q_heads + 2·kv_heads)·head_dim]`): each workgroup norms and rotates its q rows
/// as [`qk_norm_rope_append`](super::qk_rope::qk_norm_rope_append) does (`qk_norm`: q_norm's
/// weight then k_norm's, `[2, head_dim]`, and their eps; the rotary rows of the step buffer),
/// and the workgroups whose split holds the step's positions first write their keys and values
/// into the cache. Workgroups score splits of the keys in parallel (flash-decoding), then the
/// splits are combined, by the last workgroup of each head to finish where
/// `Caps::device_fence` allows, else by a second pass. The position and the splits come from
/// the step buffer `now` ([`decode_split`] for `StepValues::attention`), and so do the
/// workgroup counts: the dispatch fits every context without being recorded again. `scratch`
/// comes from [`decode_scratch`]; `out` is `[t, q_heads·head_dim]`.
pub fn decode_attention(enc: &mut Encoder, qkv: &Tensor, qk_norm: (&Tensor, f32), cache: &KvCache, now: &Tensor, scratch: &DecodeScratch, out: &Tensor) {
    let (t, q_heads) = qkv_heads(qkv, cache);
    assert!((1..=MAX_DECODE_QUERIES).contains(&t), "decode_attention takes 1..={MAX_DECODE_QUERIES} queries, not {t}");
    assert_eq!(out.numel(), t * q_heads * cache.head_dim, "attention out");
    assert_eq!(qk_norm.0.numel(), 2 * cache.head_dim, "q_norm and k_norm weights");
    let d = cache.head_dim;
    let ratio = q_heads / cache.kv_heads;
    let (rb, _) = decode_blocks(t * ratio, d);
    let (_, max_splits) = decode_shape(cache, q_heads, t);
    let rows = t * q_heads;
    assert!(scratch.partials.numel() >= rows * max_splits * (d + 4), "decode scratch too small: use decode_scratch");
    let params = Params {
        n: u(t * ratio),
        ratio: u(ratio),
        q_heads: u(q_heads),
        kv_heads: u(cache.kv_heads),
        capacity: u(cache.capacity),
        ml_offset: u(rows * max_splits * d / 4),
        scale: scale(d),
        eps: qk_norm.1,
        ..Default::default()
    };
    let gpu = enc.gpu;
    let fused = gpu.caps.device_fence;
    let pass1 = gpu.kernel(cache.key(gpu, "decode").flag("DECODE", true).flag("FUSED", fused).flag("MERGE", fused).konst("RB", u(rb)), SHADER);
    let mut bindings = vec![qkv.binding(), cache.k.binding(), cache.v.binding(), scratch.partials.binding(), now.binding(), qk_norm.0.binding()];
    if fused {
        bindings.extend([out.binding(), scratch.counters.binding()]);
    }
    enc.dispatch_indirect(&pass1, bytemuck::bytes_of(&params), &bindings, &now.buffer, ATTENTION_ARGS);
    if !fused {
        let pass2 = gpu.kernel(cache.key(gpu, "combine").flag("COMBINE", true).flag("MERGE", true), SHADER);
        enc.dispatch(&pass2, bytemuck::bytes_of(&params), &[scratch.partials.binding(), now.binding(), out.binding()], [u(rows), 1, 1]);
    }
}

/// The vision tower's attention for the rows of part `part` of `qkv` (`[n, 3 · heads ·
/// head_dim]`, each row `[q | k | v]` of all heads, split by rows over buffers), bidirectional
/// within the segments `cu_seqlens` (`u32` offsets from 0 to n, on the CPU in `cu` too):
/// `out` `[part rows, heads · head_dim]`. A segment reaching into other parts takes one
/// dispatch per part holding its keys, each going on from the softmax state (max and sum in
/// `state`, at least `[part rows, heads, 2]` f32; the unnormalised output in `out`) the one
/// before left.
#[allow(clippy::too_many_arguments)]
pub fn vit_attention(enc: &mut Encoder, qkv: &RowSplit, heads: usize, cu: &[u32], cu_seqlens: &Tensor, part: usize, state: &Tensor, out: &Tensor) {
    let d = qkv.cols / (3 * heads.max(1));
    assert_eq!(qkv.cols, 3 * heads * d, "vit_attention: qkv rows of {} for {heads} heads", qkv.cols);
    check_head_dim(d);
    assert!(cu_seqlens.dtype == DType::U32 && cu_seqlens.numel() == cu.len() && cu.len() >= 2, "vit_attention cu_seqlens");
    assert_eq!(cu.last().map(|&e| e as usize), Some(qkv.rows), "vit_attention: segments end at {:?}, not {} rows", cu.last(), qkv.rows);
    let q = &qkv.parts[part];
    let n = q.rows.len();
    assert_eq!(out.numel(), n * heads * d, "vit_attention out");
    assert!(state.dtype == DType::F32 && state.numel() >= 2 * n * heads, "vit_attention state");
    // Keys from the segment of the part's first row to that of its last.
    let segment = |i: usize| cu.partition_point(|&e| e as usize <= i) - 1;
    let keys = cu[segment(q.rows.start)] as usize..cu[segment(q.rows.end - 1) + 1] as usize;
    let kv: Vec<_> = qkv.overlapping(keys).collect();
    let kernel = enc.gpu.kernel(key(enc.gpu, "attention", "prefill").flag("VIT", true).konst("D", u(d)), SHADER);
    for (i, (_, k)) in kv.iter().enumerate() {
        let params = Params {
            n: u(n),
            ratio: 1,
            q_heads: u(heads),
            kv_heads: u(heads),
            segments: u(cu.len() - 1),
            scale: scale(d),
            q_row0: u(q.rows.start),
            kv_row0: u(k.rows.start),
            kv_rows: u(k.rows.len()),
            flags: if i == 0 { FIRST } else { 0 } | if i + 1 == kv.len() { LAST } else { 0 },
            ..Default::default()
        };
        let bindings = [q.tensor.binding(), cu_seqlens.binding(), out.binding(), k.tensor.binding(), state.binding()];
        let [x, y, _] = grid(u(n.div_ceil(prefill_rows(d))));
        enc.dispatch(&kernel, bytemuck::bytes_of(&params), &bindings, [x, y, u(heads)]);
    }
}

/// Key range of each query row for causal attention of `t` queries after `past` positions.
pub fn causal_keys(t: usize, past: usize) -> Vec<Range<usize>> {
    (0..t).map(|i| 0..past + i + 1).collect()
}

/// Key range of each token for bidirectional attention within the segments `cu_seqlens`.
pub fn segment_keys(cu_seqlens: &[u32]) -> Vec<Range<usize>> {
    cu_seqlens
        .windows(2)
        .flat_map(|w| {
            let seg = w[0] as usize..w[1] as usize;
            std::iter::repeat_n(seg.clone(), seg.len())
        })
        .collect()
}

/// `softmax(q·kᵀ · head_dim^-0.5) · v` per q head, in f64: q `[t, q_heads, head_dim]`,
/// k and v `[len, kv_heads, head_dim]` (q head h reads kv head h / (q_heads / kv_heads)),
/// query row i attending to the keys `keys[i]`. Returns `[t, q_heads · head_dim]`.
pub fn attention_ref(q: &[f32], k: &[f32], v: &[f32], q_heads: usize, kv_heads: usize, head_dim: usize, keys: &[Range<usize>]) -> Vec<f32> {
    let d = head_dim;
    let ratio = q_heads / kv_heads;
    let scale = (d as f64).powf(-0.5);
    let mut out = vec![0f32; keys.len() * q_heads * d];
    for (i, range) in keys.iter().enumerate() {
        for h in 0..q_heads {
            let qr = &q[(i * q_heads + h) * d..][..d];
            let at = |j: usize| (j * kv_heads + h / ratio) * d;
            let scores: Vec<f64> = range
                .clone()
                .map(|j| k[at(j)..][..d].iter().zip(qr).map(|(&a, &b)| a as f64 * b as f64).sum::<f64>() * scale)
                .collect();
            let mx = scores.iter().fold(f64::NEG_INFINITY, |m, &s| m.max(s));
            let mut total = 0f64;
            let mut o = vec![0f64; d];
            for (j, s) in range.clone().zip(scores) {
                let w = (s - mx).exp();
                total += w;
                for (oo, &vv) in o.iter_mut().zip(&v[at(j)..][..d]) {
                    *oo += w * vv as f64;
                }
            }
            for (dst, oo) in out[(i * q_heads + h) * d..][..d].iter_mut().zip(o) {
                *dst = (oo / total) as f32;
            }
        }
    }
    out
}

/// [`attention_ref`] for the vision tower's packed `qkv` (`[n, 3, heads, head_dim]`).
pub fn vit_attention_ref(qkv: &[f32], heads: usize, head_dim: usize, cu_seqlens: &[u32]) -> Vec<f32> {
    let w = heads * head_dim;
    let part = |p: usize| -> Vec<f32> { qkv.chunks(3 * w).flat_map(|row| row[p * w..(p + 1) * w].to_vec()).collect() };
    attention_ref(&part(0), &part(1), &part(2), heads, heads, head_dim, &segment_keys(cu_seqlens))
}
