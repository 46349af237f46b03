//! Against the transformers 5.23 goldens in `tests/golden/` (see its README): the real processor's
//! `pixel_values`, resized pixels and `input_ids` (`processor/`), and `get_rope_index` of every tiny
//! model case. Everything must match exactly.

use std::path::{Path, PathBuf};

use qwen3_vl_webgpu::runtime::chat::{Content, Message, Qwen3VLProcessor, Role};
use qwen3_vl_webgpu::runtime::preprocess::{ImageProcessor, RgbImage, VisionInput};
use qwen3_vl_webgpu::runtime::resize::resize_bicubic;
use qwen3_vl_webgpu::runtime::rope_index::{get_rope_index, mm_token_type_ids};
use qwen3_vl_webgpu::runtime::video::VideoProcessor;
use serde_json::Value;

/// `tests/golden`: the committed transformers fixtures.
fn golden_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    assert!(dir.join("README.md").exists(), "incomplete golden fixtures in {}", dir.display());
    dir
}

/// A minimal safetensors reader: name → (dtype, shape, bytes).
struct SafeTensors {
    header: serde_json::Map<String, Value>,
    data: Vec<u8>,
}

impl SafeTensors {
    fn open(path: &Path) -> Self {
        let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        let header: Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
        SafeTensors { header: header.as_object().unwrap().clone(), data: bytes[8 + n..].to_vec() }
    }
    fn has(&self, name: &str) -> bool {
        self.header.contains_key(name)
    }
    fn raw(&self, name: &str, dtype: &str) -> (Vec<usize>, &[u8]) {
        let t = self.header.get(name).unwrap_or_else(|| panic!("no tensor {name}"));
        assert_eq!(t["dtype"], dtype, "{name}");
        let shape = t["shape"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as usize).collect();
        let off = &t["data_offsets"];
        (shape, &self.data[off[0].as_u64().unwrap() as usize..off[1].as_u64().unwrap() as usize])
    }
    fn i64s(&self, name: &str) -> Vec<i64> {
        self.raw(name, "I64").1.chunks_exact(8).map(|b| i64::from_le_bytes(b.try_into().unwrap())).collect()
    }
    fn f32s(&self, name: &str) -> Vec<f32> {
        self.raw(name, "F32").1.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect()
    }
    fn grids(&self, name: &str) -> Vec<[usize; 3]> {
        if !self.has(name) {
            return Vec::new();
        }
        self.i64s(name).chunks_exact(3).map(|g| [g[0] as usize, g[1] as usize, g[2] as usize]).collect()
    }
}

#[test]
fn rope_index_of_every_model_case() {
    let dir = golden_dir();
    for case in ["text_only", "image_nonsquare", "two_images", "video", "video_image", "untied", "bf16"] {
        let g = SafeTensors::open(&dir.join(case).join("golden.safetensors"));
        let cfg: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join(case).join("config.json")).unwrap()).unwrap();
        let (img, vid) =
            (cfg["image_token_id"].as_u64().unwrap() as u32, cfg["video_token_id"].as_u64().unwrap() as u32);
        let merge = cfg["vision_config"]["spatial_merge_size"].as_u64().unwrap() as usize;
        let ids: Vec<u32> = g.i64s("input_ids").iter().map(|&t| t as u32).collect();
        let types: Vec<u8> = g.i64s("mm_token_type_ids").iter().map(|&t| t as u8).collect();
        assert_eq!(mm_token_type_ids(&ids, img, vid), types, "{case}");
        let r = get_rope_index(&ids, img, vid, &g.grids("image_grid_thw"), &g.grids("video_grid_thw"), merge).unwrap();
        let want = g.i64s("position_ids");
        let s = ids.len();
        for axis in 0..3 {
            let w: Vec<u32> = want[axis * s..(axis + 1) * s].iter().map(|&p| p as u32).collect();
            assert_eq!(r.position_ids[axis], w, "{case} axis {axis}");
        }
        assert_eq!(r.rope_delta, g.i64s("rope_deltas")[0], "{case}");
    }
}

fn processor(dir: &Path) -> Qwen3VLProcessor {
    let path = std::env::var("QWEN_TOKENIZER_JSON")
        .expect("QWEN_TOKENIZER_JSON must name the Qwen tokenizer.json (see tests/runtime/tokenizer.rs)");
    let mut p = Qwen3VLProcessor::from_tokenizer_json(&std::fs::read(path).unwrap()).unwrap();
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap();
    p.image_processor = ImageProcessor::from_config_json(&read("preprocessor_config.json")).unwrap();
    p.video_processor = VideoProcessor::from_config_json(&read("video_preprocessor_config.json")).unwrap();
    p
}

fn messages(conv: &Value) -> Vec<Message> {
    let role = |r: &str| match r {
        "system" => Role::System,
        "user" => Role::User,
        "assistant" => Role::Assistant,
        other => panic!("role {other}"),
    };
    conv["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let parts = match &m["content"] {
                Value::String(s) => vec![Content::Text(s.clone())],
                Value::Array(parts) => parts
                    .iter()
                    .map(|p| match p["type"].as_str().unwrap() {
                        "text" => Content::Text(p["text"].as_str().unwrap().into()),
                        "image" => Content::Image,
                        "video" => Content::Video,
                        t => panic!("part {t}"),
                    })
                    .collect(),
                c => panic!("content {c}"),
            };
            Message::new(role(m["role"].as_str().unwrap()), parts)
        })
        .collect()
}

#[cfg(feature = "decode")]
#[test]
fn processor_goldens() {
    use qwen3_vl_webgpu::runtime::preprocess::decode_image;
    let dir = golden_dir();
    let dir = dir.join("processor");
    let meta: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("processor.json")).unwrap()).unwrap();
    let g = SafeTensors::open(&dir.join("processor.safetensors"));
    let p = processor(&dir);
    let load = |name: &str| {
        decode_image(&std::fs::read(dir.join(meta["images"][name]["file"].as_str().unwrap())).unwrap()).unwrap()
    };

    // Images: decoded PNG → resize → normalise → patchify, bit for bit.
    let mut images = std::collections::HashMap::new();
    for name in ["image_a", "image_b", "image_c"] {
        let img = load(name);
        let v = p.image_processor.preprocess(&img).unwrap();
        assert_eq!(v.grid_thw.to_vec(), g.grids(&format!("{name}_grid_thw"))[0].to_vec(), "{name}");
        let key = format!("{name}_pixel_values");
        if g.has(&key) {
            assert!(v.pixel_values == g.f32s(&key), "{name}: pixel_values differ");
        }
        images.insert(name.to_string(), v);
    }
    let b = load("image_b");
    let (shape, want) = g.raw("image_b_resized_u8", "U8");
    let got = resize_bicubic(&b.data, b.width, b.height, 3, shape[1], shape[0], p.image_processor.resampler);
    assert!(got == want, "image_b: the resized uint8 pixels differ");

    // Video: frames [0, 2, 5, 7] of an 8-frame 4 fps clip.
    let (shape, raw) = g.raw("video_frames_u8", "U8");
    let (h, w) = (shape[1], shape[2]);
    let frames: Vec<RgbImage> = raw.chunks_exact(h * w * 3).map(|f| RgbImage::new(w, h, f.to_vec()).unwrap()).collect();
    let fps = meta["video"]["fps"].as_f64();
    let idx = p.video_processor.sample_frames(frames.len(), fps);
    assert_eq!(idx, [0, 2, 5, 7]);
    let video = p.video_processor.preprocess_all(&frames, fps).unwrap();
    assert_eq!(video.vision.grid_thw.to_vec(), g.grids("video_grid_thw")[0].to_vec());
    assert_eq!(video.timestamps, [0.25, 1.5]);
    assert!(video.vision.pixel_values == g.f32s("video_pixel_values"), "video pixel_values differ");

    // Conversations: template text, expanded text, input_ids and mm_token_type_ids.
    for (name, conv) in meta["conversations"].as_object().unwrap() {
        let msgs = messages(conv);
        let vision = |kind: &str| -> Vec<&Value> {
            conv["messages"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|m| m["content"].as_array())
                .flatten()
                .filter_map(|c| c.get(kind))
                .collect()
        };
        let imgs: Vec<VisionInput> = vision("image").iter().map(|n| images[n.as_str().unwrap()].clone()).collect();
        let vids = if vision("video").is_empty() { vec![] } else { vec![video.clone()] };
        let prompt = p.prompt(&msgs, &imgs, &vids, conv["add_generation_prompt"].as_bool().unwrap()).unwrap();
        let rendered = qwen3_vl_webgpu::runtime::apply_chat_template(&msgs, p.chat_template, true, false);
        assert_eq!(rendered, conv["rendered_template"].as_str().unwrap(), "{name}: template");
        assert_eq!(prompt.text, conv["expanded_text"].as_str().unwrap(), "{name}: expanded text");
        let ids: Vec<u32> = g.i64s(&format!("conv_{name}_input_ids")).iter().map(|&t| t as u32).collect();
        assert_eq!(prompt.input_ids, ids, "{name}: input_ids");
        let types: Vec<u8> = g.i64s(&format!("conv_{name}_mm_token_type_ids")).iter().map(|&t| t as u8).collect();
        assert_eq!(mm_token_type_ids(&prompt.input_ids, p.tokens.image_pad, p.tokens.video_pad), types, "{name}");
    }
}
