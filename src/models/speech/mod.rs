//! The cascade's speech parts: recognisers (`stt`) and synthesisers (`tts`), with what
//! they share: their configurations (`config`), finding and fetching their files
//! (`files`), and tiny random checkpoints for tests (`synthetic`).
//!
//! May import `models::parts`, `models::moshi` (discovery, Kyutai's checkpoint
//! helpers), `models::cpu_share`, `audio` and `bus`.

pub mod config;
pub mod files;
pub mod stt;
pub mod synthetic;
pub mod tts;
