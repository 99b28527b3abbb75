//! Audio in and out: devices, rings, resampling, WAV files, meters.
pub mod aec;
pub mod meters;
