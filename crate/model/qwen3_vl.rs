//! `Qwen3VLForConditionalGeneration`: the vision tower and the language model with its head,
//! loaded from a model folder in one of the GPU weight formats.

use crate::gpu::{Gpu, GpuError};
use crate::kernels::quant::Format;

use super::text::TextModel;
use super::vision::VisionModel;
use super::quantized::is_quantized;
use super::{expected_tensors, is_matrix, validate, LoadError, ModelError, ModelFolder, Qwen3VLConfig, Weights};

pub struct Qwen3VL {
    pub config: Qwen3VLConfig,
    pub visual: VisionModel,
    pub language_model: TextModel,
    pub format: Format,
}

impl Qwen3VL {
    /// Checks every tensor against the config, then uploads: large matrices in `format`,
    /// norms, biases and the position table in f32 (small, and exact). A pre-quantized folder
    /// loads only as `Format::Q4`, its int4 words uploaded as stored and its shards' sha256
    /// checked as they are read (in the order the writer stored them: text, then vision).
    pub fn load(gpu: &Gpu, folder: &ModelFolder, format: Format) -> Result<Self, ModelError> {
        let config = folder.config.clone();
        if format != Format::Q4 && is_quantized(&folder.checkpoint) {
            return Err(LoadError::StoredFormat { requested: format }.into());
        }
        validate(&config, &folder.checkpoint)?;
        fits(gpu, &config, format)?;
        let w = Weights::new(&folder.checkpoint);
        let language_model = TextModel::load(gpu, &w, &config.text_config, config.tie_word_embeddings, format)?;
        let visual = VisionModel::load(gpu, &w.pp("model.visual"), &config.vision_config, format)?;
        folder.checkpoint.finish()?;
        Ok(Qwen3VL { config, visual, language_model, format })
    }
}

/// Every tensor fits the adapter's bindings before anything is uploaded: a row of each matrix
/// (they are uploaded in parts of whole rows), every other tensor whole in f32.
fn fits(gpu: &Gpu, config: &Qwen3VLConfig, format: Format) -> Result<(), GpuError> {
    for (name, shape) in expected_tensors(config) {
        let bytes = match is_matrix(&name, &shape) {
            true => 4 * format.row_words(shape[1..].iter().product()) as u64,
            false => 4 * shape.iter().product::<usize>() as u64,
        };
        gpu.check_binding(&format!("`{name}` {shape:?} ({})", if is_matrix(&name, &shape) { "one row" } else { "f32" }), bytes)?;
    }
    Ok(())
}
