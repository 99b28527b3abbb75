//! Audio in and out: devices, rings, resampling, WAV files, meters.
pub mod meters;
