//! The `qwen3-vl` binary as a user runs it: `logits` on a golden checkpoint writes the same
//! logits as transformers; `run` on the tiny end-to-end folder (tests/fixtures) with an image or
//! a video gives the library's prompt and greedy ids, also from a `quantize`d folder; bad input
//! ends in one line on stderr and a non-zero exit.

mod support;

use std::path::Path;

use qwen3_vl_webgpu::gpu::Gpu;
use qwen3_vl_webgpu::kernels::quant::Format;
use qwen3_vl_webgpu::model::{Dtype, FileSource, ModelFolder, Qwen3VL, SafetensorsFile};
use qwen3_vl_webgpu::runtime::preprocess::decode_image;
use qwen3_vl_webgpu::runtime::{Content, ImageProcessor, Message, Qwen3VLProcessor, VideoProcessor, VisionInput};
use qwen3_vl_webgpu::testing::assert_close;
use support::{ids_of, json_of, qwen3_vl, repo, tiny_folder};

fn golden(case: &str) -> SafetensorsFile {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden").join(case).join("golden.safetensors");
    SafetensorsFile::parse("golden.safetensors", Box::new(FileSource::open(&path).unwrap())).unwrap()
}

/// Reads a `<f4` C-order .npy: (shape, values).
fn read_npy(path: &Path) -> (Vec<usize>, Vec<f32>) {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[..8], b"\x93NUMPY\x01\x00");
    let len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let header = std::str::from_utf8(&bytes[10..10 + len]).unwrap();
    assert!(header.contains("'descr': '<f4'") && header.contains("'fortran_order': False"), "{header}");
    assert_eq!((10 + len) % 64, 0, "header padding");
    let dims = &header[header.find("'shape': (").unwrap() + 10..];
    let shape = dims[..dims.find(')').unwrap()].split(',').filter_map(|d| d.trim().parse().ok()).collect();
    let values = bytes[10 + len..].chunks(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect();
    (shape, values)
}

#[test]
fn logits_command_matches_transformers() {
    let g = golden("text_only");
    assert_eq!(g.tensors()["input_ids"].dtype, Dtype::I64);
    let ids: Vec<String> = g.tensor_bytes("input_ids").unwrap().chunks(8).map(|b| i64::from_le_bytes(b.try_into().unwrap()).to_string()).collect();
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/text_only");
    let logits = |extra: &[&str]| {
        let out = std::env::temp_dir().join(format!("qwen3vl-cli-{}.npy", std::process::id()));
        let ids = ids.join(",");
        let args = [&["logits", "--model", model.to_str().unwrap(), "--input-ids", &ids, "--weights", "f32", "--out", out.to_str().unwrap()], extra].concat();
        let run = qwen3_vl(&args);
        assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
        let bytes = std::fs::read(&out).unwrap();
        let npy = read_npy(&out);
        let _ = std::fs::remove_file(&out);
        (bytes, npy)
    };
    let (bytes, (shape, got)) = logits(&[]);
    assert_eq!(shape, g.tensors()["logits"].shape);
    // The f32 path's parity bound (tests/model.rs).
    assert_close("qwen3-vl logits", &got, &g.tensor_f32("logits").unwrap(), 1e-4);
    // The head run 4 positions at a time (21 positions: 6 chunks, the last of 1) streams the
    // same file, byte for byte.
    assert!(logits(&["--chunk-rows", "4"]).0 == bytes, "--chunk-rows 4 changed the .npy");
}

#[test]
fn bad_input_is_one_line_and_a_failure() {
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/text_only");
    let m = model.to_str().unwrap();
    let cases: &[(&[&str], &str)] = &[
        (&["run", "--model", m, "--prompt", "hi", "--frobnicate"], "unexpected argument '--frobnicate'"),
        (&["logits", "--model", "/nonexistent/model", "--input-ids", "1", "--out", "/tmp/x.npy"], "config.json"),
        (&["logits", "--model", m, "--input-ids", "1,x", "--out", "/tmp/x.npy"], "not a token id"),
        (&["logits", "--model", m, "--input-ids", "1,99999", "--out", "/tmp/x.npy"], "outside the vocabulary"),
        (&["logits", "--model", m, "--input-ids", "1", "--image", "/nonexistent.png", "--out", "/tmp/x.npy"], "/nonexistent.png"),
        (&["logits", "--model", m, "--input-ids", "1", "--weights", "q3", "--out", "/tmp/x.npy"], "--weights"),
        (&["logits", "--model", m, "--input-ids", "1", "--chunk-rows", "0", "--out", "/tmp/x.npy"], "--chunk-rows"),
        (&["run", "--model", m, "--prompt", "hi"], "tokenizer.json"),
        (&["dance"], "Usage"),
    ];
    for (args, needle) in cases {
        let out = qwen3_vl(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert_eq!(err.trim_end().lines().filter(|l| l.starts_with("error")).count(), 1, "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}

/// The processor `qwen3-vl run` builds from a model folder.
fn processor(dir: &Path) -> Qwen3VLProcessor {
    let mut p = Qwen3VLProcessor::from_tokenizer_json(&std::fs::read(dir.join("tokenizer.json")).unwrap()).unwrap();
    p.image_processor = ImageProcessor::from_config_json(&std::fs::read_to_string(dir.join("preprocessor_config.json")).unwrap()).unwrap();
    p.video_processor = VideoProcessor::from_config_json(&std::fs::read_to_string(dir.join("video_preprocessor_config.json")).unwrap()).unwrap();
    p
}

#[test]
fn tiny_fixture_tokenizer_fits_its_checkpoint() {
    let dir = tiny_folder("tok");
    let folder = ModelFolder::open(&dir).unwrap();
    let proc = processor(&dir);
    let c = &folder.config;
    let t = proc.tokens;
    assert_eq!(
        [t.vision_start, t.vision_end, t.image_pad, t.video_pad],
        [c.vision_start_token_id, c.vision_end_token_id, c.image_token_id, c.video_token_id]
    );
    assert_eq!(t.eos(), folder.generation.eos_token_id);
    assert_eq!(proc.tokenizer.get_vocab_size(true), c.text_config.vocab_size);
    // Every id the model can emit decodes to something, and text round-trips through the BPE.
    for id in 0..c.text_config.vocab_size as u32 {
        assert!(!proc.decode(&[id], false).unwrap().is_empty(), "id {id}");
    }
    let text = "What colour is the square? <1.5 seconds>\n";
    let ids = proc.encode(text).unwrap();
    assert!(ids.len() < text.len() / 2, "the merges should shorten common words: {ids:?}");
    assert_eq!(proc.decode(&ids, false).unwrap(), text);

    // A 64×48 image is 64×64 after smart_resize: 4×4 patches, 4 merged tokens.
    let image = proc.image_processor.preprocess(&decode_image(&std::fs::read(repo("tests/fixtures/image_64x48.png")).unwrap()).unwrap()).unwrap();
    assert_eq!(image.grid_thw, [1, 4, 4]);
    let prompt = proc.prompt(&[Message::user(vec![Content::Image, Content::Text("Describe the image.".into())])], &[image], &[], true).unwrap();
    let expect_head = [t.im_start].into_iter().chain(proc.encode("user\n").unwrap()).chain([t.vision_start, t.image_pad, t.image_pad, t.image_pad, t.image_pad, t.vision_end]);
    assert!(prompt.input_ids.iter().copied().zip(expect_head.clone()).all(|(a, b)| a == b), "{:?}", prompt.input_ids);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Greedy decoding recomputed the slow way: a fresh full prefill of the whole sequence for every
/// token and the argmax on the CPU. The CLI decodes through the KV cache and the GPU argmax,
/// so agreement checks the prompt ids, the cache, the positions after the image and the stop.
fn greedy_by_prefill(dir: &Path, format: Format, prompt: &qwen3_vl_webgpu::runtime::Prompt, images: &[VisionInput], videos: &[VisionInput], max_new: usize) -> Vec<u32> {
    use qwen3_vl_webgpu::kernels::sample::argmax_ref;
    use qwen3_vl_webgpu::runtime::{get_rope_index, Session};
    let gpu = Gpu::new_blocking(None).unwrap();
    let folder = ModelFolder::open(dir).unwrap();
    let model = Qwen3VL::load(&gpu, &folder, format).unwrap();
    let c = &model.config;
    let mut ids = prompt.input_ids.clone();
    let mut out = Vec::new();
    while out.len() < max_new {
        let rope = get_rope_index(&ids, c.image_token_id, c.video_token_id, &prompt.image_grid_thw, &prompt.video_grid_thw, c.vision_config.spatial_merge_size).unwrap();
        let mut session = Session::new(&gpu, &model, ids.len()).unwrap();
        let logits = session.prefill(&ids, &rope.position_ids, rope.rope_delta, images, videos, false).unwrap();
        let next = argmax_ref(&gpu.read_f32_blocking(&logits).unwrap());
        out.push(next);
        ids.push(next);
        if folder.generation.eos_token_id.contains(&next) {
            break;
        }
    }
    out
}

#[test]
fn run_on_the_tiny_folder_equals_the_library() {
    let dir = tiny_folder("run");
    let d = dir.to_str().unwrap();
    let image = repo("tests/fixtures/image_64x48.png");
    let text = "What colour is the square?";
    let max_new = 10;
    let args = |model: &str, weights: &str| -> Vec<String> {
        ["run", "--model", model, "--image", image.to_str().unwrap(), "--prompt", text, "--greedy", "--json", "--max-new-tokens", &max_new.to_string(), "--weights", weights].map(String::from).to_vec()
    };
    let run = |a: Vec<String>| json_of(&qwen3_vl(&a.iter().map(String::as_str).collect::<Vec<_>>()), &a.join(" "));

    // The processor as the library builds it from the folder.
    let proc = processor(&dir);
    let img = proc.image_processor.preprocess(&decode_image(&std::fs::read(&image).unwrap()).unwrap()).unwrap();
    let prompt = proc.prompt(&[Message::user(vec![Content::Image, Content::Text(text.into())])], std::slice::from_ref(&img), &[], true).unwrap();
    assert_eq!(prompt.input_ids.iter().filter(|&&t| t == proc.tokens.image_pad).count(), 4);

    let f32_run = run(args(d, "f32"));
    assert_eq!(f32_run["prompt_tokens"].as_u64().unwrap() as usize, prompt.input_ids.len());
    let ids = ids_of(&f32_run);
    assert_eq!(ids, greedy_by_prefill(&dir, Format::F32, &prompt, std::slice::from_ref(&img), &[], max_new), "qwen3-vl run --weights f32 against full prefills");
    assert_eq!(f32_run["text"].as_str().unwrap(), proc.decode(&ids, true).unwrap());

    // int4: quantised on load, and from the folder `quantize` writes, give the same ids.
    let q4_dir = std::env::temp_dir().join(format!("qwen3vl-tiny-q4-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&q4_dir);
    let out = qwen3_vl(&["quantize", "--model", d, "--out", q4_dir.to_str().unwrap(), "--shard-mib", "1"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let summary = String::from_utf8_lossy(&out.stdout);
    assert_eq!(summary.lines().count(), 1, "{summary}");
    assert!(summary.contains("1 shards + 5 files"), "{summary}");
    let verified = qwen3_vl(&["verify", "--model", q4_dir.to_str().unwrap()]);
    assert!(verified.status.success(), "{}", String::from_utf8_lossy(&verified.stderr));
    let on_load = run(args(d, "q4"));
    let stored = run(args(q4_dir.to_str().unwrap(), "q4"));
    assert_eq!(ids_of(&stored), ids_of(&on_load), "q4 folder vs quantising on load");
    // The int4 model's continuation is less repetitive than the f32 one's: a second check.
    assert_eq!(ids_of(&on_load), greedy_by_prefill(&dir, Format::Q4, &prompt, &[img], &[], max_new), "qwen3-vl run (q4) against full prefills");
    assert_eq!(stored["text"], on_load["text"]);

    // `logits` gives the same bits from both folders, and `bench` runs on the quantized one.
    let npy = |model: &Path| {
        let out = model.join("logits.npy");
        let run = qwen3_vl(&["logits", "--model", model.to_str().unwrap(), "--prompt", text, "--image", image.to_str().unwrap(), "--out", out.to_str().unwrap()]);
        assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
        read_npy(&out)
    };
    let (shape, want) = npy(&dir);
    assert_eq!(shape, [prompt.input_ids.len(), 227]);
    assert!(npy(&q4_dir).1 == want, "logits of the q4 folder differ from quantising on load");
    let bench = qwen3_vl(&["bench", "--model", q4_dir.to_str().unwrap()]);
    assert!(bench.status.success() && String::from_utf8_lossy(&bench.stdout).contains("| decode at 4096 context |"), "{}", String::from_utf8_lossy(&bench.stderr));

    // f16 from the q4 folder: one line, non-zero exit.
    let out = qwen3_vl(&args(q4_dir.to_str().unwrap(), "f16").iter().map(String::as_str).collect::<Vec<_>>());
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.trim_end().lines().count() == 1 && err.contains("pre-quantized"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&q4_dir);
}

#[test]
fn run_with_a_video_folder() {
    let dir = tiny_folder("video");
    let frames_dir = repo("tests/fixtures/video_4x64x48");
    let text = "What happens in the video?";
    let out = qwen3_vl(&["run", "--model", dir.to_str().unwrap(), "--video", frames_dir.to_str().unwrap(), "--fps", "2", "--prompt", text, "--greedy", "--json", "--max-new-tokens", "6", "--weights", "f32"]);
    let v = json_of(&out, "run --video");

    let proc = processor(&dir);
    let frames: Vec<_> = (0..4).map(|i| decode_image(&std::fs::read(frames_dir.join(format!("frame-{i}.png"))).unwrap()).unwrap()).collect();
    let video = proc.video_processor.preprocess_all(&frames, Some(2.0)).unwrap();
    // 4 frames at 2 fps (0, 0.5, 1, 1.5 s): two temporal patches of 4×4 patches, 4 tokens each,
    // labelled with their frames' mean times.
    assert_eq!((video.vision.grid_thw, video.timestamps.clone()), ([2, 4, 4], vec![0.25, 1.25]));
    let prompt = proc.prompt(&[Message::user(vec![Content::Video, Content::Text(text.into())])], &[], std::slice::from_ref(&video), true).unwrap();
    assert_eq!(prompt.input_ids.iter().filter(|&&t| t == proc.tokens.video_pad).count(), 8);
    assert_eq!(v["prompt_tokens"].as_u64().unwrap() as usize, prompt.input_ids.len());
    assert_eq!(ids_of(&v), greedy_by_prefill(&dir, Format::F32, &prompt, &[], &[video.vision], 6), "qwen3-vl run --video against full prefills");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_images_are_one_line_and_a_failure() {
    let dir = tiny_folder("badimg");
    let junk = dir.join("junk.png");
    std::fs::write(&junk, b"\x89PNG\r\n\x1a\nnot really").unwrap();
    let thin = dir.join("thin.png");
    image::RgbImage::new(402, 2).save(&thin).unwrap();
    for (file, needle) in [(&junk, "junk.png"), (&thin, "aspect")] {
        let out = qwen3_vl(&["run", "--model", dir.to_str().unwrap(), "--image", file.to_str().unwrap(), "--prompt", "hi"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{file:?} succeeded");
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        assert!(err.starts_with("error") && err.contains(needle), "{err}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Limits are checked before any GPU work and end in one line and exit code 1 (never a panic's
/// 101): a prompt over the context, an image whose tokens overflow `--context-length`, a budget
/// under the processor's minimum. Within them a photo far over the budget answers, resized.
#[test]
fn limits_are_one_line_errors_and_big_photos_answer() {
    let dir = tiny_folder("limits");
    let d = dir.to_str().unwrap();
    let photo = dir.join("photo_2000x1500.png");
    image::RgbImage::from_fn(2000, 1500, |x, y| image::Rgb([(x / 8) as u8, (y / 6) as u8, 128])).save(&photo).unwrap();
    let p = photo.to_str().unwrap();
    let long = "the square is red. ".repeat(1200);
    let cases: &[(&[&str], &str)] = &[
        (&["run", "--model", d, "--prompt", &long], "but the context holds 4096"),
        (&["run", "--model", d, "--image", p, "--prompt", "hi", "--context-length", "20"], "but the context holds 20"),
        (&["run", "--model", d, "--image", p, "--prompt", "hi", "--max-pixels", "100"], "a budget of 100 pixels is below the processor's minimum of 1024"),
    ];
    for (args, needle) in cases {
        let out = qwen3_vl(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{:?}: {err}", &args[..args.len().min(6)]);
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        assert!(err.starts_with("error") && err.contains(needle), "{err}");
    }
    // The tiny processor's own maximum (16384 pixels) caps the default budget: 96×128, 12 tokens;
    // --max-pixels 4096 gives 32×64, 2 tokens.
    let ask = |extra: &[&str]| json_of(&qwen3_vl(&[&["run", "--model", d, "--image", p, "--prompt", "hi", "--greedy", "--json", "--max-new-tokens", "2"], extra].concat()), "run");
    let (full, small) = (ask(&[]), ask(&["--max-pixels", "4096"]));
    let tokens = |v: &serde_json::Value, k: &str| v[k].as_u64().unwrap();
    assert_eq!(tokens(&full, "prompt_tokens") - tokens(&small, "prompt_tokens"), 10);
    assert_eq!((tokens(&full, "cached_tokens"), tokens(&full, "computed_tokens")), (0, tokens(&full, "prompt_tokens")));
    let _ = std::fs::remove_dir_all(&dir);
}

/// A copy of `dir` with `edit` applied to its file `name`.
fn variant(dir: &Path, tag: &str, name: &str, edit: impl FnOnce(Vec<u8>) -> Vec<u8>) -> std::path::PathBuf {
    let out = dir.with_file_name(format!("{}-{tag}", dir.file_name().unwrap().to_str().unwrap()));
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).unwrap();
    for e in std::fs::read_dir(dir).unwrap() {
        let path = e.unwrap().path();
        if path.is_file() {
            std::fs::copy(&path, out.join(path.file_name().unwrap())).unwrap();
        }
    }
    std::fs::write(out.join(name), edit(std::fs::read(out.join(name)).unwrap())).unwrap();
    out
}

/// Text edit of a JSON file, which must apply.
fn replace(from: &'static str, to: &'static str) -> impl FnOnce(Vec<u8>) -> Vec<u8> {
    move |bytes| {
        let text = String::from_utf8(bytes).unwrap();
        assert!(text.contains(from), "{from}");
        text.replacen(from, to, 1).into_bytes()
    }
}

/// One case of each class of issue 12 (aborts from unbounded allocation, arithmetic overflow,
/// panics, silent wrong answers): one line on stderr naming the problem, exit status 1 (not
/// 101, a panic, nor a signal, an abort).
#[test]
fn hostile_files_and_flags_are_one_line_errors() {
    let dir = tiny_folder("hostile");
    let d = dir.to_str().unwrap();
    let png = std::fs::read(repo("tests/fixtures/image_64x48.png")).unwrap();
    // A PNG declaring 100000×100000 (with its header's CRC fixed), a JPEG cut in half, an 8×8 image.
    let crc = |b: &[u8]| !b.iter().fold(!0u32, |c, &x| (0..8).fold(c ^ x as u32, |c, _| if c & 1 == 1 { 0xEDB8_8320 ^ (c >> 1) } else { c >> 1 }));
    let mut bomb = png.clone();
    bomb[16..24].copy_from_slice(&[100_000u32.to_be_bytes(), 100_000u32.to_be_bytes()].concat());
    let sum = crc(&bomb[12..29]);
    bomb[29..33].copy_from_slice(&sum.to_be_bytes());
    std::fs::write(dir.join("bomb.png"), bomb).unwrap();
    let mut jpeg = Vec::new();
    image::load_from_memory(&png).unwrap().write_to(&mut std::io::Cursor::new(&mut jpeg), image::ImageFormat::Jpeg).unwrap();
    std::fs::write(dir.join("half.jpg"), &jpeg[..jpeg.len() / 2]).unwrap();
    image::RgbImage::new(8, 8).save(dir.join("tiny.png")).unwrap();
    // The golden header ends with one space of padding: a length one short still parses, and
    // every tensor would read one byte early.
    let short_header = variant(&dir, "short", "model.safetensors", |mut b| {
        let n = u64::from_le_bytes(b[..8].try_into().unwrap());
        b[..8].copy_from_slice(&(n - 1).to_le_bytes());
        b
    });
    let q4 = dir.with_file_name(format!("{}-q4", dir.file_name().unwrap().to_str().unwrap()));
    let _ = std::fs::remove_dir_all(&q4);
    assert!(qwen3_vl(&["quantize", "--model", d, "--out", q4.to_str().unwrap(), "--shard-mib", "0.0625"]).status.success());
    let flipped = variant(&q4, "flipped", "weights-00001.bin", |mut b| {
        b[100] ^= 1;
        b
    });
    let edited_tokenizer = variant(&q4, "tokenizer", "tokenizer.json", |mut b| {
        let space = b.iter().position(|&c| c == b' ').unwrap();
        b[space] = b'\t'; // still the same JSON, not the same bytes
        b
    });
    let folders = [
        variant(&dir, "layers", "config.json", replace("\"num_hidden_layers\": 3", "\"num_hidden_layers\": 1000000000")),
        variant(&dir, "pixels", "preprocessor_config.json", replace("\"longest_edge\": 16384", "\"longest_edge\": 1125899906842624")),
        variant(&dir, "mrope", "config.json", replace("4,\n        2,\n        2", "18446744073709551615,\n        5,\n        4")),
        variant(&dir, "head", "config.json", replace("\"head_dim\": 16", "\"head_dim\": 12")),
        variant(&dir, "decoder", "tokenizer.json", replace("\"decoder\": {", "\"decoder\": {\"x\": 1e999, ")),
        variant(&dir, "min0", "preprocessor_config.json", replace("\"shortest_edge\": 1024", "\"shortest_edge\": 0")),
        variant(&dir, "rescale", "preprocessor_config.json", replace("\"patch_size\"", "\"rescale_factor\": 0, \"patch_size\"")),
        variant(&dir, "std", "video_preprocessor_config.json", replace("\"image_std\": [\n  0.5", "\"image_std\": [\n  1e-40")),
    ];
    let m = |f: &std::path::PathBuf| f.to_str().unwrap().to_string();
    let file = |name: &str| dir.join(name).to_str().unwrap().to_string();
    let frames = repo("tests/fixtures/video_4x64x48").to_str().unwrap().to_string();
    let run = |model: String, extra: &[&str]| [&["run", "--model", &model, "--prompt", "hi"], extra].concat().iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let cases: Vec<(Vec<String>, &str)> = vec![
        // Aborts: a decompression bomb, a million-layer config, a pixel budget of petabytes.
        (run(d.into(), &["--image", &file("bomb.png")]), "limits"),
        (run(m(&folders[0]), &[]), "num_hidden_layers"),
        (run(m(&folders[1]), &[]), "max_pixels"),
        // Overflow: sections that sum to head_dim / 2 modulo 2^64.
        (run(m(&folders[2]), &[]), "mrope_section"),
        // Panics: a head size the kernels assert on, a tokenizer decoder tokenizers cannot
        // read, an 8×8 image that resizes to nothing.
        (run(m(&folders[3]), &[]), "head_dim"),
        (run(m(&folders[4]), &[]), "tokenizer.json"),
        (run(m(&folders[5]), &["--image", &file("tiny.png")]), "resizes to 0x0"),
        // Silent wrong answers: a shard or file that is not the manifest's, a header length one short,
        // NaN or infinite pixels, seconds from a zero frame rate, a wrapped capacity, a
        // truncated JPEG, a NaN temperature.
        (run(m(&flipped), &[]), "sha256"),
        (run(m(&edited_tokenizer), &[]), "tokenizer.json: has sha256"),
        (run(m(&short_header), &[]), "model.safetensors"),
        (run(m(&folders[6]), &[]), "rescale_factor"),
        (run(m(&folders[7]), &[]), "image_std"),
        (run(d.into(), &["--video", &frames, "--fps", "0"]), "fps"),
        (run(d.into(), &["--max-new-tokens", "18446744073709551615"]), "maxNewTokens"),
        (run(d.into(), &["--image", &file("half.jpg")]), "truncated"),
        (run(d.into(), &["--temperature", "NaN"]), "temperature"),
    ];
    for (args, needle) in &cases {
        let out = qwen3_vl(&args.iter().map(String::as_str).collect::<Vec<_>>());
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
        assert!(err.starts_with("error") && err.contains(needle), "{args:?}: {err}");
    }
    for f in folders.iter().chain([&short_header, &flipped, &edited_tokenizer, &q4, &dir]) {
        let _ = std::fs::remove_dir_all(f);
    }
}
