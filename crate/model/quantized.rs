//! The pre-quantized int4 folder that `qwen3-vl quantize` writes and the browser streams:
//!
//! ```text
//! manifest.json                         format, version, every file and shard with bytes and sha256
//! config.json, tokenizer.json, …        copied verbatim (COPIED, when present)
//! weights-00000.bin, weights-00001.bin  shards of at most `shard_bytes`
//! ```
//!
//! The shards, concatenated in order, are one safetensors file (read through a
//! [`ConcatSource`]); shards are plain byte ranges, so downloading, hashing and resuming treat
//! them alike. Every weight matrix ([`is_matrix`]) is stored as two U32 tensors in the
//! `kernels::quant` int4 layout, `{name}.q4_data` `[n, row_words]` and `{name}.q4_scales`
//! `[n, scale_words]`, with its logical shape in the header's `__metadata__` under its own name
//! (so shapes are still checked against config.json); the other tensors (norms, biases,
//! pos_embed) keep their source dtype and bytes. Loading with `Format::Q4` uploads the stored
//! words as they are: the same bits as quantising the original folder on load.

use std::collections::{BTreeMap, HashSet};
use std::ops::Range;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::kernels::quant::Format;

use super::safetensors::{read_bytes, read_text};
use super::{
    expected_tensors, io_err, is_matrix, missing_file, validate, Checkpoint, ConcatSource, Dtype, LoadError, ModelFolder,
    SafetensorsFile, Source, Weights,
};

pub const MANIFEST: &str = "manifest.json";
pub const FORMAT: &str = "qwen3-vl-webgpu";
pub const VERSION: u32 = 1;
pub const DEFAULT_SHARD_MIB: f64 = 32.0;

/// A shard size given in MiB as bytes: whole KiB from 1 KiB (tests cut a tiny model into
/// several shards) to 2 GiB.
pub fn shard_bytes(mib: f64) -> Result<usize, String> {
    let kib = (mib * 1024.0).round();
    if !(1.0..=2048.0 * 1024.0).contains(&kib) {
        return Err(format!("shard size: expected 1/1024 to 2048 MiB, not {mib}"));
    }
    Ok(kib as usize * 1024)
}
/// The folder's files copied verbatim when present (config.json always is).
pub const COPIED: [&str; 7] = [
    "config.json",
    "generation_config.json",
    "preprocessor_config.json",
    "video_preprocessor_config.json",
    "tokenizer.json",
    "chat_template.json",
    "chat_template.jinja",
];
const DATA: &str = "q4_data";
const SCALES: &str = "q4_scales";
/// The `__metadata__` key that marks the shards' safetensors as ours, with the weight format.
const WEIGHTS_KEY: &str = "qwen3-vl-webgpu.weights";
/// f32 values read per step when quantising a matrix (4 MiB), bounding memory for the embedding.
const BLOCK: usize = 1 << 20;
/// Bytes hashed per read when verifying (the whole shard's check, or bytes a load jumps over).
const HASH_CHUNK: usize = 1 << 20;

/// One file of the folder.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub name: String,
    pub bytes: u64,
    /// Lower-case hex.
    pub sha256: String,
}

/// `manifest.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub version: u32,
    /// `"q4"`.
    pub weights: String,
    /// The copied files, in [`COPIED`] order.
    pub files: Vec<Entry>,
    /// The shards, in concatenation order.
    pub shards: Vec<Entry>,
    /// Bytes of every file and shard together (what a download fetches besides the manifest).
    pub total_bytes: u64,
}

impl Manifest {
    /// Parses and checks a manifest: our format and version; copied files among [`COPIED`],
    /// shards named [`shard_name`] in order (so a list reordered or repeated is refused), each
    /// name once; sha256 as 64 hex digits; sizes whose sum is `total_bytes`.
    pub fn from_json(json: &str) -> Result<Self, LoadError> {
        let m: Manifest = serde_json::from_str(json).map_err(|source| LoadError::Json { file: MANIFEST.into(), source })?;
        if (m.format.as_str(), m.version, m.weights.as_str()) != (FORMAT, VERSION, "q4") {
            let reason = format!("is format {:?} version {} weights {:?}; this reader knows {FORMAT:?} version {VERSION} weights \"q4\"", m.format, m.version, m.weights);
            return Err(manifest_err(MANIFEST, reason));
        }
        if m.shards.is_empty() {
            return Err(manifest_err(MANIFEST, "lists no shards".into()));
        }
        let mut names = HashSet::new();
        for e in &m.files {
            // Files live beside the manifest: only the known ones, so no path can escape the folder.
            if !COPIED.contains(&e.name.as_str()) {
                return Err(manifest_err(&e.name, format!("is not one of the files a folder copies ({COPIED:?})")));
            }
        }
        for (i, e) in m.shards.iter().enumerate() {
            if e.name != shard_name(i) {
                return Err(manifest_err(&e.name, format!("is listed as shard {i}, which is named {}", shard_name(i))));
            }
        }
        for e in m.files.iter().chain(&m.shards) {
            if !names.insert(e.name.as_str()) {
                return Err(manifest_err(&e.name, "is listed twice".into()));
            }
            if e.sha256.len() != 64 || !e.sha256.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
                return Err(manifest_err(&e.name, format!("has sha256 {:?}, not 64 lower-case hex digits", e.sha256)));
            }
        }
        let sum = m.files.iter().chain(&m.shards).try_fold(0u64, |acc, e| acc.checked_add(e.bytes));
        if sum != Some(m.total_bytes) {
            let sum = sum.map_or("more than 2^64".into(), |s| s.to_string());
            return Err(manifest_err(MANIFEST, format!("says total_bytes {}, its entries add up to {sum}", m.total_bytes)));
        }
        Ok(m)
    }

    /// Checks a copied file's bytes against its entry, when the manifest lists it.
    pub fn check_file(&self, name: &str, bytes: &[u8]) -> Result<(), LoadError> {
        match self.files.iter().find(|e| e.name == name) {
            Some(e) => e.check(bytes.len() as u64, &hex(&Sha256::digest(bytes))),
            None => Ok(()),
        }
    }
}

impl Entry {
    /// What differs from the entry, if anything.
    fn differs(&self, bytes: u64, sha256: &str) -> Option<String> {
        if bytes != self.bytes {
            return Some(format!("has {bytes} bytes, the manifest says {}", self.bytes));
        }
        (sha256 != self.sha256).then(|| format!("has sha256 {sha256}, the manifest says {}", self.sha256))
    }

    fn check(&self, bytes: u64, sha256: &str) -> Result<(), LoadError> {
        self.differs(bytes, sha256).map_or(Ok(()), |reason| Err(manifest_err(&self.name, reason)))
    }

    /// The size alone, before anything is hashed.
    fn check_size(&self, bytes: u64) -> Result<(), LoadError> {
        self.check(bytes, &self.sha256)
    }
}

/// The name of shard `i`.
pub fn shard_name(i: usize) -> String {
    format!("weights-{i:05}.bin")
}

fn manifest_err(file: &str, reason: String) -> LoadError {
    LoadError::Manifest { file: file.into(), reason }
}

fn hex(digest: &[u8]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// The checkpoint of a pre-quantized folder: its shards, each of the size the manifest gives,
/// read as one safetensors file marked as ours. Each shard's sha256 is checked as the load
/// reads it ([`Verified`]); [`Checkpoint::finish`] ends the check.
pub(crate) fn checkpoint(
    manifest: &Manifest,
    mut open: impl FnMut(&str) -> Result<Option<Box<dyn Source>>, LoadError>,
) -> Result<Checkpoint, LoadError> {
    let mut parts = Vec::with_capacity(manifest.shards.len());
    for e in &manifest.shards {
        let src = open(&e.name)?.ok_or_else(|| missing_file(&e.name))?;
        e.check_size(src.len())?;
        let hashing = Mutex::new(Hashing { sha: Sha256::new(), front: 0, verdict: None });
        parts.push((e.name.clone(), Box::new(Verified { entry: e.clone(), inner: src, hashing }) as Box<dyn Source>));
    }
    let name = match manifest.shards.as_slice() {
        [one] => one.name.clone(),
        [first, .., last] => format!("{}…{}", first.name, last.name),
        [] => unreachable!("Manifest::from_json refuses a manifest without shards"),
    };
    let file = SafetensorsFile::parse(&name, Box::new(ConcatSource::new(parts)))?;
    if file.metadata.get(WEIGHTS_KEY).map(String::as_str) != Some("q4") {
        return Err(manifest_err(&name, format!("the shards' safetensors header lacks the `{WEIGHTS_KEY}: q4` mark")));
    }
    Checkpoint::from_files(vec![file])
}

/// A shard checked against its manifest entry while the load reads it, with no pass of its
/// own: SHA-256 runs front to back, so the hash follows the reads. Bytes a read jumps over are
/// hashed first (read once more then), bytes read again behind the front are not hashed again,
/// and [`Source::finish`] hashes what no read reached. The load reads in the order the writer
/// stored, so the jumps are short. A mismatch fails the read that completes the hash (or
/// `finish`) and every read after it.
struct Verified {
    entry: Entry,
    inner: Box<dyn Source>,
    hashing: Mutex<Hashing>,
}

struct Hashing {
    sha: Sha256,
    /// Bytes `0..front` are hashed.
    front: u64,
    /// Set once the front reaches the end: the mismatch, if any.
    verdict: Option<Result<(), String>>,
}

impl Verified {
    /// Hashes up to `to` (reading what no read has), then judges the shard at its end.
    fn advance(&self, h: &mut Hashing, to: u64) -> std::io::Result<()> {
        if h.front < to {
            hash_range(self.inner.as_ref(), h.front..to, &mut h.sha)?;
            h.front = to;
        }
        self.judge(h)
    }

    fn judge(&self, h: &mut Hashing) -> std::io::Result<()> {
        if h.verdict.is_none() && h.front == self.entry.bytes {
            let got = hex(&std::mem::take(&mut h.sha).finalize());
            h.verdict = Some(self.entry.differs(h.front, &got).map_or(Ok(()), Err));
        }
        match &h.verdict {
            Some(Err(e)) => Err(std::io::Error::other(e.clone())),
            _ => Ok(()),
        }
    }
}

impl Source for Verified {
    fn len(&self) -> u64 {
        self.entry.bytes
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        let mut guard = self.hashing.lock().unwrap_or_else(|e| e.into_inner());
        let h = &mut *guard;
        let end = offset.checked_add(buf.len() as u64).filter(|&e| e <= self.entry.bytes).ok_or(std::io::ErrorKind::UnexpectedEof)?;
        self.advance(h, offset)?;
        self.inner.read_at(offset, buf)?;
        if offset <= h.front && h.front < end {
            h.sha.update(&buf[(h.front - offset) as usize..]);
            h.front = end;
        }
        self.judge(h)
    }

    fn finish(&self) -> std::io::Result<()> {
        let mut h = self.hashing.lock().unwrap_or_else(|e| e.into_inner());
        self.advance(&mut h, self.entry.bytes)?;
        self.inner.finish()
    }
}

/// Feeds bytes `range` of `src` to `sha`, a chunk at a time.
fn hash_range(src: &dyn Source, range: Range<u64>, sha: &mut Sha256) -> std::io::Result<()> {
    let mut buf = vec![0; HASH_CHUNK.min((range.end - range.start) as usize)];
    for at in range.clone().step_by(HASH_CHUNK) {
        let n = (range.end - at).min(HASH_CHUNK as u64) as usize;
        src.read_at(at, &mut buf[..n])?;
        sha.update(&buf[..n]);
    }
    Ok(())
}

/// A matrix stored as int4 words in a pre-quantized checkpoint.
pub(crate) struct StoredQ4<'a> {
    file: &'a SafetensorsFile,
    data: String,
    scales: String,
}

impl StoredQ4<'_> {
    /// The `data` and `scales` words of rows `rows`.
    pub(crate) fn rows(&self, rows: Range<usize>) -> Result<(Vec<u32>, Vec<u32>), LoadError> {
        let words = |b: Vec<u8>| b.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        Ok((words(self.file.rows_bytes(&self.data, rows.clone())?), words(self.file.rows_bytes(&self.scales, rows)?)))
    }

    pub(crate) fn tensor_names(&self) -> [String; 2] {
        [self.data.clone(), self.scales.clone()]
    }
}

/// The int4 form of matrix `name` when the checkpoint stores it so (`None` otherwise), checked
/// against `shape`, the logical shape the config implies.
pub(crate) fn stored_q4<'a>(checkpoint: &'a Checkpoint, name: &str, shape: &[usize]) -> Result<Option<StoredQ4<'a>>, LoadError> {
    let data = format!("{name}.{DATA}");
    let Ok((file, data_info)) = checkpoint.find(&data) else {
        return Ok(None);
    };
    let scales = format!("{name}.{SCALES}");
    let (_, scales_info) = checkpoint.find(&scales)?;
    let stored: Option<Vec<usize>> = file.metadata.get(name).and_then(|v| serde_json::from_str(v).ok());
    let shape_err = |tensor: &str, expected: Vec<usize>, actual: Vec<usize>| LoadError::Shape { file: file.name.clone(), tensor: tensor.into(), expected, actual };
    if stored.as_deref() != Some(shape) {
        return Err(shape_err(name, shape.to_vec(), stored.unwrap_or_default()));
    }
    let (n, k) = (shape[0], shape[1..].iter().product::<usize>());
    for (tensor, info, words) in [(&data, data_info, Format::Q4.row_words(k)), (&scales, scales_info, Format::Q4.scale_words(k))] {
        if info.dtype != Dtype::U32 {
            return Err(LoadError::Dtype { file: file.name.clone(), tensor: tensor.clone(), dtype: format!("{:?}", info.dtype), reason: "where int4 words must be U32" });
        }
        if info.shape != [n, words] {
            return Err(shape_err(tensor, vec![n, words], info.shape.clone()));
        }
    }
    Ok(Some(StoredQ4 { file, data, scales }))
}

/// Whether a checkpoint is a pre-quantized folder's (whose matrices load only as int4).
pub fn is_quantized(checkpoint: &Checkpoint) -> bool {
    checkpoint.files().iter().any(|f| f.metadata.contains_key(WEIGHTS_KEY))
}

#[derive(Debug, thiserror::Error)]
pub enum QuantizeError {
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error("writing {file}: {source}")]
    Write { file: String, source: std::io::Error },
    #[error("shards must hold at least one byte")]
    ShardSize,
    #[error("cannot resume: {0}")]
    Resume(String),
}

/// Collects the safetensors byte stream into shards of `shard_bytes`, hashing and handing each
/// to the sink when full: memory holds one shard. Bytes below `resume` (the shards an earlier,
/// interrupted run committed) are counted but not kept.
struct Shards {
    shard_bytes: usize,
    buf: Vec<u8>,
    done: Vec<Entry>,
    /// Output offset of the next byte pushed.
    pos: u64,
    resume: u64,
}

type Sink<'a> = dyn FnMut(&str, &[u8]) -> std::io::Result<()> + 'a;

impl Shards {
    fn push(&mut self, bytes: &[u8], sink: &mut Sink) -> Result<(), QuantizeError> {
        let skip = self.resume.saturating_sub(self.pos).min(bytes.len() as u64) as usize;
        self.pos += bytes.len() as u64;
        let mut bytes = &bytes[skip..];
        while !bytes.is_empty() {
            let take = (self.shard_bytes - self.buf.len()).min(bytes.len());
            self.buf.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if self.buf.len() == self.shard_bytes {
                self.flush(sink)?;
            }
        }
        Ok(())
    }

    fn flush(&mut self, sink: &mut Sink) -> Result<(), QuantizeError> {
        let name = shard_name(self.done.len());
        sink(&name, &self.buf).map_err(|source| QuantizeError::Write { file: name.clone(), source })?;
        self.done.push(Entry { name, bytes: self.buf.len() as u64, sha256: hex(&Sha256::digest(&self.buf)) });
        self.buf.clear();
        Ok(())
    }
}

/// How one expected tensor is written, and where its bytes start in the output.
enum Item {
    /// A matrix quantised to int4: its name and logical shape.
    Q4 { name: String, shape: Vec<usize>, at: u64 },
    /// Copied as stored.
    Raw { name: String, at: u64 },
}

/// One contiguous byte range of a source file, read by one [`Writer::step`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Read {
    pub file: String,
    pub start: u64,
    pub end: u64,
}

/// One step's work: rows of a matrix (the last block also writes its scales) or a whole tensor.
struct Unit {
    item: usize,
    rows: Range<usize>,
    read: Read,
}

/// Quantises a model folder into the pre-quantized format one bounded step at a time, so a
/// caller can fetch each step's input ([`Writer::reads`]) before running it, and can resume an
/// interrupted run from the shards it committed: tensors whose output lies wholly in those
/// shards are not read again (one that straddles the resume point is read whole).
pub struct Writer {
    folder: ModelFolder,
    items: Vec<Item>,
    units: Vec<Unit>,
    next: usize,
    files: Vec<Entry>,
    shards: Shards,
    /// The scales of the matrix being written, pushed after its last row block.
    scales: Vec<u32>,
    /// Output offset of the first tensor byte (after the length and the header).
    data_start: u64,
}

impl Writer {
    /// Reads the folder's configs and headers through `open` (as [`ModelFolder::load`] takes it),
    /// hands the copied files to `sink` and plans the steps. `resume` lists the files and shards
    /// an interrupted run committed (shards in order, all of `shard_bytes` but a final one); they
    /// are trusted as given, not written again, and listed in the manifest.
    pub fn new(
        mut open: impl FnMut(&str) -> Result<Option<Box<dyn Source>>, LoadError>,
        shard_bytes: usize,
        resume: &[Entry],
        sink: &mut Sink,
    ) -> Result<Writer, QuantizeError> {
        if shard_bytes == 0 {
            return Err(QuantizeError::ShardSize);
        }
        let folder = ModelFolder::load(&mut open)?;
        validate(&folder.config, &folder.checkpoint)?;

        let mut files = Vec::new();
        for name in COPIED {
            if let Some(done) = resume.iter().find(|e| e.name == name) {
                files.push(done.clone());
            } else if let Some(src) = open(name)? {
                let bytes = read_bytes(src.as_ref(), name)?;
                sink(name, &bytes).map_err(|source| QuantizeError::Write { file: name.into(), source })?;
                files.push(Entry { name: name.into(), bytes: bytes.len() as u64, sha256: hex(&Sha256::digest(&bytes)) });
            }
        }

        // The header: every tensor's place in the data, in module order.
        let checkpoint = &folder.checkpoint;
        let mut header = serde_json::Map::new();
        let mut metadata = BTreeMap::from([(WEIGHTS_KEY.to_string(), "q4".to_string())]);
        let mut items = Vec::new();
        let mut at = 0u64;
        let mut entry = |name: String, dtype: Dtype, shape: Vec<usize>| {
            let bytes = (dtype.size() * shape.iter().product::<usize>()) as u64;
            header.insert(name, serde_json::json!({"dtype": dtype.name(), "shape": shape, "data_offsets": [at, at + bytes]}));
            at += bytes;
            at - bytes
        };
        for (name, shape) in expected_tensors(&folder.config) {
            if is_matrix(&name, &shape) {
                let (n, k) = (shape[0], shape[1..].iter().product::<usize>());
                let start = entry(format!("{name}.{DATA}"), Dtype::U32, vec![n, Format::Q4.row_words(k)]);
                entry(format!("{name}.{SCALES}"), Dtype::U32, vec![n, Format::Q4.scale_words(k)]);
                metadata.insert(name.clone(), serde_json::to_string(&shape).expect("a shape is JSON"));
                items.push(Item::Q4 { name, shape, at: start });
            } else {
                let (_, info) = checkpoint.find(&name)?;
                let start = entry(name.clone(), info.dtype, shape);
                items.push(Item::Raw { name, at: start });
            }
        }
        let data_len = at;
        header.insert("__metadata__".into(), serde_json::to_value(&metadata).expect("strings are JSON"));
        let mut json = serde_json::to_vec(&header).expect("a JSON map");
        // Padded with spaces to 8 bytes, as the reference writer does.
        json.resize(json.len().next_multiple_of(8), b' ');
        let data_start = 8 + json.len() as u64;

        let done: Vec<Entry> = resume.iter().filter(|e| !COPIED.contains(&e.name.as_str())).cloned().collect();
        let resumed = resume_point(&done, shard_bytes, data_start + data_len)?;
        let mut shards = Shards { shard_bytes, buf: Vec::with_capacity(shard_bytes.min(64 << 20)), done, pos: 0, resume: resumed };
        shards.push(&(json.len() as u64).to_le_bytes(), sink)?;
        shards.push(&json, sink)?;

        // The steps of every tensor whose output reaches past the resume point.
        let mut units = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let end = items.get(i + 1).map_or(data_len, Item::at);
            if data_start + end <= resumed {
                continue;
            }
            match item {
                Item::Q4 { name, shape, .. } => {
                    let (file, info) = checkpoint.find(name)?;
                    let (n, k) = (shape[0], shape[1..].iter().product::<usize>());
                    let row_bytes = (k * info.dtype.size()) as u64;
                    let step = (BLOCK / k.max(1)).max(1);
                    for r in (0..n).step_by(step) {
                        let rows = r..(r + step).min(n);
                        let start = info.range.start + rows.start as u64 * row_bytes;
                        let read = Read { file: file.name.clone(), start, end: start + rows.len() as u64 * row_bytes };
                        units.push(Unit { item: i, rows, read });
                    }
                }
                Item::Raw { name, .. } => {
                    let (file, info) = checkpoint.find(name)?;
                    let read = Read { file: file.name.clone(), start: info.range.start, end: info.range.end };
                    units.push(Unit { item: i, rows: 0..0, read });
                }
            }
        }
        Ok(Writer { folder, items, units, next: 0, files, shards, scales: Vec::new(), data_start })
    }

    /// The source ranges the remaining steps read, one per step, in order.
    pub fn reads(&self) -> Vec<Read> {
        self.units[self.next..].iter().map(|u| u.read.clone()).collect()
    }

    /// Runs the next step, handing every shard it fills to `sink`; false once none is left.
    pub fn step(&mut self, sink: &mut Sink) -> Result<bool, QuantizeError> {
        let Some(unit) = self.units.get(self.next) else { return Ok(false) };
        let w = Weights::new(&self.folder.checkpoint);
        let as_bytes = |words: &[u32]| words.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
        let item = &self.items[unit.item];
        let first = self.next == 0 || self.units[self.next - 1].item != unit.item;
        if first {
            // The tensors before this one are written, or skipped as resumed.
            let at = self.data_start + item.at();
            debug_assert!(self.shards.pos <= at);
            self.shards.pos = at;
        }
        match item {
            Item::Q4 { name, shape, .. } => {
                let (data, scales) = w.encoded_rows(name, shape, unit.rows.clone(), Format::Q4)?;
                if first {
                    self.scales.clear();
                }
                self.shards.push(&as_bytes(&data), sink)?;
                self.scales.extend(scales);
                if unit.rows.end == shape[0] {
                    let scales = std::mem::take(&mut self.scales);
                    self.shards.push(&as_bytes(&scales), sink)?;
                }
            }
            Item::Raw { name, .. } => {
                let bytes = self.folder.checkpoint.find(name)?.0.tensor_bytes(name)?;
                self.shards.push(&bytes, sink)?;
            }
        }
        self.next += 1;
        Ok(self.next < self.units.len())
    }

    /// After the last step: the final shard and `manifest.json` to `sink`; the manifest.
    pub fn finish(mut self, sink: &mut Sink) -> Result<Manifest, QuantizeError> {
        while self.step(sink)? {}
        if !self.shards.buf.is_empty() {
            self.shards.flush(sink)?;
        }
        let (files, shards) = (self.files, self.shards.done);
        let total_bytes = files.iter().chain(&shards).map(|e| e.bytes).sum();
        let manifest = Manifest { format: FORMAT.into(), version: VERSION, weights: "q4".into(), files, shards, total_bytes };
        let json = serde_json::to_vec_pretty(&manifest).expect("a manifest is JSON");
        sink(MANIFEST, &json).map_err(|source| QuantizeError::Write { file: MANIFEST.into(), source })?;
        Ok(manifest)
    }

}

impl Item {
    /// Offset of the tensor's first byte in the data (after the header).
    fn at(&self) -> u64 {
        match self {
            Item::Q4 { at, .. } | Item::Raw { at, .. } => *at,
        }
    }
}

/// The output bytes the committed shards `done` hold: they must be the first shards, in order,
/// all full but a last one that ends the output.
fn resume_point(done: &[Entry], shard_bytes: usize, total: u64) -> Result<u64, QuantizeError> {
    let mut at = 0u64;
    for (i, e) in done.iter().enumerate() {
        let full = e.bytes == shard_bytes as u64;
        if e.name != shard_name(i) || !(full || (i + 1 == done.len() && at + e.bytes == total)) {
            return Err(QuantizeError::Resume(format!("{} ({} bytes) is not shard {i} of {shard_bytes} bytes", e.name, e.bytes)));
        }
        at += e.bytes;
    }
    Ok(at)
}

/// Quantises the model folder read through `open` (as [`ModelFolder::load`] takes it) into the
/// pre-quantized format: `sink(name, bytes)` receives each copied file, then each shard in
/// order (at most `shard_bytes`), then `manifest.json` last, so a folder with a manifest is
/// complete. Streams one row block at a time: memory holds one shard, one block of f32 rows and
/// one matrix's scales (1/8 of its int4 data). Only the tensors the model uses are written.
pub fn write(
    open: impl FnMut(&str) -> Result<Option<Box<dyn Source>>, LoadError>,
    shard_bytes: usize,
    mut sink: impl FnMut(&str, &[u8]) -> std::io::Result<()>,
) -> Result<Manifest, QuantizeError> {
    Writer::new(open, shard_bytes, &[], &mut sink)?.finish(&mut sink)
}
/// Checks every file and shard `manifest.json` lists against its size and sha256, reading
/// through `open` as [`ModelFolder::load`] does; the first that differs is the error, named.
pub fn verify(mut open: impl FnMut(&str) -> Result<Option<Box<dyn Source>>, LoadError>) -> Result<Manifest, LoadError> {
    let src = open(MANIFEST)?.ok_or_else(|| missing_file(MANIFEST))?;
    let manifest = Manifest::from_json(&read_text(src.as_ref(), MANIFEST)?)?;
    for e in manifest.files.iter().chain(&manifest.shards) {
        let src = open(&e.name)?.ok_or_else(|| missing_file(&e.name))?;
        e.check_size(src.len())?;
        let mut sha = Sha256::new();
        hash_range(src.as_ref(), 0..e.bytes, &mut sha).map_err(io_err(&e.name))?;
        e.check(e.bytes, &hex(&sha.finalize()))?;
    }
    Ok(manifest)
}
