//! Fault injection on real cpal streams (ALSA file devices): when the output
//! stream errors, the user is told, the engine keeps running, and the speaker
//! comes back on its own.

mod common;
use assistant::audio::meters::Meters;
use assistant::bus::{Cancel, DeviceSide, DeviceStatus, Weights};
use assistant::cli::Cli;
use assistant::engine::{runner, Command, EngineEvent};
use clap::Parser;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[test]
fn an_output_stream_error_degrades_then_recovers_without_losing_the_conversation() {
    let tmp = tempfile::tempdir().unwrap();
    common::alsa_home(tmp.path());
    // This test binary holds just this test, so setting HOME for ALSA is race-free.
    std::env::set_var("HOME", tmp.path());
    let args = Cli::parse_from(["assistant", "--headless", "--engine", "loopback"]).run;
    let meters = Arc::new(Meters::default());
    let (ev_tx, ev_rx) = crossbeam_channel::unbounded();
    let (cmd_tx, cmd_rx) = crossbeam_channel::unbounded();
    let wired = assistant::app::wire(
        &args,
        false,
        Weights::Default,
        Cancel::new(),
        meters.clone(),
        ev_tx,
        (cmd_tx.clone(), cmd_rx),
    )
    .unwrap_or_else(|e| panic!("{}", e.message));
    let streams = wired.streams;
    let engine = runner::spawn(wired.setup);

    let mut steps = 0u64;
    let mut injected = None;
    let mut lost = None;
    let mut back = None;
    let mut steps_after_recovery = 0;
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        let Ok(ev) = ev_rx.recv_timeout(Duration::from_secs(5)) else {
            break;
        };
        match ev {
            EngineEvent::Step(_) => {
                steps += 1;
                if steps == 10 {
                    // Exactly what cpal's error callback does when a device goes away.
                    meters.stream_errors_out.fetch_add(1, Ordering::Relaxed);
                    injected = Some(Instant::now());
                }
                if back.is_some() {
                    steps_after_recovery += 1;
                    if steps_after_recovery == 10 {
                        cmd_tx.send(Command::Shutdown).unwrap();
                    }
                }
            }
            EngineEvent::Device(
                status @ DeviceStatus::Lost {
                    side: DeviceSide::Speaker,
                    ..
                },
            ) => {
                let said = assistant::ui::words::device_status(&status);
                assert!(said.message.starts_with("speaker lost"), "{said:?}");
                assert!(said.remedy.unwrap().contains("reconnect the speaker"));
                lost = Some(Instant::now());
            }
            EngineEvent::Device(DeviceStatus::Ready {
                side: DeviceSide::Speaker,
                ..
            }) => back = Some(Instant::now()),
            EngineEvent::Stopped => break,
            _ => {}
        }
    }
    let stats = engine.join().unwrap();
    drop(streams);
    let (injected, lost, back) = (
        injected.expect("steps ran"),
        lost.expect("the loss was reported"),
        back.expect("the speaker came back"),
    );
    assert!(
        lost - injected < Duration::from_secs(1),
        "reported within a second"
    );
    assert!(
        back - lost >= Duration::from_secs(2) && back - lost < Duration::from_secs(6),
        "retried after a few seconds"
    );
    assert!(
        steps_after_recovery >= 10,
        "the engine kept stepping after recovery: {steps_after_recovery}"
    );
    assert!(stats.error.is_none(), "{stats:?}");
}
