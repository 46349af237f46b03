//! Models by Hugging Face id: `owner/name[@revision]` → a snapshot folder of the standard cache
//! (`models--owner--name/{blobs,refs,snapshots}`, shared with Python's `huggingface_hub`)
//! holding the files the runtime reads, downloaded with resume and a progress bar.
//!
//! The transfers go through hf-hub's blocking API (0.4: ureq; its cache layout, `.part` files
//! resumed by Range requests, locks). What it lacks is filled here to match `huggingface_hub`:
//! `HF_TOKEN` (hf-hub reads only the token file), `HF_HUB_CACHE` and `XDG_CACHE_HOME`,
//! `HF_HUB_OFFLINE` (the cache alone, no request), falling back to the cache when the hub is
//! unreachable, a cached file reused without a request, and one-line errors.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use hf_hub::api::sync::{Api, ApiBuilder, ApiError};
use hf_hub::{Cache, Repo, RepoType};
use qwen3_vl_webgpu::model::{quantized, Manifest};

use crate::common::Result;
use crate::progress;

/// The model `run` and `serve` use when `--model` is not given.
pub const DEFAULT_MODEL: &str = "Qwen/Qwen3-VL-2B-Instruct";

/// `owner/name` or `owner/name@revision`, as `huggingface_hub` spells repository ids.
pub fn parse_id(spec: &str) -> Option<(&str, &str)> {
    let (id, revision) = spec.split_once('@').unwrap_or((spec, "main"));
    let (owner, name) = id.split_once('/')?;
    let ok = |s: &str| !s.is_empty() && !s.starts_with('.') && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    (ok(owner) && ok(name) && !revision.is_empty()).then_some((id, revision))
}

/// Where the environment puts things, read as `huggingface_hub` reads it.
struct Env {
    endpoint: String,
    cache: PathBuf,
    token: Option<String>,
    offline: bool,
}

impl Env {
    fn read() -> Result<Env> {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let home = || var("HOME").map(PathBuf::from).ok_or("HOME is not set: set HF_HOME for the Hugging Face cache");
        let hf_home = match (var("HF_HOME"), var("XDG_CACHE_HOME")) {
            (Some(h), _) => PathBuf::from(h),
            (None, Some(x)) => Path::new(&x).join("huggingface"),
            (None, None) => home()?.join(".cache/huggingface"),
        };
        let cache = var("HF_HUB_CACHE").map_or_else(|| hf_home.join("hub"), PathBuf::from);
        let token_file = var("HF_TOKEN_PATH").map_or_else(|| hf_home.join("token"), PathBuf::from);
        let token = var("HF_TOKEN").or_else(|| std::fs::read_to_string(token_file).ok()).map(|t| t.trim().to_string()).filter(|t| !t.is_empty());
        let offline = var("HF_HUB_OFFLINE").is_some_and(|v| matches!(v.to_ascii_uppercase().as_str(), "1" | "ON" | "YES" | "TRUE"));
        let endpoint = var("HF_ENDPOINT").unwrap_or_else(|| "https://huggingface.co".into()).trim_end_matches('/').to_string();
        Ok(Env { endpoint, cache, token, offline })
    }
}

/// The local folder of `--model`: a folder on disk as it is, else a Hugging Face id whose files
/// are fetched into (or, offline, found in) the cache.
pub fn model_dir(spec: &str) -> Result<PathBuf> {
    // Not an id: a folder, whose loader names what is missing.
    let path = Path::new(spec);
    let Some((id, revision)) = parse_id(spec).filter(|_| !path.is_dir()) else {
        return Ok(path.to_path_buf());
    };
    let env = Env::read()?;
    let repo_dir = env.cache.join(format!("models--{}", id.replace('/', "--")));
    if env.offline {
        return cached(&repo_dir, revision).ok_or_else(|| format!("{id}@{revision} is not in the Hugging Face cache {} and HF_HUB_OFFLINE is set", env.cache.display()));
    }
    match download(&env, id, revision, &repo_dir) {
        Err(Failure::Unreachable(e)) => cached(&repo_dir, revision).ok_or(e),
        Err(Failure::Other(e)) => Err(e),
        Ok(dir) => Ok(dir),
    }
}

/// The cached snapshot of `revision` (a branch or tag through `refs/`, or a commit hash).
fn cached(repo_dir: &Path, revision: &str) -> Option<PathBuf> {
    let commit = std::fs::read_to_string(repo_dir.join("refs").join(revision)).map_or_else(|_| revision.to_string(), |c| c.trim().to_string());
    let dir = repo_dir.join("snapshots").join(commit);
    dir.join("config.json").is_file().then_some(dir)
}

enum Failure {
    /// No answer from the hub: the cache may still serve.
    Unreachable(String),
    Other(String),
}

fn download(env: &Env, id: &str, revision: &str, repo_dir: &Path) -> std::result::Result<PathBuf, Failure> {
    let fail = |e: ApiError, what: &str| match e {
        ApiError::RequestError(e) => match *e {
            ureq::Error::Status(404, _) => Failure::Other(format!("{what}: not found on {} (HTTP 404)", env.endpoint)),
            ureq::Error::Status(code @ (401 | 403), _) => Failure::Other(format!("{what}: HTTP {code} from {}: a private or gated model needs HF_TOKEN", env.endpoint)),
            ureq::Error::Status(code, _) => Failure::Other(format!("{what}: HTTP {code} from {}", env.endpoint)),
            ureq::Error::Transport(t) => Failure::Unreachable(format!("{what}: {t}")),
        },
        other => Failure::Other(format!("{what}: {other}")),
    };
    let api: Api = ApiBuilder::from_cache(Cache::new(env.cache.clone()))
        .with_endpoint(env.endpoint.clone())
        .with_token(env.token.clone())
        .with_progress(false)
        .with_retries(3)
        .build()
        .map_err(|e| fail(e, id))?;
    let repo = api.repo(Repo::with_revision(id.to_string(), RepoType::Model, revision.to_string()));
    let info = repo.info().map_err(|e| match fail(e, &format!("{id}@{revision}")) {
        Failure::Other(e) if e.contains("HTTP 404") => Failure::Other(format!("{id}@{revision}: no such folder here, nor a model on {} (HTTP 404)", env.endpoint)),
        other => other,
    })?;
    let snapshot = repo_dir.join("snapshots").join(&info.sha);
    let listed: BTreeSet<&str> = info.siblings.iter().map(|s| s.rfilename.as_str()).collect();
    let get = |name: &str| -> std::result::Result<PathBuf, Failure> {
        // Only the repository's own files: a name from a manifest or index stays inside it.
        if !listed.contains(name) {
            return Err(Failure::Other(format!("{id}@{revision} has no file {name}")));
        }
        let path = snapshot.join(name);
        if path.is_file() {
            return Ok(path);
        }
        let bar = progress::bytes(0, name);
        let got = repo.download_with_progress(name, progress::Download(bar.clone())).map_err(|e| fail(e, &format!("{id}/{name}")))?;
        bar.finish_and_clear();
        // A push between the listing and this download would mix two commits in one folder.
        match got.parent() == Some(snapshot.as_path()) {
            true => Ok(got),
            false => Err(Failure::Other(format!("{id}@{revision} changed during the download: run again"))),
        }
    };
    if !listed.contains("config.json") {
        return Err(Failure::Other(format!("{id}@{revision} has no config.json: not a model repository")));
    }
    // The small files: the ones `quantize` copies are the ones the runtime reads.
    for name in quantized::COPIED.iter().filter(|n| listed.contains(**n)) {
        get(name)?;
    }
    let weights: Vec<String> = if listed.contains(quantized::MANIFEST) {
        let path = get(quantized::MANIFEST)?;
        let text = std::fs::read_to_string(&path).map_err(|e| Failure::Other(format!("{}: {e}", path.display())))?;
        let manifest = Manifest::from_json(&text).map_err(|e| Failure::Other(e.to_string()))?;
        manifest.files.iter().chain(&manifest.shards).map(|e| e.name.clone()).collect()
    } else if listed.contains("model.safetensors.index.json") {
        let path = get("model.safetensors.index.json")?;
        let text = std::fs::read_to_string(&path).map_err(|e| Failure::Other(format!("{}: {e}", path.display())))?;
        let index: serde_json::Value = serde_json::from_str(&text).map_err(|e| Failure::Other(format!("{}: {e}", path.display())))?;
        let shards: BTreeSet<String> = index["weight_map"].as_object().into_iter().flatten().filter_map(|(_, f)| f.as_str().map(String::from)).collect();
        shards.into_iter().collect()
    } else {
        vec!["model.safetensors".to_string()]
    };
    for name in &weights {
        get(name)?;
    }
    // All cached already: no download wrote the branch's ref, which offline runs read.
    if revision != info.sha {
        let r = repo_dir.join("refs").join(revision);
        let written = r.parent().map_or(Ok(()), std::fs::create_dir_all).and_then(|_| std::fs::write(&r, &info.sha));
        written.map_err(|e| Failure::Other(format!("{}: {e}", r.display())))?;
    }
    Ok(snapshot)
}
