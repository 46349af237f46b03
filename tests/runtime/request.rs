//! Requests as every face builds them: pixel budgets (the request's default, a chat's, an image
//! part's own, a video's) capping preprocessor_config.json's maximum through `smart_resize`, and
//! the prompt checked against the cache's capacity before any GPU work.

use qwen3_vl_webgpu::model::GenerationConfig;
use qwen3_vl_webgpu::runtime::request::{ChatOptions, Image, Request, Video, DEFAULT_MAX_PIXELS, DEFAULT_VIDEO_MAX_PIXELS};
use qwen3_vl_webgpu::runtime::{smart_resize, Content, Message, RgbImage, RuntimeError};

use crate::tokenizer::processor;

fn grey(width: usize, height: usize) -> RgbImage {
    RgbImage::new(width, height, vec![128; width * height * 3]).unwrap()
}

fn ask(images: Vec<Image>, videos: Vec<Video>, options: &ChatOptions) -> Result<Request, RuntimeError> {
    let mut content: Vec<Content> = images.iter().map(|_| Content::Image).collect();
    content.extend(videos.iter().map(|_| Content::Video));
    content.push(Content::Text("What is this?".into()));
    Request::new(processor(), &[Message::user(content)], &images, &videos, options, &GenerationConfig::default())
}

/// Pixels of a vision input (frames × height × width).
fn pixels(grid_thw: [usize; 3], temporal: usize) -> usize {
    grid_thw[0] * temporal * grid_thw[1] * 16 * grid_thw[2] * 16
}

#[test]
fn images_are_resized_within_the_request_budget() {
    let reference = &processor().image_processor;
    assert_eq!(reference.max_pixels, 16_777_216, "Qwen3-VL's own maximum");
    let photo = || grey(2000, 1500);
    let grid = |r: &Request, i: usize| r.images[i].grid_thw;
    // No budget named: the interactive default, through smart_resize (aspect and factor kept).
    let r = ask(vec![photo().into(), Image { pixels: photo(), max_pixels: Some(65_536) }], vec![], &ChatOptions::default()).unwrap();
    let (h, w) = smart_resize(1500, 2000, 32, reference.min_pixels, DEFAULT_MAX_PIXELS).unwrap();
    assert_eq!(grid(&r, 0), [1, h / 16, w / 16]);
    assert!(h * w <= DEFAULT_MAX_PIXELS && h * w > DEFAULT_MAX_PIXELS / 2, "{h}x{w}");
    // An image part's own budget wins over the chat's.
    let (h1, w1) = smart_resize(1500, 2000, 32, reference.min_pixels, 65_536).unwrap();
    assert_eq!(grid(&r, 1), [1, h1 / 16, w1 / 16]);
    assert_eq!(r.prompt.input_ids.iter().filter(|&&t| t == processor().tokens.image_pad).count(), (h * w + h1 * w1) / 1024);
    // The chat's budget; one above the reference maximum is capped by it.
    let chat = |max_pixels| ask(vec![photo().into()], vec![], &ChatOptions { max_pixels: Some(max_pixels), ..ChatOptions::default() });
    let (h, w) = smart_resize(1500, 2000, 32, reference.min_pixels, 262_144).unwrap();
    assert_eq!(grid(&chat(262_144).unwrap(), 0), [1, h / 16, w / 16]);
    assert_eq!(grid(&chat(usize::MAX).unwrap(), 0), reference.preprocess(&photo()).unwrap().grid_thw);
    // Below the processor's minimum: an error that names both numbers.
    let err = chat(1000).err().expect("a budget under the minimum").to_string();
    assert!(err.contains("1000") && err.contains("65536"), "{err}");
}

#[test]
fn videos_are_resized_within_the_clip_budget() {
    let clip = || Video::Frames { frames: (0..8).map(|_| grey(1280, 720)).collect(), timestamps: (0..8).map(|i| i as f64 / 2.0).collect() };
    let clip_pixels = |r: &Request| pixels(r.videos[0].grid_thw, 2);
    let r = ask(vec![], vec![clip()], &ChatOptions::default()).unwrap();
    assert!(clip_pixels(&r) <= DEFAULT_VIDEO_MAX_PIXELS && clip_pixels(&r) > DEFAULT_VIDEO_MAX_PIXELS / 2, "{:?}", r.videos[0].grid_thw);
    let small = ask(vec![], vec![clip()], &ChatOptions { video_max_pixels: Some(8 * 65_536), ..ChatOptions::default() }).unwrap();
    assert!(clip_pixels(&small) <= 8 * 65_536 && clip_pixels(&small) < clip_pixels(&r));
    assert!(matches!(ask(vec![], vec![clip()], &ChatOptions { video_max_pixels: Some(100), ..ChatOptions::default() }), Err(RuntimeError::Budget { .. })));
}

#[test]
fn prompt_is_checked_against_the_capacity() {
    let r = ask(vec![grey(64, 48).into()], vec![], &ChatOptions::default()).unwrap();
    let n = r.prompt.input_ids.len();
    r.check_capacity(n).unwrap();
    let err = r.check_capacity(n - 1).unwrap_err();
    assert!(matches!(err, RuntimeError::Capacity { prompt, capacity } if prompt == n && capacity == n - 1));
    assert_eq!(err.to_string(), format!("the prompt needs {n} tokens but the context holds {}", n - 1));
}
