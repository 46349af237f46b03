//! Separable bicubic resampling of 8-bit images with antialiasing, integer for integer what the
//! reference preprocessors do.
//!
//! transformers' Qwen2-VL image processor (the torchvision backend, the default since the Qwen3-VL
//! `preprocessor_config.json` names `Qwen2VLImageProcessorFast`) and the Qwen3-VL video processor
//! call `torchvision.transforms.v2.functional.resize(uint8, BICUBIC, antialias=True)` *on the uint8
//! tensor*, before any rescaling. On the CPU torchvision keeps uint8 for bicubic and PyTorch runs its
//! Pillow-derived fixed-point kernel (`_upsample_bicubic2d_aa`, uint8 path): per output sample a
//! window of Keys cubic taps (a = −0.5) widened by the scale when downscaling (that is the
//! antialiasing), normalised, quantised to int16 with a shared precision, then
//! `clamp((2^(p−1) + Σ src·w) >> p, 0, 255)`. The width is resampled first into a uint8
//! intermediate, then the height; an unchanged dimension is not touched.
//!
//! Pillow (`Image.resize(BICUBIC)`, the PIL backend and qwen-vl-utils) runs the same algorithm with
//! 22-bit int32 weights instead ([`Resampler::Pil`] reproduces it). Measured on ten random and
//! smooth images (up- and downscaling, 32×32 to 1920×1088): torchvision and Pillow differ by 1 (once
//! 2) on 0.1–0.9 % of the values; each variant here equals its reference exactly on all of them,
//! and the Torchvision one gives transformers 5.23's `pixel_values` bit for bit.

/// Which reference the fixed-point weights follow.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Resampler {
    /// PyTorch's uint8 antialiased bicubic (torchvision `F.resize` on a uint8 tensor, CPU):
    /// int16 weights, precision chosen from the largest weight.
    #[default]
    Torchvision,
    /// Pillow's `ImagingResample` with the BICUBIC filter: 22-bit weights.
    Pil,
}

/// Keys' cubic convolution kernel with a = −0.5, as PyTorch's `aa_filter` writes it.
fn cubic_torch(x: f64) -> f64 {
    const A: f64 = -0.5;
    let x = x.abs();
    if x < 1.0 {
        ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        ((A * x - 5.0 * A) * x + 8.0 * A) * x - 4.0 * A
    } else {
        0.0
    }
}

/// The same kernel as Pillow's `bicubic_filter` writes it (the float rounding differs by an ulp).
fn cubic_pil(x: f64) -> f64 {
    const A: f64 = -0.5;
    let x = x.abs();
    if x < 1.0 {
        ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * A
    } else {
        0.0
    }
}

/// The taps of every output sample along one dimension.
struct Taps {
    /// First input index of each output sample.
    start: Vec<usize>,
    /// Number of taps of each output sample (≤ `ksize`).
    len: Vec<usize>,
    /// `out × ksize` fixed-point weights.
    weights: Vec<i32>,
    ksize: usize,
    /// Fraction bits of `weights`.
    precision: u32,
}

fn taps(in_size: usize, out_size: usize, resampler: Resampler) -> Taps {
    // align_corners=False and no explicit scale factor: scale = in / out.
    let scale = in_size as f64 / out_size as f64;
    let (support, invscale) = if scale >= 1.0 { (2.0 * scale, 1.0 / scale) } else { (2.0, 1.0) };
    let ksize = support.ceil() as usize * 2 + 1;
    let filter = match resampler {
        Resampler::Torchvision => cubic_torch,
        Resampler::Pil => cubic_pil,
    };
    let mut start = vec![0; out_size];
    let mut len = vec![0; out_size];
    let mut w = vec![0f64; out_size * ksize];
    let mut wt_max = 0f64;
    for i in 0..out_size {
        let center = scale * (i as f64 + 0.5);
        // `as i64` truncates toward zero like the C casts; negative starts are clamped after.
        let xmin = ((center - support + 0.5) as i64).max(0);
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64);
        let n = (xmax - xmin).clamp(0, ksize as i64) as usize;
        let row = &mut w[i * ksize..i * ksize + n];
        let mut total = 0.0;
        for (j, wj) in row.iter_mut().enumerate() {
            *wj = filter(((j as i64 + xmin) as f64 - center + 0.5) * invscale);
            total += *wj;
        }
        if total != 0.0 {
            for wj in row.iter_mut() {
                *wj /= total;
                wt_max = wt_max.max(*wj);
            }
        }
        start[i] = xmin as usize;
        len[i] = n;
    }
    let precision = match resampler {
        // The largest precision (≤ 22) whose largest weight still fits in an int16.
        Resampler::Torchvision => {
            let mut p = 0u32;
            while p < 22 {
                let next = (0.5 + wt_max * (1u64 << (p + 1)) as f64) as i64;
                if next >= 1 << 15 {
                    break;
                }
                p += 1;
            }
            p
        }
        Resampler::Pil => 22,
    };
    let one = (1u64 << precision) as f64;
    let weights = w
        .iter()
        .map(|&v| {
            let v = v * one;
            if v < 0.0 {
                (-0.5 + v) as i32
            } else {
                (0.5 + v) as i32
            }
        })
        .collect();
    Taps { start, len, weights, ksize, precision }
}

/// Resamples one dimension of `lines` independent lines (rows, or columns): sample `i` of line `l`
/// starts at byte `l·line + i·step` and holds `channels` interleaved bytes.
fn convolve(dst: &mut [u8], src: &[u8], t: &Taps, geometry: Geometry) {
    let Geometry { lines, channels, src_line, dst_line, src_step, dst_step } = geometry;
    let bias = 1i32 << (t.precision - 1);
    for l in 0..lines {
        for (o, (&s0, &n)) in t.start.iter().zip(&t.len).enumerate() {
            let w = &t.weights[o * t.ksize..o * t.ksize + n];
            for c in 0..channels {
                let mut acc = bias;
                for (j, &wj) in w.iter().enumerate() {
                    acc += src[l * src_line + (s0 + j) * src_step + c] as i32 * wj;
                }
                dst[l * dst_line + o * dst_step + c] = (acc >> t.precision).clamp(0, 255) as u8;
            }
        }
    }
}

/// Byte layout of a [`convolve`] pass: line and sample strides of the source and destination.
#[derive(Clone, Copy)]
struct Geometry {
    lines: usize,
    channels: usize,
    src_line: usize,
    dst_line: usize,
    src_step: usize,
    dst_step: usize,
}

/// Resizes a `height × width × channels` (channels last) u8 image to `new_height × new_width`
/// with antialiased bicubic, width first, as [`Resampler`] describes. Same size: a copy.
pub fn resize_bicubic(
    src: &[u8],
    width: usize,
    height: usize,
    channels: usize,
    new_width: usize,
    new_height: usize,
    resampler: Resampler,
) -> Vec<u8> {
    assert_eq!(src.len(), width * height * channels, "resize_bicubic: pixel buffer size");
    assert!(new_width > 0 && new_height > 0, "resize_bicubic: empty output");
    let mut cur = src.to_vec();
    let mut w = width;
    if new_width != width {
        let t = taps(width, new_width, resampler);
        let mut out = vec![0u8; height * new_width * channels];
        let g = Geometry {
            lines: height,
            channels,
            src_line: width * channels,
            dst_line: new_width * channels,
            src_step: channels,
            dst_step: channels,
        };
        convolve(&mut out, &cur, &t, g);
        cur = out;
        w = new_width;
    }
    if new_height != height {
        let t = taps(height, new_height, resampler);
        let mut out = vec![0u8; new_height * w * channels];
        // Columns as lines: each of the w·channels columns walks down the rows.
        let g = Geometry {
            lines: w,
            channels,
            src_line: channels,
            dst_line: channels,
            src_step: w * channels,
            dst_step: w * channels,
        };
        convolve(&mut out, &cur, &t, g);
        cur = out;
    }
    cur
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_are_normalised_and_precise() {
        for (i, o) in [(640, 480), (480, 640), (1920, 1088), (7, 32), (100, 1)] {
            let t = taps(i, o, Resampler::Torchvision);
            assert!(t.precision > 10 && t.precision <= 22);
            for k in 0..o {
                let sum: i32 = t.weights[k * t.ksize..k * t.ksize + t.len[k]].iter().sum();
                assert!((sum - (1 << t.precision)).abs() <= t.len[k] as i32, "{i}->{o} out {k}: {sum}");
                assert!(t.start[k] + t.len[k] <= i);
            }
        }
    }

    #[test]
    fn constant_image_stays_constant() {
        let src = vec![77u8; 37 * 23 * 3];
        for r in [Resampler::Torchvision, Resampler::Pil] {
            let out = resize_bicubic(&src, 37, 23, 3, 64, 11, r);
            assert!(out.iter().all(|&v| v == 77), "{r:?}");
        }
    }
}
