//! The 3-axis (temporal, height, width) M-RoPE position of every prompt token, as transformers'
//! `Qwen3VLModel.get_rope_index` computes it, and the offset that decode steps add.
//!
//! Text tokens count up on all three axes. A run of `L = t·(h/m)·(w/m)` vision placeholders that
//! starts at position `o` takes `(o + t_i, o + row, o + col)` in row-major order, and the text
//! after it resumes at `o + max(h, w)/m`. Videos are first split into one grid per temporal patch
//! (each with t = 1), because the prompt separates frame pairs with their `<t seconds>` text; time
//! is carried by those timestamps, never by the temporal axis.

use super::RuntimeError;

/// `mm_token_type_ids` as the processor builds it: 0 text, 1 image placeholder, 2 video placeholder.
pub fn mm_token_type_ids(input_ids: &[u32], image_token_id: u32, video_token_id: u32) -> Vec<u8> {
    input_ids
        .iter()
        .map(|&t| match t {
            t if t == image_token_id => 1,
            t if t == video_token_id => 2,
            _ => 0,
        })
        .collect()
}

/// Position ids of one prompt and the decode offset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RopeIndex {
    /// `[3][seq]`: temporal, height and width position of each prompt token.
    pub position_ids: [Vec<u32>; 3],
    /// `max position + 1 − seq_len` (≤ 0 with vision, 0 for text only).
    pub rope_delta: i64,
}

impl RopeIndex {
    /// The position (the same on all three axes) of the token at sequence index `cache_position`
    /// during decode: `cache_position + rope_delta`.
    pub fn decode_position(&self, cache_position: usize) -> u32 {
        (cache_position as i64 + self.rope_delta) as u32
    }
}

/// `get_rope_index` for one unpadded sequence. `image_grid_thw` holds one grid per image and
/// `video_grid_thw` one per video, in prompt order, in patches (before the spatial merge).
pub fn get_rope_index(
    input_ids: &[u32],
    image_token_id: u32,
    video_token_id: u32,
    image_grid_thw: &[[usize; 3]],
    video_grid_thw: &[[usize; 3]],
    spatial_merge_size: usize,
) -> Result<RopeIndex, RuntimeError> {
    if spatial_merge_size == 0 {
        return Err(RuntimeError::Placeholders("spatial_merge_size is 0".into()));
    }
    let types = mm_token_type_ids(input_ids, image_token_id, video_token_id);
    // One grid per temporal patch of each video (repeat_interleave, then t = 1), lazily: a grid's
    // t is not trusted to size anything.
    let mut images = image_grid_thw.iter().copied();
    let mut videos = video_grid_thw.iter().flat_map(|&[t, h, w]| std::iter::repeat_n([1, h, w], t));
    let mut pos: [Vec<u32>; 3] = Default::default();
    let position = |p: usize| u32::try_from(p).map_err(|_| RuntimeError::Placeholders(format!("position {p} does not fit u32")));
    let mut current = 0usize;
    let mut i = 0;
    while i < types.len() {
        let kind = types[i];
        let end = types[i..].iter().position(|&k| k != kind).map_or(types.len(), |n| i + n);
        let len = end - i;
        if kind == 0 {
            for axis in pos.iter_mut() {
                for p in current..current + len {
                    axis.push(position(p)?);
                }
            }
            current += len;
        } else {
            let what = if kind == 1 { "image" } else { "video frame pair" };
            let [t, h, w] = if kind == 1 { images.next() } else { videos.next() }
                .ok_or_else(|| RuntimeError::Placeholders(format!("more {what} placeholder runs than grids")))?;
            let (lt, lh, lw) = (t, h / spatial_merge_size, w / spatial_merge_size);
            let tokens = lt.checked_mul(lh).and_then(|n| n.checked_mul(lw));
            if tokens != Some(len) {
                return Err(RuntimeError::Placeholders(format!(
                    "an {what} run of {len} placeholders at token {i}, but its grid ({t}, {h}, {w}) makes {}",
                    tokens.map_or("too many".into(), |n| n.to_string())
                )));
            }
            // The run's tokens bound lt, lh and lw, so these sums stay small.
            for ti in 0..lt {
                for r in 0..lh {
                    for c in 0..lw {
                        pos[0].push(position(current + ti)?);
                        pos[1].push(position(current + r)?);
                        pos[2].push(position(current + c)?);
                    }
                }
            }
            current += h.max(w) / spatial_merge_size;
        }
        i = end;
    }
    if images.next().is_some() || videos.next().is_some() {
        return Err(RuntimeError::Placeholders("more grids than placeholder runs".into()));
    }
    let max = pos.iter().flat_map(|a| a.iter()).copied().max().map_or(-1, |m| m as i64);
    Ok(RopeIndex { rope_delta: max + 1 - input_ids.len() as i64, position_ids: pos })
}
