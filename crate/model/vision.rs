//! The vision tower, `Qwen3VLVisionModel`: patch embedding (a Linear over flattened
//! 2×16×16×3 patches), interpolated absolute position embeddings, 2D RoPE, full attention
//! within each image / frame pair, the final `merger`, and the DeepStack mergers after the
//! blocks named in `deepstack_visual_indexes`.
//!
//! Any number of patches: every per-patch activation is cut into chunks of rows that fit one
//! binding (a multiple of merge² rows, so the mergers work chunk by chunk), the residual stream
//! and qkv live in one buffer per chunk, and attention over a segment longer than a chunk
//! visits the chunks holding its keys one after the other.

use std::ops::Range;

use crate::gpu::{spans, Arena, DType, Encoder, Gpu, GpuError, RowSplit, Tensor};
use crate::kernels::attention::vit_attention;
use crate::kernels::elementwise::{add, gelu_inplace, Gelu};
use crate::kernels::embed::{gather4, pos_interp};
use crate::kernels::quant::Format;
use crate::kernels::rope::{apply_rope, vision_rope_table};

use super::layers::{LayerNorm, Linear};
use super::{ModelError, Qwen3VLVisionConfig, Weights};

/// transformers hard-codes the ViT's LayerNorm eps.
const EPS: f32 = 1e-6;

struct VisionBlock {
    norm1: LayerNorm,
    norm2: LayerNorm,
    qkv: Linear,
    proj: Linear,
    linear_fc1: Linear,
    linear_fc2: Linear,
}

/// `Qwen3VLVisionPatchMerger`: 2×2 neighbouring patches concatenated and projected to the
/// text width. The final merger norms each patch before the concatenation; the DeepStack
/// mergers (`use_postshuffle_norm`) norm the concatenation.
struct PatchMerger {
    norm: LayerNorm,
    linear_fc1: Linear,
    linear_fc2: Linear,
    postshuffle_norm: bool,
}

pub struct VisionModel {
    pub config: Qwen3VLVisionConfig,
    patch_embed: Linear,
    /// `[num_position_embeddings, hidden]` f32.
    pos_embed: Tensor,
    blocks: Vec<VisionBlock>,
    merger: PatchMerger,
    deepstack_merger_list: Vec<PatchMerger>,
    /// Patches per chunk (see [`VisionModel::chunk_rows`]).
    chunk_rows: usize,
    /// The activations of the chunks, reused from call to call.
    arena: Arena,
}

/// What the tower gives the language model: merged tokens `[n/merge², out_hidden]` and one
/// DeepStack feature tensor of the same shape per `deepstack_visual_indexes` entry, each in
/// parts of one chunk's merged rows.
pub struct VisionOutput {
    pub embeds: RowSplit,
    pub deepstack: Vec<RowSplit>,
}

impl PatchMerger {
    fn load(gpu: &Gpu, w: &Weights, c: &Qwen3VLVisionConfig, postshuffle_norm: bool, format: Format) -> Result<Self, ModelError> {
        let d = c.hidden_size * c.spatial_merge_size * c.spatial_merge_size;
        Ok(PatchMerger {
            norm: LayerNorm::load(gpu, w, "norm", if postshuffle_norm { d } else { c.hidden_size }, EPS)?,
            linear_fc1: Linear::load(gpu, w, "linear_fc1", d, d, true, format)?,
            linear_fc2: Linear::load(gpu, w, "linear_fc2", c.out_hidden_size, d, true, format)?,
            postshuffle_norm,
        })
    }

    /// x `[n, hidden]` → `[n/merge², out_hidden]`, one part of x at a time. Viewing a part
    /// `[rows, hidden]` as `[rows/merge², merge²·hidden]` is free: the patches of one 2×2 block
    /// are consecutive.
    fn forward(&self, enc: &mut Encoder, arena: &Arena, x: &RowSplit, merge2: usize) -> Result<RowSplit, ModelError> {
        let gpu = enc.gpu;
        let d = x.cols * merge2;
        let mut out = Vec::with_capacity(x.parts.len());
        for part in &x.parts {
            let (n, x) = (part.rows.len() / merge2, &part.tensor);
            let normed = arena.rows(gpu, DType::F32, n, d)?;
            if self.postshuffle_norm {
                self.norm.forward(enc, &x.view(&[n, d]), &normed);
            } else {
                self.norm.forward(enc, x, &normed.view(&x.shape));
            }
            let hidden = arena.rows(gpu, DType::F32, n, d)?;
            self.linear_fc1.forward(enc, &normed, &hidden);
            gelu_inplace(enc, Gelu::Erf, &hidden);
            let y = arena.rows(gpu, DType::F32, n, self.linear_fc2.out_features())?;
            self.linear_fc2.forward(enc, &hidden, &y);
            out.push(y);
        }
        Ok(RowSplit::from_parts(self.linear_fc2.out_features(), out))
    }
}

impl VisionModel {
    /// Loads `model.visual.*` (pass `w` already under `model.visual`).
    pub fn load(gpu: &Gpu, w: &Weights, c: &Qwen3VLVisionConfig, format: Format) -> Result<Self, ModelError> {
        let (d, p, t) = (c.hidden_size, c.patch_size, c.temporal_patch_size);
        let patch_embed = Linear::load_shaped(gpu, w, "patch_embed.proj", &[d, c.in_channels, t, p, p], true, format)?;
        let pos = w.get("pos_embed.weight", &[c.num_position_embeddings, d])?;
        let pos_embed = gpu.upload_f32(&pos, &[c.num_position_embeddings, d])?;
        let blocks = (0..c.depth)
            .map(|i| {
                let b = w.pp(format_args!("blocks.{i}"));
                Ok(VisionBlock {
                    norm1: LayerNorm::load(gpu, &b, "norm1", d, EPS)?,
                    norm2: LayerNorm::load(gpu, &b, "norm2", d, EPS)?,
                    qkv: Linear::load(gpu, &b, "attn.qkv", 3 * d, d, true, format)?,
                    proj: Linear::load(gpu, &b, "attn.proj", d, d, true, format)?,
                    linear_fc1: Linear::load(gpu, &b, "mlp.linear_fc1", c.intermediate_size, d, true, format)?,
                    linear_fc2: Linear::load(gpu, &b, "mlp.linear_fc2", d, c.intermediate_size, true, format)?,
                })
            })
            .collect::<Result<_, ModelError>>()?;
        let merger = PatchMerger::load(gpu, &w.pp("merger"), c, false, format)?;
        let deepstack_merger_list = (0..c.deepstack_visual_indexes.len())
            .map(|i| PatchMerger::load(gpu, &w.pp(format_args!("deepstack_merger_list.{i}")), c, true, format))
            .collect::<Result<_, _>>()?;
        let chunk_rows = Self::chunk_rows_for(gpu, c)?;
        let arena = Arena::new(gpu, chunk_rows);
        Ok(VisionModel { config: c.clone(), patch_embed, pos_embed, blocks, merger, deepstack_merger_list, chunk_rows, arena })
    }

    /// The largest multiple of merge² patches whose every per-patch activation (qkv, the MLP,
    /// the residual stream, whose merge² rows make one merger row, the merged output, the
    /// position and rotary tables, the attention state) fits one binding.
    fn chunk_rows_for(gpu: &Gpu, c: &Qwen3VLVisionConfig) -> Result<usize, ModelError> {
        let (d, heads, m2) = (c.hidden_size, c.num_heads, c.spatial_merge_size * c.spatial_merge_size);
        let widest = [3 * d, c.intermediate_size, c.out_hidden_size.div_ceil(m2), d / heads.max(1) / 2, 4, 2 * heads].into_iter().max().unwrap_or(1);
        let (row_bytes, limit) = (4 * widest as u64, gpu.caps.max_binding());
        let rows = (limit / row_bytes) as usize / m2 * m2;
        if rows == 0 {
            return Err(GpuError::TooLarge { what: format!("{m2} patches of the vision tower's activations"), bytes: m2 as u64 * row_bytes, limit }.into());
        }
        Ok(rows)
    }

    /// Patches per chunk on this model's device.
    pub fn chunk_rows(&self) -> usize {
        self.chunk_rows
    }

    /// `pixel_values` `[patches, C·T·P·P]` for all images / videos in order, `grids` their
    /// (t, h, w) in patches. Records everything into `enc`, submitting it along the way.
    pub fn forward(&self, enc: &mut Encoder, pixel_values: &[f32], grids: &[[usize; 3]]) -> Result<VisionOutput, ModelError> {
        let gpu = enc.gpu;
        let c = &self.config;
        let (d, heads, merge) = (c.hidden_size, c.num_heads, c.spatial_merge_size);
        // Grids from another processor's geometry (a merge size that is not the tower's) are
        // refused here, before the kernels assume them.
        let patches = |g: &[usize; 3]| g[0].checked_mul(g[1])?.checked_mul(g[2]).filter(|_| g[1].is_multiple_of(merge) && g[2].is_multiple_of(merge));
        let n = grids.iter().try_fold(0usize, |acc, g| acc.checked_add(patches(g).filter(|&p| p > 0)?));
        let k = self.patch_embed.weight.k;
        let Some(n) = n.filter(|n| n.checked_mul(k) == Some(pixel_values.len())) else {
            let values = pixel_values.len();
            return Err(ModelError::Input(format!("grids {grids:?} (merged by {merge}) do not make {values} pixel values in rows of {k}")));
        };
        let (arena, r) = (&self.arena, self.chunk_rows);
        let f32s = |rows: usize, cols: usize| arena.rows(gpu, DType::F32, rows, cols);
        let x = RowSplit::build(n, d, r, |rows| f32s(rows.len(), d))?;
        self.embed_patches(enc, pixel_values, grids, &x)?;

        let head_dim = d / heads;
        let half = head_dim / 2;
        let (cos, sin) = vision_rope_table(grids, merge, head_dim);
        let table = |t: &[f32]| RowSplit::build(n, half, r, |rows: Range<usize>| gpu.upload_f32(&t[rows.start * half..rows.end * half], &[rows.len(), half]));
        let (cos, sin) = (table(&cos)?, table(&sin)?);
        // One attention segment per image and per video frame pair (t·h·w split into t).
        let mut cu = vec![0u32];
        for g in grids {
            for _ in 0..g[0] {
                cu.push(cu.last().unwrap() + (g[1] * g[2]) as u32);
            }
        }
        let cu_seqlens = gpu.upload_u32(&cu, &[cu.len()])?;

        let qkv = RowSplit::build(n, 3 * d, r, |rows| f32s(rows.len(), 3 * d))?;
        let mut deepstack = Vec::new();
        for (i, b) in self.blocks.iter().enumerate() {
            // The same rows in every split: x, qkv and the rotary tables share their parts.
            for (j, (p, qkv_p)) in x.parts.iter().zip(&qkv.parts).enumerate() {
                let normed = f32s(p.rows.len(), d)?;
                b.norm1.forward(enc, &p.tensor, &normed);
                b.qkv.forward(enc, &normed, &qkv_p.tensor);
                // q and k are the first 2·heads heads of each packed qkv row.
                apply_rope(enc, &qkv_p.tensor, &cos.parts[j].tensor, &sin.parts[j].tensor, 2 * heads, 0);
            }
            for (j, p) in x.parts.iter().enumerate() {
                let rows = p.rows.len();
                let (attn, state) = (f32s(rows, d)?, f32s(rows, 2 * heads)?);
                vit_attention(enc, &qkv, heads, &cu, &cu_seqlens, j, &state, &attn);
                b.proj.forward_acc(enc, &attn, &p.tensor);
                let (normed, mlp) = (f32s(rows, d)?, f32s(rows, c.intermediate_size)?);
                b.norm2.forward(enc, &p.tensor, &normed);
                b.linear_fc1.forward(enc, &normed, &mlp);
                gelu_inplace(enc, Gelu::Tanh, &mlp);
                b.linear_fc2.forward_acc(enc, &mlp, &p.tensor);
            }
            if let Some(j) = c.deepstack_visual_indexes.iter().position(|&l| l == i) {
                deepstack.push((j, self.deepstack_merger_list[j].forward(enc, arena, &x, merge * merge)?));
            }
            // An image of one chunk stays one submission (a compile-only warm-up records the
            // tower without running it).
            if x.parts.len() > 1 {
                enc.flush();
            }
        }
        deepstack.sort_by_key(|(j, _)| *j);
        let embeds = self.merger.forward(enc, arena, &x, merge * merge)?;
        // Keep the buffers calls of this size use; a larger call's leftovers go.
        arena.trim();
        Ok(VisionOutput { embeds, deepstack: deepstack.into_iter().map(|(_, t)| t).collect() })
    }

    /// The patch embedding plus the interpolated absolute position embeddings into `x`, one
    /// chunk at a time, its pixels uploaded in pieces that fit one binding (fewer rows than a
    /// chunk only where a patch's pixels are wider than every activation).
    fn embed_patches(&self, enc: &mut Encoder, pixel_values: &[f32], grids: &[[usize; 3]], x: &RowSplit) -> Result<(), ModelError> {
        let gpu = enc.gpu;
        let (c, d, k) = (&self.config, x.cols, self.patch_embed.weight.k);
        let (row_bytes, limit) = (4 * k as u64, gpu.caps.max_binding());
        let piece = (limit / row_bytes) as usize;
        if piece == 0 {
            return Err(GpuError::TooLarge { what: "one patch's pixels".into(), bytes: row_bytes, limit }.into());
        }
        let side = (c.num_position_embeddings as f64).sqrt() as usize;
        let (idx, wts) = pos_interp(grids, c.spatial_merge_size, side);
        for p in &x.parts {
            for rows in spans(p.rows.len(), piece) {
                let at = p.rows.start + rows.start..p.rows.start + rows.end;
                let patches = gpu.upload_f32(&pixel_values[at.start * k..at.end * k], &[rows.len(), k])?;
                if rows.len() == p.rows.len() {
                    self.patch_embed.forward(enc, &patches, &p.tensor);
                } else {
                    let y = self.arena.rows(gpu, DType::F32, rows.len(), d)?;
                    self.patch_embed.forward(enc, &patches, &y);
                    enc.copy(&y.buffer, 0, &p.tensor.buffer, (rows.start * d * 4) as u64, (rows.len() * d * 4) as u64);
                }
            }
            let n = p.rows.len();
            let idx = gpu.upload_u32(&idx[4 * p.rows.start..4 * p.rows.end], &[n, 4])?;
            let wts = gpu.upload_f32(&wts[4 * p.rows.start..4 * p.rows.end], &[n, 4])?;
            let pos = self.arena.rows(gpu, DType::F32, n, d)?;
            gather4(enc, &self.pos_embed, &idx, &wts, &pos);
            add(enc, &p.tensor, &pos);
            if x.parts.len() > 1 {
                enc.flush();
            }
        }
        Ok(())
    }
}
