//! get_rope_index on hand-built sequences, positions worked out from transformers' algorithm.

use qwen3_vl_webgpu::runtime::rope_index::{get_rope_index, mm_token_type_ids};
use qwen3_vl_webgpu::runtime::RuntimeError;

// Made-up ids, as a tiny test model would have: the function must only use the ones passed.
const IMG: u32 = 7;
const VID: u32 = 8;
const T: u32 = 1; // any text token

fn ids(parts: &[(u32, usize)]) -> Vec<u32> {
    parts.iter().flat_map(|&(t, n)| std::iter::repeat_n(t, n)).collect()
}

#[test]
fn text_only_counts_up() {
    let r = get_rope_index(&ids(&[(T, 5)]), IMG, VID, &[], &[], 2).unwrap();
    for axis in &r.position_ids {
        assert_eq!(axis, &[0, 1, 2, 3, 4]);
    }
    assert_eq!(r.rope_delta, 0);
    assert_eq!(r.decode_position(5), 5);
}

#[test]
fn one_image_after_three_tokens() {
    // Grid (1, 4, 6) → 2×3 merged tokens starting at o = 3; text resumes at 3 + max(2, 3) = 6.
    let seq = ids(&[(T, 3), (IMG, 6), (T, 2)]);
    let r = get_rope_index(&seq, IMG, VID, &[[1, 4, 6]], &[], 2).unwrap();
    assert_eq!(r.position_ids[0], [0, 1, 2, 3, 3, 3, 3, 3, 3, 6, 7]);
    assert_eq!(r.position_ids[1], [0, 1, 2, 3, 3, 3, 4, 4, 4, 6, 7]);
    assert_eq!(r.position_ids[2], [0, 1, 2, 3, 4, 5, 3, 4, 5, 6, 7]);
    // max 7 + 1 − 11 tokens.
    assert_eq!(r.rope_delta, -3);
    assert_eq!(r.decode_position(11), 8);
}

#[test]
fn two_images() {
    // Image A (1, 4, 4): 2×2 at o = 1; text at 3, 4; image B (1, 2, 6): 1×3 at o = 5; text at 8.
    let seq = ids(&[(T, 1), (IMG, 4), (T, 2), (IMG, 3), (T, 1)]);
    let r = get_rope_index(&seq, IMG, VID, &[[1, 4, 4], [1, 2, 6]], &[], 2).unwrap();
    assert_eq!(r.position_ids[0], [0, 1, 1, 1, 1, 3, 4, 5, 5, 5, 8]);
    assert_eq!(r.position_ids[1], [0, 1, 1, 2, 2, 3, 4, 5, 5, 5, 8]);
    assert_eq!(r.position_ids[2], [0, 1, 2, 1, 2, 3, 4, 5, 6, 7, 8]);
    assert_eq!(r.rope_delta, 9 - 11);
}

#[test]
fn video_splits_into_one_block_per_temporal_patch() {
    // Grid (2, 4, 4): two frame pairs of 2×2 tokens, each its own block with temporal index 0,
    // separated by (timestamp) text.
    let seq = ids(&[(T, 2), (VID, 4), (T, 3), (VID, 4), (T, 1)]);
    let r = get_rope_index(&seq, IMG, VID, &[], &[[2, 4, 4]], 2).unwrap();
    assert_eq!(r.position_ids[0], [0, 1, 2, 2, 2, 2, 4, 5, 6, 7, 7, 7, 7, 9]);
    assert_eq!(r.position_ids[1], [0, 1, 2, 2, 3, 3, 4, 5, 6, 7, 7, 8, 8, 9]);
    assert_eq!(r.position_ids[2], [0, 1, 2, 3, 2, 3, 4, 5, 6, 7, 8, 7, 8, 9]);
    assert_eq!(r.rope_delta, 10 - 14);
    assert_eq!(mm_token_type_ids(&seq, IMG, VID), [0, 0, 2, 2, 2, 2, 0, 0, 0, 2, 2, 2, 2, 0]);
}

#[test]
fn image_then_video_use_their_own_grids() {
    let seq = ids(&[(VID, 1), (T, 1), (IMG, 2), (T, 1), (VID, 1)]);
    let r = get_rope_index(&seq, IMG, VID, &[[1, 2, 4]], &[[2, 2, 2]], 2).unwrap();
    assert_eq!(r.position_ids[1], [0, 1, 2, 2, 4, 5]);
    assert_eq!(r.position_ids[2], [0, 1, 2, 3, 4, 5]);
}

#[test]
fn mismatched_grids_are_errors() {
    let seq = ids(&[(T, 1), (IMG, 5)]);
    let e = |r: Result<_, RuntimeError>| matches!(r, Err(RuntimeError::Placeholders(_)));
    assert!(e(get_rope_index(&seq, IMG, VID, &[[1, 4, 4]], &[], 2)), "5 pads, grid of 4");
    assert!(e(get_rope_index(&seq, IMG, VID, &[], &[], 2)), "no grid");
    assert!(e(get_rope_index(&ids(&[(T, 3)]), IMG, VID, &[[1, 2, 2]], &[], 2)), "unused grid");
}
