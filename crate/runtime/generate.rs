//! The generation loop: choose a token, stream its text, stop on eos, the token budget or
//! cancellation, feed it back.

use std::ops::Deref;

use crate::gpu::Gpu;
use crate::model::{ModelError, Qwen3VL};
use crate::testing::Rng;

use super::session::{Sampling, Session};

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
pub async fn generate<G: Deref<Target = Gpu>, M: Deref<Target = Qwen3VL>>(
    session: &mut Session<G, M>,
    logits: crate::gpu::Tensor,
    opts: &GenerateOptions,
    mut on_token: impl FnMut(u32) -> bool,
) -> Result<(Vec<u32>, Stop), ModelError> {
    let mut rng = Rng::new(opts.seed);
    let mut logits = logits;
    let mut out = Vec::new();
    if opts.max_new_tokens == 0 {
        return Ok((out, Stop::MaxTokens));
    }
    loop {
        let token = session.choose(&logits, &opts.sampling, rng.uniform()).await?;
        out.push(token);
        if !on_token(token) {
            return Ok((out, Stop::Cancelled));
        }
        if opts.eos.contains(&token) {
            return Ok((out, Stop::Eos));
        }
        // The last token is not fed back: nothing would read its logits.
        if out.len() >= opts.max_new_tokens {
            return Ok((out, Stop::MaxTokens));
        }
        if session.tokens().len() >= session.capacity() {
            return Ok((out, Stop::ContextFull));
        }
        logits = session.step(token)?;
    }
}
