//! Cascade mode: streaming speech-to-text → a text LLM → streaming text-to-speech,
//! behind the same `DuplexModel` boundary as Moshi. This is the runtime that joins the
//! parts: the turn machine (`machine`: turns, barge-in), the conversation's history,
//! loading the three parts (`load`) and doctor's report. The parts themselves are
//! models, behind the traits in `models::parts`: `models::speech::stt`,
//! `models::llm`, `models::speech::tts`.

pub mod history;
pub mod load;
pub mod machine;
pub mod report;

pub use machine::{Cascade, TurnSettings};
