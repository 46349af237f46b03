//! The `qwen3-vl` binary as a user runs it: `logits` on a golden checkpoint writes the same
//! logits as transformers, and bad input ends in one line on stderr and a non-zero exit.

use std::path::Path;
use std::process::Command;

use qwen3_vl_webgpu::model::{Dtype, FileSource, SafetensorsFile};
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
