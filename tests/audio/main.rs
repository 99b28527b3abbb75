//! The audio path: real cpal streams on ALSA file devices, the loopback's SNR and
//! resampling quality.
//!
//! One test binary per area (tests/README.md): each module was a test binary of its own.

#[path = "../common/mod.rs"]
mod common;
#[path = "../pulse_support/mod.rs"]
mod pulse_support;
#[path = "../resample_common/mod.rs"]
mod resample_common;

mod cpal_alsa;
mod device_names;
mod loopback_snr;
mod path;
mod resample_quality;
