//! `qwen3-vl verify`: checks a pre-quantized folder's files and shards against its manifest's
//! sizes and sha256.


use qwen3_vl_webgpu::model::{open_in, quantized};

use crate::common::Result;
use crate::hub;

/// Check a pre-quantized folder against its manifest.json.
#[derive(clap::Args)]
pub struct Args {
    /// Model folder or Hugging Face id (owner/name[@revision]).
    #[arg(long, value_name = "DIR|ID")]
    model: String,
}

pub fn run(args: Args) -> Result<()> {
    let dir = &hub::model_dir(&args.model)?;
    let m = quantized::verify(open_in(dir)).map_err(|e| e.to_string())?;
    println!("{}: {} shards and {} files match manifest.json ({} bytes)", dir.display(), m.shards.len(), m.files.len(), m.total_bytes);
    Ok(())
}
