//! The cascade's language models: the in-process GGUF model, llama.cpp's server and OpenAI-
//! compatible servers.
//!
//! One test binary per area (tests/README.md): each module was a test binary of its own.

#[path = "../common/mod.rs"]
mod common;
#[path = "../load_server/mod.rs"]
mod load_server;

mod gguf;
mod llama_server;
mod openai;
mod tokenizer;
