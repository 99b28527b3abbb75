//! The processing chain on 10 ms frames: AEC3 (linear filter, delay estimator, residual
//! echo suppressor), then optionally WebRTC's noise suppressor, driven directly rather
//! than through the crate's graph runtime so each stage can be corrected where needed.

use super::room::RoomFilter;
use super::{AecSettings, FRAME, SAMPLE_RATE};
use aec3::api::control::{EchoControl, Metrics};
use aec3::audio_processing::aec3::echo_canceller3::EchoCanceller3;
use aec3::audio_processing::audio_buffer::AudioBuffer;
use aec3::audio_processing::ns::{NoiseSuppressor, NsConfig};
use aec3::audio_processing::stream_config::StreamConfig;

/// AEC3 runs on split bands at 32 kHz; the audio buffers resample 24 kHz in and out.
const INTERNAL_RATE: usize = 32_000;

const LATENCY_WITHOUT_NS: usize = 223;
const LATENCY_WITH_NS: usize = 368;
/// The noise suppressor's delay in each 16 kHz band: its 256-point window over 160-sample
/// frames.
const NS_DELAY: usize = 96;
/// How long after the far end falls silent the noise suppressor stays on: AEC3 injects
/// comfort noise while it suppresses the room's echo tail.
const NS_HOLD_FRAMES: usize = 60;
/// Frames over which the noise suppressor fades in or out.
const NS_FADE_FRAMES: f32 = 10.0;

pub(crate) struct Chain {
    room: Option<RoomFilter>,
    room_out: Vec<f32>,
    echo: EchoCanceller3,
    ns: Option<NoiseSuppressor>,
    /// The bands before the noise suppressor, delayed as it delays them.
    ns_bypass: [Vec<f32>; 2],
    /// Weight of the noise suppressor's output against the bypass, and the frames since
    /// the far end last played.
    ns_weight: f32,
    far_silent_frames: usize,
    stream: StreamConfig,
    render: AudioBuffer,
    capture: AudioBuffer,
}

impl Chain {
    pub(crate) fn new(settings: &AecSettings) -> Self {
        let rate = SAMPLE_RATE as usize;
        let buffer = || AudioBuffer::from_sample_rates(rate, 1, INTERNAL_RATE, 1, rate);
        Self {
            room: settings
                .room
                .as_ref()
                .map(|r| RoomFilter::new(r, rate, FRAME)),
            room_out: vec![0.0; FRAME],
            echo: EchoCanceller3::new(settings.aec3_config(), INTERNAL_RATE as i32, 1, 1),
            ns: settings.noise_suppression.map(|level| {
                NoiseSuppressor::new(
                    NsConfig {
                        target_level: level,
                        analyze_linear_aec_output_when_available: false,
                    },
                    INTERNAL_RATE,
                    1,
                )
            }),
            ns_bypass: [vec![0.0; NS_DELAY], vec![0.0; NS_DELAY]],
            ns_weight: 0.0,
            far_silent_frames: usize::MAX / 2,
            stream: StreamConfig::new(rate, 1, false),
            render: buffer(),
            capture: buffer(),
        }
    }

    /// One 10 ms frame of what the speaker plays.
    pub(crate) fn render(&mut self, far: &[f32]) {
        debug_assert_eq!(far.len(), FRAME);
        if let Some(room) = self.room.as_mut() {
            room.push_far(far);
        }
        // -50 dBFS: anything the speaker plays audibly.
        let power = far.iter().map(|v| v * v).sum::<f32>() / far.len() as f32;
        self.far_silent_frames = if power > 1e-5 {
            0
        } else {
            self.far_silent_frames.saturating_add(1)
        };
        self.render.copy_from(&[far], &self.stream);
        self.render.split_into_frequency_bands();
        self.echo.analyze_render(&mut self.render);
    }

    /// One 10 ms frame of what the microphone heard, cancelled into `out`.
    pub(crate) fn capture(&mut self, mic: &[f32], out: &mut [f32]) {
        debug_assert_eq!(mic.len(), FRAME);
        let mic = match self.room.as_mut() {
            Some(room) => {
                room.process(mic, &mut self.room_out);
                &self.room_out[..]
            }
            None => mic,
        };
        let c = &mut self.capture;
        c.copy_from(&[mic], &self.stream);
        self.echo.analyze_capture(c);
        c.split_into_frequency_bands();
        self.echo.process_capture(c, false);
        if let Some(ns) = self.ns.as_mut() {
            // The noise suppressor is there for the comfort noise AEC3 adds while it
            // suppresses echo; with the far end silent it would only take its share of
            // the user's voice. It always runs (its estimates stay current) and is
            // faded in and out against its input, delayed as it delays it.
            let bands = c.num_bands().min(2);
            for b in 0..bands {
                self.ns_bypass[b].extend_from_slice(c.split_band(0, b));
            }
            ns.analyze(c);
            ns.process(c);
            // aec3 0.4's NS inverse FFT scales by 2/N (Ooura's convention) on a full
            // complex FFT, which needs 1/N: its lowest band comes out 6 dB loud.
            for x in c.split_band_mut(0, 0).iter_mut() {
                *x *= 0.5;
            }
            let target = if self.far_silent_frames <= NS_HOLD_FRAMES {
                1.0
            } else {
                0.0
            };
            let from = self.ns_weight;
            let to = if target > from {
                (from + 1.0 / NS_FADE_FRAMES).min(1.0)
            } else {
                (from - 1.0 / NS_FADE_FRAMES).max(0.0)
            };
            self.ns_weight = to;
            for b in 0..bands {
                let band = c.split_band_mut(0, b);
                let len = band.len();
                let bypass = &mut self.ns_bypass[b];
                if from < 1.0 || to < 1.0 {
                    for (i, (x, d)) in band.iter_mut().zip(bypass.iter()).enumerate() {
                        let w = from + (to - from) * (i + 1) as f32 / len as f32;
                        *x = w * *x + (1.0 - w) * d;
                    }
                }
                bypass.drain(..len);
            }
        }
        c.merge_frequency_bands();
        c.copy_to_stream(&self.stream, &mut [out]);
    }

    /// Delay from input to output, measured (tests/aec/latency.rs checks it): the
    /// 24 <-> 32 kHz resamplers and band-split filters, plus 6 ms of NS overlap.
    pub(crate) fn latency_samples(&self) -> usize {
        if self.ns.is_some() {
            LATENCY_WITH_NS
        } else {
            LATENCY_WITHOUT_NS
        }
    }

    pub(crate) fn metrics(&self) -> Metrics {
        self.echo.metrics()
    }

    /// Playback-to-capture delay the room stage found, in samples.
    pub(crate) fn room_delay(&self) -> Option<usize> {
        self.room.as_ref().and_then(RoomFilter::delay)
    }
}
