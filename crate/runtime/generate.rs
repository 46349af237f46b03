//! The generation loop: choose a token, stream its text, stop on eos, the token budget or
//! cancellation, feed it back.

use std::ops::Deref;

use crate::gpu::Gpu;
use crate::model::{ModelError, Qwen3VL};
use crate::testing::Rng;

use super::session::{Decoder, Sampling, Session};

pub struct GenerateOptions {
    pub max_new_tokens: usize,
    pub sampling: Sampling,
    /// Same seed ⇒ same tokens.
    pub seed: u64,
    /// Generation stops after any of these (it is kept in the output).
    pub eos: Vec<u32>,
}

/// Turns a growing list of token ids into text deltas that never split a UTF-8 character:
/// the tail is held back while it decodes to an incomplete character (U+FFFD).
pub struct TextStream {
    ids: Vec<u32>,
    emitted: usize,
}

impl TextStream {
    pub fn new() -> Self {
        TextStream { ids: Vec::new(), emitted: 0 }
    }

    /// Adds `id` and returns the text that became complete.
    pub fn push(&mut self, id: u32, decode: impl Fn(&[u32]) -> Result<String, ModelError>) -> Result<String, ModelError> {
        self.ids.push(id);
        let text = decode(&self.ids)?;
        if text.ends_with('\u{FFFD}') || text.len() < self.emitted {
            return Ok(String::new());
        }
        let delta = text[self.emitted..].to_string();
        self.emitted = text.len();
        Ok(delta)
    }
}

impl Default for TextStream {
    fn default() -> Self {
        Self::new()
    }
}

/// Why generation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    Eos,
    MaxTokens,
    Cancelled,
    ContextFull,
}

impl Stop {
    /// The one name every face reports: OpenAI's `finish_reason` (`stop`, `length`) plus
    /// `cancelled` and `context_full`.
    pub fn reason(self) -> &'static str {
        match self {
            Stop::Eos => "stop",
            Stop::MaxTokens => "length",
            Stop::Cancelled => "cancelled",
            Stop::ContextFull => "context_full",
        }
    }
}

/// Generates from `logits` (the prefill's) until a stop; `on_token` gets each id and returns
/// false to cancel. Returns the generated ids (the eos included) and why it stopped.
///
/// Runs the session's recorded decode step ([`Session::decoder`]): step `k` chooses token `k`
/// on the GPU and, unless it is the last the budget or the cache allows, runs it through the
/// model for step `k + 1`. Step `k + 1` is submitted before token `k` is read, so the GPU
/// always has the next step queued; the stops are checked one step late, and a step run past
/// the end is left unread (its cache row is overwritten by the next turn). The tokens are
/// those of choosing and stepping one at a time ([`Session::choose`], [`Session::step`]) with
/// the same draws.
pub async fn generate<G: Deref<Target = Gpu>, M: Deref<Target = Qwen3VL>>(
    session: &mut Session<G, M>,
    logits: crate::gpu::Tensor,
    opts: &GenerateOptions,
    mut on_token: impl FnMut(u32) -> bool,
) -> Result<(Vec<u32>, Stop), ModelError> {
    let mut out = Vec::new();
    if opts.max_new_tokens == 0 {
        return Ok((out, Stop::MaxTokens));
    }
    let mut rng = Rng::new(opts.seed);
    let mut decoder = session.decoder(&logits, &opts.sampling)?;
    // Token k is fed unless it is the last: nothing would read its logits.
    let feeds = |d: &Decoder<G, M>, k: usize| k + 1 < opts.max_new_tokens && d.fits(k);
    let feed = feeds(&decoder, 0);
    let mut pending = decoder.submit(rng.uniform(), feed);
    let stop = loop {
        let k = out.len();
        let next = match feeds(&decoder, k) {
            true => {
                let feed = feeds(&decoder, k + 1);
                Some(decoder.submit(rng.uniform(), feed))
            }
            false => None,
        };
        let token = decoder.read(pending).await?;
        out.push(token);
        if !on_token(token) {
            break Stop::Cancelled;
        }
        if opts.eos.contains(&token) {
            break Stop::Eos;
        }
        if out.len() >= opts.max_new_tokens {
            break Stop::MaxTokens;
        }
        if !decoder.fits(k) {
            break Stop::ContextFull;
        }
        pending = next.expect("every fed token has a next step");
    };
    decoder.finish(&out[..out.len() - 1]);
    Ok((out, stop))
}
