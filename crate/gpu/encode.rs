//! Recording dispatches into one command buffer. Every dispatch binds its small parameter
//! struct as binding 0 (a uniform) and its tensors as bindings 1, 2, …; the parameters of all
//! dispatches go into one arena written once at submit, not one buffer each.

use super::pipeline::Kernel;
use super::Gpu;

/// Uniform offsets must be multiples of this (WebGPU's `minUniformBufferOffsetAlignment`).
const UNIFORM_ALIGN: usize = 256;
const ARENA_BYTES: usize = 64 * 1024;

/// The most workgroups one dimension of a dispatch may have.
pub const MAX_GROUPS_PER_DIM: u32 = 65535;

/// Spreads `n` workgroups over x and y under the per-dimension limit. Shaders recover the
/// linear index as `wg.y * num_wg.x + wg.x` and skip indices `>= n`.
pub fn grid(n: u32) -> [u32; 3] {
    if n <= MAX_GROUPS_PER_DIM {
        [n.max(1), 1, 1]
    } else {
        let y = n.div_ceil(MAX_GROUPS_PER_DIM);
        [n.div_ceil(y), y, 1]
    }
}

/// Timestamp pairs around sections of work, for benchmarks.
pub struct Timer {
    set: wgpu::QuerySet,
    resolve: wgpu::Buffer,
    sections: u32,
}

impl Timer {
    pub fn new(gpu: &Gpu, sections: u32) -> Option<Timer> {
        if !gpu.caps.timestamps {
            return None;
        }
        let set = gpu.device.create_query_set(&wgpu::QuerySetDescriptor {
            label: Some("timer"),
            ty: wgpu::QueryType::Timestamp,
            count: 2 * sections,
        });
        let resolve = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("timer.resolve"),
            size: 16 * sections as u64,
            usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        Some(Timer { set, resolve, sections })
    }

    /// Seconds each section took on the GPU (after the encoder holding them was submitted).
    pub async fn read(&self, gpu: &Gpu) -> Result<Vec<f64>, super::GpuError> {
        let bytes = gpu.read_bytes(&self.resolve, 0, 16 * self.sections as u64).await?;
        let ticks: &[u64] = bytemuck::cast_slice(&bytes);
        let period = gpu.queue.get_timestamp_period() as f64 * 1e-9;
        Ok(ticks.chunks(2).map(|p| p[1].saturating_sub(p[0]) as f64 * period).collect())
    }
}

pub struct Encoder<'g> {
    pub gpu: &'g Gpu,
    encoder: Option<wgpu::CommandEncoder>,
    pass: Option<wgpu::ComputePass<'static>>,
    /// Filled arenas and the one being filled, with their staged bytes.
    arenas: Vec<(wgpu::Buffer, Vec<u8>)>,
}

impl<'g> Encoder<'g> {
    pub fn new(gpu: &'g Gpu) -> Self {
        let encoder = gpu.device.create_command_encoder(&Default::default());
        Encoder { gpu, encoder: Some(encoder), pass: None, arenas: Vec::new() }
    }

    /// Stages `params` and returns where they will live.
    fn stage(&mut self, params: &[u8]) -> (usize, usize) {
        let size = params.len().max(16).next_multiple_of(16);
        // Within the device's buffer limit (tests force small ones).
        let arena_bytes = ARENA_BYTES.min(self.gpu.caps.limits.max_buffer_size as usize / UNIFORM_ALIGN * UNIFORM_ALIGN);
        let fits = self.arenas.last().is_some_and(|(_, b)| b.len() + size <= arena_bytes);
        if !fits {
            let buf = self.gpu.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("params"),
                size: arena_bytes as u64,
                usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            });
            self.arenas.push((buf, Vec::with_capacity(arena_bytes)));
        }
        let (_, bytes) = self.arenas.last_mut().unwrap();
        let offset = bytes.len();
        bytes.extend_from_slice(params);
        bytes.resize(offset + size, 0);
        bytes.resize(bytes.len().next_multiple_of(UNIFORM_ALIGN).min(arena_bytes), 0);
        (self.arenas.len() - 1, offset)
    }

    fn pass(&mut self) -> &mut wgpu::ComputePass<'static> {
        if self.pass.is_none() {
            let pass = self.encoder.as_mut().unwrap().begin_compute_pass(&Default::default());
            self.pass = Some(pass.forget_lifetime());
        }
        self.pass.as_mut().unwrap()
    }

    fn end_pass(&mut self) {
        self.pass = None;
    }

    /// Records `kernel` over `groups` workgroups with `params` at binding 0 (if the kernel
    /// has any; pass `&[]` otherwise) and `tensors` at bindings 1.. in order.
    pub fn dispatch(&mut self, kernel: &Kernel, params: &[u8], tensors: &[wgpu::BindingResource], groups: [u32; 3]) {
        let mut entries = Vec::with_capacity(tensors.len() + 1);
        let staged = (!params.is_empty()).then(|| self.stage(params));
        if let Some((arena, offset)) = staged {
            entries.push(wgpu::BindGroupEntry {
                binding: 0,
                resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                    buffer: &self.arenas[arena].0,
                    offset: offset as u64,
                    size: wgpu::BufferSize::new(params.len().max(16).next_multiple_of(16) as u64),
                }),
            });
        }
        for (i, t) in tensors.iter().enumerate() {
            entries.push(wgpu::BindGroupEntry { binding: i as u32 + 1, resource: t.clone() });
        }
        let bind_group = self.gpu.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(&kernel.label),
            layout: &kernel.layout,
            entries: &entries,
        });
        let pass = self.pass();
        pass.set_pipeline(&kernel.pipeline);
        pass.set_bind_group(0, &bind_group, &[]);
        pass.dispatch_workgroups(groups[0], groups[1], groups[2]);
    }

    pub fn copy(&mut self, src: &wgpu::Buffer, src_offset: u64, dst: &wgpu::Buffer, dst_offset: u64, size: u64) {
        self.end_pass();
        self.encoder.as_mut().unwrap().copy_buffer_to_buffer(src, src_offset, dst, dst_offset, size);
    }

    /// Runs `work` in its own pass with timestamps written at its start and end.
    pub fn timed(&mut self, timer: &Timer, section: u32, work: impl FnOnce(&mut Self)) {
        self.end_pass();
        let pass = self.encoder.as_mut().unwrap().begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some("timed"),
            timestamp_writes: Some(wgpu::ComputePassTimestampWrites {
                query_set: &timer.set,
                beginning_of_pass_write_index: Some(2 * section),
                end_of_pass_write_index: Some(2 * section + 1),
            }),
        });
        self.pass = Some(pass.forget_lifetime());
        work(self);
        self.end_pass();
        let enc = self.encoder.as_mut().unwrap();
        enc.resolve_query_set(&timer.set, 2 * section..2 * section + 2, &timer.resolve, 16 * section as u64);
    }

    /// Writes the staged parameters and submits everything recorded. What the device rejects
    /// surfaces at the next [`Gpu::check`] (the callers that submit check after it).
    pub fn submit(mut self) {
        self.submit_recorded();
    }

    /// Submits what is recorded so far and goes on recording into a new command buffer: long
    /// work (a large image's vision tower, a long prefill) then reaches the GPU in pieces, and
    /// the uploads made for each piece can be freed as it finishes.
    pub fn flush(&mut self) {
        self.submit_recorded();
        self.encoder = Some(self.gpu.device.create_command_encoder(&Default::default()));
    }

    fn submit_recorded(&mut self) {
        self.end_pass();
        let gpu = self.gpu;
        gpu.scoped(|| {
            for (buf, bytes) in self.arenas.drain(..) {
                gpu.queue.write_buffer(&buf, 0, &bytes);
            }
            let cmd = self.encoder.take().unwrap().finish();
            gpu.queue.submit([cmd]);
        });
    }
}
