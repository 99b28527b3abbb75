//! Cascade mode: streaming speech-to-text → a text LLM → streaming text-to-speech,
//! behind the same `DuplexModel` boundary as Moshi. Each part is a trait here so the
//! turn machine can be tested with any of them; the real parts live beside it:
//! `stt` (Kyutai STT through `moshi::asr`), `tts` (Kyutai TTS through
//! `moshi::tts_streaming`, or for the published PyTorch layout through `dsm_lm`,
//! `dsm_machine` and `dsm_tts`, our port of Kyutai's Python TTS loop), `llm` (an
//! OpenAI-compatible server, or a GGUF in-process).

pub mod dsm_lm;
pub mod dsm_machine;
pub mod dsm_tts;
pub mod history;
pub mod llm;
pub mod load;
pub mod machine;
pub mod onset;
pub mod parts;
pub mod pocket;
pub mod recogniser;
pub mod report;
pub mod speech_config;
pub mod speech_files;
pub mod stt;
pub mod stt_quant;
pub mod synthetic_speech;
pub mod tts;
pub mod whisper;

pub use parts::{
    ChatMessage, ChatRequest, ChatRole, Llm, LlmError, SpeechToText, SttStep, TextToSpeech, TtsStep,
};

pub use machine::{Cascade, TurnSettings};
pub use speech_files::{SttOptions, TtsOptions};
pub use stt::KyutaiStt;
pub use tts::{KyutaiTts, TtsSampling};
