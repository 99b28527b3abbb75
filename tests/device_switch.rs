//! Switching devices live, through two paced PulseAudio null sinks (a server of the
//! test's own): the microphone moves from sink A's monitor to sink B's, then the
//! speaker from sink A to sink B, while audio flows; a device that does not exist
//! leaves the current one in place with the reason. The test plays the engine's part:
//! it drains the microphone's ring and fills the speaker's, as the engine would.
//!
//! Figures (printed with `-- --nocapture`): the microphone's gap (last sample from
//! the old device to the first from the new), the speaker's (the switch asked to the
//! new speaker's tone heard on B's monitor, which includes PulseAudio's own latency).
//! Bounds are loose (a loaded machine meets them); the figures are what to read.

mod common;
mod pulse_support;
use assistant::audio::meters::Meters;
use assistant::audio::port::{InputPort, OutputPort};
use assistant::audio::supervisor::{self, DeviceRequest, PortChange, Sinks};
use assistant::bus::{DeviceSide, DeviceStatus};
use crossbeam_channel::{Receiver, RecvTimeoutError};
use pulse_support::Pulse;
use ringbuf::traits::{Consumer, Producer};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[cfg(debug_assertions)]
#[global_allocator]
static ALLOC: assert_no_alloc::AllocDisabler = assert_no_alloc::AllocDisabler;

fn ring(port: InputPort) -> ringbuf::HeapCons<f32> {
    match port {
        InputPort::Ring { cons, .. } => cons,
        _ => panic!("a device's input is a ring"),
    }
}

/// Drain `cons` for `d`: (samples read, loudest sample, when the last came).
fn drain(cons: &mut ringbuf::HeapCons<f32>, d: Duration) -> (usize, f32, Option<Instant>) {
    let end = Instant::now() + d;
    let (mut n, mut peak, mut last) = (0, 0f32, None);
    let mut buf = vec![0f32; 4096];
    while Instant::now() < end {
        let k = cons.pop_slice(&mut buf);
        if k > 0 {
            n += k;
            peak = buf[..k].iter().fold(peak, |p, x| p.max(x.abs()));
            last = Some(Instant::now());
        } else {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    (n, peak, last)
}

fn status(rx: &Receiver<DeviceStatus>, what: &str) -> DeviceStatus {
    match rx.recv_timeout(Duration::from_secs(20)) {
        Ok(s) => s,
        Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => {
            panic!("no device status for {what}")
        }
    }
}

#[test]
fn microphone_and_speaker_switch_live_and_a_bad_pick_keeps_the_current_one() {
    let Some(pulse) = Pulse::start(&["sinka", "sinkb"]) else {
        return;
    };
    // cpal finds the server through the process's environment (the other test here
    // uses no sound server).
    std::env::set_var("PULSE_SERVER", &pulse.server);
    let dir = tempfile::tempdir().unwrap();
    let (speech, rate) = common::read_mono(&common::shared_audio("hello_24k_mono.wav"));
    let mut long = Vec::new();
    while long.len() < 30 * rate as usize {
        long.extend(speech.iter().map(|&x| x as f32));
    }
    let wav = dir.path().join("speech.wav");
    assistant::audio::wav::write_wav_mono(&wav, rate, &long).unwrap();
    let _playing = pulse.play("sinka", &wav);

    let meters = Arc::new(Meters::default());
    let (port_tx, ports) = crossbeam_channel::unbounded();
    let (status_tx, statuses) = crossbeam_channel::unbounded();
    let sinks = Sinks {
        ports: Box::new(move |c| {
            let _ = port_tx.send(c);
        }),
        status: Box::new(move |s| {
            let _ = status_tx.send(s);
        }),
    };
    let req = DeviceRequest {
        input: Some(Some("pulseaudio:sinka.monitor".into())),
        output: Some(Some("pulseaudio:sinka".into())),
    };
    let (sup, opened) = supervisor::start(req, meters.clone(), sinks);
    let (port, name) = opened.input.unwrap().expect("sink A's monitor opens");
    assert!(name.contains("Null Output"), "{name}");
    let mut mic = ring(port);
    let (_speaker, _) = opened.output.unwrap().expect("sink A opens");
    let (n, peak, _) = drain(&mut mic, Duration::from_secs(2));
    assert!(
        n > 0 && peak > 0.01,
        "sink A's speech heard: {n} samples, peak {peak}"
    );
    let xruns_before = meters.xruns_in();

    // The microphone: A's monitor → B's.
    let switch = sup.switcher();
    switch.switch(DeviceSide::Microphone, "pulseaudio:sinkb.monitor".into());
    let mut last_old = None;
    let new_port = loop {
        let (_, _, last) = drain(&mut mic, Duration::from_millis(5));
        last_old = last.or(last_old);
        match ports.try_recv() {
            Ok(PortChange::Input(p)) => break p,
            Ok(_) => panic!("only the microphone was switched"),
            Err(_) => {}
        }
        assert!(
            statuses.is_empty()
                || !matches!(statuses.try_recv(), Ok(DeviceStatus::SwitchFailed { .. })),
            "the switch failed"
        );
    };
    let (_, _, last) = drain(&mut mic, Duration::from_millis(20));
    let last_old = last.or(last_old).expect("the old microphone delivered");
    let mut mic = ring(new_port);
    let first_new = loop {
        let (n, _, last) = drain(&mut mic, Duration::from_millis(2));
        if n > 0 {
            break last.unwrap();
        }
        assert!(
            last_old.elapsed() < Duration::from_secs(10),
            "the new microphone is silent"
        );
    };
    let gap_ms = first_new.saturating_duration_since(last_old).as_secs_f64() * 1000.0;
    match status(&statuses, "the microphone switch") {
        DeviceStatus::Switched {
            side,
            name,
            open_ms,
        } => {
            assert_eq!(side, DeviceSide::Microphone);
            assert!(name.contains("Second-sinkb"), "{name}");
            println!("microphone switch: opened in {open_ms:.1} ms, gap {gap_ms:.1} ms");
        }
        other => panic!("not a switch: {other:?}"),
    }
    assert!(gap_ms < 2000.0, "the microphone's gap: {gap_ms:.0} ms");
    let (n, peak, _) = drain(&mut mic, Duration::from_secs(1));
    assert!(n > 20_000, "B's monitor flows: {n} samples in 1 s");
    assert!(peak < 0.01, "nothing plays into B yet: peak {peak}");

    // The speaker: A → B. A tone into the new speaker is heard on B's monitor.
    let asked = Instant::now();
    switch.switch(DeviceSide::Speaker, "pulseaudio:sinkb".into());
    let mut out: OutputPort = match ports.recv_timeout(Duration::from_secs(20)) {
        Ok(PortChange::Output(Some(p))) => p,
        Ok(PortChange::Output(None)) => panic!(
            "the speaker was lost: {:?}",
            statuses.try_iter().collect::<Vec<_>>()
        ),
        Ok(PortChange::Input(_)) => panic!(
            "a microphone port: {:?}",
            statuses.try_iter().collect::<Vec<_>>()
        ),
        Err(_) => panic!(
            "no new speaker port: {:?}",
            statuses.try_iter().collect::<Vec<_>>()
        ),
    };
    assert!(matches!(
        status(&statuses, "the speaker switch"),
        DeviceStatus::Switched {
            side: DeviceSide::Speaker,
            ..
        }
    ));
    let ch = out.format.channels as usize;
    let tone: Vec<f32> = (0..out.format.sample_rate as usize / 50)
        .flat_map(|i| std::iter::repeat_n(0.5 * (i as f32 * 0.06).sin(), ch))
        .collect();
    let heard = loop {
        out.prod.push_slice(&tone);
        let (_, peak, _) = drain(&mut mic, Duration::from_millis(10));
        if peak > 0.1 {
            break asked.elapsed();
        }
        assert!(
            asked.elapsed() < Duration::from_secs(10),
            "the new speaker is not heard"
        );
    };
    println!(
        "speaker switch: tone heard on B's monitor {:.1} ms after the switch was asked",
        heard.as_secs_f64() * 1000.0
    );

    // A device that does not exist: the reason, and the current microphone goes on.
    switch.switch(DeviceSide::Microphone, "pulseaudio:no-such-source".into());
    match status(&statuses, "the bad pick") {
        DeviceStatus::SwitchFailed {
            side,
            wanted,
            reason,
        } => {
            assert_eq!(side, DeviceSide::Microphone);
            assert_eq!(wanted, "pulseaudio:no-such-source");
            assert!(reason.contains("no input device matches"), "{reason}");
        }
        other => panic!("not a failure: {other:?}"),
    }
    assert!(
        ports.try_recv().is_err(),
        "no new port after a failed switch"
    );
    let (n, _, _) = drain(&mut mic, Duration::from_millis(500));
    assert!(n > 0, "the microphone in use still flows");
    let xruns = meters.xruns_in() - xruns_before;
    println!("capture xruns across both switches: {xruns}");
    assert!(xruns <= 2, "frames lost beyond the switches: {xruns} xruns");
    drop(sup);
}

/// The engine's side of a switch: a new microphone ring restarts the echo canceller
/// (the feed and the journal say so), and the journal keeps the switch itself.
#[test]
fn a_new_microphone_restarts_the_echo_canceller_and_the_journal_keeps_the_switch() {
    use assistant::audio::aec::EchoOptions;
    use assistant::audio::device::{ring_for, AudioFormat};
    use assistant::bus::{EngineEvent, Happening};
    use assistant::engine::load::{loader, Loaded};
    use assistant::engine::loopback::Loopback;
    use assistant::engine::runner::{self, EngineSetup};
    use assistant::engine::Command;
    use assistant::session::{read_session, Journal, Record};

    let (ev_tx, ev_rx) = crossbeam_channel::unbounded();
    let (cmd_tx, cmd_rx) = crossbeam_channel::unbounded();
    let format = AudioFormat {
        sample_rate: 24_000,
        channels: 1,
    };
    let (speaker_prod, _speaker_cons) = ring_for(format, 2.0);
    let setup = EngineSetup {
        echo: Some(EchoOptions {
            aec: true,
            half_duplex: false,
        }),
        speaker: Some(OutputPort {
            prod: speaker_prod,
            format,
            prefill_ms: 40.0,
            cut: None,
        }),
        ..EngineSetup::new(
            loader(|_| {
                Ok(Loaded {
                    model: Box::new(Loopback::new(24_000, 1920)),
                    notices: vec![],
                    degraded: None,
                })
            }),
            InputPort::silence(24_000),
            Arc::new(Meters::default()),
            ev_tx,
            cmd_rx,
        )
    };
    let engine = runner::spawn(setup);
    let (_mic_prod, mic_cons) = ring_for(format, 2.0);
    cmd_tx
        .send(Command::ReplaceInput(InputPort::Ring {
            cons: mic_cons,
            format,
            ended: Arc::new(false.into()),
        }))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = Vec::new();
    while !seen
        .iter()
        .any(|e| matches!(e, EngineEvent::Happened(Happening::EchoReconverging)))
    {
        let left = deadline.saturating_duration_since(Instant::now());
        seen.push(
            ev_rx
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no re-convergence notice; events: {seen:?}")),
        );
    }
    cmd_tx.send(Command::Shutdown).unwrap();
    engine.join().unwrap();

    let dir = tempfile::tempdir().unwrap();
    let mut j = Journal::create(dir.path(), "Moshi", "device")
        .unwrap()
        .with_words(assistant::ui::words::journal_words);
    j.record(&EngineEvent::Device(DeviceStatus::Switched {
        side: DeviceSide::Microphone,
        name: "USB Headset Microphone".into(),
        open_ms: 42.0,
    }))
    .unwrap();
    j.record(&EngineEvent::Happened(Happening::EchoReconverging))
        .unwrap();
    let path = j.path().to_path_buf();
    j.finish().unwrap();
    let (records, _) = read_session(&path).unwrap();
    let events: Vec<String> = records
        .iter()
        .filter_map(|r| match r {
            Record::Event { message, .. } => Some(message.clone()),
            _ => None,
        })
        .collect();
    assert!(
        events[0].contains("microphone switched to USB Headset Microphone"),
        "{events:?}"
    );
    assert!(events[1].contains("echo canceller"), "{events:?}");
}
