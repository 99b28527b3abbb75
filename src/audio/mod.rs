//! Audio in and out: devices, rings, resampling, WAV files, meters.
pub mod aec;
pub mod alsa_quiet;
pub mod device;
pub mod hosts;
pub mod meters;
pub mod onset;
pub mod port;
pub mod probe;
pub mod resample;
pub mod supervisor;
pub mod wake;
pub mod wav;
