//! Typed storage buffers, uploads, read-back, and splitting row-major tensors under the
//! binding limit.

use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use super::{Gpu, GpuError};

/// Element types as stored on the GPU. `F16` is packed two per `u32` (low half first) and
/// read with `unpack2x16float`, so no `shader-f16` is needed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    F32,
    F16,
    U32,
}

impl DType {
    /// Bytes for `n` elements, rounded up to whole `u32` words.
    pub fn bytes(self, n: usize) -> u64 {
        match self {
            DType::F32 | DType::U32 => 4 * n as u64,
            DType::F16 => 4 * n.div_ceil(2) as u64,
        }
    }
}

/// A storage buffer holding `shape` elements of `dtype`, row-major.
pub struct Tensor {
    pub buffer: wgpu::Buffer,
    pub shape: Vec<usize>,
    pub dtype: DType,
    /// Shared by views; the buffer's bytes leave the device's count (or go back to their
    /// arena) when the last one drops.
    pub(super) _alloc: Arc<Allocation>,
}

/// Bytes of tensor storage alive on a device now, and the most ever alive at once.
#[derive(Default)]
pub struct MemoryCounter {
    live: AtomicU64,
    peak: AtomicU64,
}

impl MemoryCounter {
    pub fn live(&self) -> u64 {
        self.live.load(Ordering::Relaxed)
    }
    pub fn peak(&self) -> u64 {
        self.peak.load(Ordering::Relaxed)
    }
    /// Restarts the peak from what is alive now.
    pub fn reset_peak(&self) {
        self.peak.store(self.live(), Ordering::Relaxed);
    }
}

impl MemoryCounter {
    pub(super) fn add(&self, bytes: u64) {
        let live = self.live.fetch_add(bytes, Ordering::Relaxed) + bytes;
        self.peak.fetch_max(live, Ordering::Relaxed);
    }
    pub(super) fn sub(&self, bytes: u64) {
        self.live.fetch_sub(bytes, Ordering::Relaxed);
    }
}

/// A tensor's claim on its buffer. The bytes stay counted while an arena ([`super::Arena`])
/// holds the buffer for reuse: the last view's drop hands it back there instead.
pub(super) struct Allocation {
    pub(super) bytes: u64,
    pub(super) counter: Arc<MemoryCounter>,
    pub(super) home: Option<(Weak<super::arena::Pool>, wgpu::Buffer)>,
}

impl Allocation {
    fn new(counter: &Arc<MemoryCounter>, bytes: u64) -> Arc<Allocation> {
        counter.add(bytes);
        Arc::new(Allocation { bytes, counter: counter.clone(), home: None })
    }
}

impl Drop for Allocation {
    fn drop(&mut self) {
        match self.home.take().and_then(|(pool, buffer)| Some((pool.upgrade()?, buffer))) {
            Some((pool, buffer)) => pool.give_back(buffer),
            None => self.counter.sub(self.bytes),
        }
    }
}

impl Tensor {
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
    pub fn bytes(&self) -> u64 {
        self.dtype.bytes(self.numel())
    }
    pub fn binding(&self) -> wgpu::BindingResource<'_> {
        self.buffer.as_entire_binding()
    }
    /// The same buffer seen with another shape that fits in it: q `[t, heads·d]` as
    /// `[t·heads, d]` for the per-head norm, or the first `t` rows of a scratch buffer sized
    /// for the longest prompt.
    pub fn view(&self, shape: &[usize]) -> Tensor {
        let bytes = self.dtype.bytes(shape.iter().product());
        assert!(bytes <= self.buffer.size(), "view {:?} of {:?}", shape, self.shape);
        Tensor { buffer: self.buffer.clone(), shape: shape.to_vec(), dtype: self.dtype, _alloc: self._alloc.clone() }
    }
}

pub(super) const STORAGE: wgpu::BufferUsages = wgpu::BufferUsages::STORAGE
    .union(wgpu::BufferUsages::COPY_SRC)
    .union(wgpu::BufferUsages::COPY_DST);

/// Bytes per queue write in [`Gpu::write_bytes`].
pub const UPLOAD_CHUNK: usize = 4 << 20;
/// Writes at least this large are submitted at once ([`Gpu::write_bytes`]).
const SUBMIT_AFTER: usize = 64 << 10;

/// Bit pattern written into fresh outputs by tests: NaN as f32 and as both f16 halves.
pub const POISON: u32 = 0xFFFF_FFFF;

impl Gpu {
    /// Bytes of a buffer for `shape` (never zero: WebGPU rejects empty bindings).
    pub(super) fn buffer_size(&self, dtype: DType, shape: &[usize]) -> Result<u64, GpuError> {
        let size = dtype.bytes(shape.iter().product()).max(4);
        let limit = self.caps.limits.max_buffer_size;
        if size > limit {
            return Err(GpuError::TooLarge { what: format!("tensor {shape:?}"), bytes: size, limit });
        }
        Ok(size)
    }

    fn tensor_from_bytes(&self, bytes: &[u8], shape: &[usize], dtype: DType) -> Result<Tensor, GpuError> {
        let t = self.empty(dtype, shape)?;
        self.write_bytes(&t, 0, bytes);
        Ok(t)
    }

    /// Writes `bytes` into `t` at byte `offset` (a multiple of 4) straight from the caller's
    /// memory, at most [`UPLOAD_CHUNK`] bytes per queue write, so no copy of the whole is made
    /// (in the browser `writeBuffer` copies into the GPU process; natively wgpu stages each
    /// write until the next submit). Writes of [`SUBMIT_AFTER`] bytes or more are submitted
    /// at once, which bounds that staging memory while a model loads; smaller ones (a step's
    /// rotary table) go with the next submit. A tail that is not a whole word is zero-padded.
    pub fn write_bytes(&self, t: &Tensor, offset: u64, bytes: &[u8]) {
        assert!(offset.is_multiple_of(4) && offset + bytes.len() as u64 <= t.buffer.size(), "{} bytes at {offset} of a {}-byte buffer", bytes.len(), t.buffer.size());
        let whole = bytes.len() & !3;
        for (i, chunk) in bytes[..whole].chunks(UPLOAD_CHUNK).enumerate() {
            self.write_buffer(&t.buffer, offset + (i * UPLOAD_CHUNK) as u64, chunk);
            if chunk.len() >= SUBMIT_AFTER {
                self.queue.submit([]);
            }
        }
        if whole < bytes.len() {
            let mut tail = [0u8; 4];
            tail[..bytes.len() - whole].copy_from_slice(&bytes[whole..]);
            self.write_buffer(&t.buffer, offset + whole as u64, &tail);
        }
    }

    pub fn upload_f32(&self, data: &[f32], shape: &[usize]) -> Result<Tensor, GpuError> {
        self.tensor_from_bytes(bytemuck::cast_slice(data), shape, DType::F32)
    }

    /// Rounds each value to f16 (round-to-nearest-even) and packs pairs into `u32`.
    pub fn upload_f16(&self, data: &[f32], shape: &[usize]) -> Result<Tensor, GpuError> {
        let halves: Vec<half::f16> = data.iter().map(|&x| half::f16::from_f32(x)).collect();
        self.tensor_from_bytes(bytemuck::cast_slice(&halves), shape, DType::F16)
    }

    pub fn upload_u32(&self, data: &[u32], shape: &[usize]) -> Result<Tensor, GpuError> {
        self.tensor_from_bytes(bytemuck::cast_slice(data), shape, DType::U32)
    }

    /// A tensor whose every word is [`POISON`], so an element a kernel forgets to write shows.
    pub fn poisoned(&self, dtype: DType, shape: &[usize]) -> Result<Tensor, GpuError> {
        let words = (dtype.bytes(shape.iter().product()) / 4) as usize;
        self.upload_u32(&vec![POISON; words], shape).map(|t| Tensor { dtype, ..t })
    }

    /// An uninitialised (zeroed by WebGPU) tensor.
    pub fn empty(&self, dtype: DType, shape: &[usize]) -> Result<Tensor, GpuError> {
        self.empty_with(dtype, shape, wgpu::BufferUsages::empty())
    }

    /// [`Gpu::empty`] whose buffer also holds `dispatch_indirect` arguments.
    pub fn empty_indirect(&self, dtype: DType, shape: &[usize]) -> Result<Tensor, GpuError> {
        self.empty_with(dtype, shape, wgpu::BufferUsages::INDIRECT)
    }

    fn empty_with(&self, dtype: DType, shape: &[usize], usage: wgpu::BufferUsages) -> Result<Tensor, GpuError> {
        let size = self.buffer_size(dtype, shape)?;
        let buffer = self.scoped(|| {
            self.create_buffer(&wgpu::BufferDescriptor { label: None, size, usage: STORAGE | usage, mapped_at_creation: false })
        });
        // Natively an allocation the device refused fails here; in the browser at a later check.
        self.check()?;
        Ok(Tensor { _alloc: Allocation::new(&self.memory, size), buffer, shape: shape.to_vec(), dtype })
    }

    /// Reads a tensor back as f32 (f16 widened, u32 converted).
    pub async fn read_f32(&self, t: &Tensor) -> Result<Vec<f32>, GpuError> {
        let n = t.numel();
        let bytes = self.read_bytes(&t.buffer, 0, t.bytes().max(4)).await?;
        Ok(match t.dtype {
            DType::F32 => bytemuck::cast_slice::<u8, f32>(&bytes)[..n].to_vec(),
            DType::F16 => bytemuck::cast_slice::<u8, half::f16>(&bytes)[..n].iter().map(|h| h.to_f32()).collect(),
            DType::U32 => bytemuck::cast_slice::<u8, u32>(&bytes)[..n].iter().map(|&u| u as f32).collect(),
        })
    }

    pub async fn read_u32(&self, t: &Tensor) -> Result<Vec<u32>, GpuError> {
        let bytes = self.read_bytes(&t.buffer, 0, t.bytes().max(4)).await?;
        Ok(bytemuck::cast_slice::<u8, u32>(&bytes)[..t.numel()].to_vec())
    }

    #[cfg(not(target_arch = "wasm32"))]
    pub fn read_f32_blocking(&self, t: &Tensor) -> Result<Vec<f32>, GpuError> {
        pollster::block_on(self.read_f32(t))
    }

    #[cfg(not(target_arch = "wasm32"))]
    pub fn read_u32_blocking(&self, t: &Tensor) -> Result<Vec<u32>, GpuError> {
        pollster::block_on(self.read_u32(t))
    }
}

/// Small mappable buffers that results are copied into and read back while later work runs:
/// slot `i % slots` receives result `i`, so `slots` results can be pending at once.
pub struct ReadRing {
    slots: Vec<wgpu::Buffer>,
}

impl ReadRing {
    pub fn new(gpu: &Gpu, slots: usize, bytes: u64) -> ReadRing {
        let slots = (0..slots)
            .map(|_| {
                gpu.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("read ring"),
                    size: bytes,
                    usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                    mapped_at_creation: false,
                })
            })
            .collect();
        ReadRing { slots }
    }

    /// Where result `i` is copied to.
    pub fn slot(&self, i: usize) -> &wgpu::Buffer {
        &self.slots[i % self.slots.len()]
    }

    /// Result `i`, once `submission` (which copied it) has run.
    pub async fn read(&self, gpu: &Gpu, i: usize, submission: &super::Submission) -> Result<Vec<u8>, GpuError> {
        gpu.map_read(self.slot(i), submission).await
    }
}

/// Splits `rows` rows of `row_bytes` each into consecutive ranges whose bytes fit `limit`
/// (the binding limit), so a tensor like the 151936-row embedding can live in several buffers.
pub fn row_chunks(rows: usize, row_bytes: u64, limit: u64) -> Result<Vec<Range<usize>>, GpuError> {
    let per = (limit / row_bytes.max(1)) as usize;
    if per == 0 {
        return Err(GpuError::TooLarge { what: "one tensor row".into(), bytes: row_bytes, limit });
    }
    Ok(super::rows::spans(rows, per).collect())
}
