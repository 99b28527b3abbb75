//! The real voice loader (what the app uses): a persona's weights build on a
//! loader thread, with progress, and reach the engine as `SwapModel`; weights
//! that are not there come back as `VoiceFailed` with the reason.

use assistant::cli::Cli;
use assistant::engine::{Command, EngineEvent, Sampling};
use assistant::persona::Weights;
use clap::Parser;
use std::time::Duration;

fn loader(extra: &[&str]) -> Option<assistant::engine::voice::VoiceLoader> {
    let mut argv = vec!["assistant"];
    argv.extend_from_slice(extra);
    assistant::app::voice_loader_for(&Cli::parse_from(argv).run)
}

#[test]
fn the_command_line_can_pin_the_weights() {
    assert!(loader(&["--demo"]).is_none());
    assert!(loader(&["--engine", "loopback"]).is_none());
    assert!(loader(&["--model-dir", "/tmp/x"]).is_none());
    let l = loader(&[]).expect("weights free to change");
    assert_eq!(
        l.resolve(&Weights::Default),
        Weights::Repo("kyutai/moshiko-candle-q8".into())
    );
}

#[test]
fn a_demo_voice_loads_in_the_background_and_a_missing_directory_fails_with_its_reason() {
    let l = loader(&[]).unwrap();
    let (ev_tx, ev_rx) = crossbeam_channel::unbounded();
    let (cmd_tx, cmd_rx) = crossbeam_channel::unbounded();
    let sampling = Sampling {
        temperature: 0.3,
        text_temperature: 0.2,
        top_k: 40,
        seed: 1,
    };
    l.start(
        1,
        "HAL".into(),
        Weights::Demo,
        sampling.clone(),
        ev_tx.clone(),
        cmd_tx.clone(),
    );
    match cmd_rx
        .recv_timeout(Duration::from_secs(60))
        .expect("a model")
    {
        Command::SwapModel { model: m, .. } => {
            assert!(m.info().name.starts_with("demo"), "{}", m.info().name)
        }
        other => panic!("{other:?}"),
    }
    let progress: Vec<_> = ev_rx.try_iter().collect();
    assert!(
        progress
            .iter()
            .any(|e| matches!(e, EngineEvent::Loading(p) if p.stage.starts_with("HAL's voice: "))),
        "{progress:?}"
    );

    let missing = tempfile::tempdir().unwrap().path().join("nothing-here");
    l.start(
        2,
        "FRIDAY".into(),
        Weights::Dir(missing.clone()),
        sampling,
        ev_tx,
        cmd_tx,
    );
    let failed = loop {
        match ev_rx
            .recv_timeout(Duration::from_secs(60))
            .expect("an outcome")
        {
            EngineEvent::VoiceFailed {
                persona,
                error,
                remedy,
            } => break (persona, error, remedy),
            _ => continue,
        }
    };
    assert_eq!(failed.0, "FRIDAY");
    assert!(failed.1.contains("nothing-here"), "{failed:?}");
    assert!(!failed.2.is_empty());
    assert!(cmd_rx.try_recv().is_err(), "nothing swapped in");
}
