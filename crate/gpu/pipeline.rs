//! Compute pipelines built from one WGSL file per op family, specialised by a tiny line
//! preprocessor (`#if NAME` / `#else` / `#endif` / `#include "common/x.wgsl"`) plus `const`
//! declarations prepended from Rust. Compiled pipelines are cached by their full key.

use std::sync::Arc;

use super::Gpu;

/// Shared WGSL pieces that kernels `#include`.
const COMMON: &[(&str, &str)] = &[
    ("common/reduce.wgsl", include_str!("../../shaders/common/reduce.wgsl")),
    ("common/pack.wgsl", include_str!("../../shaders/common/pack.wgsl")),
    ("common/step.wgsl", include_str!("../../shaders/common/step.wgsl")),
    ("common/head_rope.wgsl", include_str!("../../shaders/common/head_rope.wgsl")),
];

/// One pipeline: a shader file, an entry point, feature flags and numeric constants.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct KernelKey {
    /// File stem under `shaders/`, also the pipeline label's prefix.
    pub shader: &'static str,
    pub entry: &'static str,
    /// Names that `#if` tests (`SUBGROUPS`, `F16`, …). `F16` also emits `enable f16;` (naga
    /// takes subgroup builtins without an `enable`; wgpu offers subgroups only natively).
    pub flags: Vec<&'static str>,
    /// Prepended as `const NAME: u32 = VALUE;` (workgroup sizes, tile sizes).
    pub consts: Vec<(&'static str, u32)>,
}

impl KernelKey {
    pub fn new(shader: &'static str, entry: &'static str) -> Self {
        KernelKey { shader, entry, flags: Vec::new(), consts: Vec::new() }
    }
    pub fn flag(mut self, name: &'static str, on: bool) -> Self {
        if on {
            self.flags.push(name);
        }
        self
    }
    pub fn konst(mut self, name: &'static str, value: u32) -> Self {
        self.consts.push((name, value));
        self
    }
    /// `matmul.gemv.SUBGROUPS.WG=256`: names the variant in errors and traces.
    pub fn label(&self) -> String {
        let mut s = format!("{}.{}", self.shader, self.entry);
        for f in &self.flags {
            s += &format!(".{f}");
        }
        for (n, v) in &self.consts {
            s += &format!(".{n}={v}");
        }
        s
    }
}

pub struct Kernel {
    pub pipeline: wgpu::ComputePipeline,
    pub layout: wgpu::BindGroupLayout,
    pub label: String,
    /// Shader file and entry point: what profiles group GPU time by.
    pub family: (&'static str, &'static str),
}

/// Expands `#include` and keeps the lines whose `#if` conditions hold.
pub fn preprocess(source: &str, flags: &[&str]) -> Result<String, String> {
    let mut out = String::new();
    // Whether each open `#if` branch is taken; a line is kept when all are.
    let mut stack: Vec<bool> = Vec::new();
    for (n, line) in source.lines().enumerate() {
        let t = line.trim_start();
        let dead = stack.contains(&false);
        if let Some(name) = t.strip_prefix("#if ") {
            stack.push(flags.contains(&name.trim()));
        } else if t.starts_with("#else") {
            let top = stack.last_mut().ok_or(format!("line {}: #else without #if", n + 1))?;
            *top = !*top;
        } else if t.starts_with("#endif") {
            stack.pop().ok_or(format!("line {}: #endif without #if", n + 1))?;
        } else if let Some(path) = t.strip_prefix("#include ") {
            if !dead {
                let path = path.trim().trim_matches('"');
                let (_, text) = COMMON
                    .iter()
                    .find(|(p, _)| *p == path)
                    .ok_or(format!("line {}: unknown include {path}", n + 1))?;
                out += &preprocess(text, flags)?;
            }
        } else if !dead {
            out += line;
            out.push('\n');
        }
    }
    if !stack.is_empty() {
        return Err("unterminated #if".into());
    }
    Ok(out)
}

/// The full WGSL text for a key: the `enable` directive, constants, then the preprocessed body.
pub fn specialise(key: &KernelKey, source: &str) -> Result<String, String> {
    let mut head = String::new();
    if key.flags.contains(&"F16") {
        head += "enable f16;\n";
    }
    for (name, value) in &key.consts {
        head += &format!("const {name}: u32 = {value}u;\n");
    }
    Ok(head + &preprocess(source, &key.flags)?)
}

impl Gpu {
    /// The cached pipeline for `key`, compiling `source` (the shader file's text) on a miss.
    pub fn kernel(&self, key: KernelKey, source: &str) -> Arc<Kernel> {
        let mut cache = self.kernels.lock().unwrap();
        if let Some(k) = cache.get(&key) {
            return k.clone();
        }
        let label = key.label();
        // A preprocessing error is a bug in a shader file, caught by the kernel tests.
        let code = specialise(&key, source).unwrap_or_else(|e| panic!("{label}: {e}"));
        let module = self.device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some(&label),
            source: wgpu::ShaderSource::Wgsl(code.into()),
        });
        let pipeline = self.device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(&label),
            layout: None,
            module: &module,
            entry_point: Some(key.entry),
            compilation_options: Default::default(),
            cache: None,
        });
        let layout = pipeline.get_bind_group_layout(0);
        super::context::bump(&self.counters.pipelines, 1);
        self.kernel_labels.lock().unwrap().push(label.clone());
        let k = Arc::new(Kernel { pipeline, layout, label, family: (key.shader, key.entry) });
        cache.insert(key, k.clone());
        k
    }
}
