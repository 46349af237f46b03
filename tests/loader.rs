//! The model-folder loader: configs against transformers' values and defaults, safetensors
//! files written by hand here (one, sharded, and malformed in each way the parser checks),
//! and the expected tensor list against the parameter counts of the real 2B and 4B.

use qwen3_vl_webgpu::model::{
    expected_tensors, quantized, validate, Checkpoint, Dtype, GenerationConfig, LoadError, MemSource, ModelFolder,
    PreprocessorConfig, Qwen3VLConfig, SafetensorsFile, Weights,
};

// ---- a tiny safetensors writer ----

/// A tensor to write: name, dtype name, shape, raw little-endian bytes.
#[derive(Clone)]
struct T<'a>(&'a str, &'a str, Vec<usize>, Vec<u8>);

/// A file with the tensors laid out back to back, in order.
fn write(tensors: &[T]) -> Vec<u8> {
    let mut at = 0;
    let entries: Vec<_> = tensors
        .iter()
        .map(|T(name, dtype, shape, bytes)| {
            let e = entry(name, dtype, shape, at, at + bytes.len());
            at += bytes.len();
            e
        })
        .collect();
    let data: Vec<u8> = tensors.iter().flat_map(|t| t.3.clone()).collect();
    raw(&format!("{{{}}}", entries.join(",")), &data)
}

fn entry(name: &str, dtype: &str, shape: &[usize], begin: usize, end: usize) -> String {
    format!(r#""{name}":{{"dtype":"{dtype}","shape":{shape:?},"data_offsets":[{begin},{end}]}}"#)
}

/// A file from a header (any text) and data.
fn raw(header: &str, data: &[u8]) -> Vec<u8> {
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}
fn f16_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|&x| half::f16::from_f32(x).to_le_bytes()).collect()
}
fn bf16_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|&x| half::bf16::from_f32(x).to_le_bytes()).collect()
}

fn parse(name: &str, bytes: Vec<u8>) -> Result<SafetensorsFile, LoadError> {
    SafetensorsFile::parse(name, Box::new(MemSource(bytes)))
}

fn checkpoint(files: Vec<(&str, Vec<u8>)>) -> Checkpoint {
    Checkpoint::from_files(files.into_iter().map(|(n, b)| parse(n, b).unwrap()).collect()).unwrap()
}

// ---- conversions ----

/// Values exactly representable in bf16 and f16 (so both conversions must give them back
/// bit for bit), including signed zero, subnormals of each format and the extremes.
fn exact_values() -> Vec<f32> {
    vec![0.0, -0.0, 1.0, -2.5, 0.15625, 65504.0, -65504.0, 6.1035156e-5, 5.9604645e-8, 3.0517578e-5, 1024.0, -0.375]
}

#[test]
fn f32_f16_bf16_convert_exactly() {
    let v = exact_values();
    // More than one read chunk; integers of magnitude ≤ 256 are exact in bf16.
    let big: Vec<f32> = (0..300_000).map(|i| (i % 513) as f32 - 256.0).collect();
    let file = write(&[
        T("a", "F32", vec![v.len()], f32_bytes(&v)),
        T("b", "F16", vec![3, 4], f16_bytes(&v)),
        T(
            "c",
            "BF16",
            vec![4, 3],
            bf16_bytes(
                &v[..4].iter().chain(&[1.5, -3.0, 2.0, 0.5, 7.0, -8.0, 1e30, -1e-30]).copied().collect::<Vec<_>>(),
            ),
        ),
        T("big", "BF16", vec![300, 1000], bf16_bytes(&big)),
    ]);
    let f = parse("x.safetensors", file).unwrap();
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&f.tensor_f32("a").unwrap()), bits(&v));
    assert_eq!(bits(&f.tensor_f32("b").unwrap()), bits(&v));
    // bf16 → f32 is the top half of the f32: exact for every bf16, here also 1e30's rounding.
    let c: Vec<f32> = [0.0, -0.0, 1.0, -2.5, 1.5, -3.0, 2.0, 0.5, 7.0, -8.0, 1e30, -1e-30]
        .iter()
        .map(|&x| half::bf16::from_f32(x).to_f32())
        .collect();
    assert_eq!(bits(&f.tensor_f32("c").unwrap()), bits(&c));
    assert!(f.tensor_f32("big").unwrap() == big);
    assert!(f.rows_f32("big", 150..300).unwrap() == big[150_000..]);
    // Every f16 and bf16 bit pattern against `half`'s reference conversion.
    let all: Vec<u16> = (0..=u16::MAX).collect();
    let bytes: Vec<u8> = all.iter().flat_map(|x| x.to_le_bytes()).collect();
    let f = parse(
        "all.safetensors",
        write(&[T("h", "F16", vec![65536], bytes.clone()), T("b", "BF16", vec![65536], bytes)]),
    )
    .unwrap();
    let h = f.tensor_f32("h").unwrap();
    let b = f.tensor_f32("b").unwrap();
    for (i, &x) in all.iter().enumerate() {
        let (rh, rb) = (half::f16::from_bits(x).to_f32(), half::bf16::from_bits(x).to_f32());
        assert!(h[i].to_bits() == rh.to_bits() || (h[i].is_nan() && rh.is_nan()), "f16 {x:#06x}");
        assert!(b[i].to_bits() == rb.to_bits() || (b[i].is_nan() && rb.is_nan()), "bf16 {x:#06x}");
    }
}

#[test]
fn rows_read_only_what_is_asked() {
    let m: Vec<f32> = (0..7 * 5).map(|i| i as f32 * 0.5).collect();
    let f = parse(
        "m.safetensors",
        write(&[T("pad", "U8", vec![3], vec![1, 2, 3]), T("m", "BF16", vec![7, 5], bf16_bytes(&m))]),
    )
    .unwrap();
    assert_eq!(f.rows_f32("m", 2..4).unwrap(), m[10..20]);
    assert_eq!(f.rows_f32("m", 6..7).unwrap(), m[30..35]);
    assert!(f.rows_f32("m", 3..3).unwrap().is_empty());
    assert!(matches!(f.rows_f32("m", 5..8), Err(LoadError::Rows { rows, .. }) if rows == (5..8)));
    #[allow(clippy::reversed_empty_ranges)]
    let backwards = 4..2;
    assert!(matches!(f.rows_f32("m", backwards), Err(LoadError::Rows { .. })));
    // Integers are stored fine but are not weights.
    assert!(matches!(f.tensor_f32("pad"), Err(LoadError::Dtype { tensor, .. }) if tensor == "pad"));
    assert_eq!(f.tensor_bytes("pad").unwrap(), [1, 2, 3]);
}

// ---- malformed headers ----

fn err(bytes: Vec<u8>) -> LoadError {
    match parse("bad.safetensors", bytes) {
        Ok(_) => panic!("a malformed file parsed"),
        Err(e) => {
            assert!(e.to_string().contains("bad.safetensors"), "the error names the file: {e}");
            e
        }
    }
}

#[test]
fn malformed_headers_give_typed_errors() {
    let four = f32_bytes(&[1.0, 2.0, 3.0, 4.0]);
    // Fewer than the 8 bytes of the header length.
    assert!(matches!(err(vec![1, 0, 0]), LoadError::Header { .. }));
    // A header length past the end of the file.
    let mut long = raw("{}", &[]);
    long[..8].copy_from_slice(&1000u64.to_le_bytes());
    assert!(matches!(err(long), LoadError::Header { reason, .. } if reason.contains("past the end")));
    // A huge header length.
    let mut huge = raw("{}", &[]);
    huge[..8].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(matches!(err(huge), LoadError::Header { .. }));
    // Not JSON, and a JSON entry of the wrong form.
    assert!(matches!(err(raw("{\"a\": ", &[])), LoadError::Header { .. }));
    assert!(
        matches!(err(raw(r#"{"w":{"dtype":"F32","shape":[1]}}"#, &four)), LoadError::Header { reason, .. } if reason.contains("`w`"))
    );
    // Offsets past the end of the data.
    let e = err(raw(&format!("{{{}}}", entry("w", "F32", &[4], 0, 20)), &four));
    assert!(matches!(e, LoadError::Offsets { ref tensor, .. } if tensor == "w"), "{e}");
    // Offsets running backwards.
    let e = err(raw(&format!("{{{}}}", entry("w", "F32", &[0], 8, 4)), &four));
    assert!(matches!(e, LoadError::Offsets { reason, .. } if reason.contains("backwards")));
    // Byte count ≠ dtype size × shape product.
    let e = err(raw(&format!("{{{}}}", entry("w", "F32", &[3], 0, 16)), &four));
    assert!(matches!(e, LoadError::ByteCount { ref tensor, expected: 12, actual: 16, .. } if tensor == "w"), "{e}");
    let e = err(raw(&format!("{{{}}}", entry("w", "BF16", &[usize::MAX, 4], 0, 16)), &four));
    assert!(matches!(e, LoadError::ByteCount { .. }), "overflowing shape: {e}");
    // Overlapping ranges, listed out of order.
    let e = err(raw(&format!("{{{},{}}}", entry("z", "F32", &[2], 8, 16), entry("y", "F32", &[3], 0, 12)), &four));
    assert!(matches!(e, LoadError::Overlap { ref first, ref second, .. } if first == "y" && second == "z"), "{e}");
    // Unordered but disjoint ranges are fine.
    let ok = raw(&format!("{{{},{}}}", entry("z", "F32", &[2], 8, 16), entry("y", "F32", &[2], 0, 8)), &four);
    assert_eq!(parse("ok.safetensors", ok).unwrap().tensor_f32("z").unwrap(), [3.0, 4.0]);
    // A dtype the format does not define.
    let e = err(raw(&format!("{{{}}}", entry("w", "F12", &[4], 0, 16)), &four));
    assert!(matches!(e, LoadError::Dtype { ref tensor, ref dtype, .. } if tensor == "w" && dtype == "F12"), "{e}");
    // A tensor that is not there.
    let f = parse("f.safetensors", write(&[T("w", "F32", vec![4], four.clone())])).unwrap();
    assert!(
        matches!(f.tensor_f32("v"), Err(LoadError::Missing { tensor, files }) if tensor == "v" && files == ["f.safetensors"])
    );
}

// ---- sharded checkpoints and the prefix loader ----

#[test]
fn sharded_index_and_prefixes() {
    let a = write(&[
        T(
            "model.language_model.layers.0.mlp.up_proj.weight",
            "BF16",
            vec![2, 3],
            bf16_bytes(&[1., 2., 3., 4., 5., 6.]),
        ),
        T("model.language_model.norm.weight", "F16", vec![3], f16_bytes(&[0.5, 1.0, 2.0])),
    ]);
    let b = write(&[T("model.visual.pos_embed.weight", "F32", vec![2, 2], f32_bytes(&[9., 8., 7., 6.]))]);
    let index = r#"{"metadata": {"total_size": 34}, "weight_map": {
        "model.language_model.layers.0.mlp.up_proj.weight": "model-00001-of-00002.safetensors",
        "model.language_model.norm.weight": "model-00001-of-00002.safetensors",
        "model.visual.pos_embed.weight": "model-00002-of-00002.safetensors"}}"#;
    let shards = [("model-00001-of-00002.safetensors", a), ("model-00002-of-00002.safetensors", b)];
    let open = |name: &str| parse(name, shards.iter().find(|(n, _)| *n == name).unwrap().1.clone());
    let ck = Checkpoint::from_index(index, "model.safetensors.index.json", open).unwrap();
    assert_eq!(ck.files().len(), 2);

    let w = Weights::new(&ck);
    let lm = w.pp("model.language_model");
    assert_eq!(lm.pp("layers.0").get("mlp.up_proj.weight", &[2, 3]).unwrap(), [1., 2., 3., 4., 5., 6.]);
    assert_eq!(lm.pp(format_args!("layers.{}", 0)).rows("mlp.up_proj.weight", &[2, 3], 1..2).unwrap(), [4., 5., 6.]);
    assert_eq!(lm.get("norm.weight", &[3]).unwrap(), [0.5, 1.0, 2.0]);
    assert_eq!(w.pp("model").pp("visual").get("pos_embed.weight", &[2, 2]).unwrap(), [9., 8., 7., 6.]);
    assert_eq!(ck.find("model.language_model.norm.weight").unwrap().1.dtype, Dtype::F16);

    // Shape against the config, and a missing tensor naming every file searched.
    let e = lm.get("norm.weight", &[4]).unwrap_err();
    assert!(
        matches!(&e, LoadError::Shape { tensor, expected, actual, file }
        if tensor == "model.language_model.norm.weight" && expected == &[4] && actual == &[3] && file.starts_with("model-00001")),
        "{e}"
    );
    let e = lm.pp("layers.1").get("mlp.up_proj.weight", &[2, 3]).unwrap_err();
    assert!(
        matches!(&e, LoadError::Missing { tensor, files } if tensor == "model.language_model.layers.1.mlp.up_proj.weight" && files.len() == 2),
        "{e}"
    );

    // An index that maps a tensor to a shard without it, and one that names a path.
    let pos = "\"model.visual.pos_embed.weight\": \"model-0000";
    let wrong = index.replace(&format!("{pos}2"), &format!("{pos}1"));
    assert!(matches!(Checkpoint::from_index(&wrong, "i.json", open), Err(LoadError::Index { .. })));
    let escape = index.replace("model-00002-of-00002.safetensors", "../secret.safetensors");
    assert!(
        matches!(Checkpoint::from_index(&escape, "i.json", open), Err(LoadError::Index { reason, .. }) if reason.contains("not a file name"))
    );
    // The same tensor in two files.
    let dup = Checkpoint::from_files(vec![
        parse("a", shards[1].1.clone()).unwrap(),
        parse("b", shards[1].1.clone()).unwrap(),
    ]);
    assert!(matches!(dup, Err(LoadError::Duplicate { .. })));
}

// ---- configs ----

/// Qwen3-VL-2B-Instruct's `config.json` as shipped (transformers 4.57 style: `rope_scaling`).
const CONFIG_2B: &str = r#"{
  "architectures": ["Qwen3VLForConditionalGeneration"],
  "image_token_id": 151655,
  "model_type": "qwen3_vl",
  "text_config": {
    "attention_bias": false, "attention_dropout": 0.0, "bos_token_id": 151643, "dtype": "bfloat16",
    "eos_token_id": 151645, "head_dim": 128, "hidden_act": "silu", "hidden_size": 2048,
    "initializer_range": 0.02, "intermediate_size": 6144, "max_position_embeddings": 262144,
    "model_type": "qwen3_vl_text", "num_attention_heads": 16, "num_hidden_layers": 28,
    "num_key_value_heads": 8, "rms_norm_eps": 1e-06,
    "rope_scaling": {"mrope_interleaved": true, "mrope_section": [24, 20, 20], "rope_type": "default"},
    "rope_theta": 5000000, "tie_word_embeddings": true, "use_cache": true, "vocab_size": 151936
  },
  "tie_word_embeddings": true,
  "transformers_version": "4.57.0.dev0",
  "video_token_id": 151656,
  "vision_config": {
    "deepstack_visual_indexes": [5, 11, 17], "depth": 24, "hidden_act": "gelu_pytorch_tanh",
    "hidden_size": 1024, "in_channels": 3, "initializer_range": 0.02, "intermediate_size": 4096,
    "model_type": "qwen3_vl", "num_heads": 16, "num_position_embeddings": 2304, "out_hidden_size": 2048,
    "patch_size": 16, "spatial_merge_size": 2, "temporal_patch_size": 2
  },
  "vision_end_token_id": 151653,
  "vision_start_token_id": 151652
}"#;

/// The 4B in transformers 5.x form (`rope_parameters`), from the 2B by the §1/§2 tables.
fn config_4b() -> String {
    CONFIG_2B
        .replace(r#""hidden_size": 2048"#, r#""hidden_size": 2560"#)
        .replace(r#""intermediate_size": 6144"#, r#""intermediate_size": 9728"#)
        .replace(r#""num_attention_heads": 16"#, r#""num_attention_heads": 32"#)
        .replace(r#""num_hidden_layers": 28"#, r#""num_hidden_layers": 36"#)
        .replace(r#""out_hidden_size": 2048"#, r#""out_hidden_size": 2560"#)
        .replace(
            r#""rope_scaling": {"mrope_interleaved": true, "mrope_section": [24, 20, 20], "rope_type": "default"},
    "rope_theta": 5000000,"#,
            r#""rope_parameters": {"mrope_interleaved": true, "mrope_section": [24, 20, 20], "rope_theta": 5000000, "rope_type": "default"},"#,
        )
}

fn params(config: &Qwen3VLConfig) -> u64 {
    expected_tensors(config).iter().map(|(_, s)| s.iter().product::<usize>() as u64).sum()
}

#[test]
fn the_2b_and_4b_configs() {
    let c = Qwen3VLConfig::from_json(CONFIG_2B).unwrap();
    let t = &c.text_config;
    assert_eq!((t.hidden_size, t.intermediate_size, t.num_hidden_layers), (2048, 6144, 28));
    assert_eq!((t.num_attention_heads, t.num_key_value_heads, t.head_dim, t.vocab_size), (16, 8, 128, 151936));
    assert_eq!((t.rope.rope_theta, t.rope.mrope_section, t.rope.mrope_interleaved), (5e6, [24, 20, 20], true));
    assert_eq!((t.rms_norm_eps, t.max_position_embeddings, t.attention_bias), (1e-6, 262144, false));
    let v = &c.vision_config;
    assert_eq!(
        (v.depth, v.hidden_size, v.intermediate_size, v.num_heads, v.out_hidden_size),
        (24, 1024, 4096, 16, 2048)
    );
    assert_eq!((v.patch_size, v.temporal_patch_size, v.spatial_merge_size, v.in_channels), (16, 2, 2, 3));
    assert_eq!((v.num_position_embeddings, &v.deepstack_visual_indexes[..]), (2304, &[5, 11, 17][..]));
    assert_eq!(
        (c.image_token_id, c.video_token_id, c.vision_start_token_id, c.vision_end_token_id),
        (151655, 151656, 151652, 151653)
    );
    assert!(c.tie_word_embeddings);

    let names = expected_tensors(&c);
    assert!(!names.iter().any(|(n, _)| n == "lm_head.weight"));
    let shape = |name: &str| names.iter().find(|(n, _)| n == name).map(|(_, s)| s.clone()).unwrap();
    assert_eq!(shape("model.visual.patch_embed.proj.weight"), [1024, 3, 2, 16, 16]);
    assert_eq!(shape("model.language_model.layers.27.self_attn.k_norm.weight"), [128]);
    assert_eq!(shape("model.visual.deepstack_merger_list.2.norm.weight"), [4096]);
    assert_eq!(shape("model.visual.merger.linear_fc2.weight"), [2048, 4096]);
    assert_eq!(params(&c), 2_127_532_032);

    assert!(config_4b().contains("rope_parameters") && !config_4b().contains("rope_scaling"));
    let c4 = Qwen3VLConfig::from_json(&config_4b()).unwrap();
    assert_eq!(c4.text_config.rope, t.rope, "rope_parameters and rope_theta + rope_scaling agree");
    assert_eq!(params(&c4), 4_437_815_808);
    let untied = Qwen3VLConfig { tie_word_embeddings: false, ..c4 };
    assert_eq!(params(&untied), 4_437_815_808 + 151936 * 2560);
    assert_eq!(expected_tensors(&untied).last().unwrap().0, "lm_head.weight");
}

#[test]
fn absent_keys_take_transformers_defaults() {
    // A config with the sizes of the 4B class defaults but nothing else set is rejected only
    // for its (8B-tower) vision out size not matching the text hidden size.
    let e = Qwen3VLConfig::from_json("{}").unwrap_err();
    assert!(matches!(&e, LoadError::Config { key, .. } if key == "vision_config.out_hidden_size"), "{e}");
    let c = Qwen3VLConfig::from_json(
        r#"{"vision_config": {"out_hidden_size": 4096}, "text_config": {"num_key_value_heads": null}}"#,
    )
    .unwrap();
    let t = &c.text_config;
    assert_eq!((t.vocab_size, t.hidden_size, t.intermediate_size, t.num_hidden_layers), (151936, 4096, 22016, 32));
    assert_eq!((t.num_attention_heads, t.num_key_value_heads, t.head_dim), (32, 32, 128));
    assert_eq!(
        (t.rope.rope_type.as_str(), t.rope.rope_theta, t.rope.mrope_section),
        ("default", 500000.0, [24, 20, 20])
    );
    assert_eq!((t.max_position_embeddings, t.rms_norm_eps, t.hidden_act.as_str()), (128000, 1e-6, "silu"));
    let v = &c.vision_config;
    assert_eq!(
        (v.depth, v.hidden_size, v.intermediate_size, v.num_heads, &v.deepstack_visual_indexes[..]),
        (27, 1152, 4304, 16, &[8, 16, 24][..])
    );
    assert_eq!((c.image_token_id, c.vision_end_token_id), (151655, 151653));
    assert!(!c.tie_word_embeddings);
    // Tying: the top-level key wins; without it, text_config's.
    let tie = |top: &str, text: &str| {
        let json = format!(r#"{{"vision_config": {{"out_hidden_size": 4096}}, {top} "text_config": {{ {text} }}}}"#);
        Qwen3VLConfig::from_json(&json).unwrap().tie_word_embeddings
    };
    assert!(tie("", r#""tie_word_embeddings": true"#));
    assert!(!tie(r#""tie_word_embeddings": false,"#, r#""tie_word_embeddings": true"#));
    assert!(tie(r#""tie_word_embeddings": true,"#, ""));
}

#[test]
fn inconsistent_configs_are_rejected() {
    let cases = [
        (r#""head_dim": 128"#, r#""head_dim": 127"#, "text_config.head_dim"),
        ("[24, 20, 20]", "[24, 20, 22]", "text_config.rope_parameters.mrope_section"),
        ("[24, 20, 20]", "[24, 40]", "text_config.rope_parameters.mrope_section"),
        (r#""num_key_value_heads": 8"#, r#""num_key_value_heads": 6"#, "text_config.num_key_value_heads"),
        (r#""num_heads": 16"#, r#""num_heads": 24"#, "vision_config.num_heads"),
        (r#""out_hidden_size": 2048"#, r#""out_hidden_size": 2560"#, "vision_config.out_hidden_size"),
        ("[5, 11, 17]", "[5, 11, 24]", "vision_config.deepstack_visual_indexes"),
        (
            r#""num_position_embeddings": 2304"#,
            r#""num_position_embeddings": 2300"#,
            "vision_config.num_position_embeddings",
        ),
        (r#""rope_type": "default""#, r#""rope_type": "yarn""#, "text_config.rope_parameters.rope_type"),
        (r#""hidden_act": "silu""#, r#""hidden_act": "gelu""#, "text_config.hidden_act"),
        (r#""depth": 24"#, r#""depth": 0"#, "vision_config.depth"),
        (r#""image_token_id": 151655"#, r#""image_token_id": 200000"#, "image_token_id"),
        (r#""model_type": "qwen3_vl","#, r#""model_type": "qwen3_vl_moe","#, "model_type"),
    ];
    for (from, to, key) in cases {
        let json = CONFIG_2B.replacen(from, to, 1);
        assert_ne!(json, CONFIG_2B, "{from}");
        match Qwen3VLConfig::from_json(&json) {
            Err(LoadError::Config { key: k, file, .. }) => {
                assert_eq!((k.as_str(), file.as_str()), (key, "config.json"), "{to}")
            }
            other => panic!("{to}: {other:?}"),
        }
    }
    assert!(matches!(
        Qwen3VLConfig::from_json(r#"{"text_config": {"hidden_size": "big"}}"#),
        Err(LoadError::Json { .. })
    ));
}

#[test]
fn generation_and_preprocessor_configs() {
    let g = GenerationConfig::from_json(
        r#"{"bos_token_id": 151643, "pad_token_id": 151643, "do_sample": true, "eos_token_id": [151645, 151643],
            "top_k": 20, "top_p": 0.8, "temperature": 0.7, "transformers_version": "4.56.0"}"#,
    )
    .unwrap();
    assert_eq!(
        (g.eos_token_id.as_slice(), g.pad_token_id, g.bos_token_id),
        (&[151645, 151643][..], Some(151643), Some(151643))
    );
    assert_eq!((g.do_sample, g.temperature, g.top_k, g.top_p, g.repetition_penalty), (true, 0.7, 20, 0.8, 1.0));
    let g = GenerationConfig::from_json(r#"{"eos_token_id": 7}"#).unwrap();
    assert_eq!((g.eos_token_id, g.do_sample, g.temperature, g.top_k, g.top_p), (vec![7], false, 1.0, 50, 1.0));

    let p = PreprocessorConfig::from_json(
        r#"{"size": {"longest_edge": 16777216, "shortest_edge": 65536}, "patch_size": 16, "temporal_patch_size": 2,
            "merge_size": 2, "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5],
            "processor_class": "Qwen3VLProcessor", "image_processor_type": "Qwen2VLImageProcessorFast"}"#,
    )
    .unwrap();
    assert_eq!(
        (p.patch_size, p.merge_size, p.temporal_patch_size, p.min_pixels, p.max_pixels),
        (16, 2, 2, 65536, 16777216)
    );
    assert_eq!((p.image_mean, p.image_std), ([0.5; 3], [0.5; 3]));
    p.check_against(&Qwen3VLConfig::from_json(CONFIG_2B).unwrap().vision_config).unwrap();
    // Class defaults (patch 14, CLIP statistics) do not fit the tower; min/max_pixels override size.
    let d = PreprocessorConfig::from_json(r#"{"min_pixels": 1000}"#).unwrap();
    assert_eq!((d.patch_size, d.min_pixels, d.max_pixels, d.image_mean[0]), (14, 1000, 28 * 28 * 1280, 0.48145466));
    let e = d.check_against(&Qwen3VLConfig::from_json(CONFIG_2B).unwrap().vision_config).unwrap_err();
    assert!(
        matches!(&e, LoadError::Config { key, file, .. } if key == "patch_size" && file == "preprocessor_config.json"),
        "{e}"
    );
    assert!(matches!(
        PreprocessorConfig::from_json(r#"{"size": {"longest_edge": 100}}"#),
        Err(LoadError::Config { .. })
    ));
    assert!(matches!(PreprocessorConfig::from_json(r#"{"image_mean": [0.5, 0.5]}"#), Err(LoadError::Config { .. })));
}

// ---- a whole (tiny) model folder ----

/// A tiny but consistent Qwen3-VL: every expected tensor, in bf16, with zeros.
const TINY: &str = r#"{"model_type": "qwen3_vl", "tie_word_embeddings": false,
  "text_config": {"hidden_size": 64, "intermediate_size": 96, "num_hidden_layers": 2, "num_attention_heads": 4,
    "num_key_value_heads": 2, "head_dim": 16, "vocab_size": 152000,
    "rope_parameters": {"rope_type": "default", "rope_theta": 5000000, "mrope_section": [4, 2, 2], "mrope_interleaved": true}},
  "vision_config": {"depth": 3, "hidden_size": 32, "intermediate_size": 48, "num_heads": 2, "out_hidden_size": 64,
    "num_position_embeddings": 64, "deepstack_visual_indexes": [0, 1, 2]}}"#;

#[test]
fn a_tiny_model_folder_validates() {
    let config = Qwen3VLConfig::from_json(TINY).unwrap();
    let expected = expected_tensors(&config);
    let bytes = |s: &[usize]| vec![0u8; 2 * s.iter().product::<usize>()];
    let mut tensors: Vec<T> = expected.iter().map(|(n, s)| T(n, "BF16", s.clone(), bytes(s))).collect();
    tensors.push(T("model.visual.rotary_pos_emb.inv_freq", "F32", vec![4], vec![0; 16]));
    let file = write(&tensors);

    // Through ModelFolder::load, as a browser would hand over the files.
    let folder = ModelFolder::load(|name| {
        Ok(match name {
            "config.json" => Some(Box::new(MemSource(TINY.as_bytes().to_vec())) as _),
            "model.safetensors" => Some(Box::new(MemSource(file.clone())) as _),
            _ => None,
        })
    })
    .unwrap();
    assert_eq!(folder.generation, GenerationConfig::default());
    assert!(folder.preprocessor.is_none());
    let report = validate(&folder.config, &folder.checkpoint).unwrap();
    assert_eq!(report.unexpected, ["model.visual.rotary_pos_emb.inv_freq"]);
    assert_eq!((report.tensors, report.parameters), (expected.len(), params(&config)));
    assert!(expected.iter().any(|(n, _)| n == "lm_head.weight"));

    // Each expected tensor missing, or reshaped, is caught by name.
    let one_file = |tensors: Vec<T>| checkpoint(vec![("model.safetensors", write(&tensors))]);
    let without = |skip: &str| one_file(tensors.iter().filter(|t| t.0 != skip).cloned().collect());
    let e = validate(&config, &without("model.visual.blocks.2.attn.qkv.bias")).unwrap_err();
    assert!(matches!(&e, LoadError::Missing { tensor, .. } if tensor == "model.visual.blocks.2.attn.qkv.bias"), "{e}");
    let e = validate(&config, &without("lm_head.weight")).unwrap_err();
    assert!(matches!(&e, LoadError::Missing { tensor, .. } if tensor == "lm_head.weight"), "{e}");
    let mut reshaped = tensors.clone();
    let i = reshaped.iter().position(|t| t.0 == "model.language_model.layers.1.self_attn.o_proj.weight").unwrap();
    reshaped[i].2 = vec![64 * 64 / 32, 32];
    let e = validate(&config, &one_file(reshaped)).unwrap_err();
    assert!(
        matches!(&e, LoadError::Shape { tensor, expected, .. } if tensor.ends_with("layers.1.self_attn.o_proj.weight") && expected == &[64, 64]),
        "{e}"
    );

    // A checkpoint for another config does not validate.
    let other =
        Qwen3VLConfig::from_json(&TINY.replace(r#""num_key_value_heads": 2"#, r#""num_key_value_heads": 4"#)).unwrap();
    assert!(matches!(validate(&other, &folder.checkpoint), Err(LoadError::Shape { .. })));
}

/// On disk, through `ModelFolder::open` and the file source.
#[test]
fn a_folder_on_disk() {
    let dir = std::env::temp_dir().join(format!("qwen3-vl-loader-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = Qwen3VLConfig::from_json(TINY).unwrap();
    let expected = expected_tensors(&config);
    let values: Vec<f32> = (0..64).map(|i| i as f32).collect();
    let tensors: Vec<T> = expected
        .iter()
        .map(|(n, s)| {
            let numel = s.iter().product::<usize>();
            T(n, "F16", s.clone(), f16_bytes(&values.iter().cycle().take(numel).copied().collect::<Vec<_>>()))
        })
        .collect();
    let (first, second) = tensors.split_at(tensors.len() / 2);
    let map: Vec<String> = expected
        .iter()
        .enumerate()
        .map(|(i, (n, _))| format!("\"{n}\": \"model-0000{}-of-00002.safetensors\"", 1 + (i >= first.len()) as usize))
        .collect();
    std::fs::write(dir.join("config.json"), TINY).unwrap();
    std::fs::write(dir.join("model.safetensors.index.json"), format!("{{\"weight_map\": {{{}}}}}", map.join(",")))
        .unwrap();
    std::fs::write(dir.join("model-00001-of-00002.safetensors"), write(first)).unwrap();
    std::fs::write(dir.join("model-00002-of-00002.safetensors"), write(second)).unwrap();
    std::fs::write(dir.join("generation_config.json"), r#"{"eos_token_id": [151645, 151643]}"#).unwrap();

    let folder = ModelFolder::open(&dir).unwrap();
    assert_eq!(folder.generation.eos_token_id, [151645, 151643]);
    validate(&folder.config, &folder.checkpoint).unwrap();
    let embed = Weights::new(&folder.checkpoint).pp("model.language_model");
    let rows = embed.rows("embed_tokens.weight", &[152000, 64], 151999..152000).unwrap();
    assert_eq!(rows, values);
    // A truncated shard is caught on opening.
    let shard = dir.join("model-00002-of-00002.safetensors");
    let len = std::fs::metadata(&shard).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&shard).unwrap().set_len(len - 1).unwrap();
    assert!(
        matches!(ModelFolder::open(&dir), Err(LoadError::Offsets { file, .. }) if file == "model-00002-of-00002.safetensors")
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

// ---- hostile folders (issue 12) ----

/// Numbers that passed validation and then aborted, overflowed, or panicked in a kernel, each
/// refused at load by the key that holds it, before any tensor is listed.
#[test]
fn hostile_config_numbers_name_their_key() {
    let cases = [
        // Listing 1e9 layers of tensor names aborted in validate.
        (r#""num_hidden_layers": 28"#, r#""num_hidden_layers": 1000000000"#, "text_config.num_hidden_layers"),
        (r#""depth": 24"#, r#""depth": 1000000000"#, "vision_config.depth"),
        // Head sizes the attention kernels assert on (multiples of 8 up to 256).
        (r#""head_dim": 128"#, r#""head_dim": 4"#, "text_config.head_dim"),
        (r#""head_dim": 128"#, r#""head_dim": 12"#, "text_config.head_dim"),
        (r#""head_dim": 128"#, r#""head_dim": 264"#, "text_config.head_dim"),
        (r#""num_heads": 16"#, r#""num_heads": 256"#, "vision_config.hidden_size"),
        (r#""hidden_size": 1024, "in_channels""#, r#""hidden_size": 192, "in_channels""#, "vision_config.hidden_size"),
        // Sections that sum to head_dim / 2 only modulo 2^64.
        ("[24, 20, 20]", "[18446744073709551615, 33, 32]", "text_config.rope_parameters.mrope_section"),
        // Products past usize, past u32 elements, past the matmul's rows or the sampler's vocabulary.
        (r#""num_attention_heads": 16"#, r#""num_attention_heads": 4611686018427387904"#, "text_config.num_attention_heads"),
        (r#""intermediate_size": 6144"#, r#""intermediate_size": 9223372036854775808"#, "text_config.intermediate_size"),
        (r#""intermediate_size": 4096"#, r#""intermediate_size": 4194304"#, "vision_config.intermediate_size"),
        (r#""vocab_size": 151936"#, r#""vocab_size": 16777216"#, "text_config.vocab_size"),
        (r#""spatial_merge_size": 2"#, r#""spatial_merge_size": 4294967296"#, "vision_config.spatial_merge_size"),
        (r#""num_position_embeddings": 2304"#, r#""num_position_embeddings": 18446744073709551615"#, "vision_config.num_position_embeddings"),
        (r#""in_channels": 3"#, r#""in_channels": 4"#, "vision_config.in_channels"),
        (r#""rms_norm_eps": 1e-06"#, r#""rms_norm_eps": 1e-50"#, "text_config.rms_norm_eps"),
    ];
    for (from, to, key) in cases {
        let json = CONFIG_2B.replacen(from, to, 1);
        assert_ne!(json, CONFIG_2B, "{from}");
        match Qwen3VLConfig::from_json(&json) {
            Err(LoadError::Config { key: k, .. }) => assert_eq!(k, key, "{to}"),
            other => panic!("{to}: {other:?}"),
        }
    }
    // A config built in code is validated before its tensors are listed.
    let mut config = Qwen3VLConfig::from_json(CONFIG_2B).unwrap();
    config.text_config.num_hidden_layers = 1_000_000_000;
    let empty = checkpoint(vec![("model.safetensors", write(&[]))]);
    assert!(matches!(validate(&config, &empty), Err(LoadError::Config { key, .. }) if key == "text_config.num_hidden_layers"));
}

#[test]
fn a_header_length_short_of_the_header_is_an_error() {
    let four = f32_bytes(&[1.0, 2.0, 3.0, 4.0]);
    // The reference writer pads the header with spaces; a length that drops some still parses
    // as JSON, and every tensor would read 4 bytes early.
    let header = format!("{{{}}}    ", entry("w", "F32", &[4], 0, 16));
    let mut file = raw(&header, &four);
    assert_eq!(parse("ok.safetensors", file.clone()).unwrap().tensor_f32("w").unwrap(), [1.0, 2.0, 3.0, 4.0]);
    file[..8].copy_from_slice(&(header.len() as u64 - 4).to_le_bytes());
    let e = err(file);
    assert!(matches!(&e, LoadError::Header { reason, .. } if reason.contains("describes 16 bytes of data")), "{e}");
    // Bytes between tensors, or after the last, belong to nobody: the reference refuses them too.
    let e = err(raw(&format!("{{{},{}}}", entry("a", "F32", &[1], 0, 4), entry("b", "F32", &[2], 8, 16)), &four));
    assert!(matches!(&e, LoadError::Header { reason, .. } if reason.contains("4..8")), "{e}");
    let e = err(raw(&format!("{{{}}}", entry("a", "F32", &[3], 0, 12)), &four));
    assert!(matches!(&e, LoadError::Header { .. }), "{e}");
}

/// A pre-quantized folder of the tiny config, in memory.
fn tiny_q4() -> std::collections::BTreeMap<String, Vec<u8>> {
    let config = Qwen3VLConfig::from_json(TINY).unwrap();
    let expected = expected_tensors(&config);
    let tensors: Vec<T> = expected.iter().map(|(n, s)| T(n, "BF16", s.clone(), vec![0; 2 * s.iter().product::<usize>()])).collect();
    let original = [("config.json", TINY.as_bytes().to_vec()), ("model.safetensors", write(&tensors))];
    let mut files = std::collections::BTreeMap::new();
    let open = |name: &str| Ok(original.iter().find(|(n, _)| *n == name).map(|(_, b)| Box::new(MemSource(b.clone())) as _));
    quantized::write(open, 64 << 10, |name, bytes| {
        files.insert(name.to_string(), bytes.to_vec());
        Ok(())
    })
    .unwrap();
    files
}

/// Loads a folder and reads every tensor as the GPU load does, then ends the load.
fn load_all(files: &std::collections::BTreeMap<String, Vec<u8>>) -> Result<(), LoadError> {
    let folder = ModelFolder::load(|name| Ok(files.get(name).map(|b| Box::new(MemSource(b.clone())) as _)))?;
    let w = Weights::new(&folder.checkpoint);
    for (name, shape) in expected_tensors(&folder.config) {
        w.encoded_rows(&name, &shape, 0..shape[0], qwen3_vl_webgpu::kernels::quant::Format::Q4)?;
    }
    folder.checkpoint.finish()
}

#[test]
fn pre_quantized_folders_are_verified_as_they_load() {
    let files = tiny_q4();
    load_all(&files).unwrap();
    let manifest = String::from_utf8(files["manifest.json"].clone()).unwrap();
    let with_manifest = |m: String| {
        let mut f = files.clone();
        f.insert("manifest.json".into(), m.into_bytes());
        f
    };
    let m: serde_json::Value = serde_json::from_str(&manifest).unwrap();
    let shards = m["shards"].as_array().unwrap();
    assert!(shards.len() >= 3, "{} shards", shards.len());
    // Listed twice, swapped, or summing past u64: the manifest itself is refused.
    let mut twice = m.clone();
    twice["shards"].as_array_mut().unwrap().push(shards[0].clone());
    let mut swapped = m.clone();
    swapped["shards"].as_array_mut().unwrap().swap(0, 1);
    let mut overflow = m.clone();
    overflow["files"][0]["bytes"] = u64::MAX.into();
    for (bad, needle) in [(twice, "weights-00000.bin"), (swapped, "shard 0"), (overflow, "2^64")] {
        let e = load_all(&with_manifest(bad.to_string())).unwrap_err();
        assert!(matches!(&e, LoadError::Manifest { .. }) && e.to_string().contains(needle), "{needle}: {e}");
    }
    // Shard bytes that no longer match their sha256 loaded and answered differently: now the
    // load fails naming the shard, whether the change is read or not.
    for (shard, at) in [("weights-00001.bin", 100), ("weights-00002.bin", 5)] {
        let mut damaged = files.clone();
        damaged.get_mut(shard).unwrap()[at] ^= 1;
        let e = load_all(&damaged).unwrap_err();
        assert!(e.to_string().contains(shard) && e.to_string().contains("sha256"), "{e}");
    }
    // Two shards of the same size exchanged on disk: each hash is its name's.
    let mut exchanged = files.clone();
    let (a, b) = (exchanged["weights-00000.bin"].clone(), exchanged["weights-00001.bin"].clone());
    assert_eq!(a.len(), b.len());
    exchanged.insert("weights-00000.bin".into(), b);
    exchanged.insert("weights-00001.bin".into(), a);
    assert!(load_all(&exchanged).is_err());
    // The JSON files are the manifest's too.
    let mut edited = files.clone();
    edited.insert("config.json".into(), TINY.replace("\"depth\": 3", "\"depth\": 2").into_bytes());
    let e = load_all(&edited).unwrap_err();
    assert!(matches!(&e, LoadError::Manifest { file, .. } if file == "config.json"), "{e}");
}

/// A tensor past the adapter's binding limit is refused, by name, before anything is
/// uploaded: a 200×200 position table of 1024 floats is 164 MB, over WebGPU's 128 MiB.
#[test]
fn tensors_past_the_binding_limit_are_refused_before_uploading() {
    use qwen3_vl_webgpu::gpu::{Gpu, GpuError, Profile};
    use qwen3_vl_webgpu::model::{synthetic, ModelError, Qwen3VL};
    let gpu = Gpu::new_blocking(Some(Profile::Minimum)).unwrap();
    let mut config = synthetic::config("2b").unwrap();
    config.vision_config.num_position_embeddings = 200 * 200;
    let folder = synthetic::folder(config).unwrap();
    let e = Qwen3VL::load(&gpu, &folder, qwen3_vl_webgpu::kernels::quant::Format::Q4).err().unwrap();
    assert!(matches!(&e, ModelError::Gpu(GpuError::TooLarge { what, .. }) if what.contains("pos_embed")), "{e}");
    assert_eq!(gpu.memory.live(), 0, "nothing was uploaded");
}

/// The synthetic checkpoints have the real models' sizes (and `tiny` a small one that still
/// validates as a whole), and an unknown size is an error naming the sizes there are.
#[test]
fn synthetic_configs_have_the_real_sizes() {
    use qwen3_vl_webgpu::model::{synthetic, validate};
    let sizes = |s: &str| {
        let c = synthetic::config(s).unwrap();
        let t = &c.text_config;
        (t.hidden_size, t.intermediate_size, t.num_attention_heads, t.num_key_value_heads, t.num_hidden_layers, c.vision_config.depth, c.vision_config.out_hidden_size)
    };
    assert_eq!(sizes("2b"), (2048, 6144, 16, 8, 28, 24, 2048));
    assert_eq!(sizes("4b"), (2560, 9728, 32, 8, 36, 24, 2560));
    assert_eq!(sizes("tiny"), (128, 256, 4, 2, 2, 2, 128));
    for s in ["2b", "4b", "tiny"] {
        let folder = synthetic::folder(synthetic::config(s).unwrap()).unwrap();
        validate(&folder.config, &folder.checkpoint).unwrap();
    }
    let e = synthetic::config("8b").unwrap_err().to_string();
    assert!(e.contains("2b, 4b or tiny"), "{e}");
}
