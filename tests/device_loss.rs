//! Fault injection on real cpal streams (ALSA file devices), through the same
//! function cpal's error callbacks run: when the output device is gone, the user
//! is told, the engine keeps running, and the speaker comes back on its own; an
//! xrun is only counted, and any other error is a notice: the stream stays.

mod common;
use assistant::audio::device::stream_error;
use assistant::audio::meters::Meters;
use assistant::bus::{Cancel, DeviceSide, DeviceStatus, Weights};
use assistant::cli::Cli;
use assistant::engine::{runner, Command, EngineEvent};
use clap::Parser;
use cpal::ErrorKind;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// HOME (ALSA's user configuration) is process-wide: one test at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// Default devices are the ALSA file devices in a fresh HOME, whatever sound
/// server the machine runs (cpal would prefer PulseAudio when it finds one).
fn alsa_only(tmp: &std::path::Path) {
    common::alsa_home(tmp);
    std::env::set_var("HOME", tmp);
    for var in ["PULSE_SERVER", "PULSE_RUNTIME_PATH", "XDG_RUNTIME_DIR"] {
        std::env::remove_var(var);
    }
}

struct Engine {
    meters: Arc<Meters>,
    events: crossbeam_channel::Receiver<EngineEvent>,
    commands: crossbeam_channel::Sender<Command>,
    engine: std::thread::JoinHandle<assistant::engine::stats::RunStats>,
    streams: assistant::app::Streams,
}

fn loopback_on_default_devices() -> Engine {
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
    Engine {
        meters,
        events: ev_rx,
        commands: cmd_tx,
        engine,
        streams,
    }
}

#[test]
fn an_output_device_gone_degrades_then_recovers_without_losing_the_conversation() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    alsa_only(tmp.path());
    let Engine {
        meters,
        events: ev_rx,
        commands: cmd_tx,
        engine,
        streams,
    } = loopback_on_default_devices();

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
                    // What the output stream's error callback runs when cpal
                    // reports the device gone.
                    stream_error(&meters, false, ErrorKind::DeviceNotAvailable);
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
                assert!(said.message.starts_with("speaker lost: "), "{said:?}");
                assert!(said.message.contains("not available"), "{said:?}");
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

/// Xruns, injected as cpal reports them, are counted and nothing else happens: no
/// "lost", no reopening, the same stream keeps playing. Another kind of error is a
/// notice, once however many arrive together, and the stream stays too.
#[test]
fn an_xrun_is_counted_and_the_stream_stays() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    alsa_only(tmp.path());
    let e = loopback_on_default_devices();
    let meters = e.meters.clone();
    let mut steps = 0u64;
    let mut xruns_before = None;
    let mut injected = None;
    let mut statuses = Vec::new();
    let mut troubles = Vec::new();
    let mut callbacks_at_injection = 0;
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        let Ok(ev) = e.events.recv_timeout(Duration::from_secs(5)) else {
            break;
        };
        match ev {
            EngineEvent::Step(_) => {
                steps += 1;
                if steps == 10 {
                    xruns_before = Some(meters.xruns_out() + meters.xruns_in());
                    callbacks_at_injection = meters.callbacks_out.load(Ordering::Relaxed);
                    for _ in 0..5 {
                        stream_error(&meters, false, ErrorKind::Xrun);
                        stream_error(&meters, true, ErrorKind::Xrun);
                    }
                    for _ in 0..3 {
                        stream_error(&meters, false, ErrorKind::DeviceBusy);
                    }
                    injected = Some(Instant::now());
                }
                // Well past the supervisor's stall timeout (2 s) and its polls.
                if injected.is_some_and(|t| t.elapsed() > Duration::from_secs(3)) {
                    e.commands.send(Command::Shutdown).unwrap();
                    injected = None;
                }
            }
            EngineEvent::Device(status @ DeviceStatus::Trouble { .. }) => {
                troubles.push(assistant::ui::words::device_status(&status).message)
            }
            EngineEvent::Device(status) => statuses.push(status),
            EngineEvent::Stopped => break,
            _ => {}
        }
    }
    let stats = e.engine.join().unwrap();
    drop(e.streams);
    let before = xruns_before.expect("steps ran");
    assert!(
        meters.xruns_out() + meters.xruns_in() >= before + 10,
        "the injected xruns were counted: {before} -> {} + {}",
        meters.xruns_out(),
        meters.xruns_in()
    );
    assert!(statuses.is_empty(), "no lost, no reopen: {statuses:?}");
    assert_eq!(
        troubles.len(),
        1,
        "one notice for the burst of busy errors: {troubles:?}"
    );
    assert!(
        troubles[0].starts_with("speaker: ") && troubles[0].contains("busy"),
        "{troubles:?}"
    );
    assert!(
        meters.callbacks_out.load(Ordering::Relaxed) > callbacks_at_injection,
        "the same stream kept playing"
    );
    assert_eq!(meters.errors_out.lost.load(Ordering::Relaxed), 0);
    assert!(stats.error.is_none(), "{stats:?}");
    assert!(steps > 10, "{steps}");
}
