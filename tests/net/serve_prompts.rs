//! `assistant serve` honours PersonaPlex's `text_prompt` and `voice_prompt` query
//! parameters, as NVIDIA's server does: a model that takes prompts (the tiny
//! PersonaPlex fixture, loaded once and shared) is primed with them before the
//! session's handshake; a voice is a name in the server's voices directory, never a
//! path, and a refusal names no server path; a model that takes none serves the
//! session.

use crate::personaplex_common;

use assistant::bus::EngineEvent;
use assistant::cli::Cli;
use assistant::net::client::{connect, ConnectError, ConnectOptions};
use assistant::net::protocol::SessionParams;
use assistant::net::server::{EventTap, ServeOptions, Server};
use clap::Parser;
use personaplex_common::{complete_checkpoint, fixtures};
use std::sync::{Arc, Mutex};

/// A server for `flags`, whose sessions' engine events are recorded in order.
fn server(flags: &[&str]) -> (Server, Arc<Mutex<Vec<EngineEvent>>>) {
    let cli =
        Cli::try_parse_from(std::iter::once("assistant").chain(flags.iter().copied())).unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let tap: EventTap = Arc::new(move |_peer, events| {
        let (tx, rx) = crossbeam_channel::unbounded();
        let log = log.clone();
        std::thread::spawn(move || {
            for ev in events.iter() {
                log.lock().unwrap().push(ev.clone());
                if tx.send(ev).is_err() {
                    break;
                }
            }
        });
        rx
    });
    let opts = ServeOptions {
        addr: "127.0.0.1:0".parse().unwrap(),
        max_sessions: 3,
        ..ServeOptions::default()
    };
    let ready = assistant::app::serve::serve_factory(
        &cli.run,
        (opts.max_sessions, false),
        &mut |_| {},
        &assistant::bus::Cancel::new(),
    )
    .unwrap_or_else(|e| panic!("{}", e.message));
    let srv = Server::start_with(opts, ready.factory, Some(tap)).unwrap();
    (srv, seen)
}

fn with_prompts(url: String, text: &str, voice: &str) -> ConnectOptions {
    ConnectOptions {
        params: SessionParams {
            text_prompt: Some(text.into()),
            voice_prompt: Some(voice.into()),
            ..Default::default()
        },
        ..ConnectOptions::new(url)
    }
}

#[test]
fn a_personaplex_session_is_primed_with_the_clients_prompts_before_its_handshake() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        fixtures().join("personaplex/model.safetensors"),
        dir.path().join("model.safetensors"),
    )
    .unwrap();
    complete_checkpoint(dir.path());
    let voices = tempfile::tempdir().unwrap();
    std::fs::copy(
        fixtures().join("personaplex/voice.wav"),
        voices.path().join("kind.wav"),
    )
    .unwrap();
    let (srv, seen) = server(&[
        "--voices-dir",
        voices.path().to_str().unwrap(),
        "--model-dir",
        dir.path().to_str().unwrap(),
        "--device",
        "cpu",
        "--temperature",
        "0",
        "--text-temperature",
        "0",
    ]);
    let url = format!("ws://{}", srv.local_addr());
    let m = connect(&with_prompts(
        url.clone(),
        "You are a kind teacher.",
        "kind",
    ))
    .expect("primed and connected");
    // The engine primed while loading, so before it was ready and the handshake went
    // out; its notice is passed on with the ready model's.
    let t = std::time::Instant::now();
    let primed = loop {
        let events = seen.lock().unwrap().clone();
        let found = events.iter().any(|e| {
            matches!(e, EngineEvent::Notice { message, .. }
                if message.starts_with("primed with the role text and the voice prompt"))
        });
        if found || t.elapsed() > std::time::Duration::from_secs(3) {
            break (found, events);
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert!(primed.0, "not primed: {:?}", primed.1);
    drop(m);

    // A voice the server does not have: the client is told which, and why, and reads
    // no path of the server's.
    let e = connect(&with_prompts(url.clone(), "You are kind.", "nope.wav"))
        .err()
        .expect("refused");
    assert!(
        matches!(&e, ConnectError::Server { message, .. } if message.contains("nope.wav")),
        "{e}"
    );
    assert!(
        !e.to_string().contains(voices.path().to_str().unwrap()),
        "{e}"
    );
    // A path is refused before anything is read, a file in the server's working
    // directory (this crate's, in tests) included: voices come from one place.
    for path in [
        "/etc/passwd",
        "tests/fixtures/personaplex/voice.wav",
        "Cargo.toml",
    ] {
        let e = connect(&with_prompts(url.clone(), "You are kind.", path))
            .err()
            .expect("refused");
        let cwd = std::env::current_dir().unwrap();
        assert!(!e.to_string().contains(cwd.to_str().unwrap()), "{e}");
        assert!(
            e.to_string().contains("not a path") || e.to_string().contains("no voice of that name"),
            "{path}: {e}"
        );
    }
}

#[test]
fn a_model_that_takes_no_prompt_ignores_them_and_serves() {
    let (srv, seen) = server(&["--engine", "loopback"]);
    let url = format!("ws://{}", srv.local_addr());
    // NVIDIA's client always sends a voice.
    let m =
        connect(&with_prompts(url, "You are kind.", "NATF2.pt")).expect("served without priming");
    drop(m);
    let events = seen.lock().unwrap().clone();
    assert!(
        !events.iter().any(
            |e| matches!(e, EngineEvent::Notice { message, .. } if message.starts_with("primed"))
        ),
        "{events:?}"
    );
}
