//! smart_resize, bicubic resampling, normalisation and patch order, images and videos. Expected
//! numbers come from transformers 5.23 / torchvision 0.29 / Pillow on the same inputs.

use qwen3_vl_webgpu::runtime::preprocess::{smart_resize, ImageProcessor, PatchSpec, RgbImage};
use qwen3_vl_webgpu::runtime::resize::{resize_bicubic, Resampler};
use qwen3_vl_webgpu::runtime::video::{calculate_timestamps, video_smart_resize, VideoProcessor};
use qwen3_vl_webgpu::runtime::RuntimeError;

#[test]
fn smart_resize_worked_examples() {
    let p = ImageProcessor::default();
    // (height, width) → resized, and the LLM tokens of the image.
    for ((h, w), (rh, rw), tokens) in [
        ((224, 224), (256, 256), 64),
        ((480, 640), (480, 640), 300),
        ((1080, 1920), (1088, 1920), 2040),
        ((768, 768), (768, 768), 576),
        ((8000, 8000), (4096, 4096), 16384),
        ((100, 20000), (96, 20000), 1875),
        ((10, 10), (256, 256), 64),
        ((15, 3000), (32, 3648), 114),
    ] {
        assert_eq!(p.smart_resize(h, w).unwrap(), (rh, rw), "{h}x{w}");
        assert_eq!(p.num_image_tokens(h, w).unwrap(), tokens, "{h}x{w}");
    }
}

#[test]
fn smart_resize_rounds_half_to_even() {
    // 48/32 = 1.5 → 2, 80/32 = 2.5 → 2, 112/32 = 3.5 → 4, 144/32 = 4.5 → 4 (Python's round).
    assert_eq!(smart_resize(48, 80, 32, 0, 1 << 30).unwrap(), (64, 64));
    assert_eq!(smart_resize(112, 144, 32, 0, 1 << 30).unwrap(), (128, 128));
    assert_eq!(smart_resize(208, 240, 32, 0, 1 << 30).unwrap(), (192, 256));
}

#[test]
fn smart_resize_rejects_extreme_aspect_ratios() {
    assert!(smart_resize(20, 4000, 32, 65536, 16_777_216).is_ok()); // exactly 200
    for (h, w) in [(20, 4001), (4001, 20), (0, 64)] {
        let e = smart_resize(h, w, 32, 65536, 16_777_216).unwrap_err();
        assert!(matches!(e, RuntimeError::AspectRatio { .. }), "{h}x{w}: {e}");
    }
    let img = RgbImage::new(4020, 20, vec![0; 4020 * 20 * 3]).unwrap();
    assert!(matches!(ImageProcessor::default().preprocess(&img), Err(RuntimeError::AspectRatio { .. })));
}

/// `((x·37 + y·91 + c·53 + (x·y mod 7)·11) mod 256)`: a pattern with no symmetry.
fn pattern(w: usize, h: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(w * h * 3);
    for y in 0..h {
        for x in 0..w {
            for c in 0..3 {
                v.push(((x * 37 + y * 91 + c * 53 + (x * y) % 7 * 11) % 256) as u8);
            }
        }
    }
    v
}

/// (width, height, new width, new height) and the expected resized pixels.
type ResizeCase = ((usize, usize, usize, usize), &'static [u8]);

#[test]
fn bicubic_matches_torchvision_and_pil() {
    // tvF.resize(uint8 NCHW, [nh, nw], BICUBIC, antialias=True) and PIL resize(BICUBIC) agree here.
    let cases: [ResizeCase; 3] = [
        (
            (7, 5, 4, 3),
            &[
                56, 114, 164, 130, 147, 147, 120, 149, 175, 159, 138, 123, 154, 141, 116, 132, 137, 112, 124, 117, 154,
                142, 90, 149, 106, 159, 140, 142, 203, 46, 106, 74, 99, 109, 106, 164,
            ],
        ),
        (
            (3, 2, 7, 5),
            &[
                0, 40, 93, 0, 47, 100, 8, 61, 113, 27, 80, 133, 45, 98, 162, 60, 113, 189, 67, 120, 201, 6, 55, 108, 9,
                62, 115, 24, 77, 131, 44, 97, 150, 63, 116, 162, 78, 131, 169, 85, 138, 173, 43, 94, 147, 49, 102, 156,
                67, 120, 181, 88, 141, 194, 110, 163, 160, 127, 180, 117, 135, 188, 101, 80, 133, 186, 89, 142, 197,
                109, 162, 231, 132, 185, 238, 156, 209, 157, 176, 229, 65, 185, 238, 28, 95, 148, 201, 104, 157, 212,
                125, 178, 249, 149, 202, 255, 174, 227, 157, 194, 247, 45, 203, 255, 0,
            ],
        ),
        (
            (9, 4, 9, 2),
            &[
                63, 116, 138, 106, 129, 182, 119, 172, 117, 165, 101, 164, 82, 145, 198, 129, 191, 127, 182, 86, 139,
                66, 119, 141, 109, 132, 185, 102, 155, 91, 166, 101, 154, 112, 165, 70, 140, 162, 98, 138, 73, 126,
                166, 101, 164, 112, 57, 110, 105, 158, 94, 169, 104, 157,
            ],
        ),
    ];
    for ((w, h, nw, nh), want) in cases {
        for r in [Resampler::Torchvision, Resampler::Pil] {
            assert_eq!(resize_bicubic(&pattern(w, h), w, h, 3, nw, nh, r), want, "{w}x{h} -> {nw}x{nh} {r:?}");
        }
    }
    // Same size: untouched.
    assert_eq!(resize_bicubic(&pattern(5, 4), 5, 4, 3, 5, 4, Resampler::Torchvision), pattern(5, 4));
}

#[test]
fn rgba_is_composited_over_white_like_pillow() {
    // PIL.Image.alpha_composite(white, im).convert("RGB") on the same pixels.
    let rgba = [0, 0, 0, 128, 200, 100, 50, 1, 10, 20, 30, 254, 255, 255, 255, 0, 77, 88, 99, 255];
    let img = RgbImage::from_rgba(5, 1, &rgba).unwrap();
    assert_eq!(img.data, [127, 127, 127, 255, 254, 254, 11, 21, 31, 255, 255, 255, 77, 88, 99]);
    assert!(RgbImage::from_rgba(2, 2, &rgba).is_err());
}

/// The patch order as transformers writes it, emulated as a generic view + permute: decompose the
/// flat output index over the permuted shape, then recompose it over the original shape.
fn permuted_source_index(out_index: usize, gt: usize, gh: usize, gw: usize) -> usize {
    // view(gt, T, C, gh/2, 2, 16, gw/2, 2, 16), permute(0, 3, 6, 4, 7, 2, 1, 5, 8)
    let shape = [gt, 2, 3, gh / 2, 2, 16, gw / 2, 2, 16];
    let perm = [0, 3, 6, 4, 7, 2, 1, 5, 8];
    let mut idx = [0usize; 9];
    let mut rem = out_index;
    for k in (0..9).rev() {
        idx[perm[k]] = rem % shape[perm[k]];
        rem /= shape[perm[k]];
    }
    idx.iter().zip(shape).fold(0, |acc, (&i, s)| acc * s + i)
}

#[test]
fn patch_order_matches_the_permute() {
    // Two frames of 64×96 (gh = 4, gw = 6) whose bytes are distinct modulo 256 in a known way.
    let (h, w) = (64, 96);
    let frames: Vec<Vec<u8>> =
        (0..2).map(|t| (0..h * w * 3).map(|i| ((i * 7 + t * 101) % 251) as u8).collect()).collect();
    let spec = PatchSpec { image_mean: [0.0; 3], image_std: [1.0; 3], rescale_factor: 1.0, ..PatchSpec::default() };
    let refs: Vec<&[u8]> = frames.iter().map(|f| f.as_slice()).collect();
    let v = spec.patchify(&refs, h, w).unwrap();
    assert_eq!(v.grid_thw, [1, 4, 6]);
    assert_eq!((v.num_patches(), v.patch_dim(), v.num_tokens(2)), (24, 1536, 6));
    // The source as the processor stacks it: (T, C, H, W) planes.
    let mut planar = vec![0u8; 2 * 3 * h * w];
    for (t, f) in frames.iter().enumerate() {
        for c in 0..3 {
            for p in 0..h * w {
                planar[(t * 3 + c) * h * w + p] = f[p * 3 + c];
            }
        }
    }
    for (i, &x) in v.pixel_values.iter().enumerate() {
        assert_eq!(x, planar[permuted_source_index(i, 1, 4, 6)] as f32, "element {i}");
    }
}

#[test]
fn image_is_normalised_and_duplicated_in_time() {
    let img = RgbImage::new(64, 64, pattern(64, 64)).unwrap();
    let p = ImageProcessor { min_pixels: 1024, ..ImageProcessor::default() };
    let v = p.preprocess(&img).unwrap();
    assert_eq!(v.grid_thw, [1, 4, 4]);
    for row in v.pixel_values.chunks_exact(1536) {
        for c in 0..3 {
            let (t0, t1) = row[c * 512..c * 512 + 512].split_at(256);
            assert_eq!(t0, t1, "the two temporal copies");
        }
    }
    // Patch 0, channel 0, pixel (0, 0): (u8 − 127.5) / 127.5 in f32.
    assert_eq!(v.pixel_values[0], (img.data[0] as f32 - 127.5) / 127.5);
    assert!(v.pixel_values.iter().all(|x| (-1.0..=1.0).contains(x)));
}

#[test]
fn video_frames_are_sampled_like_numpy() {
    let p = VideoProcessor::default();
    // 100 frames at 25 fps, 2 fps wanted: int(100 / 25 · 2) = 8 → linspace(0, 99, 8).round().
    assert_eq!(p.sample_frames(100, Some(25.0)), [0, 14, 28, 42, 57, 71, 85, 99]);
    // Too short: at least min_frames = 4, at most the video.
    assert_eq!(p.sample_frames(5, Some(30.0)), [0, 1, 3, 4]);
    assert_eq!(p.sample_frames(2, Some(30.0)), [0, 1]);
    // Unknown fps: 24. 48 frames → 4.
    assert_eq!(p.sample_frames(48, None), [0, 16, 31, 47]);
    // Many frames: capped at 768.
    assert_eq!(p.sample_frames(100_000, Some(10.0)).len(), 768);
}

#[test]
fn video_resize_budget_covers_the_clip() {
    // transformers' video smart_resize(num_frames, h, w, 2, 32, 4096, 25165824).
    assert_eq!(video_smart_resize(8, 1080, 1920, 2, 32, 4096, 25_165_824).unwrap(), (1088, 1920));
    assert_eq!(video_smart_resize(5, 64, 64, 2, 32, 4096, 25_165_824).unwrap(), (64, 64));
    assert_eq!(video_smart_resize(768, 1080, 1920, 2, 32, 4096, 25_165_824).unwrap(), (128, 224));
    assert_eq!(video_smart_resize(4, 20, 300, 2, 32, 4096, 25_165_824).unwrap(), (32, 480));
    assert!(video_smart_resize(1, 64, 64, 2, 32, 4096, 25_165_824).is_err());
}

#[test]
fn video_is_padded_to_frame_pairs_with_timestamps() {
    let frames: Vec<RgbImage> = (0..5)
        .map(|t| RgbImage::new(64, 64, (0..64 * 64 * 3).map(|i| ((i + t * 40) % 256) as u8).collect()).unwrap())
        .collect();
    let p = VideoProcessor::default();
    let v = p.preprocess(&frames, &[0, 1, 3, 4, 6], Some(2.0)).unwrap();
    assert_eq!(v.vision.grid_thw, [3, 4, 4]);
    assert_eq!(v.timestamps, [0.25, 1.75, 3.0]);
    // The last temporal patch holds frame 4 twice.
    let last = &v.vision.pixel_values[2 * 16 * 1536..];
    for row in last.chunks_exact(1536) {
        for c in 0..3 {
            let (t0, t1) = row[c * 512..c * 512 + 512].split_at(256);
            assert_eq!(t0, t1);
        }
    }
    let first = &v.vision.pixel_values[..1536];
    assert_ne!(first[..256], first[256..512], "frames 0 and 1 differ");
    assert_eq!(calculate_timestamps(&[0, 1, 3, 4, 6], 2.0, 2), [0.25, 1.75, 3.0]);
    assert!(matches!(p.preprocess(&[], &[], None), Err(RuntimeError::NoFrames)));
}

#[test]
fn configs_are_read_from_json() {
    let img = ImageProcessor::from_config_json(
        r#"{"size": {"shortest_edge": 65536, "longest_edge": 16777216}, "patch_size": 16, "temporal_patch_size": 2,
            "merge_size": 2, "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5], "rescale_factor": 0.00392156862745098,
            "image_processor_type": "Qwen2VLImageProcessorFast"}"#,
    )
    .unwrap();
    assert_eq!(img, ImageProcessor::default());
    let vid = VideoProcessor::from_config_json(
        r#"{"video_processor": {"size": {"longest_edge": 25165824, "shortest_edge": 4096}, "fps": 2, "min_frames": 4,
            "max_frames": 768, "patch_size": 16, "temporal_patch_size": 2, "merge_size": 2,
            "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5]}}"#,
    )
    .unwrap();
    assert_eq!(vid, VideoProcessor::default());
    let legacy =
        ImageProcessor::from_config_json(r#"{"min_pixels": 3136, "max_pixels": 1003520, "patch_size": 14}"#).unwrap();
    assert_eq!((legacy.min_pixels, legacy.max_pixels, legacy.spec.factor()), (3136, 1_003_520, 28));
    assert!(ImageProcessor::from_config_json(r#"{"image_mean": [0.5]}"#).is_err());
}

#[cfg(feature = "decode")]
#[test]
fn decoding_is_available_natively() {
    use qwen3_vl_webgpu::runtime::preprocess::decode_image;
    assert!(matches!(decode_image(b"not an image"), Err(RuntimeError::Decode(_))));
}
