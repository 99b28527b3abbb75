//! Speech parts: Whisper and Kyutai STT, the TTS references, Pocket TTS.
//!
//! One test binary per area (tests/README.md): each module was a test binary of its own.

#[path = "../load_server/mod.rs"]
mod load_server;

mod parts;
mod pocket_tts_reference;
mod stt_quantized;
mod transcribe;
mod tts_reference;
