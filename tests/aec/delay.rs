//! The canceller finds an unknown playback-to-capture delay by itself, across the range
//! devices produce (20-300 ms), and cancels once it has. The delay checked is the room
//! stage's (found on the raw far end and microphone); AEC3's own estimate, made on the
//! microphone after the room stage has removed most of the echo, only aligns its short
//! filter to what is left.
use crate::aec_common;
use aec_common::shared;
use assistant::audio::aec::synth::{room_echo, Lcg};
use assistant::audio::aec::{score::load_mono_f64, AecSettings, EchoCanceller};

/// Far end: the shared speech twice over (12 s); mic: its room echo plus noise. A
/// clipping loudspeaker (`tanh`, as echo_make_scene.py --clip) makes the echo nonlinear.
fn run(delay_s: f64, rt60_s: f64, clip: bool) -> (i32, f64) {
    let (_, speech) =
        load_mono_f64(&shared().join("audio/hello_24k_mono.wav")).expect("shared speech");
    let far: Vec<f32> = speech
        .iter()
        .chain(&speech)
        .map(|&x| x as f32 * 0.5)
        .collect();
    let mut rng = Lcg(11);
    let played: Vec<f32> = far
        .iter()
        .map(|&x| if clip { (2.0 * x).tanh() / 2.0 } else { x })
        .collect();
    let mic: Vec<f32> = room_echo(&played, delay_s, rt60_s, 3)
        .iter()
        .map(|&e| e + 0.0005 * rng.gauss() as f32)
        .collect();
    let mut aec = EchoCanceller::new(&AecSettings::default()).unwrap();
    let mut out = mic.clone();
    // Engine-sized blocks, reference first: the files are aligned as played and heard.
    for (i, block) in out.chunks_mut(1920).enumerate() {
        let at = (i * 1920).min(far.len());
        aec.push_far(&far[at..(at + block.len()).min(far.len())]);
        aec.process_near(block);
    }
    // Echo reduction over the second pass of the speech (after 6 s to converge).
    let tail = far.len() / 2..mic.len();
    let e = |x: &[f32]| {
        x[tail.clone()]
            .iter()
            .map(|v| (*v as f64).powi(2))
            .sum::<f64>()
    };
    let delay = aec
        .stats()
        .room_delay_ms
        .expect("the room stage found no delay");
    (delay, 10.0 * (e(&mic) / e(&out)).log10())
}

fn check(delay_ms: i32) {
    let (est, erle) = run(delay_ms as f64 / 1000.0, 0.3, false);
    println!("true delay {delay_ms} ms: estimated {est} ms, ERLE {erle:.1} dB");
    assert!(
        (est - delay_ms).abs() <= 12,
        "estimated {est} ms for a {delay_ms} ms delay"
    );
    assert!(
        erle >= 20.0,
        "only {erle:.1} dB of echo removed at {delay_ms} ms delay"
    );
}

#[test]
fn tracks_a_long_280_ms_delay() {
    check(280);
}

#[test]
fn tracks_a_short_24_ms_delay() {
    check(24);
}

#[test]
fn clipping_speaker_in_a_reverberant_room_with_a_long_delay() {
    let (est, erle) = run(0.150, 0.6, true);
    println!("clipping, RT60 0.6 s, 150 ms: estimated {est} ms, ERLE {erle:.1} dB");
    assert!((est - 150).abs() <= 12, "estimated {est} ms");
    assert!(erle >= 20.0, "only {erle:.1} dB removed");
}
