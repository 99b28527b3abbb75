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

pub(crate) struct Chain {
    room: Option<RoomFilter>,
    room_out: Vec<f32>,
    echo: EchoCanceller3,
    ns: Option<NoiseSuppressor>,
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
            ns.analyze(c);
            ns.process(c);
            // aec3 0.4's NS inverse FFT scales by 2/N (Ooura's convention) on a full
            // complex FFT, which needs 1/N: its lowest band comes out 6 dB loud.
            for x in c.split_band_mut(0, 0).iter_mut() {
                *x *= 0.5;
            }
        }
        c.merge_frequency_bands();
        c.copy_to_stream(&self.stream, &mut [out]);
    }

    /// Delay from input to output, measured (tests/aec_latency.rs checks it): the
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
