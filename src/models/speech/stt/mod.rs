//! Speech to text, behind `models::parts::SpeechToText`: Kyutai STT through the `moshi`
//! crate's `asr` (`kyutai`, with its quantized LM from `quant`), streaming Whisper
//! (`whisper`), and which of them a directory holds (`recogniser`).
//!
//! May import `models::parts`, `models::speech`, `models::moshi`, `models::cpu_share`,
//! `audio` and `bus`.

pub mod kyutai;
pub mod quant;
pub mod recogniser;
pub mod whisper;
