//! The `qwen3-vl` binary as a user runs it: `logits` on a golden checkpoint writes the same
//! logits as transformers, and bad input ends in one line on stderr and a non-zero exit.

use std::path::Path;
use std::process::Command;

use qwen3_vl_webgpu::model::{Dtype, FileSource, ModelFolder, SafetensorsFile};
use qwen3_vl_webgpu::runtime::preprocess::decode_image;
use qwen3_vl_webgpu::runtime::{Content, ImageProcessor, Message, Qwen3VLProcessor, VideoProcessor};
use qwen3_vl_webgpu::testing::assert_close;

fn qwen3_vl(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_qwen3-vl")).args(args).env("XDG_RUNTIME_DIR", std::env::temp_dir()).output().unwrap()
}

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
    let out = std::env::temp_dir().join(format!("qwen3vl-cli-{}.npy", std::process::id()));
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/text_only");
    let run = qwen3_vl(&["logits", "--model", model.to_str().unwrap(), "--input-ids", &ids.join(","), "--weights", "f32", "--out", out.to_str().unwrap()]);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let (shape, got) = read_npy(&out);
    let _ = std::fs::remove_file(&out);
    assert_eq!(shape, g.tensors()["logits"].shape);
    // The f32 path's parity bound (tests/model.rs).
    assert_close("qwen3-vl logits", &got, &g.tensor_f32("logits").unwrap(), 1e-4);
}

#[test]
fn bad_input_is_one_line_and_a_failure() {
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/text_only");
    let m = model.to_str().unwrap();
    let cases: &[(&[&str], &str)] = &[
        (&["run", "--model", m, "--prompt", "hi", "--frobnicate"], "unknown flag --frobnicate"),
        (&["logits", "--model", "/nonexistent/model", "--input-ids", "1", "--out", "/tmp/x.npy"], "config.json"),
        (&["logits", "--model", m, "--input-ids", "1,x", "--out", "/tmp/x.npy"], "not a token id"),
        (&["logits", "--model", m, "--input-ids", "1,99999", "--out", "/tmp/x.npy"], "outside the vocabulary"),
        (&["logits", "--model", m, "--input-ids", "1", "--image", "/nonexistent.png", "--out", "/tmp/x.npy"], "/nonexistent.png"),
        (&["logits", "--model", m, "--input-ids", "1", "--weights", "q3", "--out", "/tmp/x.npy"], "--weights"),
        (&["run", "--model", m, "--prompt", "hi"], "tokenizer.json"),
        (&["dance"], "usage"),
    ];
    for (args, needle) in cases {
        let out = qwen3_vl(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert_eq!(err.trim_end().lines().filter(|l| l.starts_with("error")).count(), 1, "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}

fn repo(path: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// The tiny end-to-end model folder (`tests/fixtures/tiny.sh`) in a fresh temporary folder.
fn tiny_folder(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("qwen3vl-tiny-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let ok = Command::new("bash").arg(repo("tests/fixtures/tiny.sh")).arg(&dir).status().unwrap().success();
    assert!(ok, "tests/fixtures/tiny.sh failed");
    dir
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
