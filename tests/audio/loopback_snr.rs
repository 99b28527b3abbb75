//! The whole input path, as a user's device feeds it: a WAV at 8, 16, 44.1 or 48 kHz
//! through the engine with the loopback model (input -> 24 kHz frames -> output WAV),
//! compared with two independent high-quality resamplers (sox `rate -v -L` and scipy
//! `resample_poly`, vendored outputs), sub-sample alignment allowed.

use crate::resample_common;
use assistant::audio::meters::Meters;
use assistant::audio::port::InputPort;
use assistant::audio::resample::StreamResampler;
use assistant::audio::wav::{read_wav, WavAudio, WavSink};
use assistant::engine::loopback::Loopback;
use assistant::engine::runner::{self, EngineSetup, Loaded};
use resample_common::{label, read_fixture, Reference};
use std::sync::Arc;

/// What the engine writes for `input`, at 24 kHz.
fn through_engine(input: WavAudio, dir: &std::path::Path) -> Vec<f64> {
    let out = dir.join("out.wav");
    let (ev_tx, ev_rx) = crossbeam_channel::unbounded();
    let (_cmd_tx, cmd_rx) = crossbeam_channel::unbounded();
    let setup = EngineSetup {
        wav_out: Some(WavSink::create(&out, 24_000).unwrap()),
        ..EngineSetup::new(
            runner::loader(|_| Ok(Loaded::plain(Box::new(Loopback::new(24_000, 1920))))),
            InputPort::Memory {
                audio: input,
                pos: 0,
            },
            Arc::new(Meters::default()),
            ev_tx,
            cmd_rx,
        )
    };
    let stats = runner::run(setup);
    drop(ev_rx);
    assert!(stats.error.is_none(), "{:?}", stats.error);
    read_wav(&out)
        .unwrap()
        .samples
        .iter()
        .map(|&s| s as f64)
        .collect()
}

#[test]
fn loopback_matches_sox_and_scipy_at_every_common_device_rate() {
    let dir = tempfile::tempdir().unwrap();
    let mut report = Vec::new();
    for rate in [8_000u32, 16_000, 44_100, 48_000] {
        let (speech, r) = read_fixture(&format!("speech_{}.wav", label(rate)));
        assert_eq!(r, rate);
        // Trailing silence, so the output covers the whole reference after the model's frame.
        let samples = speech
            .iter()
            .map(|&s| s as f32)
            .chain(std::iter::repeat_n(0.0, rate as usize / 5))
            .collect();
        let input = WavAudio {
            samples,
            sample_rate: rate,
            channels: 1,
        };
        let out = through_engine(input, dir.path());
        // The loopback model delays by one 1920-sample frame; the resampler by what it reports.
        let ours: Vec<f64> = out[1920..].to_vec();
        let delay = StreamResampler::new(rate, 24_000, (rate / 100) as usize)
            .unwrap()
            .delay();
        let floor = if rate == 8_000 { 30.0 } else { 40.0 };
        for tool in ["sox", "scipy"] {
            let (reference, rr) = read_fixture(&format!("{tool}_{}_to_24k.wav", label(rate)));
            assert_eq!(rr, 24_000);
            let (snr, at) = Reference::new(&reference).best_snr(&ours, delay);
            report.push(format!(
                "{} Hz vs {tool}: {snr:.1} dB at delay {at:.2} (reported {delay:.2})",
                rate
            ));
            assert!(
                snr >= floor,
                "{rate} Hz vs {tool}: {snr:.1} dB < {floor} dB\n{}",
                report.join("\n")
            );
            assert!(
                (at - delay).abs() <= 0.1,
                "{rate} Hz: best alignment {at:.3} is not the reported delay {delay:.3}"
            );
        }
    }
    eprintln!("{}", report.join("\n"));
}
