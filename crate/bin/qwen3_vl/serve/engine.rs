//! The model thread: owns the GPU, the model and one `Session`, and answers jobs one at a time
//! in arrival order (the queue is the channel). The session keeps its cache between jobs, so a
//! request that continues the previous conversation prefills only its new tokens. A job whose
//! client has gone (its event channel closed) is skipped or, mid-answer, cancelled.

use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::time::Instant;

use qwen3_vl_webgpu::gpu::Gpu;
use qwen3_vl_webgpu::model::{ModelError, Qwen3VL};
use qwen3_vl_webgpu::runtime::request::Request;
use qwen3_vl_webgpu::runtime::{generate, Qwen3VLProcessor, Session, Stop, TextStream};
use tokio::sync::mpsc::UnboundedSender;

/// One request for the model thread.
pub struct Job {
    pub id: String,
    pub request: Request,
    pub stop: Vec<String>,
    pub events: UnboundedSender<Event>,
}

/// What the model thread tells a request's handler, in this order: `Started` (or `Failed`),
/// `Text`…, `Done`.
pub enum Event {
    Started { prompt_tokens: usize, cached_tokens: usize },
    Text(String),
    Done { finish_reason: &'static str, completion_tokens: usize },
    /// Before `Started`: the request does not fit (a 400); after it: the answer breaks off.
    Failed(String),
}

/// Serves `jobs` until every sender is gone.
pub fn serve(gpu: &Gpu, model: &Qwen3VL, proc: Arc<Qwen3VLProcessor>, context: usize, jobs: Receiver<Job>) -> Result<(), String> {
    let mut session = Session::new(gpu, model, context).map_err(|e| e.to_string())?;
    for job in jobs {
        if job.events.is_closed() {
            eprintln!("{}: cancelled while queued", job.id);
            continue;
        }
        let start = Instant::now();
        match answer(&mut session, &proc, &job) {
            Ok(summary) => eprintln!("{}: {summary}, {:.2} s", job.id, start.elapsed().as_secs_f64()),
            Err(e) => {
                eprintln!("{}: {e}", job.id);
                let _ = job.events.send(Event::Failed(e));
            }
        }
    }
    Ok(())
}

/// Prefills (reusing the cached prefix), generates while the client listens, and returns a
/// one-line summary for the log.
fn answer(session: &mut Session<&Gpu, &Qwen3VL>, proc: &Qwen3VLProcessor, job: &Job) -> Result<String, String> {
    let (prompt, req) = (&job.request.prompt, &job.request);
    let logits = session
        .prefill(&prompt.input_ids, &prompt.rope.position_ids, prompt.rope.rope_delta, &req.images, &req.videos, false)
        .map_err(|e| e.to_string())?;
    let prompt_tokens = prompt.input_ids.len();
    // Prompt tokens that came from the cache (prefill recomputes at least the last one).
    let cached = session.last_prefill().cached;
    if job.events.send(Event::Started { prompt_tokens, cached_tokens: cached }).is_err() {
        return Ok(format!("{prompt_tokens} prompt tokens ({cached} cached), client gone"));
    }
    let mut stream = TextStream::new();
    let mut stops = StopText::new(job.stop.clone());
    let mut stopped_by_text = false;
    let mut gone = false;
    let decode = |ids: &[u32]| proc.decode(ids, true).map_err(|e| ModelError::Input(e.to_string()));
    let (ids, stop) = pollster::block_on(generate(session, logits, &req.options, |id| {
        let (text, hit) = stream.push(id, decode).map(|d| stops.push(&d)).unwrap_or_default();
        stopped_by_text = hit;
        gone = !text.is_empty() && job.events.send(Event::Text(text)).is_err();
        !hit && !gone && !job.events.is_closed()
    }))
    .map_err(|e| e.to_string())?;
    let rest = stops.finish();
    if !rest.is_empty() && !stopped_by_text {
        let _ = job.events.send(Event::Text(rest));
    }
    let finish_reason = if stopped_by_text { Stop::Eos.reason() } else { stop.reason() };
    let _ = job.events.send(Event::Done { finish_reason, completion_tokens: ids.len() });
    Ok(format!("{prompt_tokens} prompt tokens ({cached} cached), {} new tokens, {finish_reason}", ids.len()))
}

/// Text deltas with OpenAI's `stop` strings applied: the answer ends before the first stop
/// string, which is never sent; text that may be the start of one is held back until it is
/// known not to be.
pub struct StopText {
    stops: Vec<String>,
    held: String,
}

impl StopText {
    pub fn new(stops: Vec<String>) -> Self {
        StopText { stops, held: String::new() }
    }

    /// The text that can be sent after `delta`, and whether a stop string was reached.
    pub fn push(&mut self, delta: &str) -> (String, bool) {
        self.held.push_str(delta);
        if let Some(at) = self.stops.iter().filter_map(|s| self.held.find(s.as_str())).min() {
            let out = self.held[..at].to_string();
            self.held.clear();
            return (out, true);
        }
        // The longest tail of `held` that begins some stop string (at a character boundary).
        let keep = self
            .stops
            .iter()
            .flat_map(|s| (1..s.len()).filter(|&k| s.is_char_boundary(k) && self.held.ends_with(&s[..k])))
            .max()
            .unwrap_or(0);
        let out: String = self.held.drain(..self.held.len() - keep).collect();
        (out, false)
    }

    /// What is still held back when the answer ends without a stop string.
    pub fn finish(&mut self) -> String {
        std::mem::take(&mut self.held)
    }
}

#[cfg(test)]
mod tests {
    use super::StopText;

    /// Feeds `deltas` and returns what is sent and whether a stop string ended it.
    fn feed(stops: &[&str], deltas: &[&str]) -> (String, bool) {
        let mut s = StopText::new(stops.iter().map(|s| s.to_string()).collect());
        let mut out = String::new();
        for d in deltas {
            let (text, hit) = s.push(d);
            out += &text;
            if hit {
                return (out, true);
            }
        }
        (out + &s.finish(), false)
    }

    #[test]
    fn stop_strings_end_the_answer_across_deltas() {
        assert_eq!(feed(&["END"], &["a E", "N", "Dx"]), ("a ".into(), true));
        assert_eq!(feed(&["END", "\n\n"], &["one\n", "\ntwo"]), ("one".into(), true));
        // A held-back start that does not become a stop string is sent after all.
        assert_eq!(feed(&["END"], &["EN", "d", "!"]), ("ENd!".into(), false));
        assert_eq!(feed(&["é!"], &["café", "?"]), ("café?".into(), false));
        assert_eq!(feed(&[], &["x", "y"]), ("xy".into(), false));
        // Nothing that may still become a stop string leaves early.
        let mut s = StopText::new(vec!["END".into()]);
        assert_eq!(s.push("abcE"), ("abc".into(), false));
    }
}
