//! A conversation on the GPU: the KV cache, the tokens it holds, prefill of new turns (the
//! vision tower only for the new images), decode steps, and token selection: one at a time
//! ([`Session::step`], [`Session::choose`]), or pipelined through the recorded decode plan
//! ([`Session::decoder`], which `generate` drives).

use std::hash::{Hash, Hasher};
use std::ops::{Deref, Range};

use crate::gpu::{spans, DType, Encoder, Gpu, Profiler, RowSplit, Submission, Tensor};
use crate::kernels::attention::MAX_DECODE_QUERIES;
use crate::kernels::quant::Format;
use crate::kernels::sample::{argmax, sample, seen_words, History, SampleParams};
use crate::model::{Choose, DecodePlan, ModelError, Qwen3VL, TextInput, TextState, VisualInput};
use crate::runtime::VisionInput;

/// `G` and `M` are handles to the device and the model: plain references natively, `Rc`s where
/// the session must own them (the browser's `Engine` outlives any borrow).
pub struct Session<G, M> {
    gpu: G,
    model: M,
    state: TextState,
    /// The tokens whose keys and values are in the cache, in order.
    tokens: Vec<u32>,
    /// The images and videos behind the pad tokens in the cache: same pad ids can hide other
    /// pixels (two camera frames of one size), so reuse compares these too.
    vision: Vec<VisionSpan>,
    last: Prefilled,
    vision_encoded: usize,
    /// Where the penalties' history of generated tokens starts (the presence penalty only
    /// looks at what the model said in the current answer).
    answer_start: usize,
    rope_delta: i64,
    history: Tensor,
    seen: Tensor,
    picked: Tensor,
    /// The recorded decode step, built on first use ([`Session::decoder`], [`Session::compile`]).
    plan: Option<DecodePlan>,
}

/// How the next token is chosen.
#[derive(Clone, Copy, Debug)]
pub enum Sampling {
    Greedy,
    /// Temperature, top-k/top-p and penalties; `params.u` is replaced by the seeded RNG.
    Sample(SampleParams),
}

impl<G: Deref<Target = Gpu>, M: Deref<Target = Qwen3VL>> Session<G, M> {
    /// A session whose cache holds up to `capacity` tokens: f32 with f32 weights (the
    /// exact-parity path), packed f16 otherwise.
    pub fn new(gpu: G, model: M, capacity: usize) -> Result<Self, ModelError> {
        let vocab = model.config.text_config.vocab_size;
        let kv = if model.format == Format::F32 { DType::F32 } else { DType::F16 };
        Ok(Session {
            state: model.language_model.new_state(&gpu, capacity, kv)?,
            history: gpu.empty(DType::U32, &[capacity])?,
            seen: gpu.empty(DType::U32, &[seen_words(vocab)])?,
            picked: gpu.empty(DType::U32, &[1])?,
            plan: None,
            gpu,
            model,
            tokens: Vec::new(),
            vision: Vec::new(),
            last: Prefilled::default(),
            vision_encoded: 0,
            answer_start: 0,
            rope_delta: 0,
        })
    }

    pub fn capacity(&self) -> usize {
        self.state.caches[0].capacity
    }

    /// The tokens in the cache.
    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }

    /// Forgets the conversation (the cache is overwritten from position 0 on).
    pub fn reset(&mut self) {
        self.tokens.clear();
        self.vision.clear();
        self.answer_start = 0;
        self.rope_delta = 0;
    }

    /// For benchmarks: `n` more positions of token 0 count as cached without being computed
    /// (their rows keep whatever they hold), so decoding at a long context can be timed
    /// without its prefill: attention's work depends on the length, not the values.
    pub fn assume_cached(&mut self, n: usize) -> Result<(), ModelError> {
        if self.tokens.len() + n > self.capacity() {
            return Err(ModelError::Input(format!("{} + {n} positions exceed the context of {}", self.tokens.len(), self.capacity())));
        }
        self.tokens.resize(self.tokens.len() + n, 0);
        Ok(())
    }

    /// What the last prefill took from the cache and computed.
    pub fn last_prefill(&self) -> Prefilled {
        self.last
    }

    /// Images and videos the vision tower has encoded since the session was made.
    pub fn vision_encoded(&self) -> usize {
        self.vision_encoded
    }

    /// Length of the prefix of the conversation `input_ids` (with its `images` and `videos`, as
    /// [`Session::prefill`] takes them) that the cache holds: the same tokens, and behind every
    /// image or video in it the same pixels and grid.
    pub fn cached_prefix(&self, input_ids: &[u32], images: &[VisionInput], videos: &[VisionInput]) -> Result<usize, ModelError> {
        let [image_spans, video_spans] = self.vision_spans(input_ids, images, videos)?;
        Ok(self.reusable(input_ids, input_ids.len(), &image_spans, &video_spans))
    }

    /// The pad spans of `input_ids`' images and of its videos, each with its content key.
    fn vision_spans(&self, input_ids: &[u32], images: &[VisionInput], videos: &[VisionInput]) -> Result<[Vec<VisionSpan>; 2], ModelError> {
        let c = &self.model.config;
        let merge = c.vision_config.spatial_merge_size;
        Ok([pad_spans(input_ids, c.image_token_id, images, merge)?, pad_spans(input_ids, c.video_token_id, videos, merge)?])
    }

    /// How many of the first `limit` positions of `input_ids` (with these vision spans) the
    /// cache holds: the same token ids, and an image or video only whole and only if the cache
    /// has the same one in the same place; otherwise the prefix ends where that input starts.
    fn reusable(&self, input_ids: &[u32], limit: usize, image_spans: &[VisionSpan], video_spans: &[VisionSpan]) -> usize {
        let mut past = self.tokens.iter().zip(input_ids).take_while(|(a, b)| a == b).count().min(limit);
        let mut spans: Vec<&VisionSpan> = image_spans.iter().chain(video_spans).collect();
        spans.sort_by_key(|s| s.first);
        for span in spans {
            if span.first >= past {
                break;
            }
            if span.end > past || !self.vision.contains(span) {
                past = span.first;
                break;
            }
        }
        past
    }

    /// Runs the whole conversation `input_ids` (with M-RoPE `positions`, `[3][len]`, and
    /// `rope_delta` from `get_rope_index` over all of it; `images` and `videos` all of its
    /// vision inputs in prompt order), reusing the cached prefix: only the new tokens are
    /// computed, and the vision tower runs only on the inputs whose pad tokens are new.
    /// Returns the logits of the last position, or of every new position with `all_logits` (as
    /// long as they fit one binding; [`Session::prefill_hidden_states`] takes any length).
    /// Any prompt up to the capacity and any image runs: both go through the GPU in chunks.
    pub fn prefill(
        &mut self,
        input_ids: &[u32],
        positions: &[Vec<u32>; 3],
        rope_delta: i64,
        images: &[VisionInput],
        videos: &[VisionInput],
        all_logits: bool,
    ) -> Result<Tensor, ModelError> {
        let hidden = self.prefill_hidden_states(input_ids, positions, rope_delta, images, videos, all_logits)?;
        self.logits(&hidden, 0..hidden.rows)
    }

    /// [`Session::prefill`] up to the head: the final-normed hidden states of the last
    /// position, or of every new position with `all_positions`, for [`Session::logits`] to
    /// turn into logits a chunk of rows at a time (`TextModel::logits_chunks`): a real
    /// vocabulary's logits fill a 128 MiB binding in ~220 positions. The new tokens run in the
    /// text model's chunks; the vision tower runs on each new image or video just before the
    /// first chunk holding its tokens, and its features go once the last such chunk is recorded.
    pub fn prefill_hidden_states(
        &mut self,
        input_ids: &[u32],
        positions: &[Vec<u32>; 3],
        rope_delta: i64,
        images: &[VisionInput],
        videos: &[VisionInput],
        all_positions: bool,
    ) -> Result<RowSplit, ModelError> {
        self.gpu.check()?;
        let c = &self.model.config;
        let vocab = c.text_config.vocab_size;
        if let Some(&bad) = input_ids.iter().find(|&&t| t as usize >= vocab) {
            return Err(ModelError::Input(format!("token id {bad} is outside the vocabulary of {vocab}")));
        }
        if input_ids.is_empty() || input_ids.len() > self.capacity() {
            return Err(ModelError::Input(format!("{} tokens: a prompt needs 1 to {}", input_ids.len(), self.capacity())));
        }
        if positions.iter().any(|p| p.len() != input_ids.len()) {
            return Err(ModelError::Input("position ids and input ids differ in length".into()));
        }
        let [image_spans, video_spans] = self.vision_spans(input_ids, images, videos)?;
        // Keep at least the last token to compute, so there are logits to return.
        let past = self.reusable(input_ids, input_ids.len() - 1, &image_spans, &video_spans);
        let new = &input_ids[past..];
        // The new images and videos in prompt order, each with the rows of `new` its pads hold.
        let mut todo: Vec<(Vec<u32>, &VisionInput)> = [(c.image_token_id, images, &image_spans), (c.video_token_id, videos, &video_spans)]
            .into_iter()
            .flat_map(|(id, inputs, spans)| inputs.iter().zip(spans).map(move |(v, s)| (id, v, s)))
            .filter(|(_, _, s)| s.first >= past)
            .map(|(id, v, s)| ((s.first..s.end).filter(|&i| input_ids[i] == id).map(|i| (i - past) as u32).collect(), v))
            .collect();
        todo.sort_by_key(|(rows, _)| rows.first().copied());
        let encoded = todo.len();
        let mut todo = todo.into_iter().peekable();
        let rows: Vec<[u32; 3]> = (past..input_ids.len()).map(|i| [positions[0][i], positions[1][i], positions[2][i]]).collect();
        // Chunks reach the GPU as they are recorded: from here on the cache holds only the prefix.
        self.tokens.truncate(past);
        let (gpu, text) = (&*self.gpu, &self.model.language_model);
        let mut enc = Encoder::new(gpu);
        let mut visual: Vec<VisualInput> = Vec::new();
        let mut parts = Vec::new();
        for chunk in spans(new.len(), text.chunk_rows()) {
            while let Some((at, input)) = todo.next_if(|(at, _)| at.first().is_some_and(|&r| (r as usize) < chunk.end)) {
                let features = self.model.visual.forward(&mut enc, &input.pixel_values, &[input.grid_thw])?;
                visual.push(VisualInput { rows: at, features });
            }
            visual.retain(|v| v.rows.iter().any(|&r| r as usize >= chunk.start));
            let input = TextInput { ids: new, positions: &rows, past, visual: &visual };
            parts.extend(text.prefill_chunk(&mut enc, &self.state, &input, chunk.clone(), all_positions)?);
            if chunk.end < new.len() {
                enc.flush();
                gpu.check()?;
            }
        }
        drop(visual);
        let hidden = RowSplit::from_parts(c.text_config.hidden_size, parts);
        enc.submit();
        gpu.check()?;
        self.state.trim();
        self.tokens.extend_from_slice(new);
        self.vision = image_spans.into_iter().chain(video_spans).collect();
        self.last = Prefilled { cached: past, computed: new.len(), encoded };
        self.vision_encoded += encoded;
        self.answer_start = self.tokens.len();
        self.rope_delta = rope_delta;
        Ok(hidden)
    }

    /// The logits, `[rows.len(), vocab]`, of rows `rows` of `hidden` (from
    /// [`Session::prefill_hidden_states`]).
    pub fn logits(&self, hidden: &RowSplit, rows: Range<usize>) -> Result<Tensor, ModelError> {
        let mut enc = Encoder::new(&self.gpu);
        let logits = self.model.language_model.lm_head(&mut enc, hidden, rows)?;
        enc.submit();
        self.gpu.check()?;
        Ok(logits)
    }

    /// Appends one token (the one just chosen) and returns the next logits.
    pub fn step(&mut self, token: u32) -> Result<Tensor, ModelError> {
        if self.tokens.len() >= self.capacity() {
            return Err(ModelError::Input(format!("the context of {} tokens is full", self.capacity())));
        }
        let past = self.tokens.len();
        let p = self.decode_position(past);
        let mut enc = Encoder::new(&self.gpu);
        let logits = self.model.language_model.forward(&mut enc, &self.state, &[token], &[[p, p, p]], past, None, false)?;
        enc.submit();
        self.gpu.check()?;
        self.tokens.push(token);
        Ok(logits)
    }

    /// Chooses the next token from the last row of `logits` on the GPU and reads back only it.
    /// `u` is the uniform random number for sampling (ignored when greedy).
    pub async fn choose(&self, logits: &Tensor, sampling: &Sampling, u: f32) -> Result<u32, ModelError> {
        let gpu = &*self.gpu;
        let row = logits.shape[0] - 1;
        let mut enc = Encoder::new(gpu);
        match sampling {
            Sampling::Greedy => argmax(&mut enc, logits, row, &self.picked),
            Sampling::Sample(p) => {
                gpu.write_buffer(&self.history.buffer, 0, bytemuck::cast_slice(&self.tokens));
                let history = History { ids: &self.history, len: self.tokens.len(), presence_from: self.answer_start };
                sample(&mut enc, logits, row, &history, &SampleParams { u, ..*p }, &self.seen, &self.picked)?;
            }
        }
        enc.submit();
        Ok(gpu.read_u32(&self.picked).await?[0])
    }

    /// The M-RoPE position of a generated token at cache row `past`: decode positions continue
    /// on all three axes from the prompt's rope delta.
    fn decode_position(&self, past: usize) -> u32 {
        (past as i64 + self.rope_delta) as u32
    }

    /// The decode plan, recorded on first use.
    fn plan(&mut self) -> Result<&DecodePlan, ModelError> {
        if self.plan.is_none() {
            self.plan = Some(self.model.language_model.decode_plan(&self.gpu, &self.state, &self.history, &self.seen)?);
        }
        Ok(self.plan.as_ref().unwrap())
    }

    /// Starts generating from the last row of `logits` (the prefill's) with the recorded
    /// decode step: see [`Decoder`].
    pub fn decoder(&mut self, logits: &Tensor, sampling: &Sampling) -> Result<Decoder<'_, G, M>, ModelError> {
        self.plan()?;
        let (gpu, plan) = (&*self.gpu, self.plan.as_ref().unwrap());
        if let Sampling::Sample(_) = sampling {
            // The sampler appends each token it draws; the conversation so far comes first.
            gpu.write_buffer(&self.history.buffer, 0, bytemuck::cast_slice(&self.tokens));
        }
        plan.start(gpu, logits, logits.shape[0] - 1);
        Ok(Decoder { session: self, sampling: *sampling, submitted: 0 })
    }

    /// Creates every pipeline this session will use, computing nothing: the decode plan, then
    /// prefills of each decode-sized length and of a longer prompt with a small image, recorded
    /// into an encoder that is never submitted. Returns the labels of the pipelines it created.
    pub fn compile(&mut self) -> Result<Vec<String>, ModelError> {
        let before = self.gpu.kernel_labels().len();
        self.plan()?;
        let (gpu, model) = (&*self.gpu, &*self.model);
        let c = &model.config;
        let v = &c.vision_config;
        let merge = v.spatial_merge_size;
        // Three by three merged tokens: the mergers see more rows than one GEMV takes, and as
        // many past a multiple of four as the single-row GEMV variants need.
        let grid = [1, 3 * merge, 3 * merge];
        let image_rows = 9;
        let patch = v.in_channels * v.temporal_patch_size * v.patch_size * v.patch_size;
        let mut enc = Encoder::new(gpu);
        let vision = model.visual.forward(&mut enc, &vec![0.0; grid.iter().product::<usize>() * patch], &[grid])?;
        let visual = [VisualInput { rows: (1..=image_rows as u32).collect(), features: vision }];
        for t in (1..=MAX_DECODE_QUERIES).chain([image_rows + 2]).filter(|&t| t <= self.capacity()) {
            let ids = vec![0; t];
            let positions: Vec<[u32; 3]> = (0..t as u32).map(|p| [p; 3]).collect();
            let visual = if t > image_rows { &visual[..] } else { &[] };
            model.language_model.hidden_states(&mut enc, &self.state, &ids, &positions, 0, visual, false)?;
        }
        Ok(gpu.kernel_labels().split_off(before))
    }
}

/// One answer being generated with the session's recorded decode step. Step `k` chooses token
/// `k` on the GPU and, when fed, runs it through the model for step `k + 1`: submitting step
/// `k + 1` before reading token `k` keeps the GPU busy while the host looks at each token.
pub struct Decoder<'s, G, M> {
    session: &'s mut Session<G, M>,
    sampling: Sampling,
    /// Steps submitted so far.
    submitted: usize,
}

/// A submitted step whose token has not been read yet.
pub struct Pending {
    step: usize,
    submission: Submission,
}

impl<G: Deref<Target = Gpu>, M: Deref<Target = Qwen3VL>> Decoder<'_, G, M> {
    /// Whether step `k`'s token can be fed: the cache has a row for it.
    pub fn fits(&self, k: usize) -> bool {
        self.session.tokens.len() + k < self.session.capacity()
    }

    /// Submits the next step, whose sampling draws `u` (ignored when greedy); with `feed`
    /// (which needs [`Decoder::fits`]) its token is run through the model for the step after.
    pub fn submit(&mut self, u: f32, feed: bool) -> Pending {
        self.submit_profiled(u, feed, None)
    }

    /// [`Decoder::submit`], with every dispatch of the step timed by `profiler` (benchmarks).
    pub fn submit_profiled(&mut self, u: f32, feed: bool, profiler: Option<&Profiler>) -> Pending {
        let (k, s) = (self.submitted, &*self.session);
        assert!(!feed || self.fits(k), "step {k} does not fit the cache");
        let past = s.tokens.len() + k;
        let mut values = s.model.language_model.decode_values(&s.state, past, s.decode_position(past));
        let choose = match self.sampling {
            Sampling::Greedy => Choose::Greedy,
            Sampling::Sample(p) => {
                values = values.sampling(&SampleParams { u, ..p }, past, s.answer_start);
                Choose::Sample
            }
        };
        let plan = s.plan.as_ref().expect("built by Session::decoder");
        let submission = plan.submit(&s.gpu, k, &values, choose, feed, profiler);
        self.submitted += 1;
        Pending { step: k, submission }
    }

    /// The token of a submitted step (read in submission order).
    pub async fn read(&self, pending: Pending) -> Result<u32, ModelError> {
        let plan = self.session.plan.as_ref().expect("built by Session::decoder");
        Ok(plan.token(&self.session.gpu, pending.step, &pending.submission).await?)
    }

    /// Ends the answer: `fed`, the tokens that were run through the model, join the
    /// conversation (a step fed past the end is forgotten: its cache row is overwritten later).
    pub fn finish(self, fed: &[u32]) {
        self.session.tokens.extend_from_slice(fed);
    }
}

/// What one prefill did, for honest timings: prompt tokens whose keys and values came from the
/// cache, prompt tokens computed, and images and videos the vision tower encoded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Prefilled {
    pub cached: usize,
    pub computed: usize,
    pub encoded: usize,
}

/// Where one image's or video's pad tokens lie (from its first pad to one past its last) and
/// a hash of what the vision tower reads for it: the preprocessed pixels and the grid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct VisionSpan {
    first: usize,
    end: usize,
    key: u64,
}

/// The content key of a vision input: SipHash with fixed keys, so deterministic; two different
/// inputs share a key with probability 2^-64.
fn content_key(v: &VisionInput) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    v.grid_thw.hash(&mut h);
    h.write(bytemuck::cast_slice(&v.pixel_values));
    h.finish()
}

/// Assigns the `id` pads of `input_ids`, in order, to `inputs` by their token counts.
fn pad_spans(input_ids: &[u32], id: u32, inputs: &[VisionInput], merge: usize) -> Result<Vec<VisionSpan>, ModelError> {
    let pads: Vec<usize> = input_ids.iter().enumerate().filter(|(_, &t)| t == id).map(|(i, _)| i).collect();
    let need: usize = inputs.iter().map(|v| v.num_tokens(merge)).sum();
    if need != pads.len() {
        return Err(ModelError::Input(format!("the prompt has {} pad tokens (id {id}), its images/videos make {need}", pads.len())));
    }
    let mut at = 0;
    Ok(inputs
        .iter()
        .map(|v| {
            let n = v.num_tokens(merge);
            let span = VisionSpan { first: pads[at], end: pads[at + n.max(1) - 1] + 1, key: content_key(v) };
            at += n;
            span
        })
        .collect())
}
