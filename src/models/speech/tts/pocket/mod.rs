//! Kyutai's Pocket TTS (PyPI `pocket-tts` 4.0.1, github kyutai-labs/pocket-tts, MIT) on
//! candle: a small flow LM over text and a voice state that makes one continuous
//! 32-dim latent per 80 ms, through a flow head (LSD or "drifting"), and its own
//! codec decoder to 24 kHz audio. Fast enough for two CPU cores; the cascade's
//! default synthesiser.
//!
//! `config` (the package's YAML, two English configs built in), `tokenizer`,
//! `layers`, `transformer`, `flow_head`, `flow_lm`, `codec` (the decoder), `encoder` (voice cloning), `voice`,
//! `kernels` (CPU matrix products), `conv` (the decoder's streaming convolutions on them), `model` (loading), `text` (chunking), `synth` (one chunk), `tts` (streaming),
//! `files` (finding the weights).
//!
//! May import `models::parts`, `models::speech`, `models::moshi` (the Hugging Face
//! cache; the SentencePiece encoder), `audio` and `bus`.

pub mod codec;
pub mod config;
pub mod conv;
pub mod encoder;
pub mod files;
pub mod flow_head;
pub mod flow_lm;
pub mod kernels;
pub mod layers;
pub mod model;
pub mod synth;
pub mod text;
pub mod tokenizer;
pub mod transformer;
pub mod tts;
pub mod voice;

pub use config::PocketConfig;
pub use files::PocketOptions;
pub use model::PocketModel;
pub use synth::PocketSampling;
pub use tts::PocketTts;
pub use voice::Voice;
