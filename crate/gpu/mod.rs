//! The GPU core: device and capability profile, buffers (split under binding limits),
//! pipelines built from WGSL with run-time variants, command encoding and replay, and counters
//! of what the device was asked to do. Knows no models.

mod buffer;
mod context;
mod encode;
mod pipeline;

pub use buffer::{row_chunks, DType, MemoryCounter, ReadRing, Tensor, POISON};
pub use context::{now_ms, Backend, Caps, Counters, Counts, Gpu, Profile, Submission};
pub use encode::{grid, Encoder, Profiler, Recording, Timer, MAX_GROUPS_PER_DIM};
pub use pipeline::{preprocess, specialise, Kernel, KernelKey};

#[derive(Debug, thiserror::Error)]
pub enum GpuError {
    #[error("no WebGPU adapter: {0}")]
    NoAdapter(String),
    #[error("the GPU device could not be created: {0}")]
    Device(String),
    #[error("{what} needs {bytes} bytes in one binding, but this adapter allows {limit}")]
    TooLarge { what: String, bytes: u64, limit: u64 },
    #[error("reading a buffer back failed: {0}")]
    Map(String),
}
