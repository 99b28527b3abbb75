//! The wake word: a spotter that listens for a persona's name in 24 kHz audio, built
//! from takes the user recorded of that name. Speaker-dependent by design, like a
//! phone's "Hey …" enrolment: three takes of your own voice are the reference.
//! `features` turns audio into cepstra, `spotter` matches them against the takes,
//! `takes` finds and stores the takes on disk. No model sees the audio it hears.

pub mod features;
pub mod spotter;
pub mod takes;

pub use spotter::{Detection, Spotter, Template, DEFAULT_THRESHOLD};
