//! Videos to `pixel_values_videos`, as transformers' `Qwen3VLVideoProcessor` does: frames sampled at
//! 2 fps (4 to 768 of them), all resized to one size chosen for the whole clip's pixel budget, the
//! frame count padded to a multiple of the temporal patch by repeating the last frame, and one grid
//! `(T/2, H/16, W/16)`. Each temporal patch later gets a `<t seconds>` label in the prompt
//! ([`calculate_timestamps`]).

use std::ops::RangeInclusive;

use super::preprocess::{
    area, blocks, budget, capped, check_aspect, check_budget, int, number, read_size, read_spec, resized, PatchSpec,
    RgbImage, VisionInput,
};
use super::resize::{resize_bicubic, Resampler};
use super::RuntimeError;

/// What the processor assumes when a video's frame rate is unknown (transformers warns and uses 24).
pub const DEFAULT_VIDEO_FPS: f64 = 24.0;
/// Frame rates a video, or the sampling, may have: outside, times become absurd (`--fps 1e-320`
/// puts infinite seconds into the prompt).
pub const FPS: RangeInclusive<f64> = 1e-3..=1e4;

/// `fps` when within [`FPS`], else an error naming `what`.
pub fn check_fps(what: &str, fps: f64) -> Result<f64, RuntimeError> {
    match FPS.contains(&fps) {
        true => Ok(fps),
        false => Err(RuntimeError::Video(format!("{what} {fps} is not a frame rate from {} to {}", FPS.start(), FPS.end()))),
    }
}

/// The Qwen3-VL video preprocessor (`video_preprocessor_config.json`).
#[derive(Clone, Debug, PartialEq)]
pub struct VideoProcessor {
    /// `size.shortest_edge`: the least pixels of the whole clip (T·H·W) after resizing.
    pub min_pixels: usize,
    /// `size.longest_edge`: the most pixels of the whole clip after resizing.
    pub max_pixels: usize,
    pub spec: PatchSpec,
    /// Frames sampled per second of video.
    pub fps: f64,
    pub min_frames: usize,
    pub max_frames: usize,
    /// qwen-vl-utils' per-frame cap (transformers' `cap_pixels_per_frame`, off by default in 5.x).
    pub cap_pixels_per_frame: bool,
    /// Tokens per frame under that cap.
    pub max_video_tokens: usize,
    pub resampler: Resampler,
}

impl Default for VideoProcessor {
    /// Qwen3-VL-2B/4B-Instruct's `video_preprocessor_config.json`.
    fn default() -> Self {
        VideoProcessor {
            min_pixels: 4096,
            max_pixels: 25_165_824,
            spec: PatchSpec::default(),
            fps: 2.0,
            min_frames: 4,
            max_frames: 768,
            cap_pixels_per_frame: false,
            max_video_tokens: 768,
            resampler: Resampler::Torchvision,
        }
    }
}

/// One processed video: the vision input and the time of each temporal patch in seconds.
#[derive(Clone, Debug, PartialEq)]
pub struct VideoInput {
    pub vision: VisionInput,
    /// One per temporal patch: the mean time of its two frames.
    pub timestamps: Vec<f64>,
}

impl VideoProcessor {
    /// From `video_preprocessor_config.json` (or the `video_processor` part of
    /// `processor_config.json`); keys it lacks keep the defaults.
    pub fn from_config_json(json: &str) -> Result<Self, RuntimeError> {
        let v: serde_json::Value = serde_json::from_str(json).map_err(|e| RuntimeError::Config(e.to_string()))?;
        let v = v.get("video_processor").unwrap_or(&v);
        let mut p = VideoProcessor::default();
        read_size(v, &mut p.min_pixels, &mut p.max_pixels)?;
        p.spec = read_spec(v, p.spec)?;
        p.fps = check_fps("fps", number(v, "fps")?.unwrap_or(p.fps))?;
        p.min_frames = int(v, "min_frames")?.unwrap_or(p.min_frames);
        p.max_frames = int(v, "max_frames")?.unwrap_or(p.max_frames);
        p.max_video_tokens = int(v, "max_video_tokens")?.unwrap_or(p.max_video_tokens);
        p.cap_pixels_per_frame = match v.get("cap_pixels_per_frame").filter(|x| !x.is_null()) {
            None => false,
            Some(x) => x.as_bool().ok_or_else(|| RuntimeError::Config(format!("`cap_pixels_per_frame` must be true or false, not {x}")))?,
        };
        Ok(p)
    }

    /// This processor with a request's budget for a whole clip (all its frames' pixels, as
    /// `max_pixels`), which caps the configured one; below the minimum it is an error.
    pub fn with_budget(&self, max_pixels: usize) -> Result<VideoProcessor, RuntimeError> {
        Ok(VideoProcessor { max_pixels: capped(self.min_pixels, self.max_pixels, max_pixels)?, ..self.clone() })
    }

    /// Which frames of a `total_num_frames`-frame video at `video_fps` to keep (`sample_frames`):
    /// `n = int(total / video_fps · fps)` clamped to `[min_frames, max_frames]` and to the video,
    /// then `linspace(0, total − 1, n).round()` (ties to even, as numpy).
    pub fn sample_frames(&self, total_num_frames: usize, video_fps: Option<f64>) -> Vec<usize> {
        if total_num_frames == 0 {
            return Vec::new();
        }
        let video_fps = video_fps.unwrap_or(DEFAULT_VIDEO_FPS);
        let n = (total_num_frames as f64 / video_fps * self.fps) as usize;
        let n = n.max(self.min_frames).min(self.max_frames).min(total_num_frames).max(1);
        linspace_round(total_num_frames - 1, n)
    }

    /// The `(height, width)` every frame of an `num_frames`-frame clip is resized to, with the
    /// per-frame cap applied when [`Self::cap_pixels_per_frame`] is set.
    pub fn smart_resize(&self, num_frames: usize, height: usize, width: usize) -> Result<(usize, usize), RuntimeError> {
        self.spec.validate()?;
        check_budget(self.min_pixels, self.max_pixels)?;
        let mut max_pixels = self.max_pixels;
        let factor = self.spec.factor();
        if self.cap_pixels_per_frame && num_frames > 0 {
            let frame_cap = self.max_video_tokens.saturating_mul(factor * factor);
            let per_frame = frame_cap.min(self.max_pixels / num_frames).max((self.min_pixels as f64 * 1.05) as usize);
            max_pixels = per_frame.saturating_mul(num_frames);
        }
        video_smart_resize(
            num_frames,
            height,
            width,
            self.spec.temporal_patch_size,
            factor,
            self.min_pixels,
            max_pixels,
        )
    }

    /// `pixel_values_videos`, `video_grid_thw` and the temporal-patch timestamps of sampled frames:
    /// `frames[i]` is frame `frame_indices[i]` of a video at `video_fps` frames per second (unknown:
    /// 24). All frames must share one size.
    pub fn preprocess(
        &self,
        frames: &[RgbImage],
        frame_indices: &[usize],
        video_fps: Option<f64>,
    ) -> Result<VideoInput, RuntimeError> {
        let first = frames.first().ok_or(RuntimeError::NoFrames)?;
        let video_fps = check_fps("the video's fps", video_fps.unwrap_or(DEFAULT_VIDEO_FPS))?;
        frames.iter().try_for_each(RgbImage::check)?;
        if frame_indices.len() != frames.len() {
            return Err(RuntimeError::Video(format!(
                "{} frames but {} frame indices",
                frames.len(),
                frame_indices.len()
            )));
        }
        if let Some(f) = frames.iter().find(|f| (f.width, f.height) != (first.width, first.height)) {
            return Err(RuntimeError::Video(format!(
                "frames differ in size: {}x{} and {}x{}",
                first.width, first.height, f.width, f.height
            )));
        }
        let (h, w) = self.smart_resize(frames.len(), first.height, first.width)?;
        // pixel_values, frames padded to whole temporal patches, outweigh the resized bytes.
        let tp = self.spec.temporal_patch_size;
        budget("pixel_values", &[frames.len().div_ceil(tp), tp, h, w, 3], 4)?;
        let resized: Vec<Vec<u8>> =
            frames.iter().map(|f| resize_bicubic(&f.data, f.width, f.height, 3, w, h, self.resampler)).collect();
        let refs: Vec<&[u8]> = resized.iter().map(|f| f.as_slice()).collect();
        let vision = self.spec.patchify(&refs, h, w)?;
        let timestamps = calculate_timestamps(frame_indices, video_fps, self.spec.temporal_patch_size);
        Ok(VideoInput { vision, timestamps })
    }

    /// Samples with [`Self::sample_frames`] from every decoded frame of a video, then processes.
    pub fn preprocess_all(&self, frames: &[RgbImage], video_fps: Option<f64>) -> Result<VideoInput, RuntimeError> {
        check_fps("the video's fps", video_fps.unwrap_or(DEFAULT_VIDEO_FPS))?;
        let idx = self.sample_frames(frames.len(), video_fps);
        let sampled: Vec<RgbImage> = idx.iter().map(|&i| frames[i].clone()).collect();
        self.preprocess(&sampled, &idx, video_fps)
    }
}

/// `np.linspace(0, last, n).round()`: `i·(last/(n−1))`, the last one exactly `last`, ties to even.
fn linspace_round(last: usize, n: usize) -> Vec<usize> {
    if n == 1 {
        return vec![0];
    }
    let step = last as f64 / (n - 1) as f64;
    (0..n).map(|i| if i == n - 1 { last } else { (i as f64 * step).round_ties_even() as usize }).collect()
}

/// The video `smart_resize` of transformers' Qwen3-VL: like the image one, but the budget covers
/// all `num_frames` frames (with the frame count rounded to the temporal factor for the check) and
/// frames smaller than `factor` are first scaled up to it.
pub fn video_smart_resize(
    num_frames: usize,
    height: usize,
    width: usize,
    temporal_factor: usize,
    factor: usize,
    min_pixels: usize,
    max_pixels: usize,
) -> Result<(usize, usize), RuntimeError> {
    if num_frames < temporal_factor {
        return Err(RuntimeError::Video(format!(
            "{num_frames} frames, fewer than the temporal patch {temporal_factor}"
        )));
    }
    if height == 0 || width == 0 {
        return Err(RuntimeError::AspectRatio { height, width });
    }
    let (mut h, mut w) = (height as f64, width as f64);
    let f = factor as f64;
    if height < factor || width < factor {
        let scale = (f / h).max(f / w);
        h = (h * scale).trunc();
        w = (w * scale).trunc();
    }
    check_aspect(h as usize, w as usize)?;
    let t = num_frames as f64;
    let mut h_bar = blocks((h / f).round_ties_even(), factor)?;
    let mut w_bar = blocks((w / f).round_ties_even(), factor)?;
    let t_bar = blocks((t / temporal_factor as f64).round_ties_even(), temporal_factor)?;
    let volume = area(h_bar, w_bar)?.checked_mul(t_bar).ok_or_else(|| RuntimeError::Size(format!("{t_bar} frames of {h_bar}x{w_bar} overflow")))?;
    if volume > max_pixels {
        let beta = (t * h * w / max_pixels as f64).sqrt();
        h_bar = factor.max(blocks((h / beta / f).floor(), factor)?);
        w_bar = factor.max(blocks((w / beta / f).floor(), factor)?);
    } else if volume < min_pixels {
        let beta = (min_pixels as f64 / (t * h * w)).sqrt();
        h_bar = blocks((h * beta / f).ceil(), factor)?;
        w_bar = blocks((w * beta / f).ceil(), factor)?;
    }
    resized(height, width, h_bar, w_bar)
}

/// `Qwen3VLProcessor._calculate_timestamps`: `index / fps` per sampled frame, the indices padded to
/// a multiple of `merge_size` (the temporal patch) by repeating the last, then the mean of the
/// first and last time of each group.
pub fn calculate_timestamps(indices: &[usize], video_fps: f64, merge_size: usize) -> Vec<f64> {
    let times: Vec<f64> = indices.iter().map(|&i| i as f64 / video_fps).collect();
    patch_timestamps(&times, merge_size)
}

/// The time of each temporal patch from the times of its frames (seconds), as
/// [`calculate_timestamps`] does: padded by repeating the last, then the mean of each group's
/// first and last. For callers that sampled the frames themselves (the browser).
pub fn patch_timestamps(times: &[f64], merge_size: usize) -> Vec<f64> {
    let merge_size = merge_size.max(1);
    let mut t = times.to_vec();
    if let Some(&last) = t.last() {
        while !t.len().is_multiple_of(merge_size) {
            t.push(last);
        }
    }
    t.chunks(merge_size).map(|g| (g[0] + g[g.len() - 1]) / 2.0).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linspace_matches_numpy() {
        // np.linspace(0, 9, 4).round() = [0, 3, 6, 9]; np.linspace(0, 5, 4) = [0, 1.667, 3.333, 5].
        assert_eq!(linspace_round(9, 4), vec![0, 3, 6, 9]);
        assert_eq!(linspace_round(5, 4), vec![0, 2, 3, 5]);
        // np.linspace(0, 3, 7) = [0, .5, 1, 1.5, 2, 2.5, 3] → round half even [0, 0, 1, 2, 2, 2, 3].
        assert_eq!(linspace_round(3, 7), vec![0, 0, 1, 2, 2, 2, 3]);
        assert_eq!(linspace_round(0, 1), vec![0]);
    }

    #[test]
    fn timestamps_pair_frames() {
        assert_eq!(calculate_timestamps(&[0, 12, 24, 36], 24.0, 2), vec![0.25, 1.25]);
        assert_eq!(calculate_timestamps(&[0, 12, 24], 24.0, 2), vec![0.25, 1.0]);
    }
}
