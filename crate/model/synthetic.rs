//! A checkpoint that exists only as a formula: every tensor a config implies, stored as bf16
//! whose bytes are computed when read. It lets `qwen3-vl bench --synthetic 2b|4b` load the real
//! 2B / 4B shapes through the ordinary loader with no download and no 4–9 GB file.

use std::collections::BTreeMap;

use super::{expected_tensors, Checkpoint, GenerationConfig, LoadError, ModelFolder, Qwen3VLConfig, SafetensorsFile, Source};

/// Qwen3-VL-2B-Instruct's `config.json` sizes (see shared/reference/qwen3-vl.md §1–2).
const CONFIG_2B: &str = r#"{
  "model_type": "qwen3_vl", "image_token_id": 151655, "video_token_id": 151656,
  "vision_start_token_id": 151652, "vision_end_token_id": 151653, "tie_word_embeddings": true,
  "text_config": {
    "head_dim": 128, "hidden_act": "silu", "hidden_size": 2048, "intermediate_size": 6144,
    "max_position_embeddings": 262144, "num_attention_heads": 16, "num_hidden_layers": 28,
    "num_key_value_heads": 8, "rms_norm_eps": 1e-06, "vocab_size": 151936, "tie_word_embeddings": true,
    "rope_parameters": {"mrope_interleaved": true, "mrope_section": [24, 20, 20], "rope_theta": 5000000, "rope_type": "default"}
  },
  "vision_config": {
    "deepstack_visual_indexes": [5, 11, 17], "depth": 24, "hidden_act": "gelu_pytorch_tanh",
    "hidden_size": 1024, "in_channels": 3, "intermediate_size": 4096, "num_heads": 16,
    "num_position_embeddings": 2304, "out_hidden_size": 2048, "patch_size": 16,
    "spatial_merge_size": 2, "temporal_patch_size": 2
  }
}"#;

/// The config of the real `2b` or `4b` model (the 4B differs in the text sizes only), or
/// `tiny`: two layers of each tower at small widths with the real vocabulary and token ids,
/// for tests of the benchmark's plumbing.
pub fn config(size: &str) -> Result<Qwen3VLConfig, LoadError> {
    let changes: &[(&str, serde_json::Value)] = match size {
        "2b" => &[],
        "4b" => &[
            ("/text_config/hidden_size", 2560.into()),
            ("/text_config/intermediate_size", 9728.into()),
            ("/text_config/num_attention_heads", 32.into()),
            ("/text_config/num_hidden_layers", 36.into()),
            ("/vision_config/out_hidden_size", 2560.into()),
        ],
        "tiny" => &[
            ("/text_config/head_dim", 32.into()),
            ("/text_config/hidden_size", 128.into()),
            ("/text_config/intermediate_size", 256.into()),
            ("/text_config/num_attention_heads", 4.into()),
            ("/text_config/num_hidden_layers", 2.into()),
            ("/text_config/num_key_value_heads", 2.into()),
            ("/text_config/rope_parameters/mrope_section", serde_json::json!([6, 5, 5])),
            ("/vision_config/deepstack_visual_indexes", serde_json::json!([0])),
            ("/vision_config/depth", 2.into()),
            ("/vision_config/hidden_size", 64.into()),
            ("/vision_config/intermediate_size", 128.into()),
            ("/vision_config/num_heads", 2.into()),
            ("/vision_config/out_hidden_size", 128.into()),
        ],
        _ => return Err(LoadError::Config { file: "--synthetic".into(), key: size.into(), reason: "is not 2b, 4b or tiny".into() }),
    };
    let mut json: serde_json::Value = serde_json::from_str(CONFIG_2B).expect("CONFIG_2B is JSON");
    for (pointer, value) in changes {
        *json.pointer_mut(pointer).expect("a key of CONFIG_2B") = value.clone();
    }
    Qwen3VLConfig::from_json(&json.to_string())
}

/// A safetensors file of `config`'s tensors whose data bytes are a hash of their offset.
struct SyntheticSource {
    header: Vec<u8>,
    len: u64,
    /// (data start, end) of the norm weights, which read as values near 1 so activations
    /// keep a realistic scale.
    ones: Vec<(u64, u64)>,
}

impl SyntheticSource {
    fn new(config: &Qwen3VLConfig) -> Self {
        let mut entries = BTreeMap::new();
        let (mut at, mut ones) = (0u64, Vec::new());
        for (name, shape) in expected_tensors(config) {
            let bytes = 2 * shape.iter().product::<usize>() as u64;
            if name.contains("norm") && shape.len() == 1 {
                ones.push((at, at + bytes));
            }
            entries.insert(name, serde_json::json!({"dtype": "BF16", "shape": shape, "data_offsets": [at, at + bytes]}));
            at += bytes;
        }
        let mut json = serde_json::to_vec(&entries).expect("a JSON map");
        json.resize(json.len().next_multiple_of(8), b' ');
        let mut header = (json.len() as u64).to_le_bytes().to_vec();
        header.extend(json);
        // Data offsets count from the end of the header.
        let base = header.len() as u64;
        let ones = ones.into_iter().map(|(a, b)| (a + base, b + base)).collect();
        SyntheticSource { len: base + at, header, ones }
    }

    /// The bf16 bits at byte `pos` (even): about ±0.03, or 1 ± 0.03 inside a norm weight.
    fn value(&self, pos: u64) -> u16 {
        let mut z = pos.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 31)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        let u = (z >> 40) as f32 / (1u64 << 24) as f32;
        let i = self.ones.partition_point(|&(_, end)| end <= pos);
        let base = if self.ones.get(i).is_some_and(|&(start, _)| start <= pos) { 1.0 } else { 0.0 };
        half::bf16::from_f32(base + (u - 0.5) * 0.06).to_bits()
    }
}

impl Source for SyntheticSource {
    fn len(&self) -> u64 {
        self.len
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        if offset + buf.len() as u64 > self.len {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let header = self.header.len() as u64;
        let mut i = 0;
        while i < buf.len() {
            let pos = offset + i as u64;
            if pos < header {
                buf[i] = self.header[pos as usize];
                i += 1;
                continue;
            }
            // Whole bf16 values; `pos` may start on the odd byte of one.
            let bytes = self.value(pos & !1).to_le_bytes();
            for b in &bytes[(pos & 1) as usize..] {
                if i < buf.len() {
                    buf[i] = *b;
                    i += 1;
                }
            }
        }
        Ok(())
    }
}

/// A model folder of `config`'s shapes with synthetic weights.
pub fn folder(config: Qwen3VLConfig) -> Result<ModelFolder, LoadError> {
    let file = SafetensorsFile::parse("synthetic.safetensors", Box::new(SyntheticSource::new(&config)))?;
    let checkpoint = Checkpoint::from_files(vec![file])?;
    Ok(ModelFolder { config, generation: GenerationConfig::default(), preprocessor: None, checkpoint })
}
