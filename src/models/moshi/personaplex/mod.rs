//! PersonaPlex, NVIDIA's Moshi fine-tune that takes a role text and a voice prompt: its
//! PyTorch depformer names (`names`), its step loop and prompt prefill as NVIDIA's
//! `LMGen` (`step`), the model behind `DuplexModel` (`model`), voice prompts from a
//! WAV (`voice`) or NVIDIA's `.pt` files (`voices`), the role text's SentencePiece
//! encoding (`text`), and `convert` (a checkpoint to q8).
//!
//! A part of the Moshi family, not beside it: it loads through Moshi's checkpoint
//! reader, which renames its tensors, and runs on Moshi's placed LM. May import
//! `models::moshi`, `models::duplex`, `audio` and `bus`.

pub mod convert;
pub mod model;
pub mod names;
pub mod step;
pub mod text;
pub mod voice;
pub mod voices;
