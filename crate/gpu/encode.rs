//! Recording dispatches. Every dispatch binds its small parameter struct as binding 0 (a
//! uniform) and its tensors as bindings 1, 2, …; the parameters of all dispatches go into one
//! arena written once, not one buffer each.
//!
//! An [`Encoder`] collects dispatches and copies, then either submits them as one command
//! buffer or keeps them as a [`Recording`]: bind groups and parameters made once, replayed into
//! any number of later encoders with no new buffers or bind groups (a decode step). Values that
//! change between replays live in buffers the kernels read, written with `write_buffer`. An
//! encoder dropped unsubmitted has still created its pipelines: a warm-up that computes nothing.

use std::cell::RefCell;

use super::context::{bump, now_ms, Submission};
use super::pipeline::Kernel;
use super::{Gpu, GpuError};

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
        let (set, resolve) = query_set(gpu, 2 * sections);
        Some(Timer { set, resolve, sections })
    }

    /// Seconds each section took on the GPU (after the encoder holding them was submitted).
    pub async fn read(&self, gpu: &Gpu) -> Result<Vec<f64>, GpuError> {
        read_pairs(gpu, &self.resolve, self.sections).await
    }
}

fn query_set(gpu: &Gpu, count: u32) -> (wgpu::QuerySet, wgpu::Buffer) {
    let set = gpu.device.create_query_set(&wgpu::QuerySetDescriptor { label: Some("timestamps"), ty: wgpu::QueryType::Timestamp, count });
    let resolve = gpu.create_buffer(&wgpu::BufferDescriptor {
        label: Some("timestamps.resolve"),
        size: 8 * count as u64,
        usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
        mapped_at_creation: false,
    });
    (set, resolve)
}

/// Seconds between the timestamps of each of `pairs` (start, end) pairs.
async fn read_pairs(gpu: &Gpu, resolve: &wgpu::Buffer, pairs: u32) -> Result<Vec<f64>, GpuError> {
    let bytes = gpu.read_bytes(resolve, 0, 16 * pairs as u64).await?;
    let ticks: &[u64] = bytemuck::cast_slice(&bytes);
    let period = gpu.queue.get_timestamp_period() as f64 * 1e-9;
    Ok(ticks.chunks(2).map(|p| p[1].saturating_sub(p[0]) as f64 * period).collect())
}

/// GPU time of every dispatch of one profiled submission ([`Encoder::profile`]), each in its
/// own pass between two timestamps, summed by kernel family (shader file and entry point).
pub struct Profiler {
    /// Query sets of [`PROFILE_SET`] dispatches each, added as a submission needs them.
    sets: RefCell<Vec<(wgpu::QuerySet, wgpu::Buffer)>>,
    families: RefCell<Vec<(&'static str, &'static str)>>,
}

/// Dispatches per query set: WebGPU's 4096 timestamps.
const PROFILE_SET: u32 = 2048;

impl Profiler {
    /// `None` without timestamp queries.
    pub fn new(gpu: &Gpu) -> Option<Profiler> {
        gpu.caps.timestamps.then(|| Profiler { sets: RefCell::new(Vec::new()), families: RefCell::new(Vec::new()) })
    }

    /// Seconds per kernel family, in the order families first ran.
    pub async fn read(&self, gpu: &Gpu) -> Result<Vec<((&'static str, &'static str), f64)>, GpuError> {
        let families = self.families.borrow().clone();
        let resolves: Vec<wgpu::Buffer> = self.sets.borrow().iter().map(|(_, r)| r.clone()).collect();
        let mut times = Vec::with_capacity(families.len());
        for (i, resolve) in resolves.iter().enumerate() {
            let used = (families.len() as u32).saturating_sub(i as u32 * PROFILE_SET).min(PROFILE_SET);
            if used > 0 {
                times.extend(read_pairs(gpu, resolve, used).await?);
            }
        }
        let mut out: Vec<((&'static str, &'static str), f64)> = Vec::new();
        for (f, t) in families.into_iter().zip(times) {
            match out.iter_mut().find(|(g, _)| *g == f) {
                Some((_, sum)) => *sum += t,
                None => out.push((f, t)),
            }
        }
        Ok(out)
    }

    /// The query set and index of the next dispatch's timestamps, for `family`.
    fn next(&self, gpu: &Gpu, family: (&'static str, &'static str)) -> (wgpu::QuerySet, u32) {
        let mut families = self.families.borrow_mut();
        let i = families.len() as u32;
        families.push(family);
        let mut sets = self.sets.borrow_mut();
        if (i / PROFILE_SET) as usize == sets.len() {
            sets.push(query_set(gpu, 2 * PROFILE_SET));
        }
        (sets[(i / PROFILE_SET) as usize].0.clone(), 2 * (i % PROFILE_SET))
    }

    /// Resolves the timestamps of the dispatches recorded so far.
    fn resolve(&self, enc: &mut wgpu::CommandEncoder) {
        let n = self.families.borrow().len() as u32;
        for (i, (set, resolve)) in self.sets.borrow().iter().enumerate() {
            let used = n.saturating_sub(i as u32 * PROFILE_SET).min(PROFILE_SET);
            if used > 0 {
                enc.resolve_query_set(set, 0..2 * used, resolve, 0);
            }
        }
    }
}

#[derive(Clone)]
enum Groups {
    Direct([u32; 3]),
    /// Three u32 workgroup counts at this byte offset of the buffer, read by the GPU.
    Indirect(wgpu::Buffer, u64),
}

#[derive(Clone)]
enum Op {
    Dispatch { pipeline: wgpu::ComputePipeline, bind_group: wgpu::BindGroup, groups: Groups, family: (&'static str, &'static str) },
    Copy { src: wgpu::Buffer, src_offset: u64, dst: wgpu::Buffer, dst_offset: u64, size: u64 },
    /// A [`Timer`] section: a pass with timestamps at its start and end, then their resolve.
    TimedBegin { set: wgpu::QuerySet, section: u32 },
    TimedEnd { set: wgpu::QuerySet, resolve: wgpu::Buffer, section: u32 },
}

/// Dispatches and copies with their bind groups and parameters, made once
/// ([`Encoder::finish`]) and replayed into later encoders ([`Encoder::replay`]).
pub struct Recording {
    ops: Vec<Op>,
    /// The parameter arenas the bind groups point into.
    _arenas: Vec<wgpu::Buffer>,
}

impl Recording {
    pub fn dispatches(&self) -> usize {
        self.ops.iter().filter(|op| matches!(op, Op::Dispatch { .. })).count()
    }
}

enum Item<'g> {
    Op(Op),
    Replay(&'g Recording),
}

pub struct Encoder<'g> {
    pub gpu: &'g Gpu,
    items: Vec<Item<'g>>,
    /// Filled arenas and the one being filled, with their staged bytes.
    arenas: Vec<(wgpu::Buffer, Vec<u8>)>,
    profiler: Option<&'g Profiler>,
}

impl<'g> Encoder<'g> {
    pub fn new(gpu: &'g Gpu) -> Self {
        Encoder { gpu, items: Vec::new(), arenas: Vec::new(), profiler: None }
    }

    /// Stages `params` and returns where they will live.
    fn stage(&mut self, params: &[u8]) -> (usize, usize) {
        let size = params.len().max(16).next_multiple_of(16);
        // Within the device's buffer limit (tests force small ones).
        let arena_bytes = ARENA_BYTES.min(self.gpu.caps.limits.max_buffer_size as usize / UNIFORM_ALIGN * UNIFORM_ALIGN);
        let fits = self.arenas.last().is_some_and(|(_, b)| b.len() + size <= arena_bytes);
        if !fits {
            let buf = self.gpu.create_buffer(&wgpu::BufferDescriptor {
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

    /// The bind group of one dispatch: `params` at binding 0 (if any) and `tensors` from 1.
    fn bind(&mut self, kernel: &Kernel, params: &[u8], tensors: &[wgpu::BindingResource]) -> wgpu::BindGroup {
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
        bump(&self.gpu.counters.bind_groups, 1);
        self.gpu.device.create_bind_group(&wgpu::BindGroupDescriptor { label: Some(&kernel.label), layout: &kernel.layout, entries: &entries })
    }

    fn push_dispatch(&mut self, kernel: &Kernel, params: &[u8], tensors: &[wgpu::BindingResource], groups: Groups) {
        let bind_group = self.bind(kernel, params, tensors);
        self.items.push(Item::Op(Op::Dispatch { pipeline: kernel.pipeline.clone(), bind_group, groups, family: kernel.family }));
    }

    /// Records `kernel` over `groups` workgroups with `params` at binding 0 (if the kernel
    /// has any; pass `&[]` otherwise) and `tensors` at bindings 1.. in order.
    pub fn dispatch(&mut self, kernel: &Kernel, params: &[u8], tensors: &[wgpu::BindingResource], groups: [u32; 3]) {
        self.push_dispatch(kernel, params, tensors, Groups::Direct(groups));
    }

    /// [`Encoder::dispatch`] over the workgroup counts the GPU reads from `args` (three u32
    /// at byte `offset`) when it runs: a recorded dispatch whose size changes between replays.
    pub fn dispatch_indirect(&mut self, kernel: &Kernel, params: &[u8], tensors: &[wgpu::BindingResource], args: &wgpu::Buffer, offset: u64) {
        self.push_dispatch(kernel, params, tensors, Groups::Indirect(args.clone(), offset));
    }

    pub fn copy(&mut self, src: &wgpu::Buffer, src_offset: u64, dst: &wgpu::Buffer, dst_offset: u64, size: u64) {
        let op = Op::Copy { src: src.clone(), src_offset, dst: dst.clone(), dst_offset, size };
        self.items.push(Item::Op(op));
    }

    /// Runs `work` in its own pass with timestamps written at its start and end.
    pub fn timed(&mut self, timer: &Timer, section: u32, work: impl FnOnce(&mut Self)) {
        self.items.push(Item::Op(Op::TimedBegin { set: timer.set.clone(), section }));
        work(self);
        self.items.push(Item::Op(Op::TimedEnd { set: timer.set.clone(), resolve: timer.resolve.clone(), section }));
    }

    /// Appends `recording`'s work; it runs with this encoder's, in order.
    pub fn replay(&mut self, recording: &'g Recording) {
        self.items.push(Item::Replay(recording));
    }

    /// Times every dispatch of this encoder's submission with `profiler` (which then holds
    /// only this submission's times).
    pub fn profile(&mut self, profiler: &'g Profiler) {
        self.profiler = Some(profiler);
    }

    fn write_arenas(&self) {
        for (buf, bytes) in &self.arenas {
            self.gpu.write_buffer(buf, 0, bytes);
        }
    }

    /// Keeps the work for [`Encoder::replay`] instead of submitting it (parameters written now).
    pub fn finish(self) -> Recording {
        self.write_arenas();
        let mut ops = Vec::new();
        for item in self.items {
            match item {
                Item::Op(op) => ops.push(op),
                Item::Replay(r) => ops.extend(r.ops.iter().cloned()),
            }
        }
        Recording { ops, _arenas: self.arenas.into_iter().map(|(b, _)| b).collect() }
    }

    /// Submits what is recorded so far and goes on with an empty encoder: long work (a large
    /// image's vision tower, a long prefill) then reaches the GPU in pieces, and the uploads
    /// made for each piece can be freed as it finishes.
    pub fn flush(&mut self) -> Submission {
        let rest = Encoder { gpu: self.gpu, items: Vec::new(), arenas: Vec::new(), profiler: self.profiler };
        std::mem::replace(self, rest).submit()
    }

    /// Writes the staged parameters and submits everything recorded as one command buffer.
    /// What the device rejects surfaces at the next [`Gpu::check`] (the callers that submit
    /// check after it).
    pub fn submit(self) -> Submission {
        let start = now_ms();
        let gpu = self.gpu;
        let submission = gpu.scoped(|| {
            self.write_arenas();
            let mut w = Writer { gpu, enc: gpu.device.create_command_encoder(&Default::default()), pass: None, profiler: self.profiler, last: None };
            if let Some(p) = self.profiler {
                p.families.borrow_mut().clear();
            }
            for item in &self.items {
                match item {
                    Item::Op(op) => w.op(op),
                    Item::Replay(r) => r.ops.iter().for_each(|op| w.op(op)),
                }
            }
            w.pass = None;
            if let Some(p) = self.profiler {
                p.resolve(&mut w.enc);
            }
            gpu.submit(w.enc.finish())
        });
        bump(&gpu.counters.encode_ns, ((now_ms() - start) * 1e6) as u64);
        submission
    }
}

/// Turns ops into one command buffer: dispatches share compute passes between copies.
struct Writer<'g> {
    gpu: &'g Gpu,
    enc: wgpu::CommandEncoder,
    pass: Option<wgpu::ComputePass<'static>>,
    profiler: Option<&'g Profiler>,
    /// The pipeline the open pass has set.
    last: Option<wgpu::ComputePipeline>,
}

impl Writer<'_> {
    fn begin(&mut self, timestamps: Option<wgpu::ComputePassTimestampWrites>) {
        self.pass = None;
        self.last = None;
        let pass = self.enc.begin_compute_pass(&wgpu::ComputePassDescriptor { label: None, timestamp_writes: timestamps });
        self.pass = Some(pass.forget_lifetime());
    }

    fn op(&mut self, op: &Op) {
        match op {
            Op::Dispatch { pipeline, bind_group, groups, family } => {
                bump(&self.gpu.counters.dispatches, 1);
                if let Some(p) = self.profiler {
                    let (set, i) = p.next(self.gpu, *family);
                    let writes = wgpu::ComputePassTimestampWrites { query_set: &set, beginning_of_pass_write_index: Some(i), end_of_pass_write_index: Some(i + 1) };
                    self.begin(Some(writes));
                } else if self.pass.is_none() {
                    self.begin(None);
                }
                let pass = self.pass.as_mut().unwrap();
                if self.last.as_ref() != Some(pipeline) {
                    pass.set_pipeline(pipeline);
                    self.last = Some(pipeline.clone());
                }
                pass.set_bind_group(0, bind_group, &[]);
                match groups {
                    Groups::Direct([x, y, z]) => pass.dispatch_workgroups(*x, *y, *z),
                    Groups::Indirect(buffer, offset) => pass.dispatch_workgroups_indirect(buffer, *offset),
                }
                if self.profiler.is_some() {
                    self.pass = None;
                }
            }
            Op::Copy { src, src_offset, dst, dst_offset, size } => {
                self.pass = None;
                self.enc.copy_buffer_to_buffer(src, *src_offset, dst, *dst_offset, *size);
            }
            Op::TimedBegin { set, section } => {
                let writes = wgpu::ComputePassTimestampWrites { query_set: set, beginning_of_pass_write_index: Some(2 * section), end_of_pass_write_index: Some(2 * section + 1) };
                self.begin(Some(writes));
            }
            Op::TimedEnd { set, resolve, section } => {
                self.pass = None;
                self.enc.resolve_query_set(set, 2 * section..2 * section + 2, resolve, 16 * *section as u64);
            }
        }
    }
}
