//! `qwen3-vl serve` on the tiny model, spoken to over HTTP as OpenAI clients do: streaming and
//! whole answers equal `run --greedy`, two clients at once both get theirs, a continued
//! conversation reuses the cache, a client that leaves mid-stream frees the model, and every
//! malformed request is a 400 with OpenAI's error shape while the server keeps serving.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{json, Value};
use support::{command, ids_of, json_of, repo, tiny_folder};

/// A running server, its address and its log (stderr lines).
struct Server {
    child: Child,
    addr: String,
    log: Arc<Mutex<Vec<String>>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn start(model: &str, extra: &[&str]) -> Server {
        let mut child = command()
            .args(["serve", "--model", model, "--port", "0", "--weights", "f32"])
            .args(extra)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let addr = loop {
            let line = lines.next().expect("serve ended before listening").unwrap();
            if let Some(rest) = line.strip_prefix("listening on http://") {
                break rest.split('/').next().unwrap().to_string();
            }
        };
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = log.clone();
        std::thread::spawn(move || lines.map_while(Result::ok).for_each(|l| sink.lock().unwrap().push(l)));
        Server { child, addr, log }
    }

    /// POSTs `body` to /v1/chat/completions: status and body text.
    fn post(&self, body: &str) -> (u16, String) {
        let url = format!("http://{}/v1/chat/completions", self.addr);
        match ureq::post(&url).set("Content-Type", "application/json").send_string(body) {
            Ok(r) => (r.status(), r.into_string().unwrap()),
            Err(ureq::Error::Status(code, r)) => (code, r.into_string().unwrap()),
            Err(e) => panic!("{e} for {}; server log:\n{}", &body[..body.len().min(200)], self.log.lock().unwrap().join("\n")),
        }
    }

    fn complete(&self, request: &Value) -> Value {
        let (status, body) = self.post(&request.to_string());
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    }

    /// A streamed answer: its chunks, after checking the `[DONE]` end.
    fn stream(&self, request: &Value) -> Vec<Value> {
        let mut request = request.clone();
        request["stream"] = json!(true);
        request["stream_options"] = json!({ "include_usage": true });
        let (status, body) = self.post(&request.to_string());
        assert_eq!(status, 200, "{body}");
        let data: Vec<&str> = body.lines().filter_map(|l| l.strip_prefix("data: ")).collect();
        assert_eq!(data.last(), Some(&"[DONE]"), "{body}");
        data[..data.len() - 1].iter().map(|d| serde_json::from_str(d).unwrap()).collect()
    }

    /// The log line of one request (`chatcmpl-N: …`), once the model thread has written it.
    fn log_of(&self, id: &str) -> String {
        let start = Instant::now();
        loop {
            if let Some(l) = self.log.lock().unwrap().iter().find(|l| l.starts_with(&format!("{id}: "))) {
                return l.clone();
            }
            assert!(start.elapsed() < Duration::from_secs(60), "no log line for {id}: {:?}", self.log.lock().unwrap());
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn data_url(path: &std::path::Path) -> String {
    format!("data:image/png;base64,{}", base64::engine::general_purpose::STANDARD.encode(std::fs::read(path).unwrap()))
}

/// A one-turn request: optional image, then text; greedy, at most `max` tokens.
fn request(image: Option<&str>, text: &str, max: usize) -> Value {
    let mut content = Vec::new();
    if let Some(url) = image {
        content.push(json!({ "type": "image_url", "image_url": { "url": url } }));
    }
    content.push(json!({ "type": "text", "text": text }));
    json!({ "model": "tiny", "messages": [{ "role": "user", "content": content }], "temperature": 0, "max_tokens": max })
}

/// What `qwen3-vl run --greedy` answers.
fn run_greedy(dir: &str, image: Option<&str>, text: &str, max: usize) -> Value {
    let max = max.to_string();
    let mut args = vec!["run", "--model", dir, "--prompt", text, "--greedy", "--json", "--max-new-tokens", &max, "--weights", "f32"];
    if let Some(f) = image {
        args.extend(["--image", f]);
    }
    json_of(&command().args(&args).output().unwrap(), "run --greedy")
}

#[test]
fn serve_answers_like_run() {
    let dir = tiny_folder("serve");
    let d = dir.to_str().unwrap();
    let png = repo("tests/fixtures/image_64x48.png");
    let (image, url) = (png.to_str().unwrap(), data_url(&png));
    let server = Server::start(d, &["--context-length", "600", "--max-body-mib", "1"]);
    let (q1, q2) = ("What colour is the square?", "Say something.");
    let (want1, want2) = (run_greedy(d, Some(image), q1, 12), run_greedy(d, None, q2, 12));

    // Whole: text, usage and finish reason of `run`.
    let got = server.complete(&request(Some(&url), q1, 12));
    assert_eq!(got["object"], "chat.completion");
    assert_eq!(got["choices"][0]["message"]["content"], want1["text"]);
    assert_eq!(got["choices"][0]["finish_reason"], want1["stop"]);
    assert_eq!(got["usage"]["prompt_tokens"], want1["prompt_tokens"]);
    assert_eq!(got["usage"]["completion_tokens"].as_u64().unwrap() as usize, ids_of(&want1).len());
    assert_eq!(got["usage"]["prompt_tokens_details"]["cached_tokens"], 0, "{got}");

    // Streamed: the role first, deltas that add up to the same text, the finish reason, usage.
    let chunks = server.stream(&request(Some(&url), q1, 12));
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let text: String = chunks.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect();
    assert_eq!(text, want1["text"].as_str().unwrap());
    let ends: Vec<&Value> = chunks.iter().filter(|c| !c["choices"][0]["finish_reason"].is_null()).collect();
    assert_eq!((ends.len(), &ends[0]["choices"][0]["finish_reason"]), (1, &want1["stop"]));
    assert_eq!(chunks.last().unwrap()["usage"]["completion_tokens"].as_u64().unwrap() as usize, ids_of(&want1).len());
    assert!(chunks.iter().all(|c| c["object"] == "chat.completion.chunk" && c["id"] == chunks[0]["id"]));
    // The same question again: the whole prompt was in the cache (the last token is recomputed
    // for its logits), and the usage says so.
    let prompt = want1["prompt_tokens"].as_u64().unwrap();
    assert_eq!(chunks.last().unwrap()["usage"]["prompt_tokens_details"]["cached_tokens"], prompt - 1);
    assert!(server.log_of("chatcmpl-2").contains(&format!("{prompt} prompt tokens ({} cached)", prompt - 1)), "{:?}", server.log_of("chatcmpl-2"));

    // A local path instead of a data: URL.
    assert_eq!(server.complete(&request(Some(image), q1, 12))["choices"][0]["message"]["content"], want1["text"]);

    // Two clients at once, queued on the one model: each gets its own answer.
    std::thread::scope(|s| {
        let a = s.spawn(|| server.complete(&request(Some(&url), q1, 12)));
        let b = s.spawn(|| server.stream(&request(None, q2, 12)));
        assert_eq!(a.join().unwrap()["choices"][0]["message"]["content"], want1["text"]);
        let text: String = b.join().unwrap().iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect();
        assert_eq!(text, want2["text"].as_str().unwrap());
    });

    // The next turn of a conversation prefills only what is new.
    let first = server.complete(&request(None, q2, 12));
    let answer = first["choices"][0]["message"]["content"].as_str().unwrap();
    let id = first["id"].as_str().unwrap().to_string();
    let turn = json!({ "messages": [
        { "role": "user", "content": q2 }, { "role": "assistant", "content": answer }, { "role": "user", "content": "And more?" },
    ], "temperature": 0, "max_tokens": 4 });
    let next = server.complete(&turn);
    let first_prompt = first["usage"]["prompt_tokens"].as_u64().unwrap();
    let cached = next["usage"]["prompt_tokens_details"]["cached_tokens"].as_u64().unwrap();
    assert!(cached > first_prompt, "{id} had {first_prompt} prompt tokens; the next turn: {}", next["usage"]);
    assert!(server.log_of(next["id"].as_str().unwrap()).contains(&format!("({cached} cached)")));

    // A client that leaves mid-stream: its answer is cancelled and the model serves the next.
    let mut long = request(None, q2, 500);
    long["stream"] = json!(true);
    let body = long.to_string();
    let mut s = TcpStream::connect(&server.addr).unwrap();
    write!(s, "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len()).unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 256];
    while String::from_utf8_lossy(&seen).matches("data: ").nth(2).is_none() {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "{}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buf[..n]);
    }
    let head = String::from_utf8_lossy(&seen).into_owned();
    let left = head.split("\"id\":\"").nth(1).unwrap().split('"').next().unwrap().to_string();
    drop(s);
    assert_eq!(server.complete(&request(Some(&url), q1, 12))["choices"][0]["message"]["content"], want1["text"]);
    let line = server.log_of(&left);
    assert!(line.ends_with("cancelled") || line.contains("cancelled,"), "{line}");

    // Malformed requests: 400 (413 for a body over the limit) with OpenAI's error object.
    let long_text = "word ".repeat(2000);
    let cases: Vec<(String, u16, &str)> = vec![
        ("{not json".into(), 400, "invalid request body"),
        (json!({ "messages": "hi" }).to_string(), 400, "invalid request body"),
        (json!({ "messages": [{ "role": "user", "content": "hi" }], "temperature": "hot" }).to_string(), 400, "invalid request body"),
        (json!({ "messages": [{ "role": "user", "content": 7 }] }).to_string(), 400, "invalid request body"),
        (json!({ "messages": [{ "role": "wizard", "content": "hi" }] }).to_string(), 400, "role"),
        (json!({ "messages": [] }).to_string(), 400, "messages"),
        (json!({ "messages": [{ "role": "user", "content": "hi" }], "n": 2 }).to_string(), 400, "n:"),
        (json!({ "messages": [{ "role": "user", "content": "hi" }], "temperature": -1 }).to_string(), 400, "temperature"),
        (request(Some("data:image/png;base64,!!!"), "hi", 4).to_string(), 400, "image_url"),
        (request(Some("data:image/png;base64,aGVsbG8="), "hi", 4).to_string(), 400, "image_url"),
        (request(Some("/nonexistent/cat.png"), "hi", 4).to_string(), 400, "/nonexistent/cat.png"),
        (request(Some("https://example.com/cat.png"), "hi", 4).to_string(), 400, "data: URL"),
        (request(None, &long_text, 4).to_string(), 400, "tokens"),
        // Just over the 1 MiB limit: the server answers after reading 1 MiB and closes, so the
        // few unread bytes must already be sent (a far larger body races the close: broken pipe).
        (format!("{{\"messages\": [], \"pad\": \"{}\"}}", "x".repeat((1 << 20) + 64)), 413, "length limit"),
    ];
    for (body, status, needle) in &cases {
        let (got, text) = server.post(body);
        let err: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
        let message = err["error"]["message"].as_str().unwrap_or_else(|| panic!("{text}"));
        assert_eq!((got, err["error"]["type"].as_str()), (*status, Some("invalid_request_error")), "{text}");
        assert!(message.contains(needle), "{needle:?} not in {message}");
    }
    let models: Value = ureq::get(&format!("http://{}/v1/models", server.addr)).call().unwrap().into_json().unwrap();
    assert_eq!(models["data"][0]["id"], d);
    assert_eq!(server.complete(&request(Some(&url), q1, 12))["choices"][0]["message"]["content"], want1["text"]);
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}
