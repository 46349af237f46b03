//! The vision tower, `Qwen3VLVisionModel`: patch embedding (a Linear over flattened
//! 2×16×16×3 patches), interpolated absolute position embeddings, 2D RoPE, full attention
//! within each image / frame pair, the final `merger`, and the DeepStack mergers after the
//! blocks named in `deepstack_visual_indexes`.

use crate::gpu::{DType, Encoder, Gpu, Tensor};
use crate::kernels::attention::vit_attention;
use crate::kernels::elementwise::{gelu_inplace, Gelu};
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
}

/// What the tower gives the language model: merged tokens `[n/merge², out_hidden]` and one
/// DeepStack feature tensor of the same shape per `deepstack_visual_indexes` entry.
pub struct VisionOutput {
    pub embeds: Tensor,
    pub deepstack: Vec<Tensor>,
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

    /// x `[n, hidden]` → `[n/merge², out_hidden]`. Viewing `[n, hidden]` as `[n/4, 4·hidden]`
    /// is free: the patches of one 2×2 block are consecutive.
    fn forward(&self, enc: &mut Encoder, x: &Tensor, merge2: usize) -> Result<Tensor, ModelError> {
        let gpu = enc.gpu;
        let (n, d) = (x.shape[0] / merge2, x.shape[1] * merge2);
        let normed = gpu.empty(DType::F32, &[n, d])?;
        if self.postshuffle_norm {
            self.norm.forward(enc, &x.view(&[n, d]), &normed);
        } else {
            self.norm.forward(enc, x, &normed.view(&x.shape));
        }
        let hidden = gpu.empty(DType::F32, &[n, d])?;
        self.linear_fc1.forward(enc, &normed, &hidden);
        gelu_inplace(enc, Gelu::Erf, &hidden);
        let out = gpu.empty(DType::F32, &[n, self.linear_fc2.out_features()])?;
        self.linear_fc2.forward(enc, &hidden, &out);
        Ok(out)
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
        Ok(VisionModel { config: c.clone(), patch_embed, pos_embed, blocks, merger, deepstack_merger_list })
    }

    /// `pixel_values` `[patches, C·T·P·P]` for all images / videos in order, `grids` their
    /// (t, h, w) in patches. Records everything into `enc`.
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
        let patches = gpu.upload_f32(pixel_values, &[n, k])?;
        let x = gpu.empty(DType::F32, &[n, d])?;
        self.patch_embed.forward(enc, &patches, &x);

        // Absolute position embeddings, bilinearly interpolated to each grid, added to x.
        let side = (c.num_position_embeddings as f64).sqrt() as usize;
        let (idx, wts) = pos_interp(grids, merge, side);
        let (idx, wts) = (gpu.upload_u32(&idx, &[n, 4])?, gpu.upload_f32(&wts, &[n, 4])?);
        let pos = gpu.empty(DType::F32, &[n, d])?;
        gather4(enc, &self.pos_embed, &idx, &wts, &pos);
        crate::kernels::elementwise::add(enc, &x, &pos);

        let head_dim = d / heads;
        let (cos, sin) = vision_rope_table(grids, merge, head_dim);
        let cos = gpu.upload_f32(&cos, &[n, head_dim / 2])?;
        let sin = gpu.upload_f32(&sin, &[n, head_dim / 2])?;
        // One attention segment per image and per video frame pair (t·h·w split into t).
        let mut cu = vec![0u32];
        for g in grids {
            for _ in 0..g[0] {
                cu.push(cu.last().unwrap() + (g[1] * g[2]) as u32);
            }
        }
        let cu_seqlens = gpu.upload_u32(&cu, &[cu.len()])?;

        let normed = gpu.empty(DType::F32, &[n, d])?;
        let qkv = gpu.empty(DType::F32, &[n, 3 * d])?;
        let attn = gpu.empty(DType::F32, &[n, d])?;
        let mlp = gpu.empty(DType::F32, &[n, c.intermediate_size])?;
        let mut deepstack = Vec::new();
        for (i, b) in self.blocks.iter().enumerate() {
            b.norm1.forward(enc, &x, &normed);
            b.qkv.forward(enc, &normed, &qkv);
            // q and k are the first 2·heads heads of each packed qkv row.
            apply_rope(enc, &qkv, &cos, &sin, 2 * heads, 0);
            vit_attention(enc, &qkv.view(&[n, 3, heads, head_dim]), &cu_seqlens, &attn);
            b.proj.forward_acc(enc, &attn, &x);
            b.norm2.forward(enc, &x, &normed);
            b.linear_fc1.forward(enc, &normed, &mlp);
            gelu_inplace(enc, Gelu::Tanh, &mlp);
            b.linear_fc2.forward_acc(enc, &mlp, &x);
            if let Some(j) = c.deepstack_visual_indexes.iter().position(|&l| l == i) {
                deepstack.push((j, self.deepstack_merger_list[j].forward(enc, &x, merge * merge)?));
            }
        }
        deepstack.sort_by_key(|(j, _)| *j);
        let embeds = self.merger.forward(enc, &x, merge * merge)?;
        Ok(VisionOutput { embeds, deepstack: deepstack.into_iter().map(|(_, t)| t).collect() })
    }
}
