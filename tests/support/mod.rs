//! Helpers of the tests that run the `qwen3-vl` binary (cli.rs, hub.rs, server.rs).
// Each test file uses a part of them.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The `qwen3-vl` binary with a quiet environment.
pub fn command() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_qwen3-vl"));
    c.env("XDG_RUNTIME_DIR", std::env::temp_dir());
    c
}

pub fn qwen3_vl(args: &[&str]) -> Output {
    command().args(args).output().unwrap()
}

pub fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// The tiny end-to-end model folder (`tests/fixtures/tiny.sh`) in a fresh temporary folder.
pub fn tiny_folder(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("qwen3vl-tiny-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let ok = Command::new("bash").arg(repo("tests/fixtures/tiny.sh")).arg(&dir).status().unwrap().success();
    assert!(ok, "tests/fixtures/tiny.sh failed");
    dir
}

pub fn json_of(out: &Output, what: &str) -> serde_json::Value {
    assert!(out.status.success(), "{what}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{what}: {e}: {}", String::from_utf8_lossy(&out.stdout)))
}

pub fn ids_of(v: &serde_json::Value) -> Vec<u32> {
    v["ids"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect()
}
