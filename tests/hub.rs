//! Models by Hugging Face id against a mock of the hub: a server on 127.0.0.1 in the hub's URL
//! layout (`/api/models/{id}/revision/{rev}`, `/{id}/resolve/{rev}/{file}` with Range
//! requests), reached through HF_ENDPOINT, serving the tiny model folder and its `quantize`d
//! copy. Download by id (the same answer as the local folder), resume after a cut, HF_TOKEN,
//! offline with a warm cache, a missing repository.

mod support;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};
use support::{command, ids_of, json_of, qwen3_vl, repo, tiny_folder};

const SHA: &str = "0123456789abcdef0123456789abcdef01234567";

/// One request as the mock saw it: path, Range header, Authorization header.
#[derive(Clone, Debug)]
struct Seen {
    path: String,
    range: Option<String>,
    auth: Option<String>,
}

struct MockHub {
    endpoint: String,
    log: Arc<Mutex<Vec<Seen>>>,
}

/// Serves `repos` (id → folder) at revision `main` = [`SHA`]. The first download of `cut`
/// (a file name) from offset 0 stops after half its bytes, as a dropped connection does.
fn mock_hub(repos: HashMap<String, PathBuf>, cut: Option<&str>) -> MockHub {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let log = Arc::new(Mutex::new(Vec::new()));
    let (repos, seen, cut) = (Arc::new(repos), log.clone(), Arc::new(Mutex::new(cut.map(String::from))));
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let (repos, seen, cut) = (repos.clone(), seen.clone(), cut.clone());
            std::thread::spawn(move || {
                let _ = handle(stream, &repos, &seen, &cut);
            });
        }
    });
    MockHub { endpoint, log }
}

fn handle(mut stream: TcpStream, repos: &HashMap<String, PathBuf>, log: &Mutex<Vec<Seen>>, cut: &Mutex<Option<String>>) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
        let mut headers = HashMap::new();
        loop {
            let mut h = String::new();
            reader.read_line(&mut h)?;
            if h.trim().is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
            }
        }
        let range = headers.get("range").cloned();
        log.lock().unwrap().push(Seen { path: path.clone(), range: range.clone(), auth: headers.get("authorization").cloned() });
        let reply = |stream: &mut TcpStream, status: &str, extra: &str, body: &[u8]| -> std::io::Result<()> {
            write!(stream, "HTTP/1.1 {status}\r\nContent-Length: {}\r\n{extra}\r\n", body.len())?;
            stream.write_all(body)
        };
        let not_found = br#"{"error":"Repository not found"}"#;
        if let Some(rest) = path.strip_prefix("/api/models/") {
            let id = rest.split("/revision/").next().unwrap();
            match repos.get(id) {
                Some(dir) => {
                    let siblings: Vec<_> = files(dir).iter().map(|f| serde_json::json!({ "rfilename": f })).collect();
                    let body = serde_json::json!({ "id": id, "sha": SHA, "siblings": siblings }).to_string();
                    reply(&mut stream, "200 OK", "Content-Type: application/json\r\n", body.as_bytes())?;
                }
                None => reply(&mut stream, "404 Not Found", "", not_found)?,
            }
            continue;
        }
        // /{owner}/{name}/resolve/{revision}/{file}
        let parts: Vec<&str> = path.trim_start_matches('/').splitn(5, '/').collect();
        let file = match (parts.as_slice(), repos.get(&parts[..2.min(parts.len())].join("/"))) {
            ([_, _, "resolve", "main", name], Some(dir)) if dir.join(name).is_file() => std::fs::read(dir.join(name))?,
            _ => {
                reply(&mut stream, "404 Not Found", "", not_found)?;
                continue;
            }
        };
        let name = parts[4];
        let (start, end) = match range.as_deref().and_then(|r| r.strip_prefix("bytes=")).and_then(|r| r.split_once('-')) {
            Some((s, e)) => (s.parse::<usize>().unwrap(), e.parse::<usize>().map_or(file.len() - 1, |e| e.min(file.len() - 1))),
            None => (0, file.len() - 1),
        };
        let etag = Sha256::digest(&file).iter().map(|b| format!("{b:02x}")).collect::<String>();
        let headers = format!("ETag: \"{etag}\"\r\nX-Repo-Commit: {SHA}\r\nContent-Range: bytes {start}-{end}/{}\r\n", file.len());
        let body = &file[start..=end];
        let cutting = start == 0 && end > 0 && cut.lock().unwrap().as_deref() == Some(name);
        if cutting {
            *cut.lock().unwrap() = None;
            write!(stream, "HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\n{headers}\r\n", body.len())?;
            stream.write_all(&body[..body.len() / 2])?;
            return stream.shutdown(std::net::Shutdown::Both);
        }
        reply(&mut stream, "206 Partial Content", &headers, body)?;
    }
}

fn files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

/// `qwen3-vl ARGS` with the hub at `endpoint`, the cache in `home`, and `extra` variables.
fn with_hub<S: AsRef<std::ffi::OsStr>>(args: &[S], endpoint: &str, home: &Path, extra: &[(&str, &str)]) -> Output {
    let mut c = command();
    c.args(args).env("HF_ENDPOINT", endpoint).env("HF_HOME", home).env_remove("HF_HUB_OFFLINE").env_remove("HF_TOKEN").env_remove("HF_HUB_CACHE");
    for (k, v) in extra {
        c.env(k, v);
    }
    c.output().unwrap()
}

fn one_line_error(out: &Output, needles: &[&str]) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "succeeded: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    for n in needles {
        assert!(err.starts_with("error") && err.contains(n), "{n:?} not in {err}");
    }
}

#[test]
fn models_by_id_from_a_mock_hub() {
    let tiny = tiny_folder("hub");
    let q4 = tiny.with_file_name(format!("{}-q4", tiny.file_name().unwrap().to_string_lossy()));
    let _ = std::fs::remove_dir_all(&q4);
    let out = qwen3_vl(&["quantize", "--model", tiny.to_str().unwrap(), "--out", q4.to_str().unwrap(), "--shard-mib", "0.0625"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let hub = mock_hub(HashMap::from([("test-org/tiny".into(), tiny.clone()), ("test-org/tiny-q4".into(), q4.clone())]), Some("model.safetensors"));
    let home = tiny.with_file_name(format!("qwen3vl-hf-home-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&home);
    let image = repo("tests/fixtures/image_64x48.png");
    let run = |model: &str| -> Vec<String> {
        ["run", "--model", model, "--image", image.to_str().unwrap(), "--prompt", "What colour?", "--greedy", "--json", "--max-new-tokens", "4", "--weights", "f32"].map(String::from).to_vec()
    };

    // By id, through a cut connection and HF_TOKEN: the answer of the local folder.
    let by_id = with_hub(&run("test-org/tiny"), &hub.endpoint, &home, &[("HF_TOKEN", "hf_test")]);
    let local = command().args(run(tiny.to_str().unwrap())).output().unwrap();
    assert_eq!(ids_of(&json_of(&by_id, "run by id")), ids_of(&json_of(&local, "run local")));
    let log = hub.log.lock().unwrap().clone();
    assert!(log.iter().all(|s| s.auth.as_deref() == Some("Bearer hf_test")), "HF_TOKEN not sent: {log:?}");
    let weights = std::fs::read(tiny.join("model.safetensors")).unwrap();
    let resumed = format!("bytes={}-", weights.len() / 2);
    assert!(
        log.iter().any(|s| s.path.ends_with("/model.safetensors") && s.range.as_deref() == Some(resumed.as_str())),
        "no resumed Range request {resumed}: {log:?}"
    );
    // The standard cache layout, the weights whole.
    let snapshot = home.join(format!("hub/models--test-org--tiny/snapshots/{SHA}"));
    assert!(std::fs::read(snapshot.join("model.safetensors")).unwrap() == weights, "resumed download differs");
    assert_eq!(std::fs::read_to_string(home.join("hub/models--test-org--tiny/refs/main")).unwrap(), SHA);

    // A pre-quantized folder by id: every shard, checked against its manifest.
    let verified = with_hub(&["verify", "--model", "test-org/tiny-q4"], &hub.endpoint, &home, &[]);
    assert!(verified.status.success(), "{}", String::from_utf8_lossy(&verified.stderr));
    let shards = files(&q4).iter().filter(|f| f.starts_with("weights-")).count();
    assert!(shards > 1, "{shards} shards");
    assert!(String::from_utf8_lossy(&verified.stdout).contains(&format!("{shards} shards")));

    // Offline with a warm cache: no request at all; a repository not in the cache is an error.
    let before = hub.log.lock().unwrap().len();
    let offline = with_hub(&["verify", "--model", "test-org/tiny-q4"], &hub.endpoint, &home, &[("HF_HUB_OFFLINE", "1")]);
    assert!(offline.status.success(), "{}", String::from_utf8_lossy(&offline.stderr));
    one_line_error(&with_hub(&["verify", "--model", "test-org/other"], &hub.endpoint, &home, &[("HF_HUB_OFFLINE", "1")]), &["test-org/other", "HF_HUB_OFFLINE"]);
    assert_eq!(hub.log.lock().unwrap().len(), before, "requests while offline");
    // Online again, the cached files are used without downloading them again.
    let again = with_hub(&["verify", "--model", "test-org/tiny-q4"], &hub.endpoint, &home, &[]);
    assert!(again.status.success());
    assert!(hub.log.lock().unwrap()[before..].iter().all(|s| s.path.starts_with("/api/")), "downloaded again");

    // A missing repository: one line.
    one_line_error(&with_hub(&["verify", "--model", "test-org/nope"], &hub.endpoint, &home, &[]), &["test-org/nope", "404"]);
    for dir in [&tiny, &q4, &home] {
        let _ = std::fs::remove_dir_all(dir);
    }
}
