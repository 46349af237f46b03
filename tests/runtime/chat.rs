//! The chat templates and the placeholder expansion. Every expected string was rendered from the
//! official `chat_template.json` (Qwen3-VL Instruct / Thinking) by transformers' Jinja renderer
//! (`apply_chat_template(..., tokenize=False)`) on the same conversation.

use qwen3_vl_webgpu::runtime::chat::{
    apply_chat_template, expand_vision_placeholders, image_placeholder, video_placeholder, ChatTemplate, Content,
    Message, Role, VideoPlaceholder,
};
use qwen3_vl_webgpu::runtime::preprocess::VisionInput;
use qwen3_vl_webgpu::runtime::video::VideoInput;
use qwen3_vl_webgpu::runtime::RuntimeError;

use ChatTemplate::{Instruct, Thinking};
use Content::{Image, Video};

fn text(s: &str) -> Content {
    Content::Text(s.into())
}

fn check(name: &str, conv: &[Message], template: ChatTemplate, gen: bool, ids: bool, want: &str) {
    assert_eq!(apply_chat_template(conv, template, gen, ids), want, "{name} {template:?} gen={gen} ids={ids}");
}

#[test]
fn single_image_prompt() {
    let conv = [Message::user(vec![Image, text("Describe this image.")])];
    let body = "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>Describe this image.<|im_end|>\n";
    check("image", &conv, Instruct, true, false, &format!("{body}<|im_start|>assistant\n"));
    check("image", &conv, Thinking, true, false, &format!("{body}<|im_start|>assistant\n<think>\n"));
    check("image", &conv, Instruct, false, false, body);
}

#[test]
fn system_prompt_only_when_given() {
    let conv = [Message::system("You are a helpful assistant."), Message::text(Role::User, "Hello")];
    let body = "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHello<|im_end|>\n";
    check("system", &conv, Instruct, true, false, &format!("{body}<|im_start|>assistant\n"));
    check("system", &conv, Thinking, true, false, &format!("{body}<|im_start|>assistant\n<think>\n"));
}

#[test]
fn assistant_history() {
    let conv = [
        Message::new(Role::System, vec![text("Be brief.")]),
        Message::user(vec![Image, text("What is it?")]),
        Message::assistant("<think>\nIt looks round.\n</think>\n\nA ball."),
        Message::user(vec![text("And this?"), Image]),
    ];
    let head = "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>What is it?<|im_end|>\n";
    let tail = "<|im_start|>user\nAnd this?<|vision_start|><|image_pad|><|vision_end|><|im_end|>\n";
    // Instruct keeps earlier assistant turns verbatim; Thinking drops their reasoning.
    let instruct = format!("{head}<|im_start|>assistant\n<think>\nIt looks round.\n</think>\n\nA ball.<|im_end|>\n{tail}<|im_start|>assistant\n");
    check("history", &conv, Instruct, true, false, &instruct);
    let thinking = format!("{head}<|im_start|>assistant\nA ball.<|im_end|>\n{tail}");
    check("history", &conv, Thinking, false, false, &thinking);
    check("history", &conv, Thinking, true, false, &format!("{thinking}<|im_start|>assistant\n<think>\n"));
}

#[test]
fn reasoning_after_the_last_query() {
    let q = "<|im_start|>user\n2+2?<|im_end|>\n";
    let conv = [Message::text(Role::User, "2+2?"), Message::assistant("<think>\nadd\n</think>\n\n4")];
    let done = format!("{q}<|im_start|>assistant\n<think>\nadd\n</think>\n\n4<|im_end|>\n");
    check("final", &conv, Thinking, false, false, &done);
    check("final", &conv, Thinking, true, false, &format!("{done}<|im_start|>assistant\n<think>\n"));
    check("final", &conv, Instruct, false, false, &done);

    let mut a2 = Message::assistant("A2");
    a2.reasoning_content = Some("\nthink2\n".into());
    let conv = [Message::text(Role::User, "Q1"), Message::assistant("A1"), Message::text(Role::User, "Q2"), a2];
    let head = "<|im_start|>user\nQ1<|im_end|>\n<|im_start|>assistant\nA1<|im_end|>\n<|im_start|>user\nQ2<|im_end|>\n";
    check(
        "reasoning",
        &conv,
        Thinking,
        false,
        false,
        &format!("{head}<|im_start|>assistant\n<think>\nthink2\n</think>\n\nA2<|im_end|>\n"),
    );
    check("reasoning", &conv, Instruct, false, false, &format!("{head}<|im_start|>assistant\nA2<|im_end|>\n"));
}

#[test]
fn tool_turns() {
    let conv = [
        Message::text(Role::User, "Weather?"),
        Message::assistant("Checking."),
        Message::text(Role::Tool, "sunny"),
        Message::new(Role::Tool, vec![text("22 C")]),
        Message::text(Role::User, "Thanks"),
    ];
    let body = "<|im_start|>user\nWeather?<|im_end|>\n<|im_start|>assistant\nChecking.<|im_end|>\n<|im_start|>user\n<tool_response>\nsunny\n</tool_response>\n<tool_response>\n22 C\n</tool_response><|im_end|>\n<|im_start|>user\nThanks<|im_end|>\n";
    check("tools", &conv, Instruct, true, false, &format!("{body}<|im_start|>assistant\n"));
    check("tools", &conv, Thinking, false, false, body);

    // A tool round inside one query keeps the reasoning of every later assistant turn (Thinking);
    // a user turn that is only a tool response does not count as the query.
    let q = "<|im_start|>user\nQ<|im_end|>\n<|im_start|>assistant\n<think>\nr1\n</think>\n\ncall<|im_end|>\n<|im_start|>user\n<tool_response>\nres\n</tool_response><|im_end|>\n";
    let conv = [
        Message::text(Role::User, "Q"),
        Message::assistant("<think>\nr1\n</think>\n\ncall"),
        Message::text(Role::User, "<tool_response>\nres\n</tool_response>"),
        Message::assistant("plain"),
    ];
    check(
        "tool-user",
        &conv,
        Thinking,
        false,
        false,
        &format!("{q}<|im_start|>assistant\n<think>\n\n</think>\n\nplain<|im_end|>\n"),
    );
    check("tool-user", &conv, Instruct, false, false, &format!("{q}<|im_start|>assistant\nplain<|im_end|>\n"));
}

#[test]
fn later_system_messages() {
    let conv = [
        Message::text(Role::User, "Hi"),
        Message::assistant("Hello!"),
        Message::system("Answer in French."),
        Message::text(Role::User, "Bye"),
    ];
    let (a, b) = (
        "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello!<|im_end|>\n",
        "<|im_start|>user\nBye<|im_end|>\n",
    );
    check("mid-system", &conv, Instruct, true, false, &format!("{a}{b}<|im_start|>assistant\n"));
    let sys = "<|im_start|>system\nAnswer in French.<|im_end|>\n";
    check("mid-system", &conv, Thinking, true, false, &format!("{a}{sys}{b}<|im_start|>assistant\n<think>\n"));
}

#[test]
fn vision_ids() {
    let conv = [Message::user(vec![Image, Image, text("Compare, then watch "), Video, text(".")])];
    let ids = "<|im_start|>user\nPicture 1: <|vision_start|><|image_pad|><|vision_end|>Picture 2: <|vision_start|><|image_pad|><|vision_end|>Compare, then watch Video 1: <|vision_start|><|video_pad|><|vision_end|>.<|im_end|>\n";
    check("ids", &conv, Instruct, true, true, &format!("{ids}<|im_start|>assistant\n"));
    check("ids", &conv, Thinking, true, true, &format!("{ids}<|im_start|>assistant\n<think>\n"));
    let plain = "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|><|vision_start|><|image_pad|><|vision_end|>Compare, then watch <|vision_start|><|video_pad|><|vision_end|>.<|im_end|>\n";
    check("ids", &conv, Thinking, false, false, plain);

    // Images in a leading system message: Instruct keeps only its text; Thinking renders them,
    // numbered before counting ("Picture 0") and counted for the later ones.
    let conv = [Message::new(Role::System, vec![text("Sys "), Image]), Message::user(vec![Image, text("x")])];
    let user =
        |n: usize| format!("<|im_start|>user\nPicture {n}: <|vision_start|><|image_pad|><|vision_end|>x<|im_end|>\n");
    check("sys-image", &conv, Instruct, false, true, &format!("<|im_start|>system\nSys <|im_end|>\n{}", user(1)));
    let sys = "<|im_start|>system\nSys Picture 0: <|vision_start|><|image_pad|><|vision_end|><|im_end|>\n";
    check("sys-image", &conv, Thinking, false, true, &format!("{sys}{}", user(2)));
}

fn video(grid_thw: [usize; 3], timestamps: &[f64]) -> VideoInput {
    VideoInput { vision: VisionInput { pixel_values: Vec::new(), grid_thw }, timestamps: timestamps.to_vec() }
}

#[test]
fn placeholders_expand_per_grid() {
    assert_eq!(image_placeholder([1, 4, 6], 2).unwrap(), "<|image_pad|>".repeat(6));
    assert_eq!(image_placeholder([1, 16, 16], 2).unwrap().matches("<|image_pad|>").count(), 64);
    let v = video_placeholder([2, 4, 4], &[0.25, 1.75], 2).unwrap();
    let pads = "<|video_pad|>".repeat(4);
    assert_eq!(
        v,
        format!("<0.2 seconds><|vision_start|>{pads}<|vision_end|><1.8 seconds><|vision_start|>{pads}<|vision_end|>")
    );
    assert!(video_placeholder([2, 4, 4], &[0.25], 2).is_err());
}

#[test]
fn expansion_in_prompt_order() {
    let conv = [Message::user(vec![Image, text("then "), Video, text(" and "), Image])];
    let t = apply_chat_template(&conv, Instruct, true, false);
    let (a, b) = ([1, 2, 4], [1, 4, 2]);
    let v = video([1, 2, 2], &[0.5]);
    let (va, vs, ve) = ("<|video_pad|>", "<|vision_start|>", "<|vision_end|>");
    let img = |n: usize| format!("{vs}{}{ve}", "<|image_pad|>".repeat(n));
    let frame = format!("<0.5 seconds>{vs}{va}{ve}");
    let keep =
        expand_vision_placeholders(&t, &[a, b], std::slice::from_ref(&v), 2, VideoPlaceholder::KeepOuter).unwrap();
    assert_eq!(
        keep,
        format!("<|im_start|>user\n{}then {vs}{frame}{ve} and {}<|im_end|>\n<|im_start|>assistant\n", img(2), img(2))
    );
    let whole =
        expand_vision_placeholders(&t, &[a, b], std::slice::from_ref(&v), 2, VideoPlaceholder::ReplaceWrapper).unwrap();
    assert_eq!(
        whole,
        format!("<|im_start|>user\n{}then {frame} and {}<|im_end|>\n<|im_start|>assistant\n", img(2), img(2))
    );

    let bad = |r: Result<String, RuntimeError>| matches!(r, Err(RuntimeError::Placeholders(_)));
    assert!(bad(expand_vision_placeholders(&t, &[a], std::slice::from_ref(&v), 2, VideoPlaceholder::KeepOuter)));
    assert!(bad(expand_vision_placeholders(&t, &[a, b, a], std::slice::from_ref(&v), 2, VideoPlaceholder::KeepOuter)));
    assert!(bad(expand_vision_placeholders(&t, &[a, b], &[], 2, VideoPlaceholder::KeepOuter)));
}
