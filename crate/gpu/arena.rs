//! Activation buffers kept for reuse: the chunks of a long prefill or of the vision tower
//! take their scratch from an arena (one per model or conversation) instead of creating
//! buffers on every call. A tensor taken from it is an ordinary [`Tensor`]; when its last view
//! drops, the buffer goes back to the arena for the next request.
//!
//! Reuse is safe because GPU work runs in recording order: a buffer given back while work
//! recorded earlier still reads it is only written by work recorded later. So record a
//! tensor's last use before dropping it, in the encoder the next request records into (or one
//! submitted before it). Uploads through `queue.write_buffer` are not ordered that way and must
//! not target arena buffers.

use std::sync::{Arc, Mutex};

use super::buffer::{Allocation, STORAGE};
use super::{DType, Gpu, GpuError, MemoryCounter, Tensor};

/// The buffers an [`Arena`] holds; lent ones come back through [`Pool::give_back`].
pub(super) struct Pool {
    counter: Arc<MemoryCounter>,
    /// Buffers not lent out, each with whether it was lent since the last [`Arena::trim`].
    free: Mutex<Vec<(wgpu::Buffer, bool)>>,
}

impl Pool {
    pub(super) fn give_back(&self, buffer: wgpu::Buffer) {
        self.free.lock().unwrap().push((buffer, true));
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        for (b, _) in self.free.get_mut().unwrap().drain(..) {
            self.counter.sub(b.size());
        }
    }
}

pub struct Arena {
    pool: Arc<Pool>,
    /// Rows of the largest chunk: buffers are sized for powers of two of rows up to it.
    max_rows: usize,
}

impl Arena {
    pub fn new(gpu: &Gpu, max_rows: usize) -> Arena {
        let pool = Pool { counter: gpu.memory.clone(), free: Mutex::new(Vec::new()) };
        Arena { pool: Arc::new(pool), max_rows: max_rows.max(1) }
    }

    /// A `[rows, cols]` tensor of `dtype` (contents undefined): the smallest free buffer that
    /// holds it, else a new one sized for the size class of `rows` (the next power of two, at
    /// most the arena's largest chunk), so a later chunk of similar length reuses it.
    pub fn rows(&self, gpu: &Gpu, dtype: DType, rows: usize, cols: usize) -> Result<Tensor, GpuError> {
        let want = gpu.buffer_size(dtype, &[rows, cols])?;
        let mut free = self.pool.free.lock().unwrap();
        let fit = free.iter().enumerate().filter(|(_, (b, _))| b.size() >= want).min_by_key(|(_, (b, _))| b.size()).map(|(i, _)| i);
        let buffer = match fit {
            Some(i) => free.swap_remove(i).0,
            None => {
                let class = rows.next_power_of_two().min(self.max_rows).max(rows);
                let size = gpu.buffer_size(dtype, &[class, cols])?;
                self.pool.counter.add(size);
                gpu.device.create_buffer(&wgpu::BufferDescriptor { label: Some("arena"), size, usage: STORAGE, mapped_at_creation: false })
            }
        };
        let alloc = Allocation { bytes: buffer.size(), counter: self.pool.counter.clone(), home: Some((Arc::downgrade(&self.pool), buffer.clone())) };
        Ok(Tensor { buffer, shape: vec![rows, cols], dtype, _alloc: Arc::new(alloc) })
    }

    /// Frees the buffers no request took since the previous trim: called once per model call,
    /// it keeps what calls of the current size use and lets go of a larger call's leftovers.
    pub fn trim(&self) {
        let mut free = self.pool.free.lock().unwrap();
        free.retain(|(b, lent)| {
            if !lent {
                self.pool.counter.sub(b.size());
            }
            *lent
        });
        for (_, lent) in free.iter_mut() {
            *lent = false;
        }
    }
}
