//! Acoustic echo cancellation on the microphone path (issue 7).
//!
//! [`EchoCanceller`] runs a room-length linear stage ([`room`], issue 16: a 400 ms
//! adaptive filter placed by its own delay finder) and then the pure-Rust port of WebRTC
//! AEC3 (`aec3` crate): its linear filter, residual echo suppressor and delay estimator
//! (which finds the unknown playback-to-capture delay itself), then WebRTC's noise
//! suppressor at its mildest level while the far end plays, which removes the noise floor
//! AEC3 deliberately keeps (see [`AecSettings::noise_suppression`]).
//! It runs on the engine thread at 24 kHz mono and takes blocks of any size on both
//! sides. [`MicPath`] adds the half-duplex gate; it is what the engine holds.
//!
//! Call order on the engine thread, per step:
//! 1. `process_near(&mut mic_block)` on each captured block, before the model hears it;
//! 2. `push_far(&model_output)` with exactly what was pushed to the speaker ring.

mod chain;
pub mod command;
pub mod framing;
pub mod gate;
mod mic_path;
pub mod room;
pub mod rooms;
pub mod score;
pub mod synth;
pub mod wav;

pub use command::{bench_aec, run_aec_command, AecRun};
pub use gate::HalfDuplexGate;
pub use mic_path::{EchoOptions, MicPath};
pub use room::RoomSettings;

use aec3::api::config::EchoCanceller3Config;
pub use aec3::audio_processing::ns::SuppressionLevel;
use chain::Chain;
use framing::{DelayLine, FarQueue, FrameAdapter};

/// The only rate the canceller takes: the model's.
pub const SAMPLE_RATE: u32 = 24_000;
/// AEC3 works on 10 ms frames.
pub const FRAME: usize = SAMPLE_RATE as usize / 100;
/// AEC3's internal block: 64 samples at its 16 kHz band rate.
const BLOCK_MS: f32 = 4.0;

#[derive(Debug, thiserror::Error)]
pub enum AecError {
    #[error("echo canceller setup failed: {0}")]
    Setup(String),
}

/// What can be chosen about the canceller; [`AecSettings::default`] is the tuned choice.
#[derive(Debug, Clone, PartialEq)]
pub struct AecSettings {
    /// Echo tail AEC3's own linear filter models, in ms. Longer AEC3 filters converge
    /// too slowly (their gains are normalised by the length: a 200 ms one needs 10 s or
    /// more of speech) and meanwhile let echo through; 72 ms beat WebRTC AEC3 on every
    /// one of ten single-difficulty scenes. The room's tail beyond it is the room
    /// stage's job ([`Self::room`]).
    pub filter_ms: f32,
    /// WebRTC's noise suppressor after the echo suppressor. AEC3 keeps the background
    /// noise floor (comfort noise), which caps echo reduction near the room's SNR; a
    /// mild 6 dB suppression lifts that cap. It is faded in only while the far end plays
    /// (and for 0.6 s after): with the room stage, less echo reaches AEC3, its residual
    /// inflates the suppressor's noise estimate and, left on with the user alone, it took
    /// 4-6 dB off the user's voice (near-end 30.7 -> 24.2 dB on a scene of issue 16).
    /// Only `K6dB` is exact: aec3 0.4's stronger levels rescale with a gain error (see
    /// chain.rs).
    pub noise_suppression: Option<SuppressionLevel>,
    /// The full AEC3 configuration, after `filter_ms` is applied to it.
    pub config: EchoCanceller3Config,
    /// Coarse (shadow) filter length, ms; `None`: same as `filter_ms`.
    pub shadow_ms: Option<f32>,
    /// Filter lengths during AEC3's initial phase, ms; `None`: the full lengths.
    pub initial_ms: Option<f32>,
    /// The room-length linear stage before AEC3 (room.rs); `None`: AEC3 alone.
    pub room: Option<RoomSettings>,
}

impl Default for AecSettings {
    fn default() -> Self {
        Self {
            filter_ms: 72.0,
            noise_suppression: Some(SuppressionLevel::K6dB),
            config: EchoCanceller3Config::default(),
            shadow_ms: None,
            initial_ms: None,
            room: Some(RoomSettings::default()),
        }
    }
}

impl AecSettings {
    fn aec3_config(&self) -> EchoCanceller3Config {
        let mut c = self.config.clone();
        let blocks = |ms: f32| ((ms / BLOCK_MS).round() as usize).max(1);
        let main = blocks(self.filter_ms);
        let shadow = blocks(self.shadow_ms.unwrap_or(self.filter_ms));
        c.filter.main.length_blocks = main;
        c.filter.shadow.length_blocks = shadow;
        // AEC3 starts with a short filter and grows it after its initial phase; in a
        // reverberant room the long one converges faster from the start.
        let initial = self.initial_ms.map(blocks);
        c.filter.main_initial.length_blocks = initial.unwrap_or(main).min(main);
        c.filter.shadow_initial.length_blocks = initial.unwrap_or(shadow).min(shadow);
        c
    }
}

/// What the canceller reports about itself.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct AecStats {
    /// Playback-to-capture delay AEC3 currently estimates, in ms.
    pub delay_ms: i32,
    /// AEC3's own ERLE and ERL estimates, in dB.
    pub erle_db: f64,
    pub erl_db: f64,
    /// Capture frames processed.
    pub frames: u64,
    /// Playback-to-capture delay the room stage found, in ms.
    pub room_delay_ms: Option<i32>,
}

/// The echo canceller the engine runs on the microphone path (see the module docs).
pub struct EchoCanceller {
    chain: Chain,
    near: FrameAdapter,
    far: FarQueue,
    far_frame: Vec<f32>,
    bypass: DelayLine,
    bypass_frame: Vec<f32>,
    enabled: bool,
    stats: AecStats,
}

impl std::fmt::Debug for EchoCanceller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EchoCanceller")
            .field("enabled", &self.enabled)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl EchoCanceller {
    pub fn new(settings: &AecSettings) -> Result<Self, AecError> {
        if !(4.0..=1000.0).contains(&settings.filter_ms) {
            return Err(AecError::Setup(format!(
                "echo tail {} ms is outside 4-1000 ms",
                settings.filter_ms
            )));
        }
        let chain = Chain::new(settings);
        Ok(Self {
            bypass: DelayLine::new(chain.latency_samples()),
            bypass_frame: vec![0.0; FRAME],
            chain,
            near: FrameAdapter::new(FRAME),
            // Half a second of reference may wait; beyond that it is fed early.
            far: FarQueue::new(FRAME, SAMPLE_RATE as usize / 2),
            far_frame: vec![0.0; FRAME],
            enabled: true,
            stats: AecStats::default(),
        })
    }

    /// With cancellation off the microphone passes through unchanged (same latency), but
    /// the canceller keeps adapting, so turning it back on is instant.
    pub fn set_enabled(&mut self, enabled: bool) {
        self.enabled = enabled;
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// The far-end reference: exactly what was pushed to the speaker ring, at 24 kHz.
    pub fn push_far(&mut self, far: &[f32]) {
        self.far.push(far);
        while self.far.take_excess(&mut self.far_frame) {
            self.chain.render(&self.far_frame);
        }
    }

    /// Cancels echo in one captured block (24 kHz mono, any length), in place.
    pub fn process_near(&mut self, mic: &mut [f32]) {
        let Self {
            chain,
            near,
            far,
            far_frame,
            bypass,
            bypass_frame,
            enabled,
            stats,
        } = self;
        near.process(mic, |frame_in, frame_out| {
            far.take(far_frame);
            chain.render(far_frame);
            chain.capture(frame_in, frame_out);
            let m = chain.metrics();
            stats.delay_ms = m.delay_ms;
            stats.erle_db = m.echo_return_loss_enhancement;
            stats.erl_db = m.echo_return_loss;
            stats.room_delay_ms = chain
                .room_delay()
                .map(|d| (d * 1000 / SAMPLE_RATE as usize) as i32);
            stats.frames += 1;
            bypass.process(frame_in, bypass_frame);
            if !*enabled {
                frame_out.copy_from_slice(bypass_frame);
            }
        });
    }

    /// Samples of delay the canceller adds to the microphone path: its processing
    /// (resampling to AEC3's 32 kHz bands and back, noise suppressor overlap) plus the
    /// framing delay, which is 0 for blocks that are whole multiples of 10 ms.
    pub fn latency_samples(&self) -> usize {
        self.chain.latency_samples() + self.near.latency()
    }

    /// The framing part of [`Self::latency_samples`] alone.
    pub fn framing_latency_samples(&self) -> usize {
        self.near.latency()
    }

    pub fn stats(&self) -> AecStats {
        self.stats
    }
}
