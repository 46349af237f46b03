//! `qwen3-vl logits`: the logits of every prompt position to a `.npy` file, any prompt length
//! (the head runs over chunks of positions, each streamed to the file).

use std::io::Write;
use std::num::NonZeroUsize;
use std::path::PathBuf;

use qwen3_vl_webgpu::model::ModelFolder;
use qwen3_vl_webgpu::runtime::{get_rope_index, Content, Message, Session};

use crate::common::{self, Result, Weights};
use crate::hub;

/// Write the logits of every prompt position (`<f4`, C order, `[positions, vocab]`).
#[derive(clap::Args)]
#[command(group = clap::ArgGroup::new("input").required(true).args(["prompt", "input_ids"]))]
pub struct Args {
    /// Model folder or Hugging Face id (owner/name[@revision]).
    #[arg(long, value_name = "DIR|ID")]
    model: String,
    /// The user's text, through the chat template.
    #[arg(long, value_name = "TEXT")]
    prompt: Option<String>,
    /// The prompt's token ids, comma-separated; each image token stands for one --image.
    #[arg(long, value_name = "1,2,3", value_parser = token_ids)]
    input_ids: Option<TokenIds>,
    /// An image file (PNG or JPEG) for each image token; repeat for several.
    #[arg(long, value_name = "FILE")]
    image: Vec<PathBuf>,
    /// How the large matrices are stored on the GPU.
    #[arg(long, value_enum, default_value_t)]
    weights: Weights,
    /// Positions whose logits one GPU pass computes and reads back (default: as many as one
    /// binding holds); host memory holds one chunk.
    #[arg(long, value_name = "N")]
    chunk_rows: Option<NonZeroUsize>,
    /// The .npy file to write.
    #[arg(long, value_name = "FILE.npy")]
    out: PathBuf,
}

#[derive(Clone)]
struct TokenIds(Vec<u32>);

fn token_ids(list: &str) -> Result<TokenIds> {
    list.split(',').map(|t| t.trim().parse().map_err(|_| format!("not a token id: {t}"))).collect::<Result<_>>().map(TokenIds)
}

pub fn run(args: Args) -> Result<()> {
    let dir = &hub::model_dir(&args.model)?;
    let (input_ids, images, positions, delta) = match (&args.prompt, &args.input_ids) {
        (Some(text), _) => {
            let proc = common::processor(dir)?;
            let images = common::images(&args.image, &proc.image_processor)?;
            let mut content: Vec<Content> = images.iter().map(|_| Content::Image).collect();
            content.push(Content::Text(text.to_string()));
            let p = proc.prompt(&[Message::user(content)], &images, &[], true).map_err(|e| e.to_string())?;
            (p.input_ids, images, p.rope.position_ids, p.rope.rope_delta)
        }
        (None, Some(TokenIds(ids))) => {
            let folder = ModelFolder::open(dir).map_err(|e| e.to_string())?;
            let c = &folder.config;
            let images = common::images(&args.image, &common::image_processor(dir)?)?;
            let merge = c.vision_config.spatial_merge_size;
            // Each image_token_id stands for one image: expand it to that image's token count.
            let marks = ids.iter().filter(|&&t| t == c.image_token_id).count();
            if marks != images.len() {
                return Err(format!("--input-ids holds {marks} image tokens ({}) for {} --image files", c.image_token_id, images.len()));
            }
            let mut next = images.iter();
            let expanded: Vec<u32> = ids
                .iter()
                .flat_map(|&t| match t == c.image_token_id {
                    true => vec![t; next.next().unwrap().num_tokens(merge)],
                    false => vec![t],
                })
                .collect();
            let grids: Vec<[usize; 3]> = images.iter().map(|i| i.grid_thw).collect();
            let rope = get_rope_index(&expanded, c.image_token_id, c.video_token_id, &grids, &[], merge).map_err(|e| e.to_string())?;
            (expanded, images, rope.position_ids, rope.rope_delta)
        }
        (None, None) => unreachable!("clap requires --prompt or --input-ids"),
    };
    let out = &args.out;
    let gpu = &common::gpu()?;
    let (_, model) = common::load(dir, args.weights, gpu)?;
    let mut session = Session::new(gpu, &model, input_ids.len()).map_err(|e| e.to_string())?;
    let hidden = session.prefill_hidden_states(&input_ids, &positions, delta, &images, &[], true).map_err(|e| e.to_string())?;
    let text = &model.language_model;
    let chunks = text.logits_chunks(gpu, input_ids.len(), args.chunk_rows.map(NonZeroUsize::get)).map_err(|e| e.to_string())?;
    let failed = |e: std::io::Error| format!("{}: {e}", out.display());
    let mut file = std::io::BufWriter::new(std::fs::File::create(out).map_err(failed)?);
    let written = (|| {
        file.write_all(&npy_header(&[input_ids.len(), text.config.vocab_size])).map_err(failed)?;
        for rows in chunks {
            let logits = session.logits(&hidden, rows).map_err(|e| e.to_string())?;
            let values = gpu.read_f32_blocking(&logits).map_err(|e| e.to_string())?;
            file.write_all(&values.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>()).map_err(failed)?;
        }
        file.flush().map_err(failed)
    })();
    if written.is_err() {
        // No half-written array for a later reader to mistake for logits.
        let _ = std::fs::remove_file(out);
    }
    written
}

/// The header of a little-endian f32 `.npy` (format 1.0) of `shape`; the values follow in C order.
fn npy_header(shape: &[usize]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(usize::to_string).collect();
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({},), }}", dims.join(", "));
    // Magic (6) + version (2) + length (2) + header + '\n' padded to a multiple of 64.
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend((header.len() as u16).to_le_bytes());
    bytes.extend(header.as_bytes());
    bytes
}
