//! `qwen3-vl`: the native face of the runtime.
//!
//! ```text
//! qwen3-vl run --model DIR [--image FILE]… [--video DIR --fps F] --prompt TEXT [--system TEXT]
//!              [--max-new-tokens N] [--greedy | --temperature T --top-k K --top-p P --seed S]
//!              [--max-pixels N] [--video-max-pixels N] [--context-length N] [--weights q4|f16|f32] [--json]
//! qwen3-vl logits --model DIR (--prompt TEXT | --input-ids 1,2,3) [--image FILE]… [--weights …] [--chunk-rows N] --out FILE.npy
//! qwen3-vl bench (--model DIR | --synthetic 2b|4b) [--weights q4|f16] [--images WxH,…] [--max-pixels N]
//! qwen3-vl quantize --model DIR --out DIR [--shard-mib N]
//! qwen3-vl verify --model DIR
//! ```
//!
//! `--model` takes a Hugging Face folder or a pre-quantized one written by `quantize`.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use qwen3_vl_webgpu::gpu::Gpu;
use qwen3_vl_webgpu::kernels::quant::Format;
use qwen3_vl_webgpu::model::{open_in, quantized, ModelFolder, Qwen3VL};
use qwen3_vl_webgpu::runtime::preprocess::decode_image;
use qwen3_vl_webgpu::runtime::request::{self, ChatOptions, Image, Request, Video};
use qwen3_vl_webgpu::runtime::{
    generate, get_rope_index, Content, ImageProcessor, Message, Qwen3VLProcessor, RgbImage, Sampling, Session,
    TextStream, VisionInput,
};

const USAGE: &str = "usage: qwen3-vl run --model DIR [--image FILE]… [--video DIR --fps F] --prompt TEXT [--system TEXT] \
[--max-new-tokens N] [--greedy | --temperature T --top-k K --top-p P --seed S] [--max-pixels N] [--video-max-pixels N] \
[--context-length N] [--weights q4|f16|f32] [--json]
       qwen3-vl logits --model DIR (--prompt TEXT | --input-ids 1,2,3) [--image FILE]… [--weights q4|f16|f32] [--chunk-rows N] --out FILE.npy
       qwen3-vl bench (--model DIR | --synthetic 2b|4b) [--weights q4|f16] [--images WxH,…] [--max-pixels N]
       qwen3-vl quantize --model DIR --out DIR [--shard-mib N]
       qwen3-vl verify --model DIR";

type Result<T> = std::result::Result<T, String>;

/// Flags of one subcommand: repeatable values, single values and switches, by name.
struct Args {
    values: HashMap<&'static str, Vec<String>>,
}

impl Args {
    /// `spec`: (flag, takes a value, may repeat).
    fn parse(argv: &[String], spec: &[(&'static str, bool, bool)]) -> Result<Args> {
        let mut values: HashMap<&'static str, Vec<String>> = HashMap::new();
        let mut it = argv.iter();
        while let Some(arg) = it.next() {
            let &(name, takes, repeats) = spec.iter().find(|(n, ..)| *n == arg).ok_or_else(|| format!("unknown flag {arg}"))?;
            let v = if takes { it.next().ok_or_else(|| format!("{name} needs a value"))?.clone() } else { String::new() };
            let slot = values.entry(name).or_default();
            if !repeats && !slot.is_empty() {
                return Err(format!("{name} given twice"));
            }
            slot.push(v);
        }
        Ok(Args { values })
    }
    fn has(&self, name: &str) -> bool {
        self.values.contains_key(name)
    }
    fn one(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(|v| v[0].as_str())
    }
    fn all(&self, name: &str) -> &[String] {
        self.values.get(name).map_or(&[], Vec::as_slice)
    }
    fn need(&self, name: &str) -> Result<&str> {
        self.one(name).ok_or_else(|| format!("{name} is required"))
    }
    fn num<T: std::str::FromStr>(&self, name: &str) -> Result<Option<T>> {
        self.one(name).map(|v| v.parse().map_err(|_| format!("{name}: not a number: {v}"))).transpose()
    }
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let result = match argv.first().map(String::as_str) {
        Some("run") => run(&argv[1..]),
        Some("logits") => logits(&argv[1..]),
        Some("bench") => bench(&argv[1..]),
        Some("quantize") => quantize(&argv[1..]),
        Some("verify") => verify(&argv[1..]),
        _ => Err(USAGE.to_string()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn format_of(args: &Args) -> Result<Format> {
    match args.one("--weights").unwrap_or("q4") {
        "q4" => Ok(Format::Q4),
        "f16" => Ok(Format::F16),
        "f32" => Ok(Format::F32),
        other => Err(format!("--weights: expected q4, f16 or f32, not {other}")),
    }
}

/// The model folder and the model on the GPU.
fn load(args: &Args, gpu: &Gpu) -> Result<(ModelFolder, Qwen3VL)> {
    let folder = ModelFolder::open(Path::new(args.need("--model")?)).map_err(|e| e.to_string())?;
    let model = Qwen3VL::load(gpu, &folder, format_of(args)?).map_err(|e| e.to_string())?;
    Ok((folder, model))
}

fn gpu() -> Result<Gpu> {
    Gpu::new_blocking(None).map_err(|e| e.to_string())
}

fn read_file(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))
}

fn image_processor(dir: &Path) -> Result<ImageProcessor> {
    request::image_processor(folder_file(dir)).map_err(|e| e.to_string())
}

fn images(args: &Args, processor: &ImageProcessor) -> Result<Vec<VisionInput>> {
    args.all("--image")
        .iter()
        .map(|f| {
            let img = decode_image(&read_file(Path::new(f))?).map_err(|e| format!("{f}: {e}"))?;
            processor.preprocess(&img).map_err(|e| format!("{f}: {e}"))
        })
        .collect()
}

/// A folder of frames (PNG/JPEG, in file-name order) at `fps` frames per second.
fn video(dir: &Path, fps: f64) -> Result<Video> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| matches!(x.to_ascii_lowercase().to_str(), Some("png" | "jpg" | "jpeg"))))
        .collect();
    files.sort();
    let frames: Vec<RgbImage> = files
        .iter()
        .map(|f| decode_image(&read_file(f)?).map_err(|e| format!("{}: {e}", f.display())))
        .collect::<Result<_>>()?;
    Ok(Video::Clip { frames, fps })
}

fn processor(dir: &Path) -> Result<Qwen3VLProcessor> {
    request::processor(folder_file(dir)).map_err(|e| e.to_string())
}

/// `request`'s reader for a folder on disk: a file's bytes, or `None` when it has no such file.
fn folder_file(dir: &Path) -> impl FnMut(&str) -> Result<Option<Vec<u8>>> + '_ {
    move |name| match dir.join(name) {
        path if path.is_file() => read_file(&path).map(Some),
        _ => Ok(None),
    }
}

fn run(argv: &[String]) -> Result<()> {
    let spec = [
        ("--model", true, false),
        ("--image", true, true),
        ("--video", true, false),
        ("--fps", true, false),
        ("--prompt", true, false),
        ("--system", true, false),
        ("--max-new-tokens", true, false),
        ("--greedy", false, false),
        ("--temperature", true, false),
        ("--top-k", true, false),
        ("--top-p", true, false),
        ("--seed", true, false),
        ("--max-pixels", true, false),
        ("--video-max-pixels", true, false),
        ("--context-length", true, false),
        ("--weights", true, false),
        ("--json", false, false),
    ];
    let args = Args::parse(argv, &spec)?;
    let text = args.need("--prompt")?.to_string();
    let dir = PathBuf::from(args.need("--model")?);
    let proc = processor(&dir)?;
    let images: Vec<Image> = args
        .all("--image")
        .iter()
        .map(|f| decode_image(&read_file(Path::new(f))?).map(Image::from).map_err(|e| format!("{f}: {e}")))
        .collect::<Result<_>>()?;
    let videos = match args.one("--video") {
        Some(v) => {
            let fps = args.num::<f64>("--fps")?.ok_or("--video needs --fps")?;
            vec![video(Path::new(v), fps)?]
        }
        None => Vec::new(),
    };
    let mut content: Vec<Content> = images.iter().map(|_| Content::Image).collect();
    content.extend(videos.iter().map(|_| Content::Video));
    content.push(Content::Text(text));
    let mut messages = Vec::new();
    if let Some(s) = args.one("--system") {
        messages.push(Message::system(s));
    }
    messages.push(Message::user(content));
    let options = ChatOptions {
        max_new_tokens: args.num("--max-new-tokens")?,
        greedy: args.has("--greedy"),
        temperature: args.num("--temperature")?,
        top_k: args.num("--top-k")?,
        top_p: args.num("--top-p")?,
        seed: args.num("--seed")?,
        max_pixels: args.num("--max-pixels")?,
        video_max_pixels: args.num("--video-max-pixels")?,
        ..ChatOptions::default()
    };

    // Everything checkable is checked before the GPU is touched.
    let folder = ModelFolder::open(&dir).map_err(|e| e.to_string())?;
    let req = Request::new(&proc, &messages, &images, &videos, &options, &folder.generation).map_err(|e| e.to_string())?;
    let context = args.num("--context-length")?.unwrap_or(folder.config.text_config.max_position_embeddings);
    req.check_capacity(context).map_err(|e| e.to_string())?;
    let gpu = &gpu()?;
    let model = Qwen3VL::load(gpu, &folder, format_of(&args)?).map_err(|e| e.to_string())?;
    let (prompt, opts) = (&req.prompt, &req.options);
    let mut session = Session::new(gpu, &model, req.capacity().min(context)).map_err(|e| e.to_string())?;

    let start = Instant::now();
    let logits = session
        .prefill(&prompt.input_ids, &prompt.rope.position_ids, prompt.rope.rope_delta, &req.images, &req.videos, false)
        .map_err(|e| e.to_string())?;
    let prefilled = session.last_prefill();
    let mut first: Option<Instant> = None;
    let mut stream = TextStream::new();
    let json = args.has("--json");
    let mut text = String::new();
    let (ids, stop) = pollster::block_on(generate(&mut session, logits, opts, |id| {
        first.get_or_insert_with(Instant::now);
        if let Ok(delta) = stream.push(id, |ids| proc.decode(ids, true).map_err(|e| qwen3_vl_webgpu::model::ModelError::Input(e.to_string()))) {
            if !json {
                print!("{delta}");
                let _ = std::io::stdout().flush();
            }
            text += &delta;
        }
        true
    }))
    .map_err(|e| e.to_string())?;
    let end = Instant::now();
    let ttft = first.map_or(0.0, |f| (f - start).as_secs_f64());
    // Only the tokens computed now (a session reused across turns takes the rest from its cache).
    let prefill_tps = prefilled.computed as f64 / ttft.max(1e-9);
    let decode_tps = (ids.len().saturating_sub(1)) as f64 / first.map_or(1e-9, |f| (end - f).as_secs_f64().max(1e-9));
    if json {
        let out = serde_json::json!({
            "ids": ids, "text": text, "stop": stop.reason(), "prompt_tokens": prompt.input_ids.len(),
            "cached_tokens": prefilled.cached, "computed_tokens": prefilled.computed, "time_to_first_token_s": ttft, "prefill_tokens_per_s": prefill_tps, "decode_tokens_per_s": decode_tps,
        });
        println!("{out}");
    } else {
        println!();
        eprintln!(
            "time to first token {:.3} s · prefill {:.1} tok/s ({} tokens computed) · decode {:.1} tok/s ({} tokens, {})",
            ttft,
            prefill_tps,
            prefilled.computed,
            decode_tps,
            ids.len(),
            stop.reason()
        );
    }
    Ok(())
}

fn logits(argv: &[String]) -> Result<()> {
    let spec = [
        ("--model", true, false),
        ("--prompt", true, false),
        ("--input-ids", true, false),
        ("--image", true, true),
        ("--weights", true, false),
        ("--chunk-rows", true, false),
        ("--out", true, false),
    ];
    let args = Args::parse(argv, &spec)?;
    let out = PathBuf::from(args.need("--out")?);
    // Positions whose logits one GPU pass computes and reads back (default: as many as one
    // binding holds); host memory holds one chunk.
    let chunk_rows: Option<usize> = args.num("--chunk-rows")?;
    if chunk_rows == Some(0) {
        return Err("--chunk-rows must be at least 1".into());
    }
    let dir = PathBuf::from(args.need("--model")?);
    let (input_ids, images, positions, delta) = match (args.one("--prompt"), args.one("--input-ids")) {
        (Some(text), None) => {
            let proc = processor(&dir)?;
            let images = images(&args, &proc.image_processor)?;
            let mut content: Vec<Content> = images.iter().map(|_| Content::Image).collect();
            content.push(Content::Text(text.to_string()));
            let p = proc.prompt(&[Message::user(content)], &images, &[], true).map_err(|e| e.to_string())?;
            (p.input_ids, images, p.rope.position_ids, p.rope.rope_delta)
        }
        (None, Some(list)) => {
            let ids: Vec<u32> = list.split(',').map(|t| t.trim().parse().map_err(|_| format!("--input-ids: not a token id: {t}"))).collect::<Result<_>>()?;
            let folder = ModelFolder::open(&dir).map_err(|e| e.to_string())?;
            let c = &folder.config;
            let images = images(&args, &image_processor(&dir)?)?;
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
        _ => return Err("give exactly one of --prompt and --input-ids".into()),
    };
    let gpu = &gpu()?;
    let (_, model) = load(&args, gpu)?;
    let mut session = Session::new(gpu, &model, input_ids.len()).map_err(|e| e.to_string())?;
    let hidden = session.prefill_hidden_states(&input_ids, &positions, delta, &images, &[], true).map_err(|e| e.to_string())?;
    let text = &model.language_model;
    let chunks = text.logits_chunks(gpu, input_ids.len(), chunk_rows).map_err(|e| e.to_string())?;
    let failed = |e: std::io::Error| format!("{}: {e}", out.display());
    let mut file = std::io::BufWriter::new(std::fs::File::create(&out).map_err(failed)?);
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
        let _ = std::fs::remove_file(&out);
    }
    written
}

/// Writes the pre-quantized int4 folder (model::quantized) and prints one summary line.
fn quantize(argv: &[String]) -> Result<()> {
    let args = Args::parse(argv, &[("--model", true, false), ("--out", true, false), ("--shard-mib", true, false)])?;
    let dir = PathBuf::from(args.need("--model")?);
    let out = PathBuf::from(args.need("--out")?);
    let shard_bytes = quantized::shard_bytes(args.num::<f64>("--shard-mib")?.unwrap_or(quantized::DEFAULT_SHARD_MIB))?;
    if out.join(quantized::MANIFEST).exists() || dir.canonicalize().ok() == out.canonicalize().ok() {
        return Err(format!("{}: refusing to write over a model folder", out.display()));
    }
    std::fs::create_dir_all(&out).map_err(|e| format!("{}: {e}", out.display()))?;
    let start = Instant::now();
    let manifest = quantized::write(open_in(&dir), shard_bytes, |name, bytes| std::fs::write(out.join(name), bytes)).map_err(|e| e.to_string())?;
    let folder = ModelFolder::open(&out).map_err(|e| e.to_string())?;
    let tensors = qwen3_vl_webgpu::model::expected_tensors(&folder.config).len();
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

/// Checks a pre-quantized folder's files and shards against its manifest's sizes and sha256.
fn verify(argv: &[String]) -> Result<()> {
    let args = Args::parse(argv, &[("--model", true, false)])?;
    let dir = PathBuf::from(args.need("--model")?);
    let m = quantized::verify(open_in(&dir)).map_err(|e| e.to_string())?;
    println!("{}: {} shards and {} files match manifest.json ({} bytes)", dir.display(), m.shards.len(), m.files.len(), m.total_bytes);
    Ok(())
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

/// Seconds `work` takes, waiting for the GPU to finish it.
fn timed<T>(gpu: &Gpu, work: impl FnOnce() -> Result<T>) -> Result<(T, f64)> {
    let start = Instant::now();
    let out = work()?;
    gpu.wait();
    Ok((out, start.elapsed().as_secs_f64()))
}

/// The end-to-end figures users feel, on random weights of the real shapes or a model folder.
fn bench(argv: &[String]) -> Result<()> {
    use qwen3_vl_webgpu::gpu::{DType, Encoder};
    use qwen3_vl_webgpu::kernels::sample::argmax;
    use qwen3_vl_webgpu::model::synthetic;
    use qwen3_vl_webgpu::testing::{cpu_secs, Rng};

    let spec = [("--model", true, false), ("--synthetic", true, false), ("--weights", true, false), ("--images", true, false), ("--max-pixels", true, false)];
    let args = Args::parse(argv, &spec)?;
    let format = format_of(&args)?;
    let gpu = &gpu()?;
    let (folder, what) = match (args.one("--model"), args.one("--synthetic")) {
        (Some(dir), None) => (ModelFolder::open(Path::new(dir)).map_err(|e| e.to_string())?, dir.to_string()),
        (None, Some(size)) => {
            let config = synthetic::config(size).map_err(|e| e.to_string())?;
            (synthetic::folder(config).map_err(|e| e.to_string())?, format!("synthetic {size}"))
        }
        _ => return Err("give exactly one of --model and --synthetic".into()),
    };
    let (model, load_s) = timed(gpu, || Qwen3VL::load(gpu, &folder, format).map_err(|e| e.to_string()))?;
    let weights = gpu.memory.live();
    let c = &model.config;
    let tc = &c.text_config;
    let mut rng = Rng::new(1);
    let mut rows: Vec<(String, String)> = vec![("load (read, quantise, upload)".into(), format!("{load_s:.1} s"))];

    // One 640×480 camera frame: 30×40 patches, 300 merged tokens.
    let image = ImageProcessor::default().preprocess(&RgbImage::new(640, 480, (0..640 * 480 * 3).map(|i| (i * 7 % 251) as u8).collect()).map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
    let (_, vit_s) = timed(gpu, || {
        let mut enc = Encoder::new(gpu);
        let out = model.visual.forward(&mut enc, &image.pixel_values, &[image.grid_thw]).map_err(|e| e.to_string())?;
        enc.submit();
        Ok(out)
    })?;
    rows.push(("ViT, one 640×480 frame (1200 patches)".into(), format!("{:.2} s", vit_s)));

    // Text through the decoder: t new tokens after `past` cached ones (cache contents do not
    // change the work), then the chosen token read back.
    let capacity = 4096 + 8;
    let kv = if format == Format::F32 { DType::F32 } else { DType::F16 };
    let state = model.language_model.new_state(gpu, capacity, kv).map_err(|e| e.to_string())?;
    let picked = gpu.empty(DType::U32, &[1]).map_err(|e| e.to_string())?;
    let step = |t: usize, past: usize, rng: &mut Rng| -> Result<()> {
        let ids: Vec<u32> = (0..t).map(|_| rng.below(tc.vocab_size as u64) as u32).collect();
        let pos: Vec<[u32; 3]> = (past..past + t).map(|p| [p as u32; 3]).collect();
        let mut enc = Encoder::new(gpu);
        let logits = model.language_model.forward(&mut enc, &state, &ids, &pos, past, None, false).map_err(|e| e.to_string())?;
        argmax(&mut enc, &logits, 0, &picked);
        enc.submit();
        gpu.read_u32_blocking(&picked).map_err(|e| e.to_string())?;
        Ok(())
    };
    let (_, prefill_s) = timed(gpu, || step(512, 0, &mut rng))?;
    rows.push(("prefill, 512 tokens".into(), format!("{:.1} tok/s", 512.0 / prefill_s)));
    for ctx in [128usize, 4096] {
        let n = 4;
        step(1, ctx - 1, &mut rng)?;
        let (_, s) = timed(gpu, || (0..n).try_for_each(|i| step(1, ctx + i, &mut rng)))?;
        rows.push((format!("decode at {ctx} context"), format!("{:.2} tok/s", n as f64 / s)));
    }
    // Time to first token for one image and 32 text tokens, through the session as `run` does
    // (a fresh cache each time), with the GPU memory it peaks at.
    drop(state);
    let mib = |bytes: u64| format!("{:.0} MiB", bytes as f64 / (1 << 20) as f64);
    // Text ids below every vision marker (Qwen's special tokens sit at the vocabulary's end).
    let text_vocab = [c.image_token_id, c.video_token_id, c.vision_start_token_id, c.vision_end_token_id].into_iter().min().unwrap_or(0).min(tc.vocab_size as u32);
    let mut first_token = |image: &VisionInput| -> Result<(usize, f64, f64, u64)> {
        let mut ids: Vec<u32> = (0..16).map(|_| rng.below(text_vocab as u64) as u32).collect();
        ids.push(c.vision_start_token_id);
        ids.extend(std::iter::repeat_n(c.image_token_id, image.num_tokens(c.vision_config.spatial_merge_size)));
        ids.push(c.vision_end_token_id);
        ids.extend((0..16).map(|_| rng.below(text_vocab as u64) as u32));
        let rope = get_rope_index(&ids, c.image_token_id, c.video_token_id, &[image.grid_thw], &[], c.vision_config.spatial_merge_size).map_err(|e| e.to_string())?;
        gpu.memory.reset_peak();
        let mut session = Session::new(gpu, &model, ids.len() + 1).map_err(|e| e.to_string())?;
        let cpu = cpu_secs().unwrap_or(f64::NAN);
        let (_, ttft) = timed(gpu, || {
            let logits = session.prefill(&ids, &rope.position_ids, rope.rope_delta, std::slice::from_ref(image), &[], false).map_err(|e| e.to_string())?;
            pollster::block_on(session.choose(&logits, &Sampling::Greedy, 0.0)).map_err(|e| e.to_string())
        })?;
        Ok((ids.len(), ttft, cpu_secs().unwrap_or(f64::NAN) - cpu, gpu.memory.peak()))
    };
    let peak = gpu.memory.peak();
    let (tokens, ttft, _, _) = first_token(&image)?;
    rows.push((format!("time to first token, one frame + 32 text tokens ({tokens} tokens)"), format!("{ttft:.2} s")));
    rows.push(("GPU memory: weights".into(), mib(weights)));
    rows.push(("GPU memory: peak (weights, KV cache for 4K, activations)".into(), mib(peak.max(gpu.memory.peak()))));
    // Photos of the sizes asked for, resized within the request budget as `run` resizes them.
    let budget = args.num("--max-pixels")?.unwrap_or(request::DEFAULT_MAX_PIXELS);
    let processor = ImageProcessor::default().with_budget(budget).map_err(|e| e.to_string())?;
    for size in args.one("--images").map_or(Vec::new(), |s| s.split(',').collect()) {
        let (w, h) = size.split_once('x').and_then(|(w, h)| Some((w.parse::<usize>().ok()?, h.parse::<usize>().ok()?))).ok_or_else(|| format!("--images: not WxH: {size}"))?;
        let photo = RgbImage::new(w, h, (0..w * h * 3).map(|i| (i * 7 % 251) as u8).collect()).map_err(|e| e.to_string())?;
        let (image, resize_s) = timed(gpu, || processor.preprocess(&photo).map_err(|e| e.to_string()))?;
        let [_, gh, gw] = image.grid_thw;
        let (tokens, ttft, cpu, peak) = first_token(&image)?;
        // Process CPU seconds beside the wall time: on a shared machine only they repeat.
        rows.push((
            format!("time to first token, a {w}×{h} photo at {budget} pixels ({}×{}, {tokens} tokens; resize {resize_s:.1} s)", gw * 16, gh * 16),
            format!("{ttft:.2} s ({cpu:.0} CPU s), peak {}", mib(peak)),
        ));
    }

    let caps = &gpu.caps;
    println!("{what}, weights {format:?}, on {} ({}), profile {:?}\n", caps.adapter, caps.backend, caps.profile);
    println!("| measure | value |\n|---|---:|");
    for (k, v) in rows {
        println!("| {k} | {v} |");
    }
    Ok(())
}
