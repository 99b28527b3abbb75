//! The device picker end to end: the binary in tmux on a PulseAudio server of the
//! test's own with two null sinks. Speech plays into sink A while the microphone is
//! sink B's monitor; `d` lists both monitors, A's with a moving level; Enter on it
//! switches the microphone live, and the feed and the journal say so.

use crate::common;
use crate::pulse_support;
use crate::tmux_support;
use pulse_support::Pulse;
use tmux_support::Tmux;

#[test]
fn the_picker_shows_levels_and_switches_the_microphone_live() {
    let Some(pulse) = Pulse::start(&["sinka", "sinkb"]) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (speech, rate) = common::read_mono(&common::shared_audio("hello_24k_mono.wav"));
    let mut long = Vec::new();
    while long.len() < 60 * rate as usize {
        long.extend(speech.iter().map(|&x| x as f32));
    }
    let wav = dir.path().join("speech.wav");
    assistant::audio::wav::write_wav_mono(&wav, rate, &long).unwrap();
    let _playing = pulse.play("sinka", &wav);
    let env = [("PULSE_SERVER", pulse.server.clone())];
    let Some(t) = Tmux::start_env(
        &env,
        &[
            "--engine",
            "loopback",
            "--input-device",
            "pulseaudio:sinkb.monitor",
            "--output-device",
            "pulseaudio:sinkb",
            "--aec",
            "on",
        ],
    ) else {
        return;
    };
    t.wait_for("ready on sink B", |s| {
        s.contains("model ready: loopback") && s.contains("Monitor of Second-sinkb")
    });
    t.keys("d");
    // Sink A's monitor is the first input (PulseAudio lists its sources in order),
    // and it hears the speech: its meter moves.
    t.wait_for("the picker with A's level", |s| {
        s.lines()
            .any(|l| l.contains("▮") && l.contains("Monitor of Null Output"))
            && s.contains("Second-sinkb")
            && s.contains("outputs")
    });
    t.keys("Enter");
    let s = t.wait_for("the switch in the feed", |s| {
        s.contains("microphone switched to Monitor of Null Output")
    });
    assert!(
        !s.contains("JackShm") && !s.contains("Cannot connect"),
        "nothing writes over the screen:\n{s}"
    );
    t.wait_for("the echo canceller's notice", |s| {
        s.contains("echo canceller")
    });
    t.keys("q");
    t.wait_for("the end", |_| t.exit_code().is_some());
    let journal = t.journal();
    assert!(
        journal.iter().any(|r| r["kind"] == "event"
            && r["message"]
                .as_str()
                .is_some_and(|m| m.contains("microphone switched to Monitor of Null Output"))),
        "{journal:?}"
    );
}
