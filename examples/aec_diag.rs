//! Diagnostics for the linear stage: runs AEC3 over a scene with its linear-filter output
//! exported and prints, per half second, the echo reduction of the linear filter alone
//! (16 kHz band, before the suppressor), plus AEC3's own
//! delay and ERLE estimates. usage: aec_diag SCENE_DIR [filter_ms] [shadow_ms]
use aec3::api::config::EchoCanceller3Config;
use aec3::api::control::EchoControl;
use aec3::audio_processing::aec3::echo_canceller3::EchoCanceller3;
use aec3::audio_processing::audio_buffer::AudioBuffer;
use aec3::audio_processing::stream_config::StreamConfig;
use assistant::audio::aec::score;
use std::path::PathBuf;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let scene = score::load_scene(&PathBuf::from(&args[0]))?;
    let filter_ms: f32 = args.get(1).map_or(72.0, |s| s.parse().unwrap());
    let shadow_ms: f32 = args.get(2).map_or(filter_ms, |s| s.parse().unwrap());
    let mut c = EchoCanceller3Config::default();
    let blocks = |ms: f32| ((ms / 4.0).round() as usize).max(1);
    c.filter.main.length_blocks = blocks(filter_ms);
    c.filter.main_initial.length_blocks = blocks(filter_ms);
    c.filter.shadow.length_blocks = blocks(shadow_ms);
    c.filter.shadow_initial.length_blocks = blocks(shadow_ms);
    c.filter.export_linear_aec_output = true;
    let mut aec = EchoCanceller3::new(c, 32_000, 1, 1);
    let buf = || AudioBuffer::from_sample_rates(24_000, 1, 32_000, 1, 24_000);
    let (mut render, mut capture) = (buf(), buf());
    let mut linear = AudioBuffer::from_sample_rates(16_000, 1, 16_000, 1, 16_000);
    let stream = StreamConfig::new(24_000, 1, false);
    let (mut e_in, mut e_lin) = (0.0f64, 0.0f64);
    let mut out = vec![0.0f32; 240];
    let frames = scene.mic.len() / 240;
    let fo_end = (scene.far_only.1 * 100.0) as usize;
    for f in 0..frames {
        let far: Vec<f32> = (0..240)
            .map(|i| *scene.far.get(f * 240 + i).unwrap_or(&0.0) as f32)
            .collect();
        let mic: Vec<f32> = scene.mic[f * 240..f * 240 + 240]
            .iter()
            .map(|&x| x as f32)
            .collect();
        render.copy_from(&[&far], &stream);
        render.split_into_frequency_bands();
        aec.analyze_render(&mut render);
        capture.copy_from(&[&mic], &stream);
        aec.analyze_capture(&mut capture);
        capture.split_into_frequency_bands();
        let band0: f64 = capture
            .split_band(0, 0)
            .iter()
            .map(|&x| (x as f64).powi(2))
            .sum();
        aec.process_capture_with_linear_output(&mut capture, &mut linear, false);
        capture.merge_frequency_bands();
        capture.copy_to_stream(&stream, &mut [&mut out]);
        e_in += band0;
        e_lin += linear
            .channel(0)
            .iter()
            .map(|&x| (x as f64).powi(2))
            .sum::<f64>();
        if (f + 1) % 50 == 0 {
            let m = aec.metrics();
            let tag = if f < fo_end { "far-only" } else { "" };
            println!(
                "{:5.1}s in {:6.1} dB | linear {:5.1} dB | delay {} ms, erle est {:.1} {tag}",
                (f + 1) as f64 / 100.0,
                10.0 * (e_in / 50.0).max(1e-9).log10(),
                10.0 * (e_in / e_lin.max(1e-9)).log10(),
                m.delay_ms,
                m.echo_return_loss_enhancement
            );
            (e_in, e_lin) = (0.0, 0.0);
        }
    }
    Ok(())
}
