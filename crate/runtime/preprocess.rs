//! Images to `pixel_values`, as transformers' `Qwen2VLImageProcessor` (torchvision backend) does
//! for Qwen3-VL: `smart_resize` to multiples of patch·merge = 32 within the pixel budget, antialiased
//! bicubic on the uint8 pixels ([`super::resize`]), a fused rescale+normalise in f32, the frame
//! duplicated to fill the temporal patch, and the block-major patch order.
//!
//! One row of `pixel_values` is one 2×16×16 patch of all three channels, flattened as
//! `((c·2 + t)·16 + py)·16 + px`. Rows are ordered by temporal patch, then merged block (row-major
//! over the `gh/2 × gw/2` blocks), then the 2×2 patches inside the block (row-major), which is
//! `view(gt, 2, C, gh/2, 2, 16, gw/2, 2, 16).permute(0,3,6,4,7,2,1,5,8)` in transformers.

use super::resize::{resize_bicubic, Resampler};
use super::RuntimeError;
pub use crate::model::config::MAX_PIXELS;

/// The most host memory one image or video may take at a step of its preprocessing (decoded
/// pixels, resized frames, `pixel_values`), checked before allocating: 1 GiB, a quarter of a
/// wasm32 heap.
pub const HOST_BUDGET: usize = 1 << 30;
/// The longest side of an image file decoded: the browser face takes the same (WebGPU's
/// largest 2-D texture is 8192).
pub const MAX_SIDE: u32 = 16384;
/// The most frames a temporal patch may hold (Qwen-VL's is 2): an image is repeated this often.
pub const MAX_TEMPORAL_PATCH: usize = 16;

/// A decoded RGB image: `height` rows of `width` pixels of 3 bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RgbImage {
    pub width: usize,
    pub height: usize,
    pub data: Vec<u8>,
}

impl RgbImage {
    pub fn new(width: usize, height: usize, data: Vec<u8>) -> Result<Self, RuntimeError> {
        let image = RgbImage { width, height, data };
        image.check()?;
        Ok(image)
    }

    /// The fields agree (they are public): both sides non-zero, 3 bytes a pixel.
    pub fn check(&self) -> Result<(), RuntimeError> {
        check_pixels(self.width, self.height, 3, self.data.len())
    }

    /// From straight (non-premultiplied) RGBA, e.g. a canvas `ImageData`: composited over white
    /// with Pillow's integer `alpha_composite`, which is what transformers' `convert_to_rgb` does to
    /// an RGBA PIL image. Opaque pixels are copied unchanged.
    pub fn from_rgba(width: usize, height: usize, rgba: &[u8]) -> Result<Self, RuntimeError> {
        check_pixels(width, height, 4, rgba.len())?;
        let data = rgba.chunks_exact(4).flat_map(|p| over_white(p[3], [p[0], p[1], p[2]])).collect();
        Ok(RgbImage { width, height, data })
    }
}

fn check_pixels(width: usize, height: usize, channels: usize, len: usize) -> Result<(), RuntimeError> {
    match width.checked_mul(height).and_then(|n| n.checked_mul(channels)) {
        Some(n) if n == len && n > 0 => Ok(()),
        _ => Err(RuntimeError::Pixels { width, height, channels, len }),
    }
}

/// Pillow's `ImagingAlphaComposite` of a pixel over an opaque white background (7 extra bits).
fn over_white(alpha: u8, rgb: [u8; 3]) -> [u8; 3] {
    const PRECISION_BITS: u32 = 7;
    let shift_for_div255 = |a: u32| ((a >> 8) + a) >> 8;
    match alpha {
        255 => rgb,
        0 => [255; 3],
        a => {
            let a = a as u32;
            let coef1 = a << PRECISION_BITS; // a·255·255·2^7 / (255·255): exact with a white background.
            let coef2 = (255 << PRECISION_BITS) - coef1;
            rgb.map(|v| {
                let tmp = v as u32 * coef1 + 255 * coef2;
                (shift_for_div255(tmp + (0x80 << PRECISION_BITS)) >> PRECISION_BITS) as u8
            })
        }
    }
}

/// Decodes a PNG or JPEG file to RGB, applying the EXIF orientation and compositing any alpha over
/// white, as transformers' `load_image` + `convert_to_rgb` do. 16-bit images are reduced to 8 bits
/// by the `image` crate (Pillow may differ there). At most [`MAX_SIDE`] a side and
/// [`HOST_BUDGET`] bytes of decoding; a file cut short is an error.
#[cfg(feature = "decode")]
pub fn decode_image(bytes: &[u8]) -> Result<RgbImage, RuntimeError> {
    decode_image_within(bytes, HOST_BUDGET)
}

/// [`decode_image`] within `max_bytes`: the decoded pixels, their oriented copy and the RGB
/// conversion together, from the header's size before anything is decoded (a 100000×100000
/// PNG of a few bytes is refused, not allocated). Pillow refuses truncated files, but the
/// `image` crate fills a JPEG cut short with grey, so JPEGs must reach their end marker.
#[cfg(feature = "decode")]
pub fn decode_image_within(bytes: &[u8], max_bytes: usize) -> Result<RgbImage, RuntimeError> {
    use image::{DynamicImage, ImageDecoder, ImageError, ImageFormat, ImageReader, Limits};
    let err = |e: ImageError| match e {
        ImageError::Limits(e) => RuntimeError::Size(format!("the image is past the decoder's limits ({e}): {MAX_SIDE} pixels a side, {max_bytes} bytes")),
        e => RuntimeError::Decode(e.to_string()),
    };
    let mut reader = ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| RuntimeError::Decode(e.to_string()))?;
    if reader.format() == Some(ImageFormat::Jpeg) && !jpeg_is_complete(bytes) {
        return Err(RuntimeError::Decode("the JPEG ends before its end-of-image marker: the file is truncated".into()));
    }
    let mut limits = Limits::default();
    (limits.max_image_width, limits.max_image_height, limits.max_alloc) = (Some(MAX_SIDE), Some(MAX_SIDE), Some(max_bytes as u64));
    reader.limits(limits);
    let mut decoder = reader.into_decoder().map_err(err)?;
    let (w, h) = decoder.dimensions();
    let need = decoder.total_bytes().saturating_mul(2).saturating_add(4 * w as u64 * h as u64);
    if need > max_bytes as u64 {
        return Err(RuntimeError::Size(format!("a {w}x{h} image needs {need} bytes to decode, more than the {max_bytes} allowed")));
    }
    let orientation = decoder.orientation().map_err(err)?;
    let mut img = DynamicImage::from_decoder(decoder).map_err(err)?;
    img.apply_orientation(orientation);
    let (width, height) = (img.width() as usize, img.height() as usize);
    if img.color().has_alpha() {
        RgbImage::from_rgba(width, height, img.to_rgba8().as_raw())
    } else {
        RgbImage::new(width, height, img.to_rgb8().into_raw())
    }
}

/// Whether a JPEG's bytes reach its end-of-image marker. Walks the marker segments (skipping
/// each by its length, so the markers of an embedded thumbnail do not count) and, after each
/// start of scan, the entropy-coded data up to the next marker that is neither a stuffed
/// `FF 00` nor a restart.
#[cfg(feature = "decode")]
fn jpeg_is_complete(b: &[u8]) -> bool {
    let mut i = 2; // past the start-of-image marker the format guess saw
    loop {
        while b.get(i) == Some(&0xFF) && b.get(i + 1) == Some(&0xFF) {
            i += 1; // fill bytes before a marker
        }
        let (Some(0xFF), Some(&code)) = (b.get(i), b.get(i + 1)) else { return false };
        i += 2;
        match code {
            0xD9 => return true,
            0x01 | 0xD0..=0xD7 => continue,
            _ => {
                let Some(&[hi, lo]) = b.get(i..i + 2) else { return false };
                i += u16::from_be_bytes([hi, lo]) as usize;
                if code == 0xDA {
                    loop {
                        let Some(j) = b.get(i..).and_then(|rest| rest.iter().position(|&x| x == 0xFF)) else { return false };
                        match b.get(i + j + 1) {
                            Some(0x00 | 0xD0..=0xD7) => i += j + 2,
                            _ => {
                                i += j;
                                break;
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Python's `round` on a float: ties to even.
fn py_round(x: f64) -> f64 {
    x.round_ties_even()
}

/// transformers' `smart_resize` (qwen2_vl): the `(height, width)` closest to the input's that are
/// multiples of `factor` with `min_pixels ≤ h·w ≤ max_pixels`, keeping the aspect ratio as well as
/// it can. The ratio of the longer to the shorter side may not exceed 200; a result with an empty
/// side (a tiny image with `min_pixels` 0) is an error, as resizing to it is in transformers.
pub fn smart_resize(
    height: usize,
    width: usize,
    factor: usize,
    min_pixels: usize,
    max_pixels: usize,
) -> Result<(usize, usize), RuntimeError> {
    check_aspect(height, width)?;
    let (h, w, f) = (height as f64, width as f64, factor as f64);
    let mut h_bar = blocks(py_round(h / f), factor)?;
    let mut w_bar = blocks(py_round(w / f), factor)?;
    if area(h_bar, w_bar)? > max_pixels {
        let beta = (h * w / max_pixels as f64).sqrt();
        h_bar = factor.max(blocks((h / beta / f).floor(), factor)?);
        w_bar = factor.max(blocks((w / beta / f).floor(), factor)?);
    } else if area(h_bar, w_bar)? < min_pixels {
        let beta = (min_pixels as f64 / (h * w)).sqrt();
        h_bar = blocks((h * beta / f).ceil(), factor)?;
        w_bar = blocks((w * beta / f).ceil(), factor)?;
    }
    resized(height, width, h_bar, w_bar)
}

/// `n · factor` for a whole number of blocks `n` computed in f64 (which saturates into usize).
pub(crate) fn blocks(n: f64, factor: usize) -> Result<usize, RuntimeError> {
    (n as usize).checked_mul(factor).ok_or_else(|| RuntimeError::Size(format!("{n}·{factor} pixels overflow")))
}

pub(crate) fn area(h: usize, w: usize) -> Result<usize, RuntimeError> {
    h.checked_mul(w).ok_or_else(|| RuntimeError::Size(format!("{h}x{w} pixels overflow")))
}

/// A resize result, refused when a side is empty or the area leaves [`MAX_PIXELS`].
pub(crate) fn resized(height: usize, width: usize, h: usize, w: usize) -> Result<(usize, usize), RuntimeError> {
    if h == 0 || w == 0 || area(h, w)? > MAX_PIXELS {
        return Err(RuntimeError::Size(format!(
            "a {height}x{width} image resizes to {h}x{w}, not 1 to {MAX_PIXELS} pixels: check min_pixels / max_pixels"
        )));
    }
    Ok((h, w))
}

/// The configured `max_pixels` capped by a request's `budget`, which may not undercut `min_pixels`.
pub(crate) fn capped(min_pixels: usize, max_pixels: usize, budget: usize) -> Result<usize, RuntimeError> {
    match budget < min_pixels {
        true => Err(RuntimeError::Budget { max_pixels: budget, min_pixels }),
        false => Ok(max_pixels.min(budget)),
    }
}

pub(crate) fn check_aspect(height: usize, width: usize) -> Result<(), RuntimeError> {
    let (lo, hi) = (height.min(width), height.max(width));
    if lo == 0 || hi as f64 / lo as f64 > 200.0 {
        return Err(RuntimeError::AspectRatio { height, width });
    }
    Ok(())
}

/// What the vision tower takes for one image or video: `pixel_values` rows and their grid.
#[derive(Clone, Debug, PartialEq)]
pub struct VisionInput {
    /// `[t·h·w, 3·temporal·patch·patch]` row-major, in the block-major patch order.
    pub pixel_values: Vec<f32>,
    /// `(t, h, w)` in patches: temporal patches, patch rows, patch columns.
    pub grid_thw: [usize; 3],
}

impl VisionInput {
    pub fn num_patches(&self) -> usize {
        self.grid_thw.iter().product()
    }

    /// The grid describes `pixel_values` (their fields are public): the product of a grid
    /// that is not backed by that many rows would size the prompt's placeholders unchecked.
    pub fn check(&self, merge_size: usize) -> Result<(), RuntimeError> {
        let [t, h, w] = self.grid_thw;
        let n = t.checked_mul(h).and_then(|th| th.checked_mul(w));
        let ok = merge_size > 0
            && h.is_multiple_of(merge_size)
            && w.is_multiple_of(merge_size)
            && n.is_some_and(|n| n > 0 && self.pixel_values.len().is_multiple_of(n) && self.pixel_values.len() >= n);
        if !ok {
            return Err(RuntimeError::Size(format!(
                "a vision input of grid {:?} (merge {merge_size}) and {} pixel values does not fit together",
                self.grid_thw,
                self.pixel_values.len()
            )));
        }
        Ok(())
    }

    /// Length of one row of `pixel_values`.
    pub fn patch_dim(&self) -> usize {
        self.pixel_values.len() / self.num_patches().max(1)
    }
    /// Tokens the LLM sees: one per merged `merge × merge` block.
    pub fn num_tokens(&self, merge_size: usize) -> usize {
        self.num_patches() / (merge_size * merge_size)
    }
}

/// Patch geometry and normalisation shared by the image and video processors.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PatchSpec {
    pub patch_size: usize,
    pub temporal_patch_size: usize,
    pub merge_size: usize,
    pub image_mean: [f32; 3],
    pub image_std: [f32; 3],
    pub rescale_factor: f64,
}

impl Default for PatchSpec {
    /// Qwen3-VL: 16×16 patches, 2 frames, 2×2 merge, mean = std = 0.5, 1/255.
    fn default() -> Self {
        PatchSpec {
            patch_size: 16,
            temporal_patch_size: 2,
            merge_size: 2,
            image_mean: [0.5; 3],
            image_std: [0.5; 3],
            rescale_factor: 1.0 / 255.0,
        }
    }
}

impl PatchSpec {
    /// Resize granularity: one merged block.
    pub fn factor(&self) -> usize {
        self.patch_size * self.merge_size
    }

    /// Sizes whose merged block fits [`MAX_PIXELS`], a temporal patch of 1 to
    /// [`MAX_TEMPORAL_PATCH`], a positive rescale factor, and a normalisation that takes every
    /// u8 value to a finite number (positive stds): the processor reads all of them from a file.
    pub fn validate(&self) -> Result<(), RuntimeError> {
        let config = |e: String| Err(RuntimeError::Config(e));
        let (p, m, tp) = (self.patch_size, self.merge_size, self.temporal_patch_size);
        if p == 0 || m == 0 || p.checked_mul(m).and_then(|f| f.checked_mul(f)).is_none_or(|f2| f2 > MAX_PIXELS) {
            return config(format!("patch_size {p} · merge_size {m} must be a positive block of at most {MAX_PIXELS} pixels"));
        }
        if !(1..=MAX_TEMPORAL_PATCH).contains(&tp) {
            return config(format!("temporal_patch_size {tp} must be 1 to {MAX_TEMPORAL_PATCH}"));
        }
        let r = self.rescale_factor;
        if !(r.is_finite() && r > 0.0 && ((1.0 / r) as f32).is_finite()) {
            return config(format!("rescale_factor {r} must be a positive number whose inverse is a finite f32"));
        }
        let (mean, std) = self.fused_mean_std();
        for c in 0..3 {
            let extremes = [0.0f32, 255.0].map(|x| (x - mean[c]) / std[c]);
            if !(std[c] > 0.0 && extremes.iter().all(|v| v.is_finite())) {
                return config(format!(
                    "image_mean {:?} / image_std {:?} (rescale {r}) do not normalise channel {c} to finite values",
                    self.image_mean, self.image_std
                ));
            }
        }
        Ok(())
    }

    /// transformers fuses rescale and normalise: `(x − mean/r) / (std/r)` with the float32
    /// products `mean·(1/r)`, `std·(1/r)` (`_fuse_mean_std_and_rescale_factor`, `tvF.normalize`).
    fn fused_mean_std(&self) -> ([f32; 3], [f32; 3]) {
        let inv = (1.0 / self.rescale_factor) as f32;
        (self.image_mean.map(|m| m * inv), self.image_std.map(|s| s * inv))
    }

    /// Normalises and patchifies frames of one size (`height × width × 3` u8 each, already
    /// resized to multiples of [`Self::factor`]), repeating the last frame up to a multiple of the
    /// temporal patch. `pixel_values` may take at most [`HOST_BUDGET`] bytes.
    pub fn patchify(&self, frames: &[&[u8]], height: usize, width: usize) -> Result<VisionInput, RuntimeError> {
        self.validate()?;
        let (p, tp, m) = (self.patch_size, self.temporal_patch_size, self.merge_size);
        let frame_bytes = area(height, width)?.checked_mul(3);
        if frames.is_empty() || frames.iter().any(|f| Some(f.len()) != frame_bytes) {
            return Err(RuntimeError::Video(format!("patchify needs frames of {height}x{width} RGB pixels")));
        }
        if !(height.is_multiple_of(p * m) && width.is_multiple_of(p * m)) {
            return Err(RuntimeError::Size(format!("patchify: {height}x{width} is not a multiple of {}", p * m)));
        }
        let nt = frames.len().div_ceil(tp);
        let frame = |i: usize| frames[i.min(frames.len() - 1)];
        let (gh, gw) = (height / p, width / p);
        let (mean, std) = self.fused_mean_std();
        let dim = 3 * tp * p * p;
        let values = budget("pixel_values", &[nt, tp, height, width, 3], 4)? / 4;
        let mut out = vec![0f32; values];
        let mut rows = out.chunks_exact_mut(dim);
        for t in 0..nt {
            for bh in 0..gh / m {
                for bw in 0..gw / m {
                    for mh in 0..m {
                        for mw in 0..m {
                            let row = rows.next().unwrap();
                            let (y0, x0) = ((bh * m + mh) * p, (bw * m + mw) * p);
                            for c in 0..3 {
                                for tt in 0..tp {
                                    let src = frame(t * tp + tt);
                                    for py in 0..p {
                                        let base = ((c * tp + tt) * p + py) * p;
                                        let line = &src[((y0 + py) * width + x0) * 3..];
                                        for px in 0..p {
                                            row[base + px] = (line[px * 3 + c] as f32 - mean[c]) / std[c];
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        Ok(VisionInput { pixel_values: out, grid_thw: [nt, gh, gw] })
    }
}

/// The bytes of a buffer of `dims` elements of `size` bytes, when within [`HOST_BUDGET`].
pub(crate) fn budget(what: &str, dims: &[usize], size: usize) -> Result<usize, RuntimeError> {
    dims.iter()
        .try_fold(size, |acc, &d| acc.checked_mul(d))
        .filter(|&b| b <= HOST_BUDGET)
        .ok_or_else(|| RuntimeError::Size(format!("{what} of {dims:?} would take more than the {HOST_BUDGET} bytes allowed")))
}

/// The image half of the Qwen3-VL preprocessor (`preprocessor_config.json`).
#[derive(Clone, Debug, PartialEq)]
pub struct ImageProcessor {
    /// `size.shortest_edge`: the least pixels after resizing (despite the name).
    pub min_pixels: usize,
    /// `size.longest_edge`: the most pixels after resizing.
    pub max_pixels: usize,
    pub spec: PatchSpec,
    pub resampler: Resampler,
}

impl Default for ImageProcessor {
    /// Qwen3-VL-2B/4B-Instruct: 64 to 16384 merged tokens (65536 to 16777216 pixels).
    fn default() -> Self {
        ImageProcessor {
            min_pixels: 65536,
            max_pixels: 16_777_216,
            spec: PatchSpec::default(),
            resampler: Resampler::Torchvision,
        }
    }
}

impl ImageProcessor {
    /// From `preprocessor_config.json` (or the `image_processor` part of `processor_config.json`);
    /// keys it lacks keep the Qwen3-VL defaults, and `min_pixels`/`max_pixels` override `size`.
    pub fn from_config_json(json: &str) -> Result<Self, RuntimeError> {
        let v: serde_json::Value = serde_json::from_str(json).map_err(|e| RuntimeError::Config(e.to_string()))?;
        let v = v.get("image_processor").unwrap_or(&v);
        let mut p = ImageProcessor::default();
        read_size(v, &mut p.min_pixels, &mut p.max_pixels)?;
        p.spec = read_spec(v, p.spec)?;
        Ok(p)
    }

    /// The resized `(height, width)` of an input of this size.
    pub fn smart_resize(&self, height: usize, width: usize) -> Result<(usize, usize), RuntimeError> {
        self.spec.validate()?;
        check_budget(self.min_pixels, self.max_pixels)?;
        smart_resize(height, width, self.spec.factor(), self.min_pixels, self.max_pixels)
    }

    /// This processor with a request's pixel budget: `max_pixels` caps the configured maximum
    /// (images keep their aspect ratio and the factor); below the minimum it is an error.
    pub fn with_budget(&self, max_pixels: usize) -> Result<ImageProcessor, RuntimeError> {
        Ok(ImageProcessor { max_pixels: capped(self.min_pixels, self.max_pixels, max_pixels)?, ..self.clone() })
    }

    /// `pixel_values` and `image_grid_thw = (1, h/16, w/16)` of one image.
    pub fn preprocess(&self, image: &RgbImage) -> Result<VisionInput, RuntimeError> {
        image.check()?;
        let (h, w) = self.smart_resize(image.height, image.width)?;
        budget("pixel_values", &[self.spec.temporal_patch_size, h, w, 3], 4)?;
        let resized = resize_bicubic(&image.data, image.width, image.height, 3, w, h, self.resampler);
        self.spec.patchify(&[&resized], h, w)
    }

    /// `<|image_pad|>` tokens an image of this size becomes, without processing it.
    pub fn num_image_tokens(&self, height: usize, width: usize) -> Result<usize, RuntimeError> {
        let (h, w) = self.smart_resize(height, width)?;
        Ok(h * w / (self.spec.factor() * self.spec.factor()))
    }
}

/// `size: {shortest_edge, longest_edge}` and the older `min_pixels` / `max_pixels` keys.
pub(crate) fn read_size(v: &serde_json::Value, min_pixels: &mut usize, max_pixels: &mut usize) -> Result<(), RuntimeError> {
    if let Some(size) = v.get("size").filter(|s| !s.is_null()) {
        *min_pixels = int(size, "shortest_edge")?.unwrap_or(*min_pixels);
        *max_pixels = int(size, "longest_edge")?.unwrap_or(*max_pixels);
    }
    *min_pixels = int(v, "min_pixels")?.unwrap_or(*min_pixels);
    *max_pixels = int(v, "max_pixels")?.unwrap_or(*max_pixels);
    check_budget(*min_pixels, *max_pixels)
}

/// A pixel budget `min ≤ max` with `1 ≤ max ≤ MAX_PIXELS`.
pub(crate) fn check_budget(min_pixels: usize, max_pixels: usize) -> Result<(), RuntimeError> {
    if min_pixels > max_pixels || !(1..=MAX_PIXELS).contains(&max_pixels) {
        return Err(RuntimeError::Config(format!(
            "min_pixels {min_pixels} / max_pixels {max_pixels} must satisfy min ≤ max and 1 ≤ max ≤ {MAX_PIXELS}"
        )));
    }
    Ok(())
}

/// Key `k` of `v` as a non-negative integer: `None` when absent or null, an error for any
/// other type (a silently ignored value would be a silently wrong one).
pub(crate) fn int(v: &serde_json::Value, k: &str) -> Result<Option<usize>, RuntimeError> {
    match v.get(k).filter(|x| !x.is_null()) {
        None => Ok(None),
        Some(x) => x
            .as_u64()
            .and_then(|n| usize::try_from(n).ok())
            .map(Some)
            .ok_or_else(|| RuntimeError::Config(format!("`{k}` must be a non-negative integer, not {x}"))),
    }
}

/// Key `k` of `v` as a number, as [`int`].
pub(crate) fn number(v: &serde_json::Value, k: &str) -> Result<Option<f64>, RuntimeError> {
    match v.get(k).filter(|x| !x.is_null()) {
        None => Ok(None),
        Some(x) => x.as_f64().map(Some).ok_or_else(|| RuntimeError::Config(format!("`{k}` must be a number, not {x}"))),
    }
}

pub(crate) fn read_spec(v: &serde_json::Value, mut s: PatchSpec) -> Result<PatchSpec, RuntimeError> {
    let rgb = |k: &str, d: [f32; 3]| -> Result<[f32; 3], RuntimeError> {
        match v.get(k).filter(|x| !x.is_null()) {
            None => Ok(d),
            Some(x) => {
                let vals: Option<Vec<f32>> = x.as_array().and_then(|a| a.iter().map(|e| e.as_f64().map(|e| e as f32)).collect());
                vals.and_then(|v| v.try_into().ok()).ok_or_else(|| RuntimeError::Config(format!("`{k}` must hold three numbers")))
            }
        }
    };
    s.patch_size = int(v, "patch_size")?.unwrap_or(s.patch_size);
    s.temporal_patch_size = int(v, "temporal_patch_size")?.unwrap_or(s.temporal_patch_size);
    s.merge_size = int(v, "merge_size")?.unwrap_or(s.merge_size);
    s.image_mean = rgb("image_mean", s.image_mean)?;
    s.image_std = rgb("image_std", s.image_std)?;
    s.rescale_factor = number(v, "rescale_factor")?.unwrap_or(s.rescale_factor);
    s.validate()?;
    Ok(s)
}
