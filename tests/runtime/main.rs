//! The CPU side of a request against values worked out from transformers (5.23) and the official
//! Qwen3-VL chat templates: preprocessing, chat template and placeholder expansion, M-RoPE ids,
//! and tokenisation with the real Qwen tokenizer (`QWEN_TOKENIZER_JSON`, see `tokenizer.rs`).

mod chat;
mod golden;
mod preprocess;
mod request;
mod rope_index;
mod tokenizer;
