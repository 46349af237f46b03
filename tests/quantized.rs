//! The pre-quantized int4 folder (model::quantized): written from golden checkpoints, it loads
//! to the very model that quantising the original on load gives, its shards are one
//! safetensors file, and every way a folder can be damaged is a typed error naming the file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use sha2::Digest;

use qwen3_vl_webgpu::gpu::{Gpu, Profile};
use qwen3_vl_webgpu::kernels::quant::Format;
use qwen3_vl_webgpu::model::quantized::{self, Manifest};
use qwen3_vl_webgpu::model::{
    expected_tensors, open_in, validate, ConcatSource, Dtype, FileSource, LoadError, MemSource, ModelError, ModelFolder,
    Qwen3VL, SafetensorsFile, Source,
};
use qwen3_vl_webgpu::runtime::{get_rope_index, Session, VisionInput};

fn gpu() -> &'static Gpu {
    static GPU: std::sync::OnceLock<Gpu> = std::sync::OnceLock::new();
    GPU.get_or_init(|| Gpu::new_blocking(Some(Profile::Full)).expect("a WebGPU adapter"))
}

fn case_dir(case: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden").join(case)
}

/// A folder in memory: file name → bytes.
type Files = BTreeMap<String, Vec<u8>>;

fn quantize(case: &str, shard_bytes: usize) -> (Manifest, Files) {
    let mut files = Files::new();
    let manifest = quantized::write(open_in(&case_dir(case)), shard_bytes, |name, bytes| {
        assert!(files.insert(name.to_string(), bytes.to_vec()).is_none(), "{name} written twice");
        Ok(())
    })
    .unwrap();
    (manifest, files)
}

fn open_mem(files: &Files) -> impl FnMut(&str) -> Result<Option<Box<dyn Source>>, LoadError> + '_ {
    |name| Ok(files.get(name).map(|b| Box::new(MemSource(b.clone())) as Box<dyn Source>))
}

fn golden(case: &str) -> SafetensorsFile {
    SafetensorsFile::parse("golden.safetensors", Box::new(FileSource::open(&case_dir(case).join("golden.safetensors")).unwrap())).unwrap()
}

fn i64s(g: &SafetensorsFile, name: &str) -> Vec<i64> {
    g.tensor_bytes(name).unwrap().chunks(8).map(|b| i64::from_le_bytes(b.try_into().unwrap())).collect()
}

/// Every prompt position's logits of a golden case's input (its one image or video included).
fn prompt_logits(model: &Qwen3VL, case: &str) -> Vec<f32> {
    let g = golden(case);
    let c = &model.config;
    let ids: Vec<u32> = i64s(&g, "input_ids").into_iter().map(|v| v as u32).collect();
    let input = |pixels: &str, grids: &str| -> Vec<VisionInput> {
        match g.tensors().contains_key(pixels) {
            true => {
                let grid = i64s(&g, grids);
                assert_eq!(grid.len(), 3, "{case}: one image or video");
                vec![VisionInput { pixel_values: g.tensor_f32(pixels).unwrap(), grid_thw: [grid[0] as usize, grid[1] as usize, grid[2] as usize] }]
            }
            false => Vec::new(),
        }
    };
    let (images, videos) = (input("pixel_values", "image_grid_thw"), input("pixel_values_videos", "video_grid_thw"));
    let grids = |v: &[VisionInput]| v.iter().map(|x| x.grid_thw).collect::<Vec<_>>();
    let rope = get_rope_index(&ids, c.image_token_id, c.video_token_id, &grids(&images), &grids(&videos), c.vision_config.spatial_merge_size).unwrap();
    let mut session = Session::new(gpu(), model, ids.len()).unwrap();
    let logits = session.prefill(&ids, &rope.position_ids, rope.rope_delta, &images, &videos, true).unwrap();
    gpu().read_f32_blocking(&logits).unwrap()
}

/// Tied and untied heads, f32 and bf16 sources, an image and a video. Shards of 64 KiB cut
/// through tensors (the tiny checkpoints hold 0.3–0.6 MB of int4 weights).
#[test]
fn quantized_folder_loads_to_the_model_quantised_on_load() {
    for case in ["image_nonsquare", "untied", "bf16", "video"] {
        let shard = 64 << 10;
        let (manifest, files) = quantize(case, shard);
        assert!(manifest.shards.len() >= 3, "{case}: {} shards", manifest.shards.len());
        for (i, s) in manifest.shards.iter().enumerate() {
            assert_eq!(s.name, format!("weights-{i:05}.bin"));
            assert_eq!(s.bytes as usize, files[&s.name].len());
            assert!(s.bytes as usize <= shard && (s.bytes as usize == shard || i + 1 == manifest.shards.len()), "{case}: shard {i} holds {}", s.bytes);
        }
        let copied: Vec<&str> = manifest.files.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(copied, ["config.json", "generation_config.json"], "{case}");
        assert_eq!(files["config.json"], std::fs::read(case_dir(case).join("config.json")).unwrap(), "{case}: copied verbatim");
        assert_eq!(Manifest::from_json(std::str::from_utf8(&files["manifest.json"]).unwrap()).unwrap(), manifest);
        assert_eq!(manifest.total_bytes, files.iter().filter(|(n, _)| *n != "manifest.json").map(|(_, b)| b.len() as u64).sum::<u64>());
        assert_eq!(quantized::verify(open_mem(&files)).unwrap(), manifest);

        // The shards, concatenated, parse as one safetensors file holding every tensor the
        // config implies (matrices as int4 words), checked against config.json's shapes.
        let joined: Vec<u8> = manifest.shards.iter().flat_map(|s| files[&s.name].clone()).collect();
        let file = SafetensorsFile::parse("joined", Box::new(MemSource(joined))).unwrap();
        let folder = ModelFolder::load(open_mem(&files)).unwrap();
        let original = ModelFolder::open(&case_dir(case)).unwrap();
        let report = validate(&folder.config, &folder.checkpoint).unwrap();
        assert_eq!((report.tensors, report.parameters), {
            let r = validate(&original.config, &original.checkpoint).unwrap();
            (r.tensors, r.parameters)
        });
        assert!(report.unexpected.is_empty(), "{case}: {:?}", report.unexpected);
        let embed = "model.language_model.embed_tokens.weight";
        assert_eq!(file.tensors()[&format!("{embed}.q4_data")].dtype, Dtype::U32);
        assert_eq!(file.tensors()[&format!("{embed}.q4_data")].shape, [original.config.text_config.vocab_size, 64 / 32 * 4]);
        assert_eq!(file.tensors().len(), expected_tensors(&folder.config).iter().map(|(n, s)| 1 + qwen3_vl_webgpu::model::is_matrix(n, s) as usize).sum::<usize>());
        // Norms, biases and pos_embed keep their stored bytes (bf16 stays bf16).
        let norm = "model.language_model.norm.weight";
        assert_eq!(file.tensor_bytes(norm).unwrap(), original.checkpoint.find(norm).unwrap().0.tensor_bytes(norm).unwrap());

        // Bit-identical: the stored words are those quantising on load computes (the int4
        // encoding is a per-row function of the f32 weights), the other tensors are the same
        // f32 values, and the same kernels run in the same order on them.
        let want = prompt_logits(&Qwen3VL::load(gpu(), &original, Format::Q4).unwrap(), case);
        let got = prompt_logits(&Qwen3VL::load(gpu(), &folder, Format::Q4).unwrap(), case);
        assert!(got == want, "{case}: logits of the quantized folder differ from quantising on load");
    }
}

/// Damage to a folder is caught, named, and never a panic.
#[test]
fn damaged_folders_are_typed_errors_naming_the_file() {
    let (manifest, files) = quantize("text_only", 32 << 10);
    let second = manifest.shards[1].name.clone();

    // One flipped byte: verify names the shard, and so does loading (the shards are hashed as
    // they are read).
    let mut tampered = files.clone();
    tampered.get_mut(&second).unwrap()[100] ^= 1;
    let err = quantized::verify(open_mem(&tampered)).unwrap_err();
    assert!(matches!(&err, LoadError::Manifest { file, .. } if *file == second), "{err}");
    assert!(err.to_string().contains("sha256"), "{err}");
    let err = Qwen3VL::load(gpu(), &ModelFolder::load(open_mem(&tampered)).unwrap(), Format::Q4).err().unwrap();
    assert!(err.to_string().contains(&second) && err.to_string().contains("sha256"), "{err}");
    let mut bad_file = files.clone();
    bad_file.get_mut("config.json").unwrap().push(b' ');
    assert!(matches!(quantized::verify(open_mem(&bad_file)).unwrap_err(), LoadError::Manifest { file, .. } if file == "config.json"));

    // A truncated shard: loading names it (as verify does).
    let mut truncated = files.clone();
    truncated.get_mut(&second).unwrap().truncate(1000);
    for err in [ModelFolder::load(open_mem(&truncated)).err().unwrap(), quantized::verify(open_mem(&truncated)).unwrap_err()] {
        assert!(matches!(&err, LoadError::Manifest { file, .. } if *file == second), "{err}");
        assert!(err.to_string().contains("1000 bytes"), "{err}");
    }
    // A missing shard.
    let mut missing = files.clone();
    missing.remove(&second);
    let err = ModelFolder::load(open_mem(&missing)).err().unwrap();
    assert!(matches!(&err, LoadError::Io { file, .. } if *file == second), "{err}");

    // A manifest of another format or version, or one naming a path.
    let text = String::from_utf8(files["manifest.json"].clone()).unwrap();
    for (from, to) in [("\"version\": 1", "\"version\": 2"), ("\"weights\": \"q4\"", "\"weights\": \"q8\""), ("weights-00000.bin", "../weights-00000.bin")] {
        let mut bad = files.clone();
        bad.insert("manifest.json".into(), text.replacen(from, to, 1).into_bytes());
        assert!(matches!(ModelFolder::load(open_mem(&bad)).err().unwrap(), LoadError::Manifest { .. }), "{to}");
    }

    // f16 or f32 from a q4 folder.
    let folder = ModelFolder::load(open_mem(&files)).unwrap();
    for format in [Format::F16, Format::F32] {
        let err = Qwen3VL::load(gpu(), &folder, format).err().unwrap();
        assert!(matches!(err, ModelError::Load(LoadError::StoredFormat { requested }) if requested == format), "{err}");
    }
}

/// A config that disagrees with the stored int4 matrices is a shape error, as for an original
/// folder: the logical shape of each matrix is kept in the header.
#[test]
fn quantized_shapes_are_checked_against_config() {
    let (_, files) = quantize("text_only", 1 << 20);
    let config = String::from_utf8(files["config.json"].clone()).unwrap();
    // 160 → 150: the logical shape is checked, not only the word counts (down_proj's k = 150
    // and 160 both take 5 int4 groups).
    let edited = config.replacen("\"intermediate_size\": 160", "\"intermediate_size\": 150", 1);
    assert!(edited != config, "the edit applies");
    let mut bad = files.clone();
    // The manifest vouches for the edited file, so the config is read and the shapes disagree.
    let mut manifest = Manifest::from_json(std::str::from_utf8(&files["manifest.json"]).unwrap()).unwrap();
    let entry = manifest.files.iter_mut().find(|e| e.name == "config.json").unwrap();
    manifest.total_bytes = manifest.total_bytes - entry.bytes + edited.len() as u64;
    entry.bytes = edited.len() as u64;
    entry.sha256 = sha2::Sha256::digest(edited.as_bytes()).iter().map(|b| format!("{b:02x}")).collect();
    bad.insert("manifest.json".into(), serde_json::to_vec(&manifest).unwrap());
    bad.insert("config.json".into(), edited.into_bytes());
    let folder = ModelFolder::load(open_mem(&bad)).unwrap();
    let err = validate(&folder.config, &folder.checkpoint).unwrap_err();
    assert!(matches!(&err, LoadError::Shape { tensor, .. } if tensor.contains("mlp")), "{err}");
}

/// Reads that span shards, and a failing read naming its shard.
#[test]
fn concat_source_reads_across_shards() {
    let parts: Vec<Vec<u8>> = vec![(0..10).collect(), vec![], (10..13).collect(), (13..40).collect()];
    let src = ConcatSource::new(parts.iter().enumerate().map(|(i, p)| (format!("s{i}"), Box::new(MemSource(p.clone())) as Box<dyn Source>)).collect());
    assert_eq!(src.len(), 40);
    for start in 0..40 {
        for len in 0..=40 - start {
            let mut buf = vec![0u8; len];
            src.read_at(start as u64, &mut buf).unwrap();
            assert_eq!(buf, (start as u8..(start + len) as u8).collect::<Vec<_>>());
        }
    }
    assert!(src.read_at(35, &mut [0; 6]).is_err());

    /// A shard that fails every read.
    struct Broken;
    impl Source for Broken {
        fn len(&self) -> u64 {
            8
        }
        fn read_at(&self, _: u64, _: &mut [u8]) -> std::io::Result<()> {
            Err(std::io::Error::other("disk on fire"))
        }
    }
    let src = ConcatSource::new(vec![("a".into(), Box::new(MemSource(vec![0; 8]))), ("weights-00001.bin".into(), Box::new(Broken))]);
    let err = src.read_at(4, &mut [0; 8]).unwrap_err();
    assert!(err.to_string().contains("weights-00001.bin") && err.to_string().contains("disk on fire"), "{err}");
}

/// A source that records every read as (file, start, end).
struct Recorded {
    name: String,
    inner: Box<dyn Source>,
    reads: std::rc::Rc<std::cell::RefCell<Vec<(String, u64, u64)>>>,
}

impl Source for Recorded {
    fn len(&self) -> u64 {
        self.inner.len()
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        self.reads.borrow_mut().push((self.name.clone(), offset, offset + buf.len() as u64));
        self.inner.read_at(offset, buf)
    }
}

/// Resuming from any number of committed shards writes the remaining shards byte for byte as
/// one uninterrupted run does, reads exactly the ranges `reads()` announced, and never reads a
/// tensor whose output lies wholly in the committed shards.
#[test]
fn an_interrupted_quantization_resumes_from_its_committed_shards() {
    for case in ["bf16", "untied"] {
        let shard = 16 << 10;
        let (manifest, files) = quantize(case, shard);
        let source = ModelFolder::open(&case_dir(case)).unwrap();
        let joined: Vec<u8> = manifest.shards.iter().flat_map(|s| files[&s.name].clone()).collect();
        let out = SafetensorsFile::parse("joined", Box::new(MemSource(joined))).unwrap();
        let out_data = out.tensors().values().map(|t| t.range.start).min().unwrap();
        for k in [1, manifest.shards.len() / 2, manifest.shards.len() - 1, manifest.shards.len()] {
            let resume: Vec<_> = manifest.files.iter().chain(&manifest.shards[..k]).cloned().collect();
            let reads = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
            let dir = case_dir(case);
            let mut inner = open_in(&dir);
            let open = |name: &str| -> Result<Option<Box<dyn Source>>, LoadError> {
                Ok(inner(name)?.map(|s| Box::new(Recorded { name: name.into(), inner: s, reads: reads.clone() }) as Box<dyn Source>))
            };
            let mut written = Files::new();
            let mut sink = |name: &str, bytes: &[u8]| {
                written.insert(name.to_string(), bytes.to_vec());
                Ok(())
            };
            let writer = quantized::Writer::new(open, shard, &resume, &mut sink).unwrap();
            let planned = writer.reads();
            let before = reads.borrow().len();
            let got = writer.finish(&mut sink).unwrap();
            assert_eq!(got, manifest, "{case} from shard {k}");
            let names: Vec<&String> = written.keys().collect();
            let mut want: Vec<String> = manifest.shards[k..].iter().map(|s| s.name.clone()).chain(["manifest.json".to_string()]).collect();
            want.sort();
            assert_eq!(names, want.iter().collect::<Vec<_>>(), "{case} from shard {k}: only the missing shards are written");
            for s in &manifest.shards[k..] {
                assert!(written[&s.name] == files[&s.name], "{case} from shard {k}: {} differs", s.name);
            }
            let data_reads: Vec<_> = reads.borrow()[before..].iter().map(|(f, a, b)| quantized::Read { file: f.clone(), start: *a, end: *b }).collect();
            assert_eq!(data_reads, planned, "{case} from shard {k}: the steps read what reads() announced");

            // Source tensors whose every output byte lies in the committed shards.
            let resumed: u64 = manifest.shards[..k].iter().map(|s| s.bytes).sum();
            let finished: Vec<String> = out.tensors().iter().filter(|(_, t)| t.range.end <= resumed).map(|(n, _)| n.trim_end_matches(".q4_data").trim_end_matches(".q4_scales").to_string()).collect();
            let finished: Vec<&String> = finished.iter().filter(|n| out.tensors().iter().filter(|(m, _)| m.starts_with(n.as_str())).all(|(_, t)| t.range.end <= resumed)).collect();
            assert!(k < manifest.shards.len() / 2 || resumed <= out_data || !finished.is_empty(), "{case} from shard {k}: the test should skip some tensor");
            for name in finished {
                let (file, info) = source.checkpoint.find(name).unwrap();
                for r in &data_reads {
                    assert!(r.file != file.name || r.end <= info.range.start || r.start >= info.range.end, "{case} from shard {k}: {name} was read again");
                }
            }
        }
    }
}

/// The load checks each shard's sha256 as it reads it, with no pass of its own: the bytes read
/// are about the shards' size (the hash reads ahead only over what the load skips).
#[test]
fn loading_reads_each_shard_about_once() {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;
    struct Counted(MemSource, Arc<AtomicU64>);
    impl Source for Counted {
        fn len(&self) -> u64 {
            self.0.len()
        }
        fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
            self.1.fetch_add(buf.len() as u64, Ordering::Relaxed);
            self.0.read_at(offset, buf)
        }
    }
    for (case, bound) in [("image_nonsquare", 1.01), ("untied", 1.5)] {
        let (manifest, files) = quantize(case, 32 << 10);
        let read = Arc::new(AtomicU64::new(0));
        let folder = ModelFolder::load(|name| {
            let bytes = files.get(name).cloned();
            Ok(bytes.map(|b| match name.starts_with("weights-") {
                true => Box::new(Counted(MemSource(b), read.clone())) as Box<dyn Source>,
                false => Box::new(MemSource(b)) as Box<dyn Source>,
            }))
        })
        .unwrap();
        Qwen3VL::load(gpu(), &folder, Format::Q4).unwrap();
        let shards: u64 = manifest.shards.iter().map(|s| s.bytes).sum();
        let ratio = read.load(Ordering::Relaxed) as f64 / shards as f64;
        println!("{case}: {} bytes read for {shards} bytes of shards ({ratio:.3}×)", read.load(Ordering::Relaxed));
        // Untied: lm_head is stored after the vision tower and loaded with the text model, so
        // the hash reads over the tower once more.
        assert!((1.0..=bound).contains(&ratio), "{case}: {ratio}");
    }
}
