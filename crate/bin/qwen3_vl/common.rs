//! What the subcommands share: the weight format flag, the GPU, the model folder, and input
//! files read into the runtime's types.

use std::path::Path;

use qwen3_vl_webgpu::gpu::Gpu;
use qwen3_vl_webgpu::kernels::quant::Format;
use qwen3_vl_webgpu::model::{open_in, ModelFolder, Qwen3VL};
use qwen3_vl_webgpu::runtime::preprocess::decode_image;
use qwen3_vl_webgpu::runtime::request;
use qwen3_vl_webgpu::runtime::{ImageProcessor, Qwen3VLProcessor, RgbImage, VisionInput};

use crate::progress;

pub type Result<T> = std::result::Result<T, String>;

/// `--weights`: how the large matrices are stored on the GPU.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Weights {
    #[default]
    Q4,
    F16,
    F32,
}

impl From<Weights> for Format {
    fn from(w: Weights) -> Format {
        match w {
            Weights::Q4 => Format::Q4,
            Weights::F16 => Format::F16,
            Weights::F32 => Format::F32,
        }
    }
}

pub fn gpu() -> Result<Gpu> {
    Gpu::new_blocking(None).map_err(|e| e.to_string())
}

/// The model folder and the model on the GPU, with a progress bar of the bytes read (the
/// loader quantizes and uploads each tensor as it reads it).
pub fn load(dir: &Path, weights: Weights, gpu: &Gpu) -> Result<(ModelFolder, Qwen3VL)> {
    let bar = progress::bytes(0, "read+quantize+upload");
    let folder = ModelFolder::load(progress::counted(open_in(dir), &bar)).map_err(|e| e.to_string())?;
    let model = Qwen3VL::load(gpu, &folder, weights.into()).map_err(|e| e.to_string())?;
    bar.finish_and_clear();
    Ok((folder, model))
}

pub fn read_file(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))
}

/// A PNG or JPEG file's pixels.
pub fn decode_file(path: &Path) -> Result<RgbImage> {
    decode_image(&read_file(path)?).map_err(|e| format!("{}: {e}", path.display()))
}

pub fn processor(dir: &Path) -> Result<Qwen3VLProcessor> {
    request::processor(folder_file(dir)).map_err(|e| e.to_string())
}

pub fn image_processor(dir: &Path) -> Result<ImageProcessor> {
    request::image_processor(folder_file(dir)).map_err(|e| e.to_string())
}

/// Image files ready for the vision tower.
pub fn images(files: &[impl AsRef<Path>], processor: &ImageProcessor) -> Result<Vec<VisionInput>> {
    files
        .iter()
        .map(|f| processor.preprocess(&decode_file(f.as_ref())?).map_err(|e| format!("{}: {e}", f.as_ref().display())))
        .collect()
}

/// `request`'s reader for a folder on disk: a file's bytes, or `None` when it has no such file.
fn folder_file(dir: &Path) -> impl FnMut(&str) -> Result<Option<Vec<u8>>> + '_ {
    move |name| match dir.join(name) {
        path if path.is_file() => read_file(&path).map(Some),
        _ => Ok(None),
    }
}
