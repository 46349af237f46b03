//! Progress bars on stderr (indicatif): downloads, and the load (bytes read from the weight
//! files, which the loader quantizes and uploads as it reads them). Hidden with `--quiet`, and by
//! indicatif when stderr is not a terminal, so scripts and `--json` see no bar.

use std::sync::OnceLock;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use qwen3_vl_webgpu::model::{LoadError, Source};

static QUIET: OnceLock<bool> = OnceLock::new();

/// `--quiet`, for the whole process (set once by `main`).
pub fn set_quiet(quiet: bool) {
    let _ = QUIET.set(quiet);
}

/// A byte-counting bar of `len` bytes (0: unknown yet, grown with `inc_length`).
pub fn bytes(len: u64, message: impl Into<String>) -> ProgressBar {
    let target = match QUIET.get() {
        Some(true) => ProgressDrawTarget::hidden(),
        _ => ProgressDrawTarget::stderr(),
    };
    let bar = ProgressBar::with_draw_target(Some(len), target);
    let style = ProgressStyle::with_template("{msg:20!} [{wide_bar}] {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} ETA {eta}")
        .expect("a valid template")
        .progress_chars("=> ");
    bar.set_style(style);
    bar.set_message(message.into());
    bar
}

/// A [`Source`] whose reads advance `bar`.
struct Counted {
    inner: Box<dyn Source>,
    bar: ProgressBar,
}

impl Source for Counted {
    fn len(&self) -> u64 {
        self.inner.len()
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        self.inner.read_at(offset, buf)?;
        self.bar.inc(buf.len() as u64);
        Ok(())
    }
}

/// Wraps a loader's `open` callback ([`qwen3_vl_webgpu::model::ModelFolder::load`]) so that
/// every byte read from the files it opens advances `bar`, whose length grows by each file's size.
pub fn counted<'a>(
    mut open: impl FnMut(&str) -> Result<Option<Box<dyn Source>>, LoadError> + 'a,
    bar: &ProgressBar,
) -> impl FnMut(&str) -> Result<Option<Box<dyn Source>>, LoadError> + 'a {
    let bar = bar.clone();
    move |name| {
        Ok(open(name)?.map(|inner| {
            bar.inc_length(inner.len());
            Box::new(Counted { inner, bar: bar.clone() }) as Box<dyn Source>
        }))
    }
}

/// hf-hub's download callbacks on a bar (one file at a time; a resumed download starts at the
/// bytes already on disk).
pub struct Download(pub ProgressBar);

impl hf_hub::api::Progress for Download {
    fn init(&mut self, size: usize, filename: &str) {
        self.0.set_length(size as u64);
        self.0.set_position(0);
        self.0.set_message(filename.to_string());
        self.0.reset_eta();
    }
    fn update(&mut self, size: usize) {
        self.0.inc(size as u64);
    }
    fn finish(&mut self) {}
}
