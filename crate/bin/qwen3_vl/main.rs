//! `qwen3-vl`: the native face of the runtime. One file per subcommand; `common` holds what
//! they share (the model folder, the GPU, input files). `qwen3-vl --help` and
//! `qwen3-vl COMMAND --help` list the flags.
//!
//! `--model` takes a Hugging Face folder, a pre-quantized one written by `quantize`, or a
//! Hugging Face id (`hub`).

mod bench;
mod common;
mod hub;
mod logits;
mod progress;
mod quantize;
mod run;
mod serve;
mod verify;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "qwen3-vl", version, about = "Qwen3-VL on the GPU through wgpu")]
struct Cli {
    /// No progress bars (they are also hidden when stderr is not a terminal).
    #[arg(long, global = true)]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Run(run::Args),
    Serve(serve::Args),
    Logits(logits::Args),
    Bench(bench::Args),
    Quantize(quantize::Args),
    Verify(verify::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    progress::set_quiet(cli.quiet);
    let result = match cli.command {
        Command::Run(args) => run::run(args),
        Command::Serve(args) => serve::run(args),
        Command::Logits(args) => logits::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Quantize(args) => quantize::run(args),
        Command::Verify(args) => verify::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
