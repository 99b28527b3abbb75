//! The latency the canceller reports is the latency it adds.
use crate::aec_common;
use aec_common::shared;
use assistant::audio::aec::command::process_offline;
use assistant::audio::aec::score::{best_lag, load_mono_f64};
use assistant::audio::aec::{AecSettings, EchoCanceller, SuppressionLevel};

fn speech() -> Vec<f32> {
    let (_, x) = load_mono_f64(&shared().join("audio/hello_24k_mono.wav")).expect("shared speech");
    // Whole engine blocks, so a short last block does not switch the framing delay on.
    x[..x.len() / 1920 * 1920]
        .iter()
        .map(|&v| v as f32)
        .collect()
}

fn measured_lag(settings: &AecSettings, block: usize) -> (usize, usize) {
    let mic = speech();
    let mut aec = EchoCanceller::new(settings).unwrap();
    let mut out = mic.clone();
    for b in out.chunks_mut(block) {
        aec.push_far(&vec![0.0; b.len()]);
        aec.process_near(b);
    }
    let a: Vec<f64> = out
        .iter()
        .map(|&x| x as f64)
        .chain(std::iter::repeat_n(0.0, 2400))
        .collect();
    let b: Vec<f64> = mic.iter().map(|&x| x as f64).collect();
    (best_lag(&a, &b, 2400), aec.latency_samples())
}

#[test]
fn reported_latency_matches_measured_with_and_without_ns() {
    for ns in [Some(SuppressionLevel::K6dB), None] {
        let settings = AecSettings {
            noise_suppression: ns,
            ..AecSettings::default()
        };
        let (lag, reported) = measured_lag(&settings, 1920);
        println!("ns {ns:?}: measured {lag}, reported {reported}");
        assert!(
            lag.abs_diff(reported) <= 1,
            "ns {ns:?}: measured {lag} samples, reported {reported}"
        );
        assert!(reported < 24_000 / 50, "more than 20 ms added");
    }
}

#[test]
fn odd_blocks_add_one_frame_at_most_and_say_so() {
    let (lag, reported) = measured_lag(&AecSettings::default(), 1000);
    let (lag_aligned, _) = measured_lag(&AecSettings::default(), 1920);
    assert!(
        lag.abs_diff(lag_aligned + 239) <= 1,
        "{lag} vs {lag_aligned} + 239"
    );
    assert!(
        lag.abs_diff(reported) <= 1,
        "measured {lag}, reported {reported}"
    );
}

#[test]
fn offline_output_is_aligned_with_the_input_file_whatever_the_block() {
    let mic = speech();
    let far = vec![0.0; mic.len()];
    let reference = process_offline(&AecSettings::default(), &far, &mic, 1920).unwrap();
    let odd = process_offline(&AecSettings::default(), &far, &mic, 1000).unwrap();
    assert_eq!(reference.output.len(), mic.len());
    assert_eq!(odd.output.len(), mic.len());
    let a: Vec<f64> = odd
        .output
        .iter()
        .map(|&x| x as f64)
        .chain(std::iter::repeat_n(0.0, 2400))
        .collect();
    let b: Vec<f64> = reference.output.iter().map(|&x| x as f64).collect();
    assert_eq!(best_lag(&a, &b, 2400), 0);
}
