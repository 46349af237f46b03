//! `qwen3-vl quantize`: writes the pre-quantized int4 folder (model::quantized) the browser
//! streams and prints one summary line.

use std::path::PathBuf;
use std::time::Instant;

use qwen3_vl_webgpu::model::{expected_tensors, open_in, quantized, ModelFolder};

use crate::common::Result;
use crate::{hub, progress};

/// Write the pre-quantized int4 folder of a model folder.
#[derive(clap::Args)]
pub struct Args {
    /// Model folder or Hugging Face id (owner/name[@revision]).
    #[arg(long, value_name = "DIR|ID")]
    model: String,
    /// The folder to write (new or empty).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Largest shard in MiB (fractions down to 1/1024, for tests).
    #[arg(long, value_name = "N", default_value_t = quantized::DEFAULT_SHARD_MIB)]
    shard_mib: f64,
}

pub fn run(args: Args) -> Result<()> {
    let (dir, out) = (&hub::model_dir(&args.model)?, &args.out);
    let shard_bytes = quantized::shard_bytes(args.shard_mib)?;
    if out.join(quantized::MANIFEST).exists() || dir.canonicalize().ok() == out.canonicalize().ok() {
        return Err(format!("{}: refusing to write over a model folder", out.display()));
    }
    std::fs::create_dir_all(out).map_err(|e| format!("{}: {e}", out.display()))?;
    let start = Instant::now();
    let bar = progress::bytes(0, "quantize");
    let manifest = quantized::write(progress::counted(open_in(dir), &bar), shard_bytes, |name, bytes| std::fs::write(out.join(name), bytes));
    bar.finish_and_clear();
    let manifest = manifest.map_err(|e| e.to_string())?;
    let folder = ModelFolder::open(out).map_err(|e| e.to_string())?;
    let tensors = expected_tensors(&folder.config).len();
    println!(
        "{}: {tensors} tensors, {} bytes in {} shards + {} files, {:.1} s",
        out.display(),
        manifest.total_bytes,
        manifest.shards.len(),
        manifest.files.len(),
        start.elapsed().as_secs_f64()
    );
    Ok(())
}
