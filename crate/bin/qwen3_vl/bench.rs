//! `qwen3-vl bench`: the end-to-end figures users feel, on random weights of the real shapes
//! or a model folder, as one table: `runtime::bench`'s rows (the same as www/bench.html's)
//! after the load.

use std::time::Instant;

use qwen3_vl_webgpu::gpu::{Backend, Gpu, Profile, Profiler};
use qwen3_vl_webgpu::kernels::quant::Format;
use qwen3_vl_webgpu::model::{synthetic, ModelFolder, Qwen3VL};
use qwen3_vl_webgpu::runtime::bench::{self, Options, Row};
use qwen3_vl_webgpu::runtime::request;

use crate::common::{Result, Weights};
use crate::hub;

/// Load time, compile time, ViT time for one 640×480 frame, prefill and decode tokens/s, what a
/// decode token asks of the device (dispatches, buffers and bind groups created, submits,
/// waits, host time), time to first token, GPU memory; with `--profile` GPU time per kernel
/// family; with --images, time to first token and peak GPU memory per photo size.
#[derive(clap::Args)]
#[command(group = clap::ArgGroup::new("what").required(true).args(["model", "synthetic"]))]
pub struct Args {
    /// Model folder or Hugging Face id (owner/name[@revision]).
    #[arg(long, value_name = "DIR|ID")]
    model: Option<String>,
    /// Random weights of the real shapes (2b or 4b; tiny: a quick check) through the ordinary
    /// loader: no download.
    #[arg(long, value_name = "2b|4b|tiny")]
    synthetic: Option<String>,
    /// How the large matrices are stored on the GPU.
    #[arg(long, value_enum, default_value_t)]
    weights: Weights,
    /// `noop`: wgpu's noop backend, which executes nothing, so every figure is the host's
    /// cost alone (WebGPU's default limits, no optional features).
    #[arg(long, value_enum, default_value_t)]
    backend: BackendArg,
    /// GPU time per kernel family (timestamp queries) for one decode token and for the ViT.
    #[arg(long)]
    profile: bool,
    /// Decode tokens timed at each context, once the pipeline is full (more average out a
    /// busy host's noise).
    #[arg(long, value_name = "N", default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..))]
    tokens: u16,
    /// Prompt length of the prefill row (the prompt runs in the decoder's chunks; the peak GPU
    /// memory of that prefill gets its own row); 0: no prefill row.
    #[arg(long, value_name = "TOKENS", default_value_t = 512, value_parser = clap::value_parser!(u32).range(0..=1 << 20))]
    prefill_tokens: u32,
    /// Contexts (cached tokens) to decode at, comma-separated.
    #[arg(long, value_name = "TOKENS,…", value_delimiter = ',', default_values_t = [128, 4096], value_parser = clap::value_parser!(u32).range(1..=1 << 20))]
    contexts: Vec<u32>,
    /// Also time the ViT on square images of these many patches each (e.g. 256,1024,4096;
    /// each the square of a multiple of the merge size), with the time per patch.
    #[arg(long, value_name = "PATCHES,…", value_delimiter = ',', value_parser = clap::value_parser!(u32).range(1..=1 << 20))]
    vit_patches: Vec<u32>,
    /// Photos of these sizes (WxH, comma-separated), each resized within --max-pixels as `run`
    /// resizes it: time to first token and peak GPU memory.
    #[arg(long, value_name = "WxH,…", value_delimiter = ',', value_parser = photo_size)]
    images: Vec<(usize, usize)>,
    /// The image budget of --images (default: run's, 786432).
    #[arg(long, value_name = "N", default_value_t = request::DEFAULT_MAX_PIXELS)]
    max_pixels: usize,
    /// No vision rows (ViT, time to first token with an image).
    #[arg(long, conflicts_with_all = ["vit_patches", "images"])]
    no_vision: bool,
    /// Only the compile, decode and memory rows: --no-vision --prefill-tokens 0.
    #[arg(long, conflicts_with_all = ["vit_patches", "images", "prefill_tokens"])]
    decode_only: bool,
}

fn photo_size(s: &str) -> Result<(usize, usize)> {
    s.split_once('x').and_then(|(w, h)| Some((w.parse().ok()?, h.parse().ok()?))).ok_or_else(|| format!("not WxH: {s}"))
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
enum BackendArg {
    #[default]
    Gpu,
    Noop,
}

fn err(e: impl ToString) -> String {
    e.to_string()
}

pub fn run(args: Args) -> Result<()> {
    let format = Format::from(args.weights);
    let backend = match args.backend {
        BackendArg::Gpu => Backend::Gpu,
        BackendArg::Noop => Backend::Noop,
    };
    let gpu = &Gpu::with_backend_blocking(backend, Profile::from_env()).map_err(err)?;
    let profiler = match args.profile {
        true => Some(Profiler::new(gpu).ok_or("--profile needs timestamp queries, which this adapter does not offer")?),
        false => None,
    };
    let (folder, what) = match (&args.model, &args.synthetic) {
        (Some(model), _) => (ModelFolder::open(&hub::model_dir(model)?).map_err(err)?, model.clone()),
        (None, Some(size)) => {
            let config = synthetic::config(size).map_err(err)?;
            (synthetic::folder(config).map_err(err)?, format!("synthetic {size}"))
        }
        (None, None) => unreachable!("clap requires --model or --synthetic"),
    };
    let start = Instant::now();
    let model = Qwen3VL::load(gpu, &folder, format).map_err(err)?;
    gpu.wait();
    let caps = &gpu.caps;
    println!("{what}, weights {format:?}, on {} ({}), profile {:?}\n", caps.adapter, caps.backend, caps.profile);
    println!("| measure | value |\n|---|---:|");
    println!("| load (read, quantise, upload) | {:.1} s |", start.elapsed().as_secs_f64());
    let opts = Options {
        contexts: args.contexts.iter().map(|&c| c as usize).collect(),
        tokens: args.tokens.into(),
        prefill_tokens: args.prefill_tokens as usize,
        vit_patches: args.vit_patches.iter().map(|&p| p as usize).collect(),
        photos: args.images,
        max_pixels: args.max_pixels,
        profiler: profiler.as_ref(),
        vision: !args.no_vision,
    };
    let opts = if args.decode_only { opts.decode_only() } else { opts };
    // Rows print as they come: a 2B's table takes minutes on a software adapter.
    pollster::block_on(bench::run(gpu, &model, &opts, |Row { measure, value }| println!("| {measure} | {value} |"))).map_err(err)
}
