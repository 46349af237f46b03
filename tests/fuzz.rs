//! Hostile inputs (issue 12): a seeded mutation fuzzer over everything a model folder and a
//! request read from files — the safetensors header, config.json, generation_config.json, the
//! image and video preprocessor configs, tokenizer.json, a pre-quantized folder's manifest.json
//! and shards, PNG and JPEG bytes — and over a request's numeric options, through the library's
//! entry points: `ModelFolder::load` over an in-memory folder, `validate`, reading every tensor
//! as the GPU load does, `request::processor`, `decode_image_within`, `Request::new`.
//!
//! Every call runs inside `catch_unwind`: an input must load or be an error, never a panic.
//! The test allocator refuses any allocation over [`MAX_ALLOC`] after printing the case that
//! asked for it, so an allocation sized by an unchecked number aborts the run by name instead
//! of passing unseen. What loads is checked too: finite pixel values, sampling values the
//! kernels accept, a cache capacity that did not wrap, changed shard bytes or a changed header
//! length that never load.
//!
//! The fuzzer runs for `QWEN3VL_FUZZ_SECONDS` (default 60) over the targets in turn. Case `t/i`
//! (target `t`, iteration `i`) draws only from a seed made of `QWEN3VL_FUZZ_SEED` (default 12),
//! `t` and `i`, so `QWEN3VL_FUZZ_CASE=t/i` replays it alone; a failing case's inputs are written
//! to `$CARGO_TARGET_TMPDIR/fuzz-failures/t-i/`; `QWEN3VL_FUZZ_ERRORS=1` prints every error. The inputs that found the bugs are kept
//! below as named regression tests.

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::BTreeMap;
use std::io::Write;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use qwen3_vl_webgpu::kernels::quant::Format;
use qwen3_vl_webgpu::model::{
    expected_tensors, is_matrix, quantized, validate, GenerationConfig, LoadError, MemSource, ModelFolder, Source, Weights,
};
use qwen3_vl_webgpu::runtime::preprocess::{decode_image, decode_image_within, ImageProcessor, RgbImage};
use qwen3_vl_webgpu::runtime::request::{self, ChatOptions, Image, Request, Video};
use qwen3_vl_webgpu::runtime::{Content, Message, Qwen3VLProcessor, RuntimeError, Sampling, VideoProcessor};
use qwen3_vl_webgpu::testing::Rng;
use serde_json::Value;

// ---- the allocator ----

/// The largest allocation a case may make: far above what the tiny inputs need (the model file
/// is 1.2 MB; images decode within 8 MiB), far below what an unchecked size asks.
const MAX_ALLOC: usize = 64 << 20;
/// The running case, `t << 32 | i`, for the allocator's message.
static CASE: AtomicU64 = AtomicU64::new(u64::MAX);

struct Bounded;

unsafe impl GlobalAlloc for Bounded {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if refused(layout.size()) {
            return std::ptr::null_mut();
        }
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if refused(layout.size()) {
            return std::ptr::null_mut();
        }
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if refused(new_size) {
            return std::ptr::null_mut();
        }
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOC: Bounded = Bounded;

/// Says which case asked for `size` bytes (without allocating) when it is too many; the
/// standard library then aborts with "memory allocation of … failed".
fn refused(size: usize) -> bool {
    if size <= MAX_ALLOC {
        return false;
    }
    let mut buf = [0u8; 128];
    let mut at = 0;
    let mut put = |bytes: &[u8]| {
        let n = bytes.len().min(buf.len() - at);
        buf[at..at + n].copy_from_slice(&bytes[..n]);
        at += n;
    };
    let digits = |mut x: u64, out: &mut [u8; 20]| -> usize {
        let mut i = out.len();
        loop {
            i -= 1;
            out[i] = b'0' + (x % 10) as u8;
            x /= 10;
            if x == 0 {
                return i;
            }
        }
    };
    let mut d = [0u8; 20];
    put(b"fuzz: an allocation of ");
    let i = digits(size as u64, &mut d);
    put(&d[i..]);
    put(b" bytes in case ");
    let case = CASE.load(Ordering::Relaxed);
    let i = digits(case >> 32, &mut d);
    put(&d[i..]);
    put(b"/");
    let i = digits(case & 0xFFFF_FFFF, &mut d);
    put(&d[i..]);
    put(b"\n");
    let _ = std::io::stderr().write_all(&buf[..at]);
    true
}

// ---- panics ----

thread_local! {
    /// Whether this thread's panics are the fuzzer's findings (recorded) or a test's (printed).
    static FUZZING: Cell<bool> = const { Cell::new(false) };
    /// The place and message of this thread's last recorded panic.
    static PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Runs `f` with its panics recorded instead of printed: `Err(place: message)`.
fn recorded<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    install_hook();
    FUZZING.set(true);
    let out = catch_unwind(AssertUnwindSafe(f));
    FUZZING.set(false);
    out.map_err(|_| PANIC.take().unwrap_or_default())
}

fn install_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if FUZZING.get() {
                let at = info.location().map_or("?".into(), |l| format!("{}:{}", l.file(), l.line()));
                let what = info.payload().downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| info.payload().downcast_ref::<String>().cloned());
                PANIC.set(Some(format!("{at}: {}", what.unwrap_or_default())));
            } else {
                default(info);
            }
        }));
    });
}

// ---- an in-memory model folder ----

/// File name → bytes; what `ModelFolder::load` and `request::processor` read.
#[derive(Clone, Default)]
struct Folder(BTreeMap<String, Arc<Vec<u8>>>);

impl Folder {
    fn from_dir(dir: &Path) -> Folder {
        let mut f = Folder::default();
        for e in std::fs::read_dir(dir).unwrap() {
            let path = e.unwrap().path();
            f.set(path.file_name().unwrap().to_str().unwrap(), std::fs::read(&path).unwrap());
        }
        f
    }
    fn set(&mut self, name: &str, bytes: Vec<u8>) {
        self.0.insert(name.into(), Arc::new(bytes));
    }
    fn get(&self, name: &str) -> Option<&[u8]> {
        self.0.get(name).map(|b| b.as_slice())
    }
    fn open(&self) -> impl FnMut(&str) -> Result<Option<Box<dyn Source>>, LoadError> + '_ {
        |name| Ok(self.0.get(name).map(|b| Box::new(MemSource(b.to_vec())) as Box<dyn Source>))
    }
    fn read(&self) -> impl FnMut(&str) -> Result<Option<Vec<u8>>, String> + '_ {
        |name| Ok(self.0.get(name).map(|b| b.to_vec()))
    }
}

fn repo(path: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// The tiny end-to-end folder (tests/fixtures/tiny.sh) in memory.
fn tiny() -> Folder {
    let mut f = Folder::from_dir(&repo("tests/fixtures/tiny"));
    for name in ["config.json", "model.safetensors", "generation_config.json"] {
        f.set(name, std::fs::read(repo("tests/golden/image_nonsquare").join(name)).unwrap());
    }
    f
}

/// Its pre-quantized form, cut into 64 KiB shards.
fn tiny_q4(src: &Folder) -> Folder {
    let mut out = Folder::default();
    quantized::write(src.open(), 64 << 10, |name, bytes| {
        out.set(name, bytes.to_vec());
        Ok(())
    })
    .unwrap();
    out
}

// ---- what each case runs ----

/// Loads the folder as the GPU load does, without the GPU: every tensor read in the format it
/// would be uploaded in, then the load ended (a pre-quantized folder's sha256 checks).
fn load_folder(f: &Folder) -> Result<ModelFolder, String> {
    let folder = ModelFolder::load(f.open()).map_err(|e| e.to_string())?;
    validate(&folder.config, &folder.checkpoint).map_err(|e| e.to_string())?;
    let w = Weights::new(&folder.checkpoint);
    for (name, shape) in expected_tensors(&folder.config) {
        if is_matrix(&name, &shape) {
            w.encoded_rows(&name, &shape, 0..shape[0], Format::Q4).map_err(|e| e.to_string())?;
        } else {
            w.get(&name, &shape).map_err(|e| e.to_string())?;
        }
    }
    folder.checkpoint.finish().map_err(|e| e.to_string())?;
    Ok(folder)
}

/// The fixtures a request is made of.
struct Inputs {
    png: Vec<u8>,
    jpeg: Vec<u8>,
    image: RgbImage,
    frames: Vec<RgbImage>,
}

/// The folder's processor with the pixel budgets cut to the fuzzer's size: a mutated
/// `min_pixels` of millions is valid, and slow to honour thousands of times. A merged block
/// over 256² pixels is valid too, and its smallest image is that large whatever the budget:
/// such configs are not preprocessed here (the library's byte budget for them is tested by
/// `the_host_budget_bounds_pixel_values`).
fn processor(f: &Folder) -> Result<Qwen3VLProcessor, String> {
    let mut p = request::processor(f.read()).map_err(|e| e.to_string())?;
    let cut = |min: &mut usize, max: &mut usize, to: usize| {
        *max = (*max).min(to);
        *min = (*min).min(*max);
    };
    cut(&mut p.image_processor.min_pixels, &mut p.image_processor.max_pixels, 1 << 16);
    cut(&mut p.video_processor.min_pixels, &mut p.video_processor.max_pixels, 1 << 18);
    if p.image_processor.spec.factor().max(p.video_processor.spec.factor()) > 256 {
        return Err("a merged block over the fuzzer's size".into());
    }
    Ok(p)
}

/// A chat request with an image and a video through `Request::new`, and the properties of
/// what it makes.
fn chat(p: &Qwen3VLProcessor, gen: &GenerationConfig, inputs: &Inputs, fps: f64, options: &ChatOptions) -> Result<(), String> {
    chat_with(p, gen, inputs, fps, options, None)
}

fn chat_with(p: &Qwen3VLProcessor, gen: &GenerationConfig, inputs: &Inputs, fps: f64, options: &ChatOptions, image_budget: Option<usize>) -> Result<(), String> {
    let messages = [Message::user(vec![Content::Image, Content::Video, Content::Text("What happens?".into())])];
    let video = Video::Clip { frames: inputs.frames.clone(), fps };
    let image = Image { pixels: inputs.image.clone(), max_pixels: image_budget };
    let req = Request::new(p, &messages, &[image], &[video], options, gen).map_err(|e| e.to_string())?;
    for v in req.images.iter().chain(&req.videos) {
        assert!(v.pixel_values.iter().all(|x| x.is_finite()), "property: non-finite pixel values from grid {:?}", v.grid_thw);
    }
    let ids = &req.prompt.input_ids;
    assert_eq!(req.capacity(), ids.len() + req.options.max_new_tokens + 1, "property: the capacity wrapped");
    if let Sampling::Sample(s) = req.options.sampling {
        let ok = s.temperature > 0.0 && (1.0 / s.temperature).is_finite() && s.top_p > 0.0 && s.top_p <= 1.0;
        assert!(ok && s.repetition_penalty > 0.0 && s.presence_penalty.is_finite(), "property: the sampler would refuse {s:?}");
    }
    p.decode(ids, false).map_err(|e| e.to_string())?;
    Ok(())
}

fn generation(f: &Folder) -> Result<GenerationConfig, String> {
    match f.get("generation_config.json") {
        Some(b) => GenerationConfig::from_json(std::str::from_utf8(b).map_err(|e| e.to_string())?).map_err(|e| e.to_string()),
        None => Ok(GenerationConfig::default()),
    }
}

// ---- mutations ----

/// JSON numbers that sit on the edges: zero, signs, powers of two, u32 / i64 / u64 / f32 / f64
/// limits, subnormals, head sizes the kernels refuse.
const NUMBERS: &[&str] = &[
    "0", "1", "-1", "2", "3", "4", "7", "8", "12", "16", "31", "255", "256", "264", "1000", "65535", "65536",
    "4294967295", "4294967296", "9007199254740993", "9223372036854775807", "18446744073709551615",
    "18446744073709551616", "0.5", "-0.0", "1e-45", "1e-320", "1e38", "3.5e38", "1e308", "-1e308", "1000000000",
    "100000", "16777216", "268435456",
];
const STRINGS: &[&str] = &["", "x", "F32", "BF16", "U32", "I64", "BOOL", "F8_E4M3", "default", "yarn", "silu", "ByteLevel", "BPE", "Sequence", "../x", "weights-00000.bin", "config.json"];

fn interesting(rng: &mut Rng) -> Value {
    match rng.below(8) {
        0..=4 => serde_json::from_str(NUMBERS[rng.below(NUMBERS.len() as u64) as usize]).unwrap(),
        5 => Value::String(STRINGS[rng.below(STRINGS.len() as u64) as usize].into()),
        6 => [Value::Null, Value::Bool(true), Value::Array(vec![]), Value::Object(Default::default())][rng.below(4) as usize].clone(),
        _ => Value::String("ä".repeat(rng.below(2000) as usize)),
    }
}

/// JSON pointers of every node under `v`.
fn pointers(v: &Value, at: String, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => m.iter().for_each(|(k, c)| pointers(c, format!("{at}/{}", k.replace('~', "~0").replace('/', "~1")), out)),
        Value::Array(a) => a.iter().enumerate().for_each(|(i, c)| pointers(c, format!("{at}/{i}"), out)),
        _ => {}
    }
    out.push(at);
}

/// One structural change at a random node: a number nudged or replaced by an edge value, a
/// node replaced, deleted or duplicated, an array shortened or grown.
fn mutate_value(rng: &mut Rng, v: &mut Value) {
    let mut all = Vec::new();
    pointers(v, String::new(), &mut all);
    let at = all[rng.below(all.len() as u64) as usize].clone();
    let (parent, key) = match at.rsplit_once('/') {
        Some((p, k)) => (p.to_string(), Some(k.replace("~1", "/").replace("~0", "~"))),
        None => (String::new(), None),
    };
    let op = rng.below(6);
    let node = v.pointer_mut(&at).unwrap();
    match (op, node.as_f64(), node.as_array_mut()) {
        (0, Some(x), _) => {
            let y = [x + 1.0, x - 1.0, x * 2.0, x * 1000.0, -x, (x / 2.0).floor()][rng.below(6) as usize];
            *node = match y.fract() == 0.0 && y.abs() < 9e15 {
                true => Value::from(y as i64),
                false => serde_json::json!(y),
            };
        }
        (1, _, Some(a)) if !a.is_empty() => match rng.below(3) {
            0 => drop(a.remove(rng.below(a.len() as u64) as usize)),
            1 => a.push(a[rng.below(a.len() as u64) as usize].clone()),
            _ => a.reverse(),
        },
        (2 | 3, ..) => {
            let copy = node.clone();
            if let (Some(key), Some(Value::Object(m))) = (key, v.pointer_mut(&parent)) {
                match op {
                    2 => drop(m.remove(&key)),
                    _ => drop(m.insert(format!("{key}_"), copy)),
                }
            }
        }
        _ => *node = interesting(rng),
    }
}

/// Byte-level damage to a file's text: a byte flipped, a digit changed, a cut, a raw number
/// JSON values cannot hold (1e999, -5 where an unsigned goes).
fn mutate_bytes(rng: &mut Rng, b: &mut Vec<u8>) {
    if b.is_empty() {
        return;
    }
    let at = rng.below(b.len() as u64) as usize;
    match rng.below(5) {
        0 => b[at] ^= 1 << rng.below(8),
        1 => b.truncate(at),
        2 => {
            if let Some(d) = b[at..].iter().position(u8::is_ascii_digit) {
                b[at + d] = b'0' + rng.below(10) as u8;
            }
        }
        3 => b.splice(at..at, ["1e999", "-5", "99999999999999999999999", "\"", "{", "]"][rng.below(6) as usize].bytes()).for_each(drop),
        _ => b.insert(at, rng.below(256) as u8),
    }
}

/// 1–3 structural changes (JSON that still parses), then byte damage one time in five.
fn mutate_json(rng: &mut Rng, bytes: &[u8]) -> Vec<u8> {
    let mut v: Value = serde_json::from_slice(bytes).unwrap();
    for _ in 0..1 + rng.below(3) {
        mutate_value(rng, &mut v);
    }
    let mut out = serde_json::to_vec(&v).unwrap();
    if rng.below(5) == 0 {
        mutate_bytes(rng, &mut out);
    }
    out
}

/// (header length, header JSON, data) of a safetensors file.
fn split_safetensors(b: &[u8]) -> (u64, &[u8], &[u8]) {
    let n = u64::from_le_bytes(b[..8].try_into().unwrap());
    (n, &b[8..8 + n as usize], &b[8 + n as usize..])
}

fn join_safetensors(n: u64, header: &[u8], data: &[u8]) -> Vec<u8> {
    [&n.to_le_bytes()[..], header, data].concat()
}

/// The CRC-32 PNG chunks end with.
fn crc32(bytes: &[u8]) -> u32 {
    !bytes.iter().fold(!0u32, |c, &b| (0..8).fold(c ^ b as u32, |c, _| if c & 1 == 1 { 0xEDB8_8320 ^ (c >> 1) } else { c >> 1 }))
}

/// A PNG whose header says `width × height`, with a valid CRC, so decoders believe it.
fn png_with_size(png: &[u8], width: u32, height: u32) -> Vec<u8> {
    let mut b = png.to_vec();
    b[16..20].copy_from_slice(&width.to_be_bytes());
    b[20..24].copy_from_slice(&height.to_be_bytes());
    let crc = crc32(&b[12..29]);
    b[29..33].copy_from_slice(&crc.to_be_bytes());
    b
}

/// Where a JPEG's frame header (SOF0/SOF2) keeps its height and width.
fn jpeg_size_at(jpeg: &[u8]) -> usize {
    jpeg.windows(2).position(|w| w[0] == 0xFF && matches!(w[1], 0xC0 | 0xC2)).unwrap() + 5
}

/// The middle of a PNG's last IDAT chunk's data: a cut before it leaves rows undecoded.
fn png_data_middle(png: &[u8]) -> usize {
    let (mut at, mut middle) = (8, 0);
    while at + 8 <= png.len() {
        let len = u32::from_be_bytes(png[at..at + 4].try_into().unwrap()) as usize;
        if &png[at + 4..at + 8] == b"IDAT" {
            middle = at + 8 + len / 2;
        }
        at += 12 + len;
    }
    middle
}

// ---- the targets ----

/// The things the fuzzer changes, one target per case in turn.
const TARGETS: [&str; 11] = [
    "safetensors header",
    "config.json",
    "generation_config.json",
    "preprocessor_config.json",
    "video_preprocessor_config.json",
    "tokenizer.json",
    "manifest.json",
    "shards",
    "png",
    "jpeg",
    "options",
];

struct Seeds {
    tiny: Folder,
    q4: Folder,
    inputs: Inputs,
}

/// One case: the mutated inputs (kept for a report) and what must hold of the outcome.
struct Case {
    folder: Folder,
    image: Option<Vec<u8>>,
    options: ChatOptions,
    fps: f64,
    /// The image part's own pixel budget.
    image_budget: Option<usize>,
    /// The change may not load (shard bytes, a header length, a truncated image).
    must_fail: Option<&'static str>,
}

fn make_case(t: usize, rng: &mut Rng, s: &Seeds) -> Case {
    let mut c = Case { folder: s.tiny.clone(), image: None, options: ChatOptions::default(), fps: 2.0, image_budget: None, must_fail: None };
    let json = |rng: &mut Rng, c: &mut Case, name: &str| {
        let bytes = mutate_json(rng, c.folder.get(name).unwrap());
        c.folder.set(name, bytes);
    };
    match TARGETS[t] {
        "safetensors header" => {
            let file = s.tiny.get("model.safetensors").unwrap();
            let (n, header, data) = split_safetensors(file);
            let bytes = match rng.below(4) {
                0 => {
                    // Only the length changes: nothing may load.
                    c.must_fail = Some("a changed header length loaded");
                    let m = [n - 1 - rng.below(8), n + 1 + rng.below(8), 0, rng.next_u64(), u64::MAX, n / 2][rng.below(6) as usize];
                    join_safetensors(m, header, data)
                }
                1 => {
                    let mut b = file.to_vec();
                    b.truncate(rng.below(b.len() as u64) as usize);
                    b
                }
                _ => {
                    let header = mutate_json(rng, header);
                    join_safetensors(header.len() as u64, &header, data)
                }
            };
            c.folder.set("model.safetensors", bytes);
        }
        "shards" | "manifest.json" => {
            c.folder = s.q4.clone();
            if TARGETS[t] == "manifest.json" {
                json(rng, &mut c, "manifest.json");
            } else {
                let shards: Vec<String> = c.folder.0.keys().filter(|k| k.starts_with("weights-")).cloned().collect();
                let pick = shards[rng.below(shards.len() as u64) as usize].clone();
                let mut bytes = c.folder.get(&pick).unwrap().to_vec();
                match rng.below(3) {
                    0 => {
                        let other = shards[rng.below(shards.len() as u64) as usize].clone();
                        bytes = c.folder.get(&other).unwrap().to_vec();
                        c.folder.set(&other, c.folder.get(&pick).unwrap().to_vec());
                    }
                    1 => bytes.truncate(rng.below(bytes.len() as u64) as usize),
                    _ => {
                        let at = rng.below(bytes.len() as u64) as usize;
                        bytes[at] ^= 1 << rng.below(8);
                    }
                }
                if bytes != c.folder.get(&pick).unwrap() {
                    c.must_fail = Some("changed shard bytes loaded");
                }
                c.folder.set(&pick, bytes);
            }
        }
        "png" | "jpeg" => {
            let seed = if TARGETS[t] == "png" { &s.inputs.png } else { &s.inputs.jpeg };
            let mut b = seed.clone();
            match rng.below(4) {
                0 => {
                    let big = [0, 1, 7, 1 << 14, (1 << 14) + 1, 65535, 100_000, u32::MAX][rng.below(8) as usize];
                    let (w, h) = if rng.below(2) == 0 { (big, 48) } else { (64, big) };
                    if TARGETS[t] == "png" {
                        b = png_with_size(&b, w, h);
                    } else {
                        let at = jpeg_size_at(&b);
                        b[at..at + 2].copy_from_slice(&(h.min(65535) as u16).to_be_bytes());
                        b[at + 2..at + 4].copy_from_slice(&(w.min(65535) as u16).to_be_bytes());
                    }
                }
                1 => {
                    let cut = rng.below(b.len() as u64) as usize;
                    // A JPEG ends with its end marker; a PNG's rows end near its last IDAT's end.
                    if TARGETS[t] == "jpeg" || cut < png_data_middle(seed) {
                        c.must_fail = Some("a truncated image decoded");
                    }
                    b.truncate(cut);
                }
                _ => (0..1 + rng.below(4)).for_each(|_| mutate_bytes(rng, &mut b)),
            }
            c.image = Some(b);
        }
        "options" => {
            let f32s = [0.0, -0.0, -1.0, 1e-45, 1e-7, 0.5, 1.0, 1.5, 1e6, 2e6, f32::MAX, f32::INFINITY, f32::NEG_INFINITY, f32::NAN];
            let f = |rng: &mut Rng| (rng.below(3) > 0).then(|| f32s[rng.below(f32s.len() as u64) as usize]);
            let pixels = [0, 1, 1023, 1024, 65536, 786_432, 1 << 28, (1 << 28) + 1, usize::MAX];
            let budget = |rng: &mut Rng| (rng.below(3) == 0).then(|| pixels[rng.below(pixels.len() as u64) as usize]);
            c.options = ChatOptions {
                max_new_tokens: (rng.below(3) == 0).then(|| [0, 1, 1 << 24, (1 << 24) + 1, usize::MAX][rng.below(5) as usize]),
                greedy: rng.below(4) == 0,
                temperature: f(rng),
                top_k: (rng.below(2) == 0).then(|| [0, 1, 50, u32::MAX][rng.below(4) as usize]),
                top_p: f(rng),
                repetition_penalty: f(rng),
                presence_penalty: f(rng),
                seed: Some(rng.next_u64()),
                max_pixels: budget(rng),
                video_max_pixels: budget(rng),
            };
            c.image_budget = budget(rng);
            c.fps = [0.0, -0.0, -2.0, 1e-320, 1e-3, 2.0, 24.0, 1e4, 1e5, f64::INFINITY, f64::NAN][rng.below(11) as usize];
        }
        name => json(rng, &mut c, name),
    }
    c
}

/// Runs a case through every entry point its change reaches.
fn run_case(t: usize, c: &Case, s: &Seeds) -> Result<(), String> {
    let name = TARGETS[t];
    if let Some(bytes) = &c.image {
        let image = decode_image_within(bytes, 8 << 20).map_err(|e| e.to_string())?;
        let p = processor(&s.tiny)?;
        let v = p.image_processor.preprocess(&image).map_err(|e| e.to_string())?;
        assert!(v.pixel_values.iter().all(|x| x.is_finite()), "property: non-finite pixel values");
        return Ok(());
    }
    let model = !matches!(name, "tokenizer.json" | "video_preprocessor_config.json" | "options");
    let chat_side = !matches!(name, "safetensors header" | "config.json" | "manifest.json" | "shards");
    let loaded = if model { Some(load_folder(&c.folder)) } else { None };
    if chat_side {
        let gen = generation(&c.folder)?;
        chat_with(&processor(&c.folder)?, &gen, &s.inputs, c.fps, &c.options, c.image_budget)?;
    }
    loaded.map_or(Ok(()), |r| r.map(drop))
}

fn seeds() -> Seeds {
    let tiny = tiny();
    let q4 = tiny_q4(&tiny);
    let png = std::fs::read(repo("tests/fixtures/image_64x48.png")).unwrap();
    let image = decode_image(&png).unwrap();
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 90)
        .encode(&image.data, image.width as u32, image.height as u32, image::ExtendedColorType::Rgb8)
        .unwrap();
    let frames = (0..4).map(|i| decode_image(&std::fs::read(repo(&format!("tests/fixtures/video_4x64x48/frame-{i}.png"))).unwrap()).unwrap()).collect();
    Seeds { tiny, q4, inputs: Inputs { png, jpeg, image, frames } }
}

fn case_seed(base: u64, t: usize, i: u64) -> u64 {
    let mut r = Rng::new(base ^ (t as u64) << 40 ^ i);
    r.next_u64()
}

/// Writes a failing case's inputs where a person (or a new regression test) can take them.
fn dump(t: usize, i: u64, c: &Case) -> std::path::PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("fuzz-failures").join(format!("{t}-{i}"));
    let _ = std::fs::create_dir_all(&dir);
    for (name, bytes) in &c.folder.0 {
        if name != "model.safetensors" || TARGETS[t] == "safetensors header" {
            let _ = std::fs::write(dir.join(name), bytes.as_slice());
        }
    }
    if let Some(b) = &c.image {
        let _ = std::fs::write(dir.join("image"), b);
    }
    let _ = std::fs::write(dir.join("options.txt"), format!("{:?}\nfps {}, image budget {:?}\n", c.options, c.fps, c.image_budget));
    dir
}

#[test]
fn fuzz_every_file_and_option() {
    let env = |k: &str| std::env::var(k).ok();
    let seconds: f64 = env("QWEN3VL_FUZZ_SECONDS").map_or(60.0, |s| s.parse().unwrap());
    let base: u64 = env("QWEN3VL_FUZZ_SEED").map_or(12, |s| s.parse().unwrap());
    let verbose = env("QWEN3VL_FUZZ_ERRORS").is_some();
    let only: Option<(usize, u64)> = env("QWEN3VL_FUZZ_CASE").map(|s| {
        let (t, i) = s.split_once('/').unwrap();
        (t.parse().unwrap(), i.parse().unwrap())
    });
    let s = seeds();
    let start = Instant::now();
    let mut counts = [(0u64, 0u64); TARGETS.len()];
    let mut failures: Vec<(usize, u64, String, std::path::PathBuf)> = Vec::new();
    let mut i = 0u64;
    'fuzz: loop {
        for t in 0..TARGETS.len() {
            if only.is_some_and(|(ot, oi)| (ot, oi) != (t, i)) {
                continue;
            }
            let mut rng = Rng::new(case_seed(base, t, i));
            let case = make_case(t, &mut rng, &s);
            CASE.store((t as u64) << 32 | i, Ordering::Relaxed);
            let outcome = recorded(|| {
                let r = run_case(t, &case, &s);
                if let (Ok(()), Some(what)) = (&r, case.must_fail) {
                    panic!("property: {what}");
                }
                r
            });
            match outcome {
                Ok(Ok(())) => counts[t].0 += 1,
                Ok(Err(e)) => {
                    counts[t].1 += 1;
                    if verbose {
                        println!("{t}/{i} {}: {e}", TARGETS[t]);
                    }
                }
                Err(what) => failures.push((t, i, what, dump(t, i, &case))),
            }
        }
        i += 1;
        if only.is_some_and(|(_, oi)| i > oi) || (only.is_none() && start.elapsed() > Duration::from_secs_f64(seconds)) {
            break 'fuzz;
        }
    }
    CASE.store(u64::MAX, Ordering::Relaxed);
    let elapsed = start.elapsed().as_secs_f64();
    println!("fuzz: {i} rounds of {} targets in {elapsed:.1} s (seed {base})", TARGETS.len());
    println!("| target | loaded | errors |\n|---|---:|---:|");
    for (name, (ok, err)) in TARGETS.iter().zip(counts) {
        println!("| {name} | {ok} | {err} |");
    }
    let mut sites: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (t, i, what, dir) in &failures {
        let site = what.split(": ").next().unwrap_or("?").to_string();
        sites.entry(site).or_default().push(format!("case {t}/{i} ({}): {what} — inputs in {}", TARGETS[*t], dir.display()));
    }
    for (site, cases) in &sites {
        println!("{site}: {} cases, first {}", cases.len(), cases[0]);
    }
    assert!(failures.is_empty(), "{} failing cases at {} sites (above)", failures.len(), sites.len());
    // Every target both loaded and failed somewhere: the mutations reach past the parsers.
    if only.is_none() && seconds >= 10.0 {
        for (name, (ok, err)) in TARGETS.iter().zip(counts) {
            assert!(ok > 0 && err > 0, "{name}: {ok} loaded, {err} errors");
        }
    }
}

// ---- the inputs that found the bugs ----

fn err_of<T>(r: Result<T, impl std::fmt::Display>) -> String {
    match r {
        Ok(_) => panic!("loaded"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn a_png_bomb_is_refused_from_its_header() {
    // 100000×100000 declared in a 200-byte file: 30 GB of RGB (35 TB asked at one time).
    let png = png_with_size(&std::fs::read(repo("tests/fixtures/image_64x48.png")).unwrap(), 100_000, 100_000);
    let e = err_of(decode_image(&png));
    assert!(e.contains("limits"), "{e}");
    // Within the side limit, still past the budget: refused before decoding.
    let png = png_with_size(&std::fs::read(repo("tests/fixtures/image_64x48.png")).unwrap(), 16384, 16384);
    assert!(err_of(decode_image(&png)).contains("bytes to decode"));
}

#[test]
fn a_jpeg_cut_in_half_is_an_error() {
    let s = seeds();
    let jpeg = &s.inputs.jpeg;
    assert_eq!(decode_image(jpeg).unwrap().data.len(), 64 * 48 * 3);
    for cut in [jpeg.len() / 2, jpeg.len() - 2, jpeg.len() - 1] {
        assert!(err_of(decode_image(&jpeg[..cut])).contains("truncated"), "cut at {cut}");
    }
    // Bytes after the end marker are not a truncation.
    let mut padded = jpeg.clone();
    padded.extend_from_slice(b"\0\0trailing");
    decode_image(&padded).unwrap();
    // A PNG cut inside its image data is an error too (the png crate's own check).
    let png = &s.inputs.png;
    err_of(decode_image(&png[..png_data_middle(png)]));
}

/// `preprocessor_config.json` (image or video) with `key` set to `value`.
fn processor_with(file: &str, key: &str, value: Value) -> Result<Qwen3VLProcessor, RuntimeError> {
    let mut f = tiny();
    let mut v: Value = serde_json::from_slice(f.get(file).unwrap()).unwrap();
    v[key] = value;
    f.set(file, serde_json::to_vec(&v).unwrap());
    request::processor(f.read())
}

#[test]
fn processor_configs_with_huge_or_broken_numbers_are_errors() {
    use serde_json::json;
    for file in ["preprocessor_config.json", "video_preprocessor_config.json"] {
        for (key, value) in [
            // Huge sizes asked up to 1.9 PB in PatchSpec::patchify.
            ("min_pixels", json!(1u64 << 50)),
            ("max_pixels", json!(1u64 << 50)),
            ("patch_size", json!(1u64 << 32)),
            ("temporal_patch_size", json!(100_000)),
            ("merge_size", json!(1u64 << 40)),
            ("patch_size", json!(-16)),
            ("merge_size", json!("2")),
            // Every pixel NaN, or ±inf.
            ("rescale_factor", json!(0)),
            ("rescale_factor", json!(1e-320)),
            ("image_std", json!([1e-40, 0.5, 0.5])),
            ("image_mean", json!([1e39, 0.5, 0.5])),
            ("image_std", json!([-0.5, 0.5, 0.5])),
        ] {
            let e = err_of(processor_with(file, key, value.clone()));
            assert!(e.contains(key) || e.contains("pixels"), "{file} {key} = {value}: {e}");
        }
    }
    for fps in [json!(0), json!(-2), json!(1e-320), json!(1e300)] {
        assert!(err_of(processor_with("video_preprocessor_config.json", "fps", fps)).contains("fps"));
    }
}

#[test]
fn the_host_budget_bounds_pixel_values() {
    // A valid config whose smallest image is one 8192² block, repeated 16 times: 12 GiB of
    // pixel_values, refused before allocating.
    let p = processor_with("preprocessor_config.json", "patch_size", 1024.into()).unwrap();
    let mut ip = p.image_processor.clone();
    (ip.spec.merge_size, ip.spec.temporal_patch_size) = (8, 16);
    let e = err_of(ip.preprocess(&RgbImage::new(8, 8, vec![0; 8 * 8 * 3]).unwrap()));
    assert!(e.contains("pixel_values") && e.contains("1073741824"), "{e}");
}

#[test]
fn a_tiny_image_with_min_pixels_zero_is_an_error() {
    // 8×8 rounds to 0×0 blocks of 32: resize_bicubic panicked on the empty output.
    let p = ImageProcessor { min_pixels: 0, ..ImageProcessor::default() };
    let image = RgbImage::new(8, 8, vec![0; 8 * 8 * 3]).unwrap();
    assert!(err_of(p.preprocess(&image)).contains("resizes to 0x0"));
    let v = VideoProcessor { min_pixels: 0, ..VideoProcessor::default() };
    v.preprocess(&[image.clone(), image], &[0, 1], None).unwrap(); // frames are first scaled up to one block
}

#[test]
fn a_malformed_tokenizer_decoder_is_an_error() {
    let json = String::from_utf8(tiny().get("tokenizer.json").unwrap().to_vec()).unwrap();
    let at = json.find("\"decoder\": {").unwrap() + "\"decoder\": {".len();
    // A decoder section the tokenizers crate cannot buffer (a number out of range, nesting too
    // deep) panics in its decoders/mod.rs (`expect("Helper")`).
    for bad in ["\"x\": 1e999, ", "\"x\": [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]"] {
        let broken = format!("{}{bad}{}", &json[..at], &json[at..]);
        let crate_itself = recorded(|| tokenizers::Tokenizer::from_bytes(broken.as_bytes()).is_ok());
        assert!(crate_itself.as_ref().is_err_and(|w| w.contains("decoders")), "the input no longer makes tokenizers panic: {crate_itself:?}");
        let e = err_of(Qwen3VLProcessor::from_tokenizer_json(broken.as_bytes()));
        assert!(e.contains("tokenizer.json"), "{e}");
    }
}

#[test]
fn options_name_what_is_out_of_range() {
    let s = seeds();
    let p = request::processor(s.tiny.read()).unwrap();
    let gen = GenerationConfig::default();
    let ask = |o: ChatOptions, fps: f64| chat(&p, &gen, &s.inputs, fps, &o);
    // fps 0, negative, NaN, inf or 1e-320 put inf/NaN/negative seconds into the prompt.
    for fps in [0.0, -2.0, f64::NAN, f64::INFINITY, 1e-320] {
        assert!(err_of(ask(ChatOptions::default(), fps)).contains("fps"), "{fps}");
    }
    // u64::MAX new tokens wrapped the cache capacity to 12 positions.
    let e = err_of(ask(ChatOptions { max_new_tokens: Some(usize::MAX), ..Default::default() }, 2.0));
    assert!(e.contains("maxNewTokens"), "{e}");
    for (o, name) in [
        (ChatOptions { temperature: Some(f32::NAN), greedy: true, ..Default::default() }, "temperature"),
        (ChatOptions { temperature: Some(1e-45), ..Default::default() }, "temperature"),
        (ChatOptions { top_p: Some(0.0), ..Default::default() }, "topP"),
        (ChatOptions { repetition_penalty: Some(-1.0), ..Default::default() }, "repetitionPenalty"),
        (ChatOptions { presence_penalty: Some(f32::INFINITY), ..Default::default() }, "presencePenalty"),
    ] {
        assert!(err_of(ask(o, 2.0)).contains(name), "{name}");
    }
    // generation_config.json's own values, when sampling uses them, named by their key.
    let sampled = GenerationConfig { do_sample: true, top_p: 7.0, ..GenerationConfig::default() };
    let e = err_of(chat(&p, &sampled, &s.inputs, 2.0, &ChatOptions::default()));
    assert!(e.contains("generation_config.json") && e.contains("top_p"), "{e}");
    ask(ChatOptions { max_new_tokens: Some(1 << 24), temperature: Some(0.7), ..Default::default() }, 2.0).unwrap();
}
