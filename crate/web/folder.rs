//! A JS `Folder` of `FileLike`s as the loader's `open(name) -> Source`: synchronous random reads
//! (OPFS sync access handles, `FileReaderSync`, sync range XHR — all legal in a worker), with the
//! bytes read counted for the load's progress events.

use std::rc::Rc;

use js_sys::{Function, Reflect, Uint8Array};
use wasm_bindgen::JsValue;

use crate::model::{LoadError, Source};

use super::js::{error_message, method, number, Progress};

/// `{ open(name): FileLike | null | undefined }`.
#[derive(Clone)]
pub struct Folder {
    this: JsValue,
    open: Function,
}

impl Folder {
    pub fn new(value: JsValue) -> Result<Folder, String> {
        let open = method(&value, "open").map_err(|e| format!("folder: {e}"))?;
        Ok(Folder { this: value, open })
    }

    /// The file, or `None` when `open` gives null or undefined.
    pub fn open(&self, name: &str) -> Result<Option<FileLike>, String> {
        let file = self.open.call1(&self.this, &name.into()).map_err(|e| format!("folder.open({name:?}) threw: {}", error_message(&e)))?;
        if file.is_null() || file.is_undefined() {
            return Ok(None);
        }
        FileLike::new(name, file).map(Some)
    }

    /// The whole file, or `None` when the folder has no such file.
    pub fn read(&self, name: &str) -> Result<Option<Vec<u8>>, String> {
        let Some(file) = self.open(name)? else { return Ok(None) };
        let mut bytes = vec![0; usize::try_from(file.len).map_err(|_| format!("{name} is too large"))?];
        file.read_at(0, &mut bytes).map_err(|e| e.to_string())?;
        Ok(Some(bytes))
    }

    /// The loader's `open`: every file's reads are counted into `progress`.
    pub fn sources(&self, progress: Option<Rc<Progress>>) -> impl FnMut(&str) -> Result<Option<Box<dyn Source>>, LoadError> + '_ {
        move |name| {
            let file = self.open(name).map_err(|e| LoadError::Io { file: name.into(), source: std::io::Error::other(e) })?;
            Ok(file.map(|f| Box::new(Counted { file: f, progress: progress.clone(), name: name.to_string() }) as Box<dyn Source>))
        }
    }
}

/// `{ readonly size: number; readAt(offset: number, dst: Uint8Array): void }`.
pub struct FileLike {
    this: JsValue,
    read_at: Function,
    len: u64,
    name: String,
}

impl FileLike {
    fn new(name: &str, value: JsValue) -> Result<FileLike, String> {
        let size = number(&Reflect::get(&value, &"size".into()).unwrap_or(JsValue::UNDEFINED), &format!("{name}: size"))?;
        // Offsets travel as JS numbers: exact up to 2^53.
        if size < 0.0 || size.fract() != 0.0 || size > 9_007_199_254_740_991.0 {
            return Err(format!("{name}: size {size} is not a byte count"));
        }
        let read_at = method(&value, "readAt").map_err(|e| format!("{name}: {e}"))?;
        Ok(FileLike { this: value, read_at, len: size as u64, name: name.to_string() })
    }
}

impl Source for FileLike {
    fn len(&self) -> u64 {
        self.len
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        let end = offset.checked_add(buf.len() as u64).filter(|&e| e <= self.len);
        if end.is_none() {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, format!("{} bytes at {offset} run past the end ({})", buf.len(), self.len)));
        }
        // A JS-owned buffer, copied in afterwards: a view into wasm memory would be detached if
        // the memory grew meanwhile.
        let dst = Uint8Array::new_with_length(buf.len() as u32);
        self.read_at
            .call2(&self.this, &(offset as f64).into(), &dst)
            .map_err(|e| std::io::Error::other(format!("{}.readAt({offset}) threw: {}", self.name, error_message(&e))))?;
        dst.copy_to(buf);
        Ok(())
    }
}

/// A file whose reads advance the load's progress.
struct Counted {
    file: FileLike,
    progress: Option<Rc<Progress>>,
    name: String,
}

impl Source for Counted {
    fn len(&self) -> u64 {
        self.file.len
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        self.file.read_at(offset, buf)?;
        match &self.progress {
            Some(p) => p.advance(buf.len() as u64, &self.name).map_err(std::io::Error::other),
            None => Ok(()),
        }
    }
}
