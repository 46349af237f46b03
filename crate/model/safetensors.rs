//! safetensors files, one or sharded, read through a byte [`Source`] (a file natively; later
//! Blobs, OPFS handles or HTTP ranges in the browser), validated as the header is parsed.
//!
//! Format: an 8-byte little-endian header length `n`, `n` bytes of JSON
//! `{name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {…}}`, then the data;
//! offsets count from the start of the data. Only headers are read on opening; tensors are
//! read on request, in chunks, converted to f32 (or a row range of them).
//!
//! Our own parser rather than the `safetensors` crate: that crate validates a whole in-memory
//! buffer, while we read headers and ranges from a source, and want errors that name the file.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::ops::Range;
use std::path::Path;
use std::sync::Mutex;

use serde::Deserialize;

use super::{io_err, LoadError};

pub const SINGLE: &str = "model.safetensors";
pub const INDEX: &str = "model.safetensors.index.json";
/// The limit the reference implementation puts on headers.
const MAX_HEADER: u64 = 100 << 20;
/// The largest JSON file read whole.
const MAX_TEXT: u64 = 64 << 20;
/// Bytes read per step when converting, so a conversion needs little beyond its output.
const CHUNK: usize = 1 << 20;

/// Random-access bytes of one file.
pub trait Source {
    fn len(&self) -> u64;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Fills `buf` from `offset`; fails if that runs past the end.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()>;
    /// Called when a load has read all it needs: a source that checks its bytes as they
    /// stream (a pre-quantized shard against its sha256) checks the rest. Most have nothing to do.
    fn finish(&self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A file on disk, read by seeking (no mmap, so no surprises when the file changes under us).
pub struct FileSource {
    file: Mutex<File>,
    len: u64,
}

impl FileSource {
    pub fn open(path: &Path) -> Result<Self, LoadError> {
        let name = path.display().to_string();
        let file = File::open(path).map_err(io_err(&name))?;
        let len = file.metadata().map_err(io_err(&name))?.len();
        Ok(FileSource { file: Mutex::new(file), len })
    }
}

impl Source for FileSource {
    fn len(&self) -> u64 {
        self.len
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        let mut file = self.file.lock().unwrap_or_else(|e| e.into_inner());
        file.seek(SeekFrom::Start(offset))?;
        file.read_exact(buf)
    }
}

/// Bytes in memory (tests; small files already fetched).
pub struct MemSource(pub Vec<u8>);

impl Source for MemSource {
    fn len(&self) -> u64 {
        self.0.len() as u64
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        let bytes = start.checked_add(buf.len()).and_then(|end| self.0.get(start..end));
        buf.copy_from_slice(bytes.ok_or(std::io::ErrorKind::UnexpectedEof)?);
        Ok(())
    }
}

/// Shards of one file, concatenated in order: the pre-quantized folder's `weights-*.bin`
/// (`model::quantized`). A read failing inside a shard names that shard.
pub struct ConcatSource {
    parts: Vec<(String, Box<dyn Source>)>,
    /// Where each part starts, and the total length last.
    starts: Vec<u64>,
}

impl ConcatSource {
    pub fn new(parts: Vec<(String, Box<dyn Source>)>) -> Self {
        let mut starts = vec![0];
        for (_, p) in &parts {
            starts.push(starts.last().unwrap() + p.len());
        }
        ConcatSource { parts, starts }
    }
}

impl Source for ConcatSource {
    fn len(&self) -> u64 {
        *self.starts.last().unwrap()
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        if offset.checked_add(buf.len() as u64).is_none_or(|end| end > self.len()) {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let (mut at, mut done) = (offset, 0);
        while done < buf.len() {
            // The last part starting at or before `at` (empty parts are skipped by `<=`).
            let i = self.starts.partition_point(|&s| s <= at) - 1;
            let (name, part) = &self.parts[i];
            let step = ((self.starts[i + 1] - at) as usize).min(buf.len() - done);
            part.read_at(at - self.starts[i], &mut buf[done..done + step])
                .map_err(|e| std::io::Error::new(e.kind(), format!("{name}: {e}")))?;
            (at, done) = (at + step as u64, done + step);
        }
        Ok(())
    }
    fn finish(&self) -> std::io::Result<()> {
        for (name, part) in &self.parts {
            part.finish().map_err(|e| std::io::Error::new(e.kind(), format!("{name}: {e}")))?;
        }
        Ok(())
    }
}

/// The whole of a small file (a JSON config, an index, a tokenizer).
pub(crate) fn read_bytes(src: &dyn Source, file: &str) -> Result<Vec<u8>, LoadError> {
    if src.len() > MAX_TEXT {
        let e = format!("{} bytes is too large for a JSON file of a model folder", src.len());
        return Err(LoadError::Io { file: file.into(), source: std::io::Error::other(e) });
    }
    let mut bytes = vec![0; src.len() as usize];
    src.read_at(0, &mut bytes).map_err(io_err(file))?;
    Ok(bytes)
}

/// [`read_bytes`] as UTF-8 text.
pub(crate) fn read_text(src: &dyn Source, file: &str) -> Result<String, LoadError> {
    String::from_utf8(read_bytes(src, file)?)
        .map_err(|e| LoadError::Io { file: file.into(), source: std::io::Error::other(e.to_string()) })
}

/// Element types the safetensors format defines.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dtype {
    Bool,
    U8,
    I8,
    F8E5M2,
    F8E4M3,
    I16,
    U16,
    F16,
    BF16,
    I32,
    U32,
    F32,
    F64,
    I64,
    U64,
}

/// The names the format gives its dtypes.
const DTYPE_NAMES: [(&str, Dtype); 15] = [
    ("BOOL", Dtype::Bool),
    ("U8", Dtype::U8),
    ("I8", Dtype::I8),
    ("F8_E5M2", Dtype::F8E5M2),
    ("F8_E4M3", Dtype::F8E4M3),
    ("I16", Dtype::I16),
    ("U16", Dtype::U16),
    ("F16", Dtype::F16),
    ("BF16", Dtype::BF16),
    ("I32", Dtype::I32),
    ("U32", Dtype::U32),
    ("F32", Dtype::F32),
    ("F64", Dtype::F64),
    ("I64", Dtype::I64),
    ("U64", Dtype::U64),
];

impl Dtype {
    fn parse(s: &str) -> Option<Dtype> {
        DTYPE_NAMES.iter().find(|(n, _)| *n == s).map(|&(_, d)| d)
    }

    /// The header's spelling (`"BF16"`).
    pub fn name(self) -> &'static str {
        DTYPE_NAMES.iter().find(|(_, d)| *d == self).map(|(n, _)| *n).expect("every dtype is named")
    }

    pub fn size(self) -> usize {
        use Dtype::*;
        match self {
            Bool | U8 | I8 | F8E5M2 | F8E4M3 => 1,
            I16 | U16 | F16 | BF16 => 2,
            I32 | U32 | F32 => 4,
            F64 | I64 | U64 => 8,
        }
    }

    /// Whether [`SafetensorsFile::tensor_f32`] can read it.
    pub fn is_float(self) -> bool {
        matches!(self, Dtype::F16 | Dtype::BF16 | Dtype::F32)
    }
}

/// One header entry, checked against the file.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorInfo {
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    /// Bytes in the file (the header's offsets plus the data start).
    pub range: Range<u64>,
}

impl TensorInfo {
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

#[derive(Deserialize)]
struct RawEntry {
    dtype: String,
    shape: Vec<usize>,
    data_offsets: [u64; 2],
}

/// One safetensors file: its validated header and its bytes.
pub struct SafetensorsFile {
    pub name: String,
    pub metadata: BTreeMap<String, String>,
    tensors: BTreeMap<String, TensorInfo>,
    source: Box<dyn Source>,
}

impl SafetensorsFile {
    /// Reads and checks the header of `source`, called `name` in errors.
    pub fn parse(name: &str, source: Box<dyn Source>) -> Result<Self, LoadError> {
        let header = |reason: String| LoadError::Header { file: name.into(), reason };
        let len = source.len();
        if len < 8 {
            return Err(header(format!("is truncated: the file has {len} bytes, fewer than the 8 of its length")));
        }
        let mut n = [0; 8];
        source.read_at(0, &mut n).map_err(io_err(name))?;
        let n = u64::from_le_bytes(n);
        if n > MAX_HEADER {
            return Err(header(format!("claims {n} bytes, more than the format's limit of {MAX_HEADER}")));
        }
        if n > len - 8 {
            return Err(header(format!("claims {n} bytes, past the end of the file ({len} bytes)")));
        }
        let mut json = vec![0; n as usize];
        source.read_at(8, &mut json).map_err(io_err(name))?;
        let entries: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(&json).map_err(|e| header(format!("is not a JSON object: {e}")))?;

        let data_start = 8 + n;
        let data_len = len - data_start;
        let mut metadata = BTreeMap::new();
        let mut tensors = BTreeMap::new();
        for (tensor, value) in entries {
            if tensor == "__metadata__" {
                metadata = serde_json::from_value(value).map_err(|e| header(format!("has bad __metadata__: {e}")))?;
                continue;
            }
            let raw: RawEntry =
                serde_json::from_value(value).map_err(|e| header(format!("has a bad entry for `{tensor}`: {e}")))?;
            let info = check_entry(name, &tensor, raw, data_len)?;
            let range = data_start + info.range.start..data_start + info.range.end;
            tensors.insert(tensor, TensorInfo { range, ..info });
        }

        // Ranges may come in any order in the JSON, but must tile the data exactly, as the
        // reference implementation requires: no shared bytes, no gaps, nothing after the last.
        // A header length cut short would otherwise shift every tensor by the bytes it left out.
        let mut by_start: Vec<(&String, &TensorInfo)> = tensors.iter().collect();
        by_start.sort_by_key(|(_, t)| (t.range.start, t.range.end));
        let rel = |r: &Range<u64>| r.start - data_start..r.end - data_start;
        let mut at = data_start;
        for (i, &(second, b)) in by_start.iter().enumerate() {
            if b.range.start < at {
                let (first, a) = by_start[i - 1];
                return Err(LoadError::Overlap {
                    file: name.into(),
                    first: first.clone(),
                    first_range: rel(&a.range),
                    second: second.clone(),
                    second_range: rel(&b.range),
                });
            }
            if b.range.start > at {
                return Err(header(format!("leaves bytes {:?} of the data to no tensor", rel(&(at..b.range.start)))));
            }
            at = b.range.end;
        }
        if at != len {
            return Err(header(format!(
                "describes {} bytes of data, the file holds {data_len} after the header: its length ({n}) or offsets are wrong",
                at - data_start
            )));
        }
        Ok(SafetensorsFile { name: name.into(), metadata, tensors, source })
    }

    pub fn tensors(&self) -> &BTreeMap<String, TensorInfo> {
        &self.tensors
    }

    /// The whole tensor as f32 (from F32, F16 or BF16; both conversions are exact).
    pub fn tensor_f32(&self, tensor: &str) -> Result<Vec<f32>, LoadError> {
        let info = self.info(tensor)?;
        self.read_f32(tensor, info, 0..info.numel())
    }

    /// Rows `rows` (along the first dimension) as f32, without reading the rest.
    pub fn rows_f32(&self, tensor: &str, rows: Range<usize>) -> Result<Vec<f32>, LoadError> {
        let (info, elems) = self.row_elems(tensor, rows)?;
        self.read_f32(tensor, info, elems)
    }

    /// Rows `rows` as their stored little-endian bytes.
    pub fn rows_bytes(&self, tensor: &str, rows: Range<usize>) -> Result<Vec<u8>, LoadError> {
        let (info, elems) = self.row_elems(tensor, rows)?;
        let size = info.dtype.size() as u64;
        let mut bytes = vec![0; elems.len() * size as usize];
        self.source.read_at(info.range.start + elems.start as u64 * size, &mut bytes).map_err(io_err(&self.name))?;
        Ok(bytes)
    }

    /// The element range of rows `rows`, checked against the tensor's first dimension.
    fn row_elems(&self, tensor: &str, rows: Range<usize>) -> Result<(&TensorInfo, Range<usize>), LoadError> {
        let info = self.info(tensor)?;
        if !matches!(info.shape.first(), Some(&n) if rows.start <= rows.end && rows.end <= n) {
            return Err(LoadError::Rows {
                file: self.name.clone(),
                tensor: tensor.into(),
                shape: info.shape.clone(),
                rows,
            });
        }
        let row: usize = info.shape[1..].iter().product();
        Ok((info, rows.start * row..rows.end * row))
    }

    /// The raw little-endian bytes of the tensor, as stored.
    pub fn tensor_bytes(&self, tensor: &str) -> Result<Vec<u8>, LoadError> {
        let info = self.info(tensor)?;
        let mut bytes = vec![0; (info.range.end - info.range.start) as usize];
        self.source.read_at(info.range.start, &mut bytes).map_err(io_err(&self.name))?;
        Ok(bytes)
    }

    fn info(&self, tensor: &str) -> Result<&TensorInfo, LoadError> {
        self.tensors
            .get(tensor)
            .ok_or_else(|| LoadError::Missing { tensor: tensor.into(), files: vec![self.name.clone()] })
    }

    /// Elements `elems` of the tensor, read a chunk at a time and converted to f32.
    fn read_f32(&self, tensor: &str, info: &TensorInfo, elems: Range<usize>) -> Result<Vec<f32>, LoadError> {
        let size = info.dtype.size();
        let convert: fn(&[u8], &mut Vec<f32>) = match info.dtype {
            Dtype::F32 => |b, out| out.extend(b.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))),
            Dtype::F16 => {
                |b, out| out.extend(b.chunks_exact(2).map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()))
            }
            // bf16 is the top half of an f32.
            Dtype::BF16 => |b, out| {
                out.extend(b.chunks_exact(2).map(|c| f32::from_bits((u16::from_le_bytes([c[0], c[1]]) as u32) << 16)))
            },
            other => {
                return Err(LoadError::Dtype {
                    file: self.name.clone(),
                    tensor: tensor.into(),
                    dtype: format!("{other:?}"),
                    reason: "which cannot be read as f32",
                })
            }
        };
        let mut out = Vec::with_capacity(elems.len());
        let mut buf = vec![0; CHUNK.min(elems.len() * size)];
        let (mut at, end) =
            (info.range.start + (elems.start * size) as u64, info.range.start + (elems.end * size) as u64);
        while at < end {
            let step = buf.len().min((end - at) as usize);
            self.source.read_at(at, &mut buf[..step]).map_err(io_err(&self.name))?;
            convert(&buf[..step], &mut out);
            at += step as u64;
        }
        Ok(out)
    }
}

/// Checks one entry against the data section; the range returned is relative to the data.
fn check_entry(file: &str, tensor: &str, raw: RawEntry, data_len: u64) -> Result<TensorInfo, LoadError> {
    let dtype = Dtype::parse(&raw.dtype).ok_or_else(|| LoadError::Dtype {
        file: file.into(),
        tensor: tensor.into(),
        dtype: raw.dtype.clone(),
        reason: "which safetensors does not define",
    })?;
    let [begin, end] = raw.data_offsets;
    let offsets =
        |reason| LoadError::Offsets { file: file.into(), tensor: tensor.into(), range: begin..end, data_len, reason };
    if begin > end {
        return Err(offsets("run backwards"));
    }
    if end > data_len {
        return Err(offsets("run past the end of the data"));
    }
    // In usize, so that every later element count fits (wasm32 has 32-bit usize).
    let expected = raw.shape.iter().try_fold(dtype.size(), |acc, &d| acc.checked_mul(d)).map_or(u64::MAX, |b| b as u64);
    if expected != end - begin {
        return Err(LoadError::ByteCount {
            file: file.into(),
            tensor: tensor.into(),
            dtype,
            shape: raw.shape,
            expected,
            actual: end - begin,
        });
    }
    Ok(TensorInfo { dtype, shape: raw.shape, range: begin..end })
}

/// The tensors of a checkpoint, across its files.
pub struct Checkpoint {
    files: Vec<SafetensorsFile>,
    by_name: HashMap<String, usize>,
}

#[derive(Deserialize)]
struct Index {
    weight_map: BTreeMap<String, String>,
}

impl Checkpoint {
    /// Joins files; a tensor in two of them is an error.
    pub fn from_files(files: Vec<SafetensorsFile>) -> Result<Self, LoadError> {
        let mut by_name: HashMap<String, usize> = HashMap::new();
        for (i, file) in files.iter().enumerate() {
            for tensor in file.tensors.keys() {
                if let Some(&j) = by_name.get(tensor) {
                    return Err(LoadError::Duplicate {
                        tensor: tensor.clone(),
                        first: files[j].name.clone(),
                        second: file.name.clone(),
                    });
                }
                by_name.insert(tensor.clone(), i);
            }
        }
        Ok(Checkpoint { files, by_name })
    }

    /// A sharded checkpoint: parses the index JSON (`index_name` in errors), opens every shard
    /// it names through `open`, and checks that each shard holds the tensors mapped to it.
    pub fn from_index(
        index_json: &str,
        index_name: &str,
        mut open: impl FnMut(&str) -> Result<SafetensorsFile, LoadError>,
    ) -> Result<Self, LoadError> {
        let index: Index =
            serde_json::from_str(index_json).map_err(|source| LoadError::Json { file: index_name.into(), source })?;
        let index_err = |tensor: &str, file: &str, reason| LoadError::Index {
            index: index_name.into(),
            tensor: tensor.into(),
            file: file.into(),
            reason,
        };
        let mut shards: Vec<&str> = index.weight_map.values().map(String::as_str).collect();
        shards.sort_unstable();
        shards.dedup();
        let mut files = Vec::with_capacity(shards.len());
        for shard in shards {
            // Shards live beside the index: a path would let a download escape the folder.
            if shard.contains(['/', '\\']) || shard == ".." || shard.is_empty() {
                let tensor = index.weight_map.iter().find(|(_, f)| *f == shard).map_or("", |(t, _)| t.as_str());
                return Err(index_err(tensor, shard, "is not a file name in the folder"));
            }
            files.push(open(shard)?);
        }
        let checkpoint = Self::from_files(files)?;
        for (tensor, shard) in &index.weight_map {
            if checkpoint.by_name.get(tensor).map(|&i| checkpoint.files[i].name.as_str()) != Some(shard.as_str()) {
                return Err(index_err(tensor, shard, "does not hold it"));
            }
        }
        Ok(checkpoint)
    }

    /// `model.safetensors`, or `model.safetensors.index.json` and its shards, in `dir`.
    pub fn open_dir(dir: &Path) -> Result<Self, LoadError> {
        let open = |name: &str| SafetensorsFile::parse(name, Box::new(FileSource::open(&dir.join(name))?));
        let index = dir.join(INDEX);
        if index.is_file() {
            let text = std::fs::read_to_string(&index).map_err(io_err(INDEX))?;
            Self::from_index(&text, INDEX, open)
        } else {
            Self::from_files(vec![open(SINGLE)?])
        }
    }

    pub fn files(&self) -> &[SafetensorsFile] {
        &self.files
    }

    pub fn file_names(&self) -> Vec<String> {
        self.files.iter().map(|f| f.name.clone()).collect()
    }

    /// Every tensor name, in no particular order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.by_name.keys().map(String::as_str)
    }

    /// The file holding `tensor` and its header entry.
    pub fn find(&self, tensor: &str) -> Result<(&SafetensorsFile, &TensorInfo), LoadError> {
        let missing = || LoadError::Missing { tensor: tensor.into(), files: self.file_names() };
        let file = &self.files[*self.by_name.get(tensor).ok_or_else(missing)?];
        Ok((file, &file.tensors[tensor]))
    }

    pub fn tensor_f32(&self, tensor: &str) -> Result<Vec<f32>, LoadError> {
        self.find(tensor)?.0.tensor_f32(tensor)
    }

    pub fn rows_f32(&self, tensor: &str, rows: Range<usize>) -> Result<Vec<f32>, LoadError> {
        self.find(tensor)?.0.rows_f32(tensor, rows)
    }

    /// Ends a load from this checkpoint ([`Source::finish`] of every file): a pre-quantized
    /// folder's shards that did not match their sha256 fail here, if no read failed before.
    pub fn finish(&self) -> Result<(), LoadError> {
        self.files.iter().try_for_each(|f| f.source.finish().map_err(io_err(&f.name)))
    }
}
