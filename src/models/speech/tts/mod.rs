//! Text to speech, behind `models::parts::TextToSpeech`: Kyutai TTS in the `moshi`
//! crate's layout (`kyutai`, through `moshi::tts_streaming`) or in Kyutai's published
//! PyTorch layout (`dsm_lm`, `dsm_machine`, `dsm_tts`: our port of Kyutai's Python
//! TTS loop), and Pocket TTS (`pocket`); `worker` runs any of them on a thread of its
//! own.
//!
//! May import `models::parts`, `models::speech`, `models::moshi`, `audio` and `bus`.

pub mod dsm_lm;
pub mod dsm_machine;
pub mod dsm_tts;
pub mod kyutai;
pub mod pocket;
pub mod worker;
