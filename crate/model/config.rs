//! `config.json`, `generation_config.json` and `preprocessor_config.json` of a Qwen3-VL folder.
//!
//! A key that is absent takes the default of transformers 5.23's classes
//! (`models/qwen3_vl/configuration_qwen3_vl.py`, `generation/configuration_utils.py`
//! `_get_default_generation_params`, `models/qwen2_vl/image_processing_qwen2_vl.py`), written
//! out beside each field below. Those class defaults describe the 8B+ towers, not 2B/4B: the
//! real configs set every key. The parsed config is validated: a folder whose numbers do not
//! fit together is rejected here rather than as a wrong answer later.

use serde::{Deserialize, Deserializer};

use super::LoadError;
use crate::kernels::attention::supports_head_dim;
use crate::kernels::matmul::MAX_ROWS;
use crate::kernels::sample::MAX_VOCAB;

pub const CONFIG: &str = "config.json";
pub const GENERATION: &str = "generation_config.json";
pub const PREPROCESSOR: &str = "preprocessor_config.json";
/// Layers of either tower a config may have: far above any released model (Qwen3-VL-235B has
/// 94), and a bound on what listing the tensors of a config allocates.
pub const MAX_LAYERS: usize = 1024;
/// The most pixels an image, or a video's frames together, may be resized to (a 16384²
/// picture): a bound on the processors' `max_pixels` that keeps every product of it in range.
pub const MAX_PIXELS: usize = 1 << 28;

/// `Qwen3VLTextConfig`, with the RoPE keys of either transformers generation resolved into `rope`.
#[derive(Clone, Debug, PartialEq)]
pub struct Qwen3VLTextConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub head_dim: usize,
    pub hidden_act: String,
    pub rms_norm_eps: f64,
    pub max_position_embeddings: usize,
    pub attention_bias: bool,
    pub rope: Rope,
    /// The text config's own flag; `Qwen3VLConfig::tie_word_embeddings` is the one that governs.
    pub tie_word_embeddings: Option<bool>,
    pub bos_token_id: Option<u32>,
    pub eos_token_id: Option<u32>,
}

/// RoPE of the text model: transformers 5.x `rope_parameters`, or 4.57's `rope_theta` +
/// `rope_scaling` (5.x converts the latter the same way, `convert_rope_params_to_dict`).
#[derive(Clone, Debug, PartialEq)]
pub struct Rope {
    pub rope_type: String,
    pub rope_theta: f64,
    /// Frequencies per axis (t, h, w); they sum to `head_dim / 2`.
    pub mrope_section: [usize; 3],
    /// Informational: transformers ignores it and always interleaves (`Qwen3VLTextRotaryEmbedding`).
    pub mrope_interleaved: bool,
}

#[derive(Deserialize, Default)]
struct RawText {
    vocab_size: Option<usize>,
    hidden_size: Option<usize>,
    intermediate_size: Option<usize>,
    num_hidden_layers: Option<usize>,
    num_attention_heads: Option<usize>,
    #[serde(default, deserialize_with = "present")]
    num_key_value_heads: Option<Option<usize>>,
    head_dim: Option<usize>,
    hidden_act: Option<String>,
    rms_norm_eps: Option<f64>,
    max_position_embeddings: Option<usize>,
    attention_bias: Option<bool>,
    rope_parameters: Option<RawRope>,
    rope_scaling: Option<RawRope>,
    rope_theta: Option<f64>,
    tie_word_embeddings: Option<bool>,
    bos_token_id: Option<u32>,
    eos_token_id: Option<u32>,
}

#[derive(Deserialize, Default)]
struct RawRope {
    rope_type: Option<String>,
    #[serde(rename = "type")]
    legacy_type: Option<String>,
    rope_theta: Option<f64>,
    mrope_section: Option<Vec<usize>>,
    mrope_interleaved: Option<bool>,
}

impl RawText {
    fn resolve(self) -> Result<Qwen3VLTextConfig, LoadError> {
        let heads = self.num_attention_heads.unwrap_or(32);
        // 5.x: `rope_parameters = rope_scaling or rope_parameters`, then `setdefault("rope_theta",
        // rope_theta key or default_theta = 500000.0)` (4.57's class default was 5e6). The
        // modeling code falls back to mrope_section [24, 20, 20].
        let raw = self.rope_scaling.or(self.rope_parameters).unwrap_or_default();
        let section = raw.mrope_section.unwrap_or_else(|| vec![24, 20, 20]);
        let mrope_section = <[usize; 3]>::try_from(section.as_slice()).map_err(|_| {
            bad("text_config.rope_parameters.mrope_section", format!("has {} entries, not 3", section.len()))
        })?;
        let rope = Rope {
            rope_type: raw.rope_type.or(raw.legacy_type).unwrap_or_else(|| "default".into()),
            rope_theta: raw.rope_theta.or(self.rope_theta).unwrap_or(500_000.0),
            mrope_section,
            mrope_interleaved: raw.mrope_interleaved.unwrap_or(true),
        };
        Ok(Qwen3VLTextConfig {
            vocab_size: self.vocab_size.unwrap_or(151936),
            hidden_size: self.hidden_size.unwrap_or(4096),
            intermediate_size: self.intermediate_size.unwrap_or(22016),
            num_hidden_layers: self.num_hidden_layers.unwrap_or(32),
            num_attention_heads: heads,
            // Absent: 32; null: the number of attention heads (no GQA).
            num_key_value_heads: self.num_key_value_heads.map_or(32, |kv| kv.unwrap_or(heads)),
            // The class default is 128, not hidden_size / heads (its docstring says otherwise).
            head_dim: self.head_dim.unwrap_or(128),
            hidden_act: self.hidden_act.unwrap_or_else(|| "silu".into()),
            rms_norm_eps: self.rms_norm_eps.unwrap_or(1e-6),
            max_position_embeddings: self.max_position_embeddings.unwrap_or(128000),
            attention_bias: self.attention_bias.unwrap_or(false),
            rope,
            tie_word_embeddings: self.tie_word_embeddings,
            bos_token_id: self.bos_token_id,
            eos_token_id: self.eos_token_id,
        })
    }
}

/// `Qwen3VLVisionConfig` (the ViT and its mergers).
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(default)]
pub struct Qwen3VLVisionConfig {
    pub depth: usize,
    pub hidden_size: usize,
    pub hidden_act: String,
    pub intermediate_size: usize,
    pub num_heads: usize,
    pub in_channels: usize,
    pub patch_size: usize,
    pub spatial_merge_size: usize,
    pub temporal_patch_size: usize,
    pub out_hidden_size: usize,
    pub num_position_embeddings: usize,
    pub deepstack_visual_indexes: Vec<usize>,
}

impl Default for Qwen3VLVisionConfig {
    fn default() -> Self {
        Qwen3VLVisionConfig {
            depth: 27,
            hidden_size: 1152,
            hidden_act: "gelu_pytorch_tanh".into(),
            intermediate_size: 4304,
            num_heads: 16,
            in_channels: 3,
            patch_size: 16,
            spatial_merge_size: 2,
            temporal_patch_size: 2,
            out_hidden_size: 3584,
            num_position_embeddings: 2304,
            deepstack_visual_indexes: vec![8, 16, 24],
        }
    }
}

/// `Qwen3VLConfig`: the two towers and the multimodal token ids.
#[derive(Clone, Debug, PartialEq)]
pub struct Qwen3VLConfig {
    pub text_config: Qwen3VLTextConfig,
    pub vision_config: Qwen3VLVisionConfig,
    pub image_token_id: u32,
    pub video_token_id: u32,
    pub vision_start_token_id: u32,
    pub vision_end_token_id: u32,
    /// Whether `lm_head` is `embed_tokens` (and `lm_head.weight` absent from the checkpoint).
    /// transformers 5.x ties on the top-level key (`get_expanded_tied_weights_keys` reads
    /// `self.config` of `Qwen3VLForConditionalGeneration`), 4.57 on `text_config`'s
    /// (`get_text_config(decoder=True)`); both default to false. So: the top-level key if
    /// present, else the text config's (the back-compat rule 5.x applies to Qwen2-VL), else false.
    pub tie_word_embeddings: bool,
}

#[derive(Deserialize)]
struct RawConfig {
    model_type: Option<String>,
    text_config: Option<RawText>,
    vision_config: Option<Qwen3VLVisionConfig>,
    image_token_id: Option<u32>,
    video_token_id: Option<u32>,
    vision_start_token_id: Option<u32>,
    vision_end_token_id: Option<u32>,
    tie_word_embeddings: Option<bool>,
}

impl Qwen3VLConfig {
    /// Parses and validates `config.json`.
    pub fn from_json(text: &str) -> Result<Self, LoadError> {
        let raw: RawConfig = json(text, CONFIG)?;
        if let Some(t) = raw.model_type.as_deref().filter(|t| *t != "qwen3_vl") {
            return Err(bad("model_type", format!("is {t:?}; this loader reads \"qwen3_vl\"")));
        }
        let text_config = raw.text_config.unwrap_or_default().resolve()?;
        let tie_word_embeddings = raw.tie_word_embeddings.or(text_config.tie_word_embeddings).unwrap_or(false);
        let config = Qwen3VLConfig {
            vision_config: raw.vision_config.unwrap_or_default(),
            image_token_id: raw.image_token_id.unwrap_or(151655),
            video_token_id: raw.video_token_id.unwrap_or(151656),
            vision_start_token_id: raw.vision_start_token_id.unwrap_or(151652),
            vision_end_token_id: raw.vision_end_token_id.unwrap_or(151653),
            tie_word_embeddings,
            text_config,
        };
        config.validate()?;
        Ok(config)
    }

    /// Rejects sizes that do not fit together, what this crate does not implement, and every
    /// size the kernels cannot take (head sizes, vocabulary, rows, u32 element counts), before
    /// anything is listed or allocated from them: all arithmetic on the numbers is checked.
    pub fn validate(&self) -> Result<(), LoadError> {
        let (t, v) = (&self.text_config, &self.vision_config);
        let positive = [
            ("text_config.vocab_size", t.vocab_size),
            ("text_config.hidden_size", t.hidden_size),
            ("text_config.intermediate_size", t.intermediate_size),
            ("text_config.num_hidden_layers", t.num_hidden_layers),
            ("text_config.num_attention_heads", t.num_attention_heads),
            ("text_config.num_key_value_heads", t.num_key_value_heads),
            ("text_config.head_dim", t.head_dim),
            ("vision_config.depth", v.depth),
            ("vision_config.hidden_size", v.hidden_size),
            ("vision_config.intermediate_size", v.intermediate_size),
            ("vision_config.num_heads", v.num_heads),
            ("vision_config.in_channels", v.in_channels),
            ("vision_config.patch_size", v.patch_size),
            ("vision_config.spatial_merge_size", v.spatial_merge_size),
            ("vision_config.temporal_patch_size", v.temporal_patch_size),
            ("vision_config.out_hidden_size", v.out_hidden_size),
            ("vision_config.num_position_embeddings", v.num_position_embeddings),
        ];
        for (key, n) in positive {
            check(n > 0, key, || "must be positive".into())?;
        }
        for (key, n) in [("text_config.num_hidden_layers", t.num_hidden_layers), ("vision_config.depth", v.depth)] {
            check(n <= MAX_LAYERS, key, || format!("{n} is more than the {MAX_LAYERS} layers this loader takes"))?;
        }
        check(supports_head_dim(t.head_dim), "text_config.head_dim", || {
            format!("{} is not a multiple of 8 up to 256, which the attention kernels need", t.head_dim)
        })?;
        let kv = t.num_key_value_heads;
        check(t.num_attention_heads % kv == 0, "text_config.num_key_value_heads", || {
            format!("{kv} does not divide num_attention_heads {}", t.num_attention_heads)
        })?;
        self.validate_rope()?;
        check(t.hidden_act == "silu", "text_config.hidden_act", || {
            format!("is {:?}; only \"silu\" is implemented", t.hidden_act)
        })?;
        let eps = t.rms_norm_eps as f32;
        check(eps.is_normal() && eps > 0.0, "text_config.rms_norm_eps", || {
            format!("{} must be a positive f32", t.rms_norm_eps)
        })?;
        check(t.vocab_size < MAX_VOCAB, "text_config.vocab_size", || {
            format!("{} is not below {MAX_VOCAB}: the sampler carries token ids in f32", t.vocab_size)
        })?;
        for (key, id) in [
            ("image_token_id", self.image_token_id),
            ("video_token_id", self.video_token_id),
            ("vision_start_token_id", self.vision_start_token_id),
            ("vision_end_token_id", self.vision_end_token_id),
        ] {
            check((id as usize) < t.vocab_size, key, || format!("{id} is outside the vocabulary of {}", t.vocab_size))?;
        }

        check(v.hidden_size % v.num_heads == 0, "vision_config.num_heads", || {
            format!("{} does not divide hidden_size {}", v.num_heads, v.hidden_size)
        })?;
        let vhd = v.hidden_size / v.num_heads;
        check(supports_head_dim(vhd), "vision_config.hidden_size", || {
            format!("over num_heads gives head_dim {vhd}, not a multiple of 8 up to 256, which the attention kernels need")
        })?;
        check(v.in_channels == 3, "vision_config.in_channels", || {
            format!("is {}; the preprocessor makes RGB patches", v.in_channels)
        })?;
        let side = (v.num_position_embeddings as f64).sqrt() as usize;
        check(side.checked_mul(side) == Some(v.num_position_embeddings), "vision_config.num_position_embeddings", || {
            format!("{} is not a square grid", v.num_position_embeddings)
        })?;
        check(v.out_hidden_size == t.hidden_size, "vision_config.out_hidden_size", || {
            format!(
                "{} differs from text_config.hidden_size {}: merged patches replace token embeddings",
                v.out_hidden_size, t.hidden_size
            )
        })?;
        let ds = &v.deepstack_visual_indexes;
        check(
            ds.windows(2).all(|w| w[0] < w[1]) && ds.iter().all(|&i| i < v.depth),
            "vision_config.deepstack_visual_indexes",
            || format!("{ds:?} must be increasing block indices below depth {}", v.depth),
        )?;
        check(v.hidden_act == "gelu_pytorch_tanh", "vision_config.hidden_act", || {
            format!("is {:?}; only \"gelu_pytorch_tanh\" is implemented", v.hidden_act)
        })?;
        self.validate_shapes()
    }

    /// The interleaved M-RoPE sections against the (already bounded) head size.
    fn validate_rope(&self) -> Result<(), LoadError> {
        let t = &self.text_config;
        let key = "text_config.rope_parameters.mrope_section";
        let [st, sh, sw] = t.rope.mrope_section;
        let half = t.head_dim / 2;
        let sum = st.checked_add(sh).and_then(|s| s.checked_add(sw));
        check(sum == Some(half), key, || format!("{:?} does not sum to head_dim / 2 = {half}", t.rope.mrope_section))?;
        // Interleaving puts H at 1, 4, … and W at 2, 5, … below 3·section: those must fit.
        check(3 * sh.max(sw) <= half, key, || {
            format!("{:?}: the interleaved h/w frequencies run past head_dim / 2 = {half}", t.rope.mrope_section)
        })?;
        check(t.rope.rope_type == "default", "text_config.rope_parameters.rope_type", || {
            format!("is {:?}; only \"default\" is implemented", t.rope.rope_type)
        })?;
        let theta = t.rope.rope_theta;
        check(theta.is_finite() && theta > 0.0, "text_config.rope_parameters.rope_theta", || {
            format!("{theta} must be positive and finite")
        })
    }

    /// Every weight matrix's shape, with checked products: at most [`MAX_ROWS`] rows (the
    /// matmul's dispatch) and fewer than 2^32 elements (the kernels index in u32). The tensors
    /// [`super::expected_tensors`] lists are these and smaller vectors, so listing cannot
    /// overflow either.
    fn validate_shapes(&self) -> Result<(), LoadError> {
        let (t, v) = (&self.text_config, &self.vision_config);
        let mul = |key: &str, a: usize, b: usize| a.checked_mul(b).ok_or_else(|| bad(key, format!("{a}·{b} overflows")));
        let q = mul("text_config.num_attention_heads", t.num_attention_heads, t.head_dim)?;
        let kv = mul("text_config.num_key_value_heads", t.num_key_value_heads, t.head_dim)?;
        let gate_up = mul("text_config.intermediate_size", 2, t.intermediate_size)?;
        let (d, m) = (v.hidden_size, v.spatial_merge_size);
        let qkv = mul("vision_config.hidden_size", 3, d)?;
        let merged = mul("vision_config.spatial_merge_size", m, m).and_then(|m2| mul("vision_config.spatial_merge_size", d, m2))?;
        let patch = [v.in_channels, v.temporal_patch_size, v.patch_size, v.patch_size]
            .iter()
            .try_fold(1usize, |acc, &x| mul("vision_config.patch_size", acc, x))?;
        let matrices = [
            ("text_config.vocab_size", t.vocab_size, t.hidden_size),
            ("text_config.num_attention_heads", q, t.hidden_size),
            ("text_config.num_key_value_heads", kv, t.hidden_size),
            ("text_config.hidden_size", t.hidden_size, q),
            ("text_config.intermediate_size", gate_up, t.hidden_size),
            ("text_config.intermediate_size", t.hidden_size, t.intermediate_size),
            ("vision_config.patch_size", d, patch),
            ("vision_config.num_position_embeddings", v.num_position_embeddings, d),
            ("vision_config.hidden_size", qkv, d),
            ("vision_config.intermediate_size", v.intermediate_size, d),
            ("vision_config.intermediate_size", d, v.intermediate_size),
            ("vision_config.spatial_merge_size", merged, merged),
            ("vision_config.out_hidden_size", v.out_hidden_size, merged),
        ];
        for (key, n, k) in matrices {
            check(n <= MAX_ROWS, key, || format!("gives a matrix of {n} rows, more than the {MAX_ROWS} the matmul takes"))?;
            check(n.checked_mul(k).is_some_and(|e| e <= u32::MAX as usize), key, || {
                format!("gives a [{n}, {k}] matrix, not under 2^32 elements")
            })?;
        }
        Ok(())
    }
}

/// `generation_config.json`; absent keys take `GenerationConfig._get_default_generation_params`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(default)]
pub struct GenerationConfig {
    /// Any of these ends generation (the file has an int or a list).
    #[serde(deserialize_with = "one_or_many")]
    pub eos_token_id: Vec<u32>,
    pub pad_token_id: Option<u32>,
    pub bos_token_id: Option<u32>,
    pub do_sample: bool,
    pub temperature: f32,
    pub top_k: usize,
    pub top_p: f32,
    pub repetition_penalty: f32,
}

impl Default for GenerationConfig {
    fn default() -> Self {
        GenerationConfig {
            eos_token_id: Vec::new(),
            pad_token_id: None,
            bos_token_id: None,
            do_sample: false,
            temperature: 1.0,
            top_k: 50,
            top_p: 1.0,
            repetition_penalty: 1.0,
        }
    }
}

impl GenerationConfig {
    pub fn from_json(text: &str) -> Result<Self, LoadError> {
        json(text, GENERATION)
    }
}

/// Tells a key set to `null` (`Some(None)`) from an absent one (`None`).
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u32>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Ids {
        One(u32),
        Many(Vec<u32>),
    }
    Ok(match Option::<Ids>::deserialize(d)? {
        None => Vec::new(),
        Some(Ids::One(id)) => vec![id],
        Some(Ids::Many(ids)) => ids,
    })
}

/// `preprocessor_config.json` (`Qwen2VLImageProcessor`), resolved: `min_pixels`/`max_pixels`
/// override `size.shortest_edge`/`size.longest_edge`, as the processor's `__init__` does.
#[derive(Clone, Debug, PartialEq)]
pub struct PreprocessorConfig {
    pub patch_size: usize,
    pub temporal_patch_size: usize,
    pub merge_size: usize,
    pub image_mean: [f32; 3],
    pub image_std: [f32; 3],
    /// Bounds on the resized image's pixel count (`smart_resize`).
    pub min_pixels: usize,
    pub max_pixels: usize,
}

/// OpenAI CLIP's normalisation, the processor class default (Qwen3-VL's file sets 0.5 / 0.5),
/// spelled as transformers spells it.
#[allow(clippy::excessive_precision)]
const CLIP_MEAN: [f32; 3] = [0.48145466, 0.4578275, 0.40821073];
#[allow(clippy::excessive_precision)]
const CLIP_STD: [f32; 3] = [0.26862954, 0.26130258, 0.27577711];

impl Default for PreprocessorConfig {
    fn default() -> Self {
        PreprocessorConfig {
            patch_size: 14,
            temporal_patch_size: 2,
            merge_size: 2,
            image_mean: CLIP_MEAN,
            image_std: CLIP_STD,
            min_pixels: 56 * 56,
            max_pixels: 28 * 28 * 1280,
        }
    }
}

#[derive(Deserialize)]
struct RawPreprocessor {
    patch_size: Option<usize>,
    temporal_patch_size: Option<usize>,
    merge_size: Option<usize>,
    image_mean: Option<Vec<f32>>,
    image_std: Option<Vec<f32>>,
    size: Option<RawSize>,
    min_pixels: Option<usize>,
    max_pixels: Option<usize>,
}

#[derive(Deserialize)]
struct RawSize {
    shortest_edge: Option<usize>,
    longest_edge: Option<usize>,
}

impl PreprocessorConfig {
    pub fn from_json(text: &str) -> Result<Self, LoadError> {
        let raw: RawPreprocessor = json(text, PREPROCESSOR)?;
        let d = PreprocessorConfig::default();
        let rgb = |v: Option<Vec<f32>>, key: &str, default: [f32; 3]| match v {
            None => Ok(default),
            Some(v) => {
                <[f32; 3]>::try_from(v.as_slice()).map_err(|_| pre(key, format!("has {} values, not 3", v.len())))
            }
        };
        // A `size` dict replaces the default dict whole; a key it lacks is an error in transformers' resize.
        let (mut min_pixels, mut max_pixels) = match raw.size {
            None => (Some(d.min_pixels), Some(d.max_pixels)),
            Some(s) => (s.shortest_edge, s.longest_edge),
        };
        min_pixels = raw.min_pixels.or(min_pixels);
        max_pixels = raw.max_pixels.or(max_pixels);
        let config = PreprocessorConfig {
            patch_size: raw.patch_size.unwrap_or(d.patch_size),
            temporal_patch_size: raw.temporal_patch_size.unwrap_or(d.temporal_patch_size),
            merge_size: raw.merge_size.unwrap_or(d.merge_size),
            image_mean: rgb(raw.image_mean, "image_mean", d.image_mean)?,
            image_std: rgb(raw.image_std, "image_std", d.image_std)?,
            min_pixels: min_pixels.ok_or_else(|| pre("size.shortest_edge", "is missing".into()))?,
            max_pixels: max_pixels.ok_or_else(|| pre("size.longest_edge", "is missing".into()))?,
        };
        if config.min_pixels > config.max_pixels || config.max_pixels == 0 || config.max_pixels > MAX_PIXELS {
            return Err(pre(
                "size",
                format!("min {} / max {} pixels is not a range within 1..={MAX_PIXELS}", config.min_pixels, config.max_pixels),
            ));
        }
        if let Some(i) = (0..3).find(|&i| !config.image_mean[i].is_finite()) {
            return Err(pre("image_mean", format!("channel {i} is not finite")));
        }
        if let Some(i) = (0..3).find(|&i| !config.image_std[i].is_normal()) {
            return Err(pre("image_std", format!("channel {i} is {}, not a non-zero finite number", config.image_std[i])));
        }
        Ok(config)
    }

    /// The processor must cut patches the way the vision tower was built for.
    pub fn check_against(&self, v: &Qwen3VLVisionConfig) -> Result<(), LoadError> {
        for (key, ours, theirs) in [
            ("patch_size", self.patch_size, v.patch_size),
            ("temporal_patch_size", self.temporal_patch_size, v.temporal_patch_size),
            ("merge_size", self.merge_size, v.spatial_merge_size),
        ] {
            if ours != theirs {
                return Err(pre(key, format!("is {ours}, the vision tower in {CONFIG} has {theirs}")));
            }
        }
        Ok(())
    }
}

fn json<T: serde::de::DeserializeOwned>(text: &str, file: &str) -> Result<T, LoadError> {
    serde_json::from_str(text).map_err(|source| LoadError::Json { file: file.into(), source })
}

fn bad(key: &str, reason: String) -> LoadError {
    LoadError::Config { file: CONFIG.into(), key: key.into(), reason }
}

fn pre(key: &str, reason: String) -> LoadError {
    LoadError::Config { file: PREPROCESSOR.into(), key: key.into(), reason }
}

fn check(ok: bool, key: &str, reason: impl FnOnce() -> String) -> Result<(), LoadError> {
    if ok {
        Ok(())
    } else {
        Err(bad(key, reason()))
    }
}
