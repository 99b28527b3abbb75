//! Cascade mode: streaming speech-to-text → a text LLM → streaming text-to-speech,
//! behind the same `DuplexModel` boundary as Moshi. Each part is a trait here so the
//! turn machine can be tested with any of them; the real parts live beside it:
//! `stt` (Kyutai STT through `moshi::asr`), `tts` (Kyutai TTS through
//! `moshi::tts_streaming`), `llm` (an OpenAI-compatible server, or a GGUF in-process).

pub mod parts;

pub use parts::{
    ChatMessage, ChatRequest, ChatRole, Llm, LlmError, SpeechToText, SttStep, TextToSpeech, TtsStep,
};
