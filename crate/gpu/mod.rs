//! The GPU core: device and capability profile, buffers (split by rows under binding limits,
//! and kept in arenas for reuse), pipelines built from WGSL with run-time variants, command
//! encoding and replay, and counters of what the device was asked to do. Knows no models.

mod arena;
mod buffer;
mod context;
mod encode;
mod pipeline;
mod rows;

pub use arena::Arena;
pub use buffer::{row_chunks, DType, MemoryCounter, ReadRing, Tensor, POISON, UPLOAD_CHUNK};
pub use context::{now_ms, Backend, Caps, Counters, Counts, Gpu, Profile, Submission};
pub use encode::{grid, Encoder, Profiler, Recording, Timer, MAX_GROUPS_PER_DIM};
pub use rows::{spans, RowPart, RowSplit};
pub use pipeline::{preprocess, specialise, Kernel, KernelKey};

#[derive(Clone, Debug, thiserror::Error)]
pub enum GpuError {
    #[error("no WebGPU adapter: {0}")]
    NoAdapter(String),
    #[error("the GPU device could not be created: {0}")]
    Device(String),
    #[error("{what} needs {bytes} bytes in one binding, but this adapter allows {limit}")]
    TooLarge { what: String, bytes: u64, limit: u64 },
    #[error("reading a buffer back failed: {0}")]
    Map(String),
    /// What the device rejected (wgpu's validation): a bug, or a size the checks let through.
    #[error("the GPU rejected a command: {0}")]
    Validation(String),
    #[error("the GPU is out of memory: {0}")]
    OutOfMemory(String),
    #[error("internal GPU error: {0}")]
    Internal(String),
    /// The device is gone (driver reset, `destroy`, a browser reclaiming it); every later use
    /// fails the same way until a new device is created.
    #[error("the GPU device was lost ({0}): load the model again")]
    Lost(String),
}

impl From<wgpu::Error> for GpuError {
    /// wgpu's message (a chain of causes over several lines) as one line.
    fn from(e: wgpu::Error) -> GpuError {
        let text = e.to_string();
        let line = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && *l != "Caused by:" && *l != "Validation Error")
            .collect::<Vec<_>>()
            .join(": ");
        match e {
            wgpu::Error::OutOfMemory { .. } => GpuError::OutOfMemory(line),
            wgpu::Error::Validation { .. } => GpuError::Validation(line),
            wgpu::Error::Internal { .. } => GpuError::Internal(line),
        }
    }
}
