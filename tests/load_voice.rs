//! A persona switch while the previous persona's voice downloads: the app's voice loader
//! cancels that load, and its transfer stops within a second (the hub sees the
//! connection go); the new voice arrives, the old one never does.

mod load_server;
use assistant::bus::{EngineEvent, Sampling, Weights};
use assistant::cli::Cli;
use assistant::engine::Command;
use assistant::models::moshi::export::{write_demo, LmFormat};
use assistant::models::moshi::files::LM_SAFETENSORS;
use clap::Parser;
use load_server::Hub;
use std::time::{Duration, Instant};

#[test]
fn switching_persona_during_a_voice_download_stops_it_within_a_second() {
    let tmp = tempfile::tempdir().unwrap();
    let www = tmp.path().join("www");
    write_demo(&www, LmFormat::F32).unwrap();
    let hub = Hub::start("someone/voice", &www);
    hub.slow(LM_SAFETENSORS, 64 << 10);
    // The only test in this binary: nothing else reads the environment meanwhile.
    std::env::set_var("HF_ENDPOINT", &hub.endpoint);
    std::env::set_var("HF_HOME", tmp.path().join("hf"));
    std::env::remove_var("HF_HUB_CACHE");
    std::env::remove_var("HF_TOKEN");

    let cli = Cli::parse_from(["assistant", "--device", "cpu"]);
    let voices = assistant::app::voice_loader_for(&cli.run).expect("weights are not pinned");
    let (ev_tx, ev_rx) = crossbeam_channel::unbounded();
    let (cmd_tx, cmd_rx) = crossbeam_channel::unbounded();
    let start = |id, persona: &str, w: Weights| {
        voices.start(
            id,
            persona.into(),
            w,
            Sampling::default(),
            ev_tx.clone(),
            cmd_tx.clone(),
        )
    };
    start(1, "A", Weights::Repo("someone/voice".into()));
    let deadline = Instant::now() + Duration::from_secs(60);
    while hub.sent(LM_SAFETENSORS) < 100 << 10 {
        assert!(Instant::now() < deadline, "A's download never began");
        std::thread::sleep(Duration::from_millis(20));
    }

    // Switch to B (the demo voice): A's load is cancelled.
    start(2, "B", Weights::Demo);
    let switched = Instant::now();
    // The hub writes until the connection goes; then the count stays.
    let (mut last, mut changed) = (hub.sent(LM_SAFETENSORS), switched);
    while changed.elapsed() < Duration::from_millis(700) {
        std::thread::sleep(Duration::from_millis(10));
        let now = hub.sent(LM_SAFETENSORS);
        if now != last {
            (last, changed) = (now, Instant::now());
        }
        assert!(
            switched.elapsed() < Duration::from_secs(10),
            "A's download goes on"
        );
    }
    let latency = changed.saturating_duration_since(switched);
    eprintln!("A's download stopped {latency:?} after the switch");
    assert!(latency < Duration::from_secs(1), "{latency:?}");
    assert!(last < hub.file(LM_SAFETENSORS).len() as u64);

    // B's voice comes to the engine; A's never does, and A did not "fail".
    match cmd_rx.recv_timeout(Duration::from_secs(30)).unwrap() {
        Command::SwapModel { weights, .. } => assert_eq!(weights, Weights::Demo),
        _ => panic!("expected B's voice"),
    }
    std::thread::sleep(Duration::from_millis(300));
    assert!(cmd_rx.try_recv().is_err(), "only B's voice arrives");
    let failed: Vec<_> = ev_rx
        .try_iter()
        .filter(|e| matches!(e, EngineEvent::VoiceFailed { .. }))
        .collect();
    assert!(failed.is_empty(), "{failed:?}");
}
