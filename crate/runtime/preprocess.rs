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

/// A decoded RGB image: `height` rows of `width` pixels of 3 bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RgbImage {
    pub width: usize,
    pub height: usize,
    pub data: Vec<u8>,
}

impl RgbImage {
    pub fn new(width: usize, height: usize, data: Vec<u8>) -> Result<Self, RuntimeError> {
        if width == 0 || height == 0 || data.len() != width * height * 3 {
            return Err(RuntimeError::Pixels { width, height, channels: 3, len: data.len() });
        }
        Ok(RgbImage { width, height, data })
    }

    /// From straight (non-premultiplied) RGBA, e.g. a canvas `ImageData`: composited over white
    /// with Pillow's integer `alpha_composite`, which is what transformers' `convert_to_rgb` does to
    /// an RGBA PIL image. Opaque pixels are copied unchanged.
    pub fn from_rgba(width: usize, height: usize, rgba: &[u8]) -> Result<Self, RuntimeError> {
        if width == 0 || height == 0 || rgba.len() != width * height * 4 {
            return Err(RuntimeError::Pixels { width, height, channels: 4, len: rgba.len() });
        }
        let data = rgba.chunks_exact(4).flat_map(|p| over_white(p[3], [p[0], p[1], p[2]])).collect();
        Ok(RgbImage { width, height, data })
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
/// by the `image` crate (Pillow may differ there).
#[cfg(feature = "decode")]
pub fn decode_image(bytes: &[u8]) -> Result<RgbImage, RuntimeError> {
    use image::{DynamicImage, ImageDecoder, ImageReader};
    let err = |e: image::ImageError| RuntimeError::Decode(e.to_string());
    let reader = ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| RuntimeError::Decode(e.to_string()))?;
    let mut decoder = reader.into_decoder().map_err(err)?;
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

/// Python's `round` on a float: ties to even.
fn py_round(x: f64) -> f64 {
    x.round_ties_even()
}

/// transformers' `smart_resize` (qwen2_vl): the `(height, width)` closest to the input's that are
/// multiples of `factor` with `min_pixels ≤ h·w ≤ max_pixels`, keeping the aspect ratio as well as
/// it can. The ratio of the longer to the shorter side may not exceed 200.
pub fn smart_resize(
    height: usize,
    width: usize,
    factor: usize,
    min_pixels: usize,
    max_pixels: usize,
) -> Result<(usize, usize), RuntimeError> {
    check_aspect(height, width)?;
    let (h, w, f) = (height as f64, width as f64, factor as f64);
    let mut h_bar = py_round(h / f) as usize * factor;
    let mut w_bar = py_round(w / f) as usize * factor;
    if h_bar * w_bar > max_pixels {
        let beta = (h * w / max_pixels as f64).sqrt();
        h_bar = factor.max((h / beta / f).floor() as usize * factor);
        w_bar = factor.max((w / beta / f).floor() as usize * factor);
    } else if h_bar * w_bar < min_pixels {
        let beta = (min_pixels as f64 / (h * w)).sqrt();
        h_bar = (h * beta / f).ceil() as usize * factor;
        w_bar = (w * beta / f).ceil() as usize * factor;
    }
    Ok((h_bar, w_bar))
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

    /// transformers fuses rescale and normalise: `(x − mean/r) / (std/r)` with the float32
    /// products `mean·(1/r)`, `std·(1/r)` (`_fuse_mean_std_and_rescale_factor`, `tvF.normalize`).
    fn fused_mean_std(&self) -> ([f32; 3], [f32; 3]) {
        let inv = (1.0 / self.rescale_factor) as f32;
        (self.image_mean.map(|m| m * inv), self.image_std.map(|s| s * inv))
    }

    /// Normalises and patchifies frames of one size (`height × width × 3` u8 each, already
    /// resized to multiples of [`Self::factor`]), repeating the last frame up to a multiple of the
    /// temporal patch.
    pub fn patchify(&self, frames: &[&[u8]], height: usize, width: usize) -> VisionInput {
        let (p, tp, m) = (self.patch_size, self.temporal_patch_size, self.merge_size);
        assert!(!frames.is_empty(), "patchify: no frames");
        assert!(
            height.is_multiple_of(p * m) && width.is_multiple_of(p * m),
            "patchify: {height}x{width} not a multiple of {}",
            p * m
        );
        let nt = frames.len().div_ceil(tp);
        let frame = |i: usize| frames[i.min(frames.len() - 1)];
        let (gh, gw) = (height / p, width / p);
        let (mean, std) = self.fused_mean_std();
        let dim = 3 * tp * p * p;
        let mut out = vec![0f32; nt * gh * gw * dim];
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
        VisionInput { pixel_values: out, grid_thw: [nt, gh, gw] }
    }
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
        read_size(v, &mut p.min_pixels, &mut p.max_pixels);
        p.spec = read_spec(v, p.spec)?;
        Ok(p)
    }

    /// The resized `(height, width)` of an input of this size.
    pub fn smart_resize(&self, height: usize, width: usize) -> Result<(usize, usize), RuntimeError> {
        smart_resize(height, width, self.spec.factor(), self.min_pixels, self.max_pixels)
    }

    /// This processor with a request's pixel budget: `max_pixels` caps the configured maximum
    /// (images keep their aspect ratio and the factor); below the minimum it is an error.
    pub fn with_budget(&self, max_pixels: usize) -> Result<ImageProcessor, RuntimeError> {
        Ok(ImageProcessor { max_pixels: capped(self.min_pixels, self.max_pixels, max_pixels)?, ..self.clone() })
    }

    /// `pixel_values` and `image_grid_thw = (1, h/16, w/16)` of one image.
    pub fn preprocess(&self, image: &RgbImage) -> Result<VisionInput, RuntimeError> {
        let (h, w) = self.smart_resize(image.height, image.width)?;
        let resized = resize_bicubic(&image.data, image.width, image.height, 3, w, h, self.resampler);
        Ok(self.spec.patchify(&[&resized], h, w))
    }

    /// `<|image_pad|>` tokens an image of this size becomes, without processing it.
    pub fn num_image_tokens(&self, height: usize, width: usize) -> Result<usize, RuntimeError> {
        let (h, w) = self.smart_resize(height, width)?;
        Ok(h * w / (self.spec.factor() * self.spec.factor()))
    }
}

/// `size: {shortest_edge, longest_edge}` and the older `min_pixels` / `max_pixels` keys.
pub(crate) fn read_size(v: &serde_json::Value, min_pixels: &mut usize, max_pixels: &mut usize) {
    let get = |o: &serde_json::Value, k: &str| o.get(k).and_then(|x| x.as_u64()).map(|x| x as usize);
    if let Some(size) = v.get("size") {
        *min_pixels = get(size, "shortest_edge").unwrap_or(*min_pixels);
        *max_pixels = get(size, "longest_edge").unwrap_or(*max_pixels);
    }
    *min_pixels = get(v, "min_pixels").unwrap_or(*min_pixels);
    *max_pixels = get(v, "max_pixels").unwrap_or(*max_pixels);
}

pub(crate) fn read_spec(v: &serde_json::Value, mut s: PatchSpec) -> Result<PatchSpec, RuntimeError> {
    let int = |k: &str, d: usize| v.get(k).and_then(|x| x.as_u64()).map_or(d, |x| x as usize);
    let rgb = |k: &str, d: [f32; 3]| -> Result<[f32; 3], RuntimeError> {
        match v.get(k) {
            None => Ok(d),
            Some(x) => {
                let vals: Vec<f32> =
                    x.as_array().into_iter().flatten().filter_map(|e| e.as_f64()).map(|e| e as f32).collect();
                vals.try_into().map_err(|_| RuntimeError::Config(format!("`{k}` must hold three numbers")))
            }
        }
    };
    s.patch_size = int("patch_size", s.patch_size);
    s.temporal_patch_size = int("temporal_patch_size", s.temporal_patch_size);
    s.merge_size = int("merge_size", s.merge_size);
    s.image_mean = rgb("image_mean", s.image_mean)?;
    s.image_std = rgb("image_std", s.image_std)?;
    s.rescale_factor = v.get("rescale_factor").and_then(|x| x.as_f64()).unwrap_or(s.rescale_factor);
    if s.patch_size == 0 || s.temporal_patch_size == 0 || s.merge_size == 0 {
        return Err(RuntimeError::Config("patch, temporal patch and merge sizes must be positive".into()));
    }
    Ok(s)
}
