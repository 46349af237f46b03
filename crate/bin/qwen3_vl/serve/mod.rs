//! `qwen3-vl serve`: an OpenAI-compatible HTTP server (axum on tokio) for desktop apps and
//! tools: `POST /v1/chat/completions` (text and images, streamed as server-sent events or whole
//! with usage) and `GET /v1/models`. Handlers parse and prepare requests (images decoded,
//! prompts built through `runtime::request` off the async threads) and hand them to the one
//! model thread (`engine`), which answers them in order.

mod api;
mod engine;

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::response::sse::{Event as SseEvent, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::stream::{self, Stream, StreamExt};
use qwen3_vl_webgpu::model::GenerationConfig;
use qwen3_vl_webgpu::runtime::request::Request;
use qwen3_vl_webgpu::runtime::Qwen3VLProcessor;
use serde_json::{json, Value};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

use crate::common::{self, Result, Weights};
use crate::hub;
use api::{ApiError, ChatRequest};
use engine::{Event, Job};

/// Serve the model over an OpenAI-compatible HTTP API.
#[derive(clap::Args)]
pub struct Args {
    /// Model folder or Hugging Face id (owner/name[@revision]).
    #[arg(long, value_name = "DIR|ID", default_value = hub::DEFAULT_MODEL)]
    model: String,
    /// Address to listen on; anything but loopback exposes the model (and the files images may
    /// name) to the network.
    #[arg(long, value_name = "IP", default_value = "127.0.0.1")]
    host: IpAddr,
    /// Port (0: any free one; the address is printed on stderr).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// How the large matrices are stored on the GPU.
    #[arg(long, value_enum, default_value_t)]
    weights: Weights,
    /// Tokens the KV cache holds: the longest conversation, prompt and answer together.
    #[arg(long, value_name = "N", default_value_t = 4096)]
    context_length: usize,
    /// Largest request body, in MiB (images come inline as data: URLs).
    #[arg(long, value_name = "MIB", default_value_t = 64)]
    max_body_mib: usize,
}

/// What every handler shares.
struct Shared {
    /// The name `GET /v1/models` lists and responses carry: the `--model` given.
    model: String,
    proc: Arc<Qwen3VLProcessor>,
    generation: GenerationConfig,
    /// The session's capacity (`--context-length`).
    context: usize,
    /// The model thread's queue.
    jobs: mpsc::Sender<Job>,
    next_id: AtomicU64,
}

pub fn run(args: Args) -> Result<()> {
    let dir = hub::model_dir(&args.model)?;
    let proc = Arc::new(common::processor(&dir)?);
    let (jobs, queue) = mpsc::channel::<Job>();
    let (ready_tx, ready) = mpsc::channel::<Result<GenerationConfig>>();
    let (weights, context, thread_proc) = (args.weights, args.context_length, proc.clone());
    // The GPU, the model and the session live on this thread only.
    std::thread::spawn(move || {
        let gpu = match common::gpu() {
            Ok(gpu) => gpu,
            Err(e) => return ready_tx.send(Err(e)).unwrap_or(()),
        };
        match common::load(&dir, weights, &gpu) {
            Ok((folder, model)) => {
                let _ = ready_tx.send(Ok(folder.generation.clone()));
                if let Err(e) = engine::serve(&gpu, &model, thread_proc, context, queue) {
                    eprintln!("error: {e}");
                }
            }
            Err(e) => ready_tx.send(Err(e)).unwrap_or(()),
        }
    });
    let generation = ready.recv().map_err(|_| "the model thread ended while loading".to_string())??;
    let shared = Arc::new(Shared { model: args.model.clone(), proc, generation, context, jobs, next_id: AtomicU64::new(1) });
    let app = Router::new()
        .route("/v1/chat/completions", post(chat_completions))
        .route("/v1/models", get(models))
        .fallback(|| async { ApiError { status: axum::http::StatusCode::NOT_FOUND, message: "no such route".into() } })
        .layer(DefaultBodyLimit::max(args.max_body_mib << 20))
        .with_state(shared);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let addr = SocketAddr::new(args.host, args.port);
        let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| format!("{addr}: {e}"))?;
        let local = listener.local_addr().map_err(|e| e.to_string())?;
        eprintln!("listening on http://{local}/v1 (model {})", args.model);
        axum::serve(listener, app).await.map_err(|e| e.to_string())
    })
}

async fn models(State(shared): State<Arc<Shared>>) -> Json<Value> {
    Json(json!({ "object": "list", "data": [{ "id": shared.model, "object": "model", "created": 0, "owned_by": "qwen3-vl-webgpu" }] }))
}

async fn chat_completions(State(shared): State<Arc<Shared>>, body: std::result::Result<Bytes, BytesRejection>) -> std::result::Result<Response, ApiError> {
    let body = body.map_err(|e| ApiError { status: e.status(), message: e.body_text() })?;
    let request: ChatRequest = serde_json::from_slice(&body).map_err(|e| ApiError::bad_request(format!("invalid request body: {e}")))?;
    // Decoding images, resizing and tokenizing take CPU time: not on the async threads.
    let prepared = shared.clone();
    let (chat, request) = tokio::task::spawn_blocking(move || -> std::result::Result<_, ApiError> {
        let chat = request.into_chat()?;
        let s = &prepared;
        let request = Request::new(&s.proc, &chat.messages, &chat.images, &[], &chat.options, &s.generation)
            .and_then(|r| r.check_capacity(s.context).map(|_| r))
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        Ok((chat, request))
    })
    .await
    .map_err(|e| ApiError { status: axum::http::StatusCode::INTERNAL_SERVER_ERROR, message: e.to_string() })??;

    let id = format!("chatcmpl-{}", shared.next_id.fetch_add(1, Ordering::Relaxed));
    let (tx, mut events) = unbounded_channel();
    let job = Job { id: id.clone(), request, stop: chat.stop, events: tx };
    let queued = shared.jobs.send(job);
    let gone = || ApiError { status: axum::http::StatusCode::SERVICE_UNAVAILABLE, message: "the model thread has stopped".into() };
    queued.map_err(|_| gone())?;
    // Wait for the prefill: a prompt that does not fit is still a 400.
    let (prompt_tokens, cached_tokens) = match events.recv().await {
        Some(Event::Started { prompt_tokens, cached_tokens }) => (prompt_tokens, cached_tokens),
        Some(Event::Failed(e)) => return Err(ApiError::bad_request(e)),
        _ => return Err(gone()),
    };
    let created = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let meta = Meta { id, created, model: shared.model.clone(), prompt_tokens, cached_tokens, include_usage: chat.include_usage };
    if chat.stream {
        return Ok(Sse::new(sse(meta, events)).into_response());
    }
    let mut text = String::new();
    while let Some(event) = events.recv().await {
        match event {
            Event::Text(t) => text += &t,
            Event::Done { finish_reason, completion_tokens } => {
                let usage = api::usage(prompt_tokens, cached_tokens, completion_tokens);
                return Ok(Json(api::completion(&meta.id, created, &meta.model, &text, finish_reason, usage)).into_response());
            }
            Event::Failed(e) => return Err(ApiError { status: axum::http::StatusCode::INTERNAL_SERVER_ERROR, message: e }),
            Event::Started { .. } => {}
        }
    }
    Err(gone())
}

/// What every chunk of one answer repeats.
struct Meta {
    id: String,
    created: u64,
    model: String,
    prompt_tokens: usize,
    cached_tokens: usize,
    include_usage: bool,
}

/// The answer as OpenAI's chunks: the role, the text deltas, the finish reason, the usage when
/// asked, then `[DONE]`. Dropping the stream (the client left) drops `events`, which the model
/// thread sees as a cancel.
fn sse(meta: Meta, events: UnboundedReceiver<Event>) -> impl Stream<Item = std::result::Result<SseEvent, Infallible>> {
    let data = |v: Value| SseEvent::default().data(v.to_string());
    let first = data(api::chunk(&meta.id, meta.created, &meta.model, json!({ "role": "assistant", "content": "" }), None));
    let rest = stream::unfold((meta, events, false), move |(meta, mut events, done)| async move {
        if done {
            return None;
        }
        let chunk = |delta: Value, reason: Option<&str>| data(api::chunk(&meta.id, meta.created, &meta.model, delta, reason));
        let out: Vec<SseEvent> = match events.recv().await {
            Some(Event::Text(t)) => vec![chunk(json!({ "content": t }), None)],
            Some(Event::Done { finish_reason, completion_tokens }) => {
                let mut out = vec![chunk(json!({}), Some(finish_reason))];
                if meta.include_usage {
                    out.push(data(api::usage_chunk(&meta.id, meta.created, &meta.model, api::usage(meta.prompt_tokens, meta.cached_tokens, completion_tokens))));
                }
                out.push(SseEvent::default().data("[DONE]"));
                return Some((out, (meta, events, true)));
            }
            Some(Event::Failed(e)) => vec![data(json!({ "error": { "message": e, "type": "server_error", "param": null, "code": null } }))],
            Some(Event::Started { .. }) => Vec::new(),
            None => return None,
        };
        Some((out, (meta, events, false)))
    });
    stream::once(async move { vec![first] }).chain(rest).flat_map(|v| stream::iter(v.into_iter().map(Ok)))
}
