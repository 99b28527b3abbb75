//! The models: what the engine thread steps, one folder per model family. Moshi and
//! PersonaPlex (`moshi`) are whole conversations behind `duplex::DuplexModel`; the
//! cascade's parts (`speech::stt`, `llm`, `speech::tts`) sit behind the traits in
//! `parts`, and the engine's turn machine (`engine::cascade`) joins them.
//!
//! May import `audio`, `bus` and `tools` (the LLM's tool loop); never `engine`, `net`,
//! `ui` or `app`.

pub mod cpu_share;
pub mod duplex;
pub mod llm;
pub mod moshi;
pub mod parts;
pub mod speech;
