//! The TUI front-end of a run: wire input, output and engine as `headless` does,
//! journal the session, then hand the terminal to the UI until the user quits.

use crate::app::{first_start, start_voice, voice_loader_for, wire, StartError};
use crate::audio::meters::Meters;
use crate::bus::Cancel;
use crate::bus::EngineEvent;
use crate::cli::RunArgs;
use crate::engine::{runner, Command};
use crate::session::{self, sessions_dir, Journal};
use crate::ui::context::Resume;
use crate::ui::{terminal, UiContext};
use crossbeam_channel::Receiver;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long quitting waits for the journal to write its last records.
const JOURNAL_FLUSH_WAIT: Duration = Duration::from_secs(3);

/// Runs the assistant in the terminal; returns the process exit code.
pub fn run_app(original: &RunArgs, log_path: &Path) -> i32 {
    let first = crate::app::first_start::resolve(original);
    let original = &first.args;
    let start = match crate::app::start_persona(original, crate::persona::Catalog::load()) {
        Ok(s) => s,
        Err(StartError { code, message }) => {
            eprintln!("error: {message}");
            return code;
        }
    };
    let args = &start.args;
    // Read before this session's journal exists, which would be the newest.
    let resume = args
        .resume
        .then(|| session::last_transcript(&sessions_dir()))
        .flatten()
        .map(|(s, turns)| Resume {
            started: s.started,
            persona: s.persona,
            turns,
        });
    let meters = Arc::new(Meters::default());
    let (ev_tx, ev_rx) = crossbeam_channel::unbounded();
    let (cmd_tx, cmd_rx) = crossbeam_channel::unbounded();
    // With nothing on disk the user picks the engine; until then no persona loads weights.
    let asks = first.asks();
    let voices = voice_loader_for(original).filter(|_| asks.is_none());
    let voice = start_voice(&start, voices.as_ref());
    let shutdown = Cancel::new();
    let mut wired = match wire(
        args,
        true,
        voice,
        shutdown.clone(),
        meters.clone(),
        ev_tx.clone(),
        (cmd_tx.clone(), cmd_rx),
    ) {
        Ok(w) => w,
        Err(StartError { code, message }) => {
            eprintln!("error: {message}");
            return code;
        }
    };
    let (chooser, picks) = match asks {
        Some(d) => {
            let (tx, rx) = crossbeam_channel::unbounded();
            wired.setup.loader = first_start::waiting_loader(args.clone(), d, rx);
            (Some(first_start::chooser_setup(d)), Some(tx))
        }
        None => (None, None),
    };
    if let Some(d) = &first.decision {
        let _ = ev_tx.send(EngineEvent::info(d.line()));
    }
    // What the app learned while wiring reaches the UI in order, before the engine's events.
    let _ = ev_tx.send(EngineEvent::Endpoints {
        input: wired.input.clone(),
        output: wired.output.clone(),
    });
    let tools = super::tools::ui_context(args, &wired.tools);
    for n in wired.notices {
        let _ = ev_tx.send(n);
    }
    for w in start.catalog.warnings() {
        let _ = ev_tx.send(EngineEvent::warning(w, Some("fix the file (`assistant personas check FILE` shows where); the other personas work".into())));
    }
    if args.resume && resume.is_none() {
        let _ = ev_tx.send(EngineEvent::info(format!(
            "--resume: no earlier session in {}",
            sessions_dir().display()
        )));
    }
    let persona_name = start.catalog.personas[start.index].name.clone();
    let input_desc = format!("{:?}", wired.input);
    let (ui_events, journal) = journalled(args, ev_rx, &ev_tx, &input_desc, &persona_name);
    crate::telemetry::set_terminal_restore(|| {
        let _ = terminal::restore();
    });
    let panics = ev_tx.clone();
    crate::telemetry::set_helper_panic_report(move |what| {
        let _ = panics.send(EngineEvent::Notice {
            severity: crate::bus::Severity::Error,
            message: what,
            remedy: Some("the rest keeps running; details are in the log file".into()),
        });
    });
    let streams = wired.streams;
    let switcher = streams.devices.as_ref().map(|s| s.switcher());
    let engine = runner::spawn(wired.setup);
    if args.push_to_talk {
        // Closed until the user presses Space; the engine confirms with `Muted`.
        let _ = cmd_tx.send(Command::SetMuted(true));
    }
    if let Some(text) = args.say.as_ref().filter(|t| !t.trim().is_empty()) {
        // The engine keeps it until a model is up.
        let _ = cmd_tx.send(Command::Type(text.clone()));
    }
    let ctx = UiContext {
        personas: Arc::new(start.catalog.personas.clone()),
        persona: start.index,
        events: Some(ev_tx),
        voices,
        shutdown,
        seed: args
            .model
            .seed
            .unwrap_or(crate::engine::Sampling::default().seed),
        resume,
        push_to_talk: args.push_to_talk,
        engine: first.decision.as_ref().map(|d| d.short()),
        chooser,
        picks,
        tools,
        devices: switcher,
        settings: settings_context(args),
        ..UiContext::new(meters, Some(log_path.to_path_buf()))
    };
    // However the UI ends, it has asked the engine to shut down.
    let result = crate::ui::run(ctx, ui_events, cmd_tx);
    let stats = engine.join().unwrap_or_default();
    drop(streams);
    if let Some(closed) = journal {
        // The engine's last event closes the journal; wait until it has gone through.
        let deadline = Instant::now() + JOURNAL_FLUSH_WAIT;
        while !closed.load(SeqCst) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    let mut exit = match result {
        Ok(_) => 0,
        Err(e) => {
            tracing::error!("ui: {e:#}");
            eprintln!("error: {e:#}");
            1
        }
    };
    if let Some(path) = &args.stats_json {
        let text = serde_json::to_string_pretty(&stats.to_json()).unwrap_or_default();
        if let Err(e) = std::fs::write(path, text + "\n") {
            eprintln!("error: {}: cannot write stats: {e}", path.display());
            exit = exit.max(1);
        }
    }
    exit
}

/// The events the UI reads: through the session journal unless `--no-journal`.
/// The relay thread drains even after the UI is gone, so the journal records
/// the whole session; the flag turns true once the journal is closed (the
/// engine's `Stopped` went through it) or the relay ended.
fn journalled(
    args: &RunArgs,
    events: Receiver<EngineEvent>,
    notices: &crossbeam_channel::Sender<EngineEvent>,
    input_desc: &str,
    persona: &str,
) -> (Receiver<EngineEvent>, Option<Arc<AtomicBool>>) {
    if args.no_journal {
        return (events, None);
    }
    let journal = match Journal::create(&sessions_dir(), persona, input_desc)
        .map(|j| j.with_words(crate::ui::words::journal_words))
    {
        Ok(j) => j,
        Err(e) => {
            let _ = notices.send(EngineEvent::warning(
                format!("no session journal: {e:#}"),
                Some("check free space and permissions of the data directory".into()),
            ));
            return (events, None);
        }
    };
    let _ = notices.send(EngineEvent::info(format!(
        "journal: {}",
        journal.path().display()
    )));
    let teed = session::tee(events, journal);
    let (tx, rx) = crossbeam_channel::unbounded();
    let closed = Arc::new(AtomicBool::new(false));
    let flag = closed.clone();
    let relay = std::thread::Builder::new()
        .name("ui-journal-relay".into())
        .spawn(move || {
            for e in teed {
                let stopped = matches!(e, EngineEvent::Stopped);
                let _ = tx.send(e);
                if stopped {
                    flag.store(true, SeqCst);
                }
            }
            flag.store(true, SeqCst);
        });
    (rx, relay.is_ok().then_some(closed))
}

/// The settings in force for the overlay (`s`): flags, the file and the defaults
/// together, and the file's own choices, which the overlay adds to.
fn settings_context(args: &crate::cli::RunArgs) -> Option<crate::ui::context::SettingsContext> {
    use crate::cli::{EngineKind, OnOff};
    let path = crate::settings::path()?;
    let saved = crate::settings::Settings::load(&path).unwrap_or_default();
    let d = crate::engine::Sampling::default();
    let engine = match args.engine {
        EngineKind::Moshi => "moshi",
        EngineKind::Cascade => "cascade",
        EngineKind::Loopback => "loopback",
    };
    Some(crate::ui::context::SettingsContext {
        current: crate::ui::settings_view::Current {
            echo_cancel: args
                .aec
                .map_or(args.engine != EngineKind::Loopback, |a| a == OnOff::On),
            half_duplex: args.half_duplex,
            push_to_talk: args.push_to_talk,
            wake: args.wake,
            wake_threshold: args
                .wake_threshold
                .unwrap_or(crate::audio::wake::DEFAULT_THRESHOLD),
            temperature: args.model.temperature.unwrap_or(d.temperature),
            text_temperature: args.model.text_temperature.unwrap_or(d.text_temperature),
            top_k: args.model.top_k.unwrap_or(d.top_k),
            engine: engine.into(),
        },
        saved,
        path,
    })
}
