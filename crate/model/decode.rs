//! The decode plan: one decoder step recorded once per session and replayed for every
//! generated token. Its buffers (the token, one position's activations, the logits, the step
//! buffer, the read-back ring) are allocated once and its bind groups created once, so a token
//! costs one small `write_buffer` (position, attention splits, sampling draw, rotary rows)
//! and one submit. A step chooses its token from the previous step's logits on the GPU, copies
//! it into the read-back ring and runs it through the model for the next step: the host reads
//! tokens while the GPU is already on the following step.

use crate::gpu::{DType, Encoder, Gpu, GpuError, Profiler, ReadRing, Recording, Submission, Tensor};
use crate::kernels::embed::embed;
use crate::kernels::matmul::{matmul_with, MatmulOpts};
use crate::kernels::sample::{argmax, sample_step};
use crate::kernels::step::{step_buffer, StepValues};

use super::text::{Attend, LayerBuffers};
use super::{ModelError, TextModel, TextState};

/// Tokens that can be waiting to be read: the step being read and the one running after it.
const RING: usize = 2;

/// How a step chooses its token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Choose {
    Greedy,
    /// With the settings and draw of the step values (`StepValues::sampling`).
    Sample,
}

pub struct DecodePlan {
    /// The step buffer.
    now: Tensor,
    /// The token the step runs through the model: the chooser writes it.
    token: Tensor,
    /// The head's output, which the next step's chooser reads.
    logits: Tensor,
    greedy: Recording,
    sampled: Recording,
    decoder: Recording,
    ring: ReadRing,
    /// What the recordings write in between (kept with them).
    _buffers: LayerBuffers,
}

impl TextModel {
    /// Records the decode step for `state`'s caches: the choosers (argmax, or sampling with
    /// the penalties' `history` and its `seen` scratch, `sample_step`) and one token through
    /// every decoder layer and the head (the final norm its prologue). Creates every pipeline
    /// decoding uses.
    pub fn decode_plan(&self, gpu: &Gpu, state: &TextState, history: &Tensor, seen: &Tensor) -> Result<DecodePlan, ModelError> {
        let c = &self.config;
        let now = step_buffer(gpu, c.head_dim)?;
        let token = gpu.empty(DType::U32, &[1])?;
        let logits = gpu.empty(DType::F32, &[1, c.vocab_size])?;
        let a = LayerBuffers::new(gpu, c, 1)?;
        let record = |work: &dyn Fn(&mut Encoder)| {
            let mut enc = Encoder::new(gpu);
            work(&mut enc);
            enc.finish()
        };
        let greedy = record(&|enc| argmax(enc, &logits, 0, &token));
        let sampled = record(&|enc| sample_step(enc, &logits, 0, history, &now, seen, &token));
        // As `hidden_states` runs one position, from the token on the GPU.
        let decoder = record(&|enc| {
            embed(enc, &self.embed_tokens, &token, &a.x);
            for (layer, cache) in self.layers.iter().zip(&state.caches) {
                layer.forward(enc, &a, cache, &now, &Attend::Decode(&state.decode_scratch));
            }
            // The final norm → the head in one pass.
            let head_in = MatmulOpts { rms_norm: self.norm.prologue(), ..Default::default() };
            matmul_with(enc, &a.x, self.head(), &logits, &head_in);
        });
        let ring = ReadRing::new(gpu, RING, 4);
        Ok(DecodePlan { now, token, logits, greedy, sampled, decoder, ring, _buffers: a })
    }

    /// The step values of one decode token at cache row `past`, whose M-RoPE position is
    /// `position` on all three axes.
    pub fn decode_values(&self, state: &TextState, past: usize, position: u32) -> StepValues {
        self.step_values(state, past, &[[position; 3]])
    }
}

impl DecodePlan {
    /// Makes row `row` of `logits` (a prefill's) what the first step chooses from.
    pub fn start(&self, gpu: &Gpu, logits: &Tensor, row: usize) {
        let bytes = self.logits.bytes();
        let mut enc = Encoder::new(gpu);
        enc.copy(&logits.buffer, row as u64 * bytes, &self.logits.buffer, 0, bytes);
        enc.submit();
    }

    /// Step `i`: writes its `values`, then in one submit chooses its token, copies it into
    /// the read-back ring and, with `feed`, runs it through the model for step `i + 1` (its
    /// keys and values into the cache row of `values`). With a `profiler`, every dispatch is
    /// timed (benchmarks).
    pub fn submit(&self, gpu: &Gpu, i: usize, values: &StepValues, choose: Choose, feed: bool, profiler: Option<&Profiler>) -> Submission {
        gpu.write_buffer(&self.now.buffer, 0, &values.bytes());
        let mut enc = Encoder::new(gpu);
        if let Some(p) = profiler {
            enc.profile(p);
        }
        enc.replay(match choose {
            Choose::Greedy => &self.greedy,
            Choose::Sample => &self.sampled,
        });
        enc.copy(&self.token.buffer, 0, self.ring.slot(i), 0, 4);
        if feed {
            enc.replay(&self.decoder);
        }
        enc.submit()
    }

    /// Step `i`'s token, once `submission` (its [`DecodePlan::submit`]) has run. At most
    /// [`RING`] steps may be submitted and not yet read.
    pub async fn token(&self, gpu: &Gpu, i: usize, submission: &Submission) -> Result<u32, GpuError> {
        let bytes = self.ring.read(gpu, i, submission).await?;
        Ok(u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
    }

    /// Dispatches per fed step (the chooser and the decoder).
    pub fn dispatches(&self) -> usize {
        self.greedy.dispatches() + self.decoder.dispatches()
    }
}
