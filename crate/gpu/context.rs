//! The device, its capability profile, and blocking/async glue shared by native and wasm.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::pipeline::{Kernel, KernelKey};
use super::GpuError;

/// Which capabilities to use. `Minimum` forces what every WebGPU adapter must offer, so one
/// machine can exercise the fallback paths a browser would take.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Profile {
    /// Everything the adapter offers (f16, subgroups, its own limits).
    Full,
    /// No f16, no subgroups, WebGPU default limits (128 MiB bindings, 256 invocations, …).
    Minimum,
}

impl Profile {
    /// Natively, `QWEN3VL_PROFILE=minimum` forces the minimum profile; otherwise full.
    pub fn from_env() -> Profile {
        match std::env::var("QWEN3VL_PROFILE").as_deref() {
            Ok("minimum") | Ok("min") => Profile::Minimum,
            _ => Profile::Full,
        }
    }
}

/// What the device was created with; kernels choose their variants from this at run time.
#[derive(Clone, Debug)]
pub struct Caps {
    pub profile: Profile,
    pub adapter: String,
    pub backend: String,
    /// A CPU implementation (lavapipe, SwiftShader): every load costs a loop over the SIMD
    /// lanes there, so some kernels choose other work layouts.
    pub cpu: bool,
    /// `shader-f16` is enabled (f16 arithmetic in WGSL). Storage is packed-u32 f16 regardless.
    pub f16: bool,
    /// Subgroup operations are enabled; sizes as the adapter reports them.
    pub subgroups: bool,
    pub subgroup_min_size: u32,
    pub subgroup_max_size: u32,
    /// Timestamp queries on compute passes (benchmarks only).
    pub timestamps: bool,
    /// `storageBarrier()` fences storage memory at device scope, so a workgroup that counts on
    /// an atomic may read what the workgroups counted before it wrote: naga's Vulkan output
    /// (and the noop backend standing in for it). WebGPU itself promises workgroup scope only,
    /// so the browser and the minimum profile go without.
    pub device_fence: bool,
    pub limits: wgpu::Limits,
}

/// One submitted command buffer: wgpu's index (to wait for it) and its number among this
/// device's submits (to tell whether anything was submitted after it).
#[derive(Clone, Debug)]
pub struct Submission {
    /// Waited for natively; the browser resolves maps by itself.
    #[cfg_attr(target_arch = "wasm32", allow(dead_code))]
    index: wgpu::SubmissionIndex,
    number: u64,
}

impl Caps {
    /// Largest byte size one storage binding may cover (and one buffer may have).
    pub fn max_binding(&self) -> u64 {
        self.limits.max_storage_buffer_binding_size.min(self.limits.max_buffer_size)
    }
}

/// Which wgpu backend runs the work.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// The platform's GPU (natively `WGPU_BACKEND` or Vulkan/Metal/DX12; the browser's WebGPU).
    Gpu,
    /// wgpu's noop backend (native only): validates and tracks everything, executes nothing,
    /// so a run on it times the host's work alone. Mapped buffers read as zeros.
    Noop,
}

/// What the device was asked to do, counted as it happens: the host's cost of a decode step
/// shows in these numbers (see [`Counts`]).
#[derive(Default)]
pub struct Counters {
    pub(super) dispatches: AtomicU64,
    pub(super) bind_groups: AtomicU64,
    pub(super) buffers: AtomicU64,
    pub(super) submits: AtomicU64,
    pub(super) bytes_written: AtomicU64,
    pub(super) waits: AtomicU64,
    pub(super) stalls: AtomicU64,
    pub(super) pipelines: AtomicU64,
    pub(super) encode_ns: AtomicU64,
}

/// A snapshot of [`Counters`]; the difference of two is what happened between them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Compute dispatches recorded into submitted or discarded command buffers.
    pub dispatches: u64,
    pub bind_groups: u64,
    pub buffers: u64,
    pub submits: u64,
    /// Bytes given to `queue.write_buffer` (parameters, step values, uploads through it).
    pub bytes_written: u64,
    /// Read-backs waited for.
    pub waits: u64,
    /// Waits for the newest submission: the GPU has nothing queued behind it and idles until
    /// the host records more.
    pub stalls: u64,
    pub pipelines: u64,
    /// Host time spent turning recorded work into command buffers and submitting them.
    pub encode_ns: u64,
}

impl std::ops::Sub for Counts {
    type Output = Counts;
    fn sub(self, o: Counts) -> Counts {
        Counts {
            dispatches: self.dispatches - o.dispatches,
            bind_groups: self.bind_groups - o.bind_groups,
            buffers: self.buffers - o.buffers,
            submits: self.submits - o.submits,
            bytes_written: self.bytes_written - o.bytes_written,
            waits: self.waits - o.waits,
            stalls: self.stalls - o.stalls,
            pipelines: self.pipelines - o.pipelines,
            encode_ns: self.encode_ns - o.encode_ns,
        }
    }
}

impl Counters {
    pub fn snapshot(&self) -> Counts {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Counts {
            dispatches: get(&self.dispatches),
            bind_groups: get(&self.bind_groups),
            buffers: get(&self.buffers),
            submits: get(&self.submits),
            bytes_written: get(&self.bytes_written),
            waits: get(&self.waits),
            stalls: get(&self.stalls),
            pipelines: get(&self.pipelines),
            encode_ns: get(&self.encode_ns),
        }
    }
}

pub(super) fn bump(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

#[cfg(target_arch = "wasm32")]
#[wasm_bindgen::prelude::wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_namespace = performance, js_name = now)]
    fn performance_now() -> f64;
}

/// Monotonic milliseconds: `performance.now()` in the browser (windows and workers alike;
/// `std::time::Instant` panics on wasm32-unknown-unknown), natively since the first call.
pub fn now_ms() -> f64 {
    #[cfg(target_arch = "wasm32")]
    return performance_now();
    #[cfg(not(target_arch = "wasm32"))]
    {
        static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
        START.get_or_init(std::time::Instant::now).elapsed().as_secs_f64() * 1e3
    }
}

pub struct Gpu {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub caps: Caps,
    pub(super) kernels: Mutex<HashMap<KernelKey, Arc<Kernel>>>,
    /// Labels of the pipelines in the order they were created.
    pub(super) kernel_labels: Mutex<Vec<String>>,
    /// Tensor storage allocated through this device (weights, caches, activations).
    pub memory: Arc<super::MemoryCounter>,
    pub counters: Counters,
    /// Errors the device reported outside a call that could return them, for [`Gpu::check`].
    faults: Arc<Mutex<Faults>>,
}

/// What the uncaptured-error handler, the device-lost callback and popped error scopes caught.
#[derive(Default)]
struct Faults {
    /// The first error since the last [`Gpu::check`]; later ones are usually its consequences.
    first: Option<GpuError>,
    /// Why the device was lost: once set, every check fails.
    lost: Option<String>,
}

impl Faults {
    fn record(faults: &Mutex<Faults>, e: GpuError) {
        faults.lock().unwrap_or_else(|p| p.into_inner()).first.get_or_insert(e);
    }
}

impl Gpu {
    /// Picks the high-performance adapter and creates a device with the requested profile.
    pub async fn new(profile: Profile) -> Result<Gpu, GpuError> {
        Self::with_backend(Backend::Gpu, profile).await
    }

    /// [`Gpu::new`] on `backend`. The noop backend reports the WebGPU default limits (its
    /// permissive defaults broke pipeline creation) and no optional features.
    pub async fn with_backend(backend: Backend, profile: Profile) -> Result<Gpu, GpuError> {
        Self::open(backend, profile, None).await
    }

    /// [`Gpu::new`] with storage bindings and buffers of at most `max_binding` bytes where
    /// given: the device is created with those limits, so wgpu itself rejects any larger
    /// binding. Tests use it to run the chunked paths (prefill, vision tower, split weights)
    /// on tiny models.
    pub async fn with_max_binding(profile: Profile, max_binding: Option<u64>) -> Result<Gpu, GpuError> {
        Self::open(Backend::Gpu, profile, max_binding).await
    }

    async fn open(backend: Backend, profile: Profile, max_binding: Option<u64>) -> Result<Gpu, GpuError> {
        let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
        desc.backends = match backend {
            Backend::Gpu => wgpu::Backends::from_env().unwrap_or(wgpu::Backends::PRIMARY),
            Backend::Noop => {
                desc.backend_options.noop = wgpu::NoopBackendOptions {
                    enable: true,
                    limits: Some(wgpu::Limits::default()),
                    features: Some(wgpu::Features::empty()),
                    ..Default::default()
                };
                wgpu::Backends::NOOP
            }
        };
        let instance = wgpu::Instance::new(desc);
        let adapter = instance
            .request_adapter(&wgpu::RequestAdapterOptions {
                power_preference: wgpu::PowerPreference::HighPerformance,
                ..Default::default()
            })
            .await
            .map_err(|e| GpuError::NoAdapter(e.to_string()))?;
        Self::from_adapter(adapter, profile, max_binding).await
    }

    /// Natively: blocks on [`Gpu::new`] with the profile from `QWEN3VL_PROFILE`.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn new_blocking(profile: Option<Profile>) -> Result<Gpu, GpuError> {
        pollster::block_on(Self::new(profile.unwrap_or_else(Profile::from_env)))
    }

    /// Natively: blocks on [`Gpu::with_backend`].
    #[cfg(not(target_arch = "wasm32"))]
    pub fn with_backend_blocking(backend: Backend, profile: Profile) -> Result<Gpu, GpuError> {
        pollster::block_on(Self::with_backend(backend, profile))
    }

    /// Natively: blocks on [`Gpu::with_max_binding`].
    #[cfg(not(target_arch = "wasm32"))]
    pub fn with_max_binding_blocking(profile: Profile, max_binding: u64) -> Result<Gpu, GpuError> {
        pollster::block_on(Self::with_max_binding(profile, Some(max_binding)))
    }

    pub async fn from_adapter(adapter: wgpu::Adapter, profile: Profile, max_binding: Option<u64>) -> Result<Gpu, GpuError> {
        let info = adapter.get_info();
        let offered = adapter.features();
        // Request only what the adapter offers, and in the minimum profile only what every
        // WebGPU adapter offers: the shaders then see exactly what a browser would give.
        let mut wanted = wgpu::Features::TIMESTAMP_QUERY;
        let limits = match profile {
            Profile::Full => {
                wanted |= wgpu::Features::SHADER_F16 | wgpu::Features::SUBGROUP;
                adapter.limits()
            }
            Profile::Minimum => wgpu::Limits::default(),
        };
        let features = wanted & offered;
        let mut limits = limits.or_worse_values_from(&adapter.limits());
        if let Some(max) = max_binding {
            let max = max.min(limits.max_buffer_size) & !3;
            limits.max_buffer_size = max;
            limits.max_storage_buffer_binding_size = limits.max_storage_buffer_binding_size.min(max);
        }
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("qwen3-vl"),
                required_features: features,
                required_limits: limits.clone(),
                ..Default::default()
            })
            .await
            .map_err(|e| GpuError::Device(e.to_string()))?;
        let subgroups = features.contains(wgpu::Features::SUBGROUP);
        // Browsers may report no device type; their software adapter still names itself.
        let name = info.name.to_lowercase();
        let cpu = info.device_type == wgpu::DeviceType::Cpu || name.contains("llvmpipe") || name.contains("swiftshader");
        let caps = Caps {
            profile,
            adapter: info.name.clone(),
            backend: format!("{:?}", info.backend),
            cpu,
            f16: features.contains(wgpu::Features::SHADER_F16),
            subgroups,
            subgroup_min_size: if subgroups { info.subgroup_min_size } else { 0 },
            subgroup_max_size: if subgroups { info.subgroup_max_size } else { 0 },
            timestamps: features.contains(wgpu::Features::TIMESTAMP_QUERY),
            device_fence: profile == Profile::Full && matches!(info.backend, wgpu::Backend::Vulkan | wgpu::Backend::Noop),
            limits,
        };
        // wgpu's default handler panics on any error not caught by a scope: record it instead.
        let faults = Arc::new(Mutex::new(Faults::default()));
        let f = faults.clone();
        device.on_uncaptured_error(Arc::new(move |e| Faults::record(&f, e.into())));
        let f = faults.clone();
        device.set_device_lost_callback(move |reason, message| {
            f.lock().unwrap_or_else(|p| p.into_inner()).lost.get_or_insert(format!("{reason:?}: {message}"));
        });
        Ok(Gpu {
            device,
            queue,
            caps,
            kernels: Mutex::new(HashMap::new()),
            kernel_labels: Mutex::new(Vec::new()),
            memory: Default::default(),
            counters: Counters::default(),
            faults,
        })
    }

    /// The error the device reported since the last check (validation, out of memory), or its
    /// loss. Cheap: callers check where work is submitted or read back, not per dispatch.
    pub fn check(&self) -> Result<(), GpuError> {
        let mut faults = self.faults.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(why) = &faults.lost {
            return Err(GpuError::Lost(why.clone()));
        }
        faults.first.take().map_or(Ok(()), Err)
    }

    /// Why the device was lost, if it was.
    pub fn lost(&self) -> Option<String> {
        self.faults.lock().unwrap_or_else(|p| p.into_inner()).lost.clone()
    }

    /// Runs `work` inside out-of-memory and validation error scopes, and records what they catch
    /// for [`Gpu::check`]: natively before this returns, in the browser when the scopes' promises
    /// settle (before a later read-back's).
    pub fn scoped<T>(&self, work: impl FnOnce() -> T) -> T {
        let oom = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let validation = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let out = work();
        let caught = [validation.pop(), oom.pop()];
        let faults = self.faults.clone();
        let record = async move {
            for scope in caught {
                if let Some(e) = scope.await {
                    Faults::record(&faults, e.into());
                }
            }
        };
        #[cfg(not(target_arch = "wasm32"))]
        pollster::block_on(record);
        #[cfg(target_arch = "wasm32")]
        wasm_bindgen_futures::spawn_local(record);
        out
    }

    /// Fails with the name of the limit when `bytes` cannot be bound at once.
    pub fn check_binding(&self, what: &str, bytes: u64) -> Result<(), GpuError> {
        if bytes > self.caps.max_binding() {
            return Err(GpuError::TooLarge {
                what: what.to_string(),
                bytes,
                limit: self.caps.max_binding(),
            });
        }
        Ok(())
    }

    /// A buffer, counted.
    pub fn create_buffer(&self, desc: &wgpu::BufferDescriptor) -> wgpu::Buffer {
        bump(&self.counters.buffers, 1);
        self.device.create_buffer(desc)
    }

    /// `queue.write_buffer`, counted.
    pub fn write_buffer(&self, buffer: &wgpu::Buffer, offset: u64, data: &[u8]) {
        bump(&self.counters.bytes_written, data.len() as u64);
        self.queue.write_buffer(buffer, offset, data);
    }

    /// Submits `cmd` and returns its number (the count of submits so far, this one included).
    pub fn submit(&self, cmd: wgpu::CommandBuffer) -> Submission {
        let index = self.queue.submit([cmd]);
        let number = self.counters.submits.fetch_add(1, Ordering::Relaxed) + 1;
        Submission { index, number }
    }

    /// Waits until the GPU has finished everything submitted (natively; a no-op in the browser,
    /// where mapping a buffer is the only way to wait).
    pub fn wait(&self) {
        #[cfg(not(target_arch = "wasm32"))]
        let _ = self.device.poll(wgpu::PollType::wait_indefinitely());
    }

    /// Resolves when the device has done everything asked of it so far (in the browser, whose
    /// GPU process handles requests in order, pipeline creation included).
    pub async fn settle(&self) {
        let (tx, rx) = futures_channel::oneshot::channel();
        self.queue.on_submitted_work_done(move || {
            let _ = tx.send(());
        });
        self.wait();
        let _ = rx.await;
    }

    /// Waits, natively, until `submission` has finished (and map callbacks up to it have run),
    /// leaving later submissions running; counted, and as a stall when nothing was submitted
    /// after it. In the browser callbacks arrive by themselves: only counted.
    pub fn wait_for(&self, submission: &Submission) {
        bump(&self.counters.waits, 1);
        if submission.number == self.counters.submits.load(Ordering::Relaxed) {
            bump(&self.counters.stalls, 1);
        }
        #[cfg(not(target_arch = "wasm32"))]
        let _ = self.device.poll(wgpu::PollType::Wait { submission_index: Some(submission.index.clone()), timeout: None });
    }

    /// Copies `size` bytes at `offset` of `buffer` back to the CPU.
    pub async fn read_bytes(
        &self,
        buffer: &wgpu::Buffer,
        offset: u64,
        size: u64,
    ) -> Result<Vec<u8>, GpuError> {
        let staging = self.create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback"),
            size,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut enc = self.device.create_command_encoder(&Default::default());
        enc.copy_buffer_to_buffer(buffer, offset, &staging, 0, size);
        let submission = self.submit(enc.finish());
        self.map_read(&staging, &submission).await
    }

    /// Maps `staging` (written by `submission`), copies its bytes out and unmaps it.
    pub async fn map_read(&self, staging: &wgpu::Buffer, submission: &Submission) -> Result<Vec<u8>, GpuError> {
        let (tx, rx) = futures_channel::oneshot::channel();
        staging.slice(..).map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        self.wait_for(submission);
        // A failed map is most often the device's loss or an earlier error: report that one.
        let mapped = rx.await.map_err(|_| "map callback dropped".to_string()).and_then(|r| r.map_err(|e| e.to_string()));
        self.check()?;
        mapped.map_err(GpuError::Map)?;
        let bytes = staging
            .slice(..)
            .get_mapped_range()
            .map_err(|e| GpuError::Map(e.to_string()))?
            .to_vec();
        staging.unmap();
        Ok(bytes)
    }

    /// The labels of every pipeline created so far, in order (the warm-up reports the new ones).
    pub fn kernel_labels(&self) -> Vec<String> {
        self.kernel_labels.lock().unwrap().clone()
    }

    /// Native convenience for tests, the CLI and benchmarks.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn read_bytes_blocking(&self, buffer: &wgpu::Buffer, offset: u64, size: u64) -> Result<Vec<u8>, GpuError> {
        pollster::block_on(self.read_bytes(buffer, offset, size))
    }
}
