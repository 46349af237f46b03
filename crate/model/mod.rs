//! The model. On the CPU, the folder: the Hugging Face JSON configs (`config`), safetensors
//! files read through an abstract byte source (`safetensors`), and the prefix loader that names
//! weights as transformers' modules do (`weights`). On the GPU, the towers with the same module
//! names: `vision` (`Qwen3VLVisionModel`), `text` (`Qwen3VLTextModel` and the head), their
//! shared `layers`, `qwen3_vl` tying them together, and `decode`, the text model's decode step
//! recorded once and replayed per token.
//!
//! ```no_run
//! # fn main() -> Result<(), qwen3_vl_webgpu::model::LoadError> {
//! use qwen3_vl_webgpu::model::{validate, ModelFolder, Weights};
//! let folder = ModelFolder::open(std::path::Path::new("Qwen3-VL-2B-Instruct"))?;
//! let report = validate(&folder.config, &folder.checkpoint)?;
//! let t = &folder.config.text_config;
//! let w = Weights::new(&folder.checkpoint).pp("model.language_model");
//! let q = w.pp("layers.3").get("self_attn.q_proj.weight", &[t.num_attention_heads * t.head_dim, t.hidden_size])?;
//! let rows = w.rows("embed_tokens.weight", &[t.vocab_size, t.hidden_size], 151643..151645)?;
//! # Ok(()) }
//! ```

pub mod config;
mod decode;
mod layers;
pub mod quantized;
mod qwen3_vl;
pub mod synthetic;
pub mod safetensors;
mod text;
mod vision;
pub mod weights;

use std::ops::Range;

pub use config::{GenerationConfig, PreprocessorConfig, Qwen3VLConfig, Qwen3VLTextConfig, Qwen3VLVisionConfig, Rope};
pub use quantized::Manifest;
pub use safetensors::{Checkpoint, ConcatSource, Dtype, FileSource, MemSource, SafetensorsFile, Source, TensorInfo};
pub use decode::{Choose, DecodePlan};
pub use qwen3_vl::Qwen3VL;
pub use text::{TextInput, TextModel, TextState, VisualInput};
pub use vision::{VisionModel, VisionOutput};
pub use weights::{expected_tensors, is_matrix, validate, Report, Weights};

/// Anything that can stop a model from loading or running: a bad folder, a GPU limit, or an
/// input that does not fit the model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error(transparent)]
    Gpu(#[from] crate::gpu::GpuError),
    #[error("{0}")]
    Input(String),
}

/// Everything that can go wrong reading a model folder; each variant names the file and, where
/// there is one, the tensor or config key.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{file}: {source}")]
    Io { file: String, source: std::io::Error },
    #[error("{file} is not valid JSON of the expected form: {source}")]
    Json { file: String, source: serde_json::Error },
    #[error("{file}: `{key}` {reason}")]
    Config { file: String, key: String, reason: String },
    /// The file is shorter than its 8-byte header length, or the length runs past the end.
    #[error("{file}: the safetensors header {reason}")]
    Header { file: String, reason: String },
    #[error("{file}: tensor `{tensor}` has dtype `{dtype}`, {reason}")]
    Dtype { file: String, tensor: String, dtype: String, reason: &'static str },
    #[error("{file}: tensor `{tensor}` ({dtype:?} {shape:?}) should take {expected} bytes, its offsets give {actual}")]
    ByteCount { file: String, tensor: String, dtype: Dtype, shape: Vec<usize>, expected: u64, actual: u64 },
    #[error("{file}: tensor `{tensor}` has bytes {range:?} of the data, which {reason} ({data_len} bytes)")]
    Offsets { file: String, tensor: String, range: Range<u64>, data_len: u64, reason: &'static str },
    #[error("{file}: tensors `{first}` {first_range:?} and `{second}` {second_range:?} overlap")]
    Overlap { file: String, first: String, first_range: Range<u64>, second: String, second_range: Range<u64> },
    #[error("tensor `{tensor}` not found in {files:?}")]
    Missing { tensor: String, files: Vec<String> },
    #[error("tensor `{tensor}` appears in both {first} and {second}")]
    Duplicate { tensor: String, first: String, second: String },
    #[error("{index} maps `{tensor}` to {file}, which {reason}")]
    Index { index: String, tensor: String, file: String, reason: &'static str },
    #[error("{file}: tensor `{tensor}` has shape {actual:?}, the config implies {expected:?}")]
    Shape { file: String, tensor: String, expected: Vec<usize>, actual: Vec<usize> },
    #[error("{file}: rows {rows:?} of tensor `{tensor}` (shape {shape:?}) are out of range")]
    Rows { file: String, tensor: String, shape: Vec<usize>, rows: Range<usize> },
    /// A pre-quantized folder's file disagrees with its `manifest.json`, or the manifest is
    /// not one this version reads.
    #[error("{file}: {reason} (manifest.json)")]
    Manifest { file: String, reason: String },
    /// Weights stored pre-quantized cannot become another format.
    #[error("the folder holds pre-quantized int4 weights, which load only as Q4, not {requested:?}: use the original folder for that")]
    StoredFormat { requested: crate::kernels::quant::Format },
}

pub(crate) fn io_err(file: &str) -> impl FnOnce(std::io::Error) -> LoadError + '_ {
    move |source| LoadError::Io { file: file.to_string(), source }
}

/// The files of a Hugging Face model folder, parsed and cross-checked.
pub struct ModelFolder {
    pub config: Qwen3VLConfig,
    /// Without `generation_config.json`: defaults, with bos/eos from `text_config` as
    /// transformers' `GenerationConfig.from_model_config` does.
    pub generation: GenerationConfig,
    /// `None` without `preprocessor_config.json`: the class defaults (patch 14, CLIP statistics)
    /// do not fit Qwen3-VL, so images cannot be prepared until one is supplied.
    pub preprocessor: Option<PreprocessorConfig>,
    pub checkpoint: Checkpoint,
}

impl ModelFolder {
    /// Opens a folder on disk (native; on wasm32 use [`ModelFolder::load`]).
    pub fn open(dir: &std::path::Path) -> Result<Self, LoadError> {
        Self::load(open_in(dir))
    }

    /// Loads through `open(file name)`, which gives the file's bytes or `None` when the folder
    /// has no such file: a browser passes Blobs, OPFS handles or HTTP ranges here. A folder with
    /// a `manifest.json` is a pre-quantized one ([`quantized`]): its JSON files are checked
    /// against the manifest's sha256, its shards against its sizes now and against their sha256
    /// as a load reads them, and are read as one safetensors file.
    pub fn load(mut open: impl FnMut(&str) -> Result<Option<Box<dyn Source>>, LoadError>) -> Result<Self, LoadError> {
        let manifest = match open(quantized::MANIFEST)? {
            Some(src) => Some(Manifest::from_json(&safetensors::read_text(src.as_ref(), quantized::MANIFEST)?)?),
            None => None,
        };
        // The JSON files of a pre-quantized folder must be the ones its manifest lists.
        let mut text = |name: &str| -> Result<Option<String>, LoadError> {
            let Some(src) = open(name)? else { return Ok(None) };
            let text = safetensors::read_text(src.as_ref(), name)?;
            manifest.as_ref().map_or(Ok(()), |m| m.check_file(name, text.as_bytes()))?;
            Ok(Some(text))
        };
        let config = Qwen3VLConfig::from_json(&text(config::CONFIG)?.ok_or_else(|| missing_file(config::CONFIG))?)?;
        let generation = match text(config::GENERATION)? {
            Some(s) => GenerationConfig::from_json(&s)?,
            None => GenerationConfig {
                eos_token_id: config.text_config.eos_token_id.into_iter().collect(),
                bos_token_id: config.text_config.bos_token_id,
                ..GenerationConfig::default()
            },
        };
        let preprocessor = text(config::PREPROCESSOR)?.map(|s| PreprocessorConfig::from_json(&s)).transpose()?;
        if let Some(p) = &preprocessor {
            p.check_against(&config.vision_config)?;
        }
        let index = text(safetensors::INDEX)?;
        let checkpoint = match (manifest, index) {
            (Some(manifest), _) => quantized::checkpoint(&manifest, &mut open)?,
            (None, Some(index)) => Checkpoint::from_index(&index, safetensors::INDEX, |shard| {
                let src = open(shard)?.ok_or_else(|| missing_file(shard))?;
                SafetensorsFile::parse(shard, src)
            })?,
            (None, None) => {
                let src = open(safetensors::SINGLE)?.ok_or_else(|| missing_file(safetensors::SINGLE))?;
                Checkpoint::from_files(vec![SafetensorsFile::parse(safetensors::SINGLE, src)?])?
            }
        };
        Ok(ModelFolder { config, generation, preprocessor, checkpoint })
    }
}

/// The `open` callback of [`ModelFolder::load`] for a folder on disk.
pub fn open_in(dir: &std::path::Path) -> impl FnMut(&str) -> Result<Option<Box<dyn Source>>, LoadError> + '_ {
    move |name| {
        let path = dir.join(name);
        if !path.is_file() {
            return Ok(None);
        }
        Ok(Some(Box::new(FileSource::open(&path)?) as Box<dyn Source>))
    }
}

pub(crate) fn missing_file(name: &str) -> LoadError {
    LoadError::Io { file: name.to_string(), source: std::io::ErrorKind::NotFound.into() }
}
