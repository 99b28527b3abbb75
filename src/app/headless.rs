//! `--headless`: no TUI. Text to stdout as it arrives; progress and warnings to
//! stderr; `--stats-json` at the end.

use crate::app::{start_voice, voice_loader_for, wire, StartError};
use crate::audio::meters::Meters;
use crate::bus::Cancel;
use crate::bus::{Endpoint, EngineEvent, Severity};
use crate::cli::RunArgs;
use crate::engine::{runner, Command};
use crate::net::client::NetStats;
use crate::session::{self, sessions_dir, Journal};
use std::io::Write;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

/// Where the model comes from: built on this machine, or a session on a server.
#[derive(Debug, Clone, PartialEq)]
pub enum ModelSource {
    Local,
    /// `--connect URL`.
    Remote {
        url: String,
    },
}

impl ModelSource {
    pub fn of(args: &RunArgs) -> Self {
        match &args.connect {
            Some(url) => Self::Remote { url: url.clone() },
            None => Self::Local,
        }
    }
}

/// Run to the end of the input (or Ctrl-C); returns the process exit code.
pub fn run(original: &RunArgs) -> i32 {
    run_with(original, ModelSource::of(original))
}

/// The one headless loop, for either source. Exit codes (README): 0 done, 1 a runtime
/// error (the model failed after it was up, a session lost for good), 2 bad input
/// (a missing or broken file, an unknown device, weights that fail to load, a server
/// that cannot be reached or refuses the session).
pub fn run_with(original: &RunArgs, source: ModelSource) -> i32 {
    let mut original = original.clone();
    original.connect = match &source {
        ModelSource::Local => None,
        ModelSource::Remote { url } => Some(url.clone()),
    };
    let first = crate::app::first_start::resolve(&original);
    if let Some(d) = first.asks() {
        eprint!("{}", crate::app::first_start::headless_message(d));
        return 2;
    }
    if let Some(d) = &first.decision {
        eprintln!("{}", d.line());
    }
    let original = &first.args;
    let start = match crate::app::start_persona(original, crate::persona::Catalog::load()) {
        Ok(s) => s,
        Err(StartError { code, message }) => {
            eprintln!("error: {message}");
            return code;
        }
    };
    for w in start.catalog.warnings() {
        eprintln!("warning: {w}");
    }
    let persona = start.catalog.personas[start.index].name.clone();
    let args = &start.args;
    let meters = Arc::new(Meters::default());
    let (ev_tx, ev_rx) = crossbeam_channel::unbounded();
    let (cmd_tx, cmd_rx) = crossbeam_channel::unbounded();
    let voice = start_voice(&start, voice_loader_for(original).as_ref());
    let shutdown = Cancel::new();
    let wired = match wire(
        args,
        false,
        voice,
        shutdown.clone(),
        meters,
        ev_tx,
        (cmd_tx.clone(), cmd_rx),
    ) {
        Ok(w) => w,
        Err(StartError { code, message }) => {
            eprintln!("error: {message}");
            return code;
        }
    };
    if args.push_to_talk {
        eprintln!("warning: --push-to-talk needs the TUI (Space opens the microphone); ignored with --headless");
    }
    let interrupt = cmd_tx.clone();
    let interrupts = AtomicU32::new(0);
    let _ = ctrlc::set_handler(move || {
        if interrupts.fetch_add(1, Ordering::SeqCst) > 0 {
            // The first one asked nicely; a second means now.
            eprintln!("interrupted again: exiting without waiting");
            std::process::exit(130);
        }
        shutdown.cancel();
        let _ = interrupt.send(Command::Shutdown);
    });
    for ep in [("input", &wired.input), ("output", &wired.output)] {
        if let (name, Endpoint::Device(d) | Endpoint::File(d)) = ep {
            eprintln!("{name}: {d}");
        }
    }
    for n in &wired.notices {
        print_event(n, &mut std::io::stdout());
    }
    let (streams, link) = (wired.streams, wired.link);
    let input_desc = format!("{:?}", wired.input);
    let engine = runner::spawn(wired.setup);
    if let Some(text) = args.say.as_ref().filter(|t| !t.trim().is_empty()) {
        // The engine keeps it until a model is up.
        let _ = cmd_tx.send(Command::Type(text.clone()));
    }
    let ev_rx = if args.no_journal {
        ev_rx
    } else {
        match Journal::create(&sessions_dir(), &persona, &input_desc)
            .map(|j| j.with_words(crate::ui::words::journal_words))
        {
            Ok(j) => {
                eprintln!("journal: {}", j.path().display());
                session::tee(ev_rx, j)
            }
            Err(e) => {
                eprintln!("warning: no session journal: {e:#}");
                ev_rx
            }
        }
    };
    let mut exit = 0;
    let mut stdout = std::io::stdout();
    let mut printed_text = false;
    let mut progress = ProgressPace::default();
    let mut model_up = false;
    // The user's words (cascade mode), printed to stderr once their turn ends.
    let mut said = String::new();
    for ev in ev_rx.iter() {
        printed_text |= matches!(ev, EngineEvent::Text(_));
        match &ev {
            EngineEvent::Talk(talk) => print_talk(talk, &mut said),
            EngineEvent::Loading(p) if !progress.due(p) => {}
            EngineEvent::ModelReady { .. } => {
                model_up = true;
                print_event(&ev, &mut stdout);
            }
            EngineEvent::ModelFailed { .. } => {
                // Failing to start is bad input (2); failing later, a runtime error (1).
                exit = if model_up { 1 } else { 2 };
                print_event(&ev, &mut stdout);
                let _ = cmd_tx.send(Command::Shutdown);
            }
            EngineEvent::Stopped => break,
            _ => print_event(&ev, &mut stdout),
        }
    }
    if printed_text {
        let _ = writeln!(stdout);
    }
    let stats = engine.join().unwrap_or_default();
    drop(streams);
    if stats.error.is_some() && exit == 0 {
        exit = 1;
    }
    let net = link.get();
    if let Some(net) = &net {
        eprintln!("{}", network_summary(net));
    }
    if let Some(path) = &args.stats_json {
        let mut json = stats.to_json();
        if let (Some(o), Some(net)) = (json.as_object_mut(), &net) {
            o.insert("net".into(), net.to_json());
        }
        let text = serde_json::to_string_pretty(&json).unwrap_or_default();
        if let Err(e) = std::fs::write(path, text + "\n") {
            eprintln!("error: {}: cannot write stats: {e}", path.display());
            exit = exit.max(1);
        }
    }
    let _ = stdout.flush();
    exit
}

/// The `--connect` session's figures, one line at the end.
fn network_summary(net: &NetStats) -> String {
    let g = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    format!(
        "network: {} frames sent, {} received, round trip mean {:.1} ms (max {:.1}), jitter buffer {} ms, {} underruns, {} frames dropped, {} connections lost, {} reconnected, queues dropped {} frames out and {} in",
        g(&net.frames_sent),
        g(&net.frames_received),
        net.rtt_mean_ms(),
        g(&net.rtt_max_us) as f64 / 1000.0,
        g(&net.jitter_opus_frames) * 40,
        g(&net.underruns),
        g(&net.dropped_frames),
        g(&net.drops),
        g(&net.reconnects),
        g(&net.send_dropped),
        g(&net.receive_dropped),
    )
}

fn print_event(ev: &EngineEvent, stdout: &mut std::io::Stdout) {
    match ev {
        EngineEvent::Text(t) => {
            let _ = write!(stdout, "{t}");
            let _ = stdout.flush();
        }
        EngineEvent::Loading(p) if p.total == 0 => eprintln!("loading {}", p.stage),
        EngineEvent::Loading(p) => {
            let pct = if p.total > 0 {
                100.0 * p.done as f64 / p.total as f64
            } else {
                0.0
            };
            eprintln!("loading {}: {}/{} ({pct:.0}%)", p.stage, p.done, p.total);
        }
        EngineEvent::ModelReady { info, load_ms } => eprintln!(
            "model: {} on {} ({}), loaded in {load_ms:.0} ms",
            info.name, info.device, info.dtype
        ),
        EngineEvent::ModelFailed { error, remedy } => eprintln!("error: {error}\n  fix: {remedy}"),
        EngineEvent::Notice {
            severity,
            message,
            remedy,
        } => print_said(crate::ui::words::Said {
            severity: *severity,
            message: message.clone(),
            remedy: remedy.clone(),
        }),
        EngineEvent::Device(d) => print_said(crate::ui::words::device_status(d)),
        EngineEvent::Happened(h) => print_said(crate::ui::words::happening(h)),
        EngineEvent::InputEnded => eprintln!("input ended"),
        _ => {}
    }
}

fn print_talk(talk: &crate::bus::Talk, said: &mut String) {
    use crate::bus::Talk;
    match talk {
        Talk::UserWords(w) => said.push_str(w),
        Talk::UserTurnEnded => eprintln!("you:{}", std::mem::take(said)),
        Talk::Typed(text) => eprintln!("you (typed): {text}"),
        Talk::BargedIn { heard, of } => {
            eprintln!("info: {}", crate::ui::words::barged_in(*heard, *of))
        }
        Talk::LlmTrouble { message, remedy } => print_said(crate::ui::words::Said {
            severity: Severity::Warning,
            message: message.clone(),
            remedy: Some(remedy.clone()),
        }),
        Talk::Phase(_) => {}
        Talk::Tool(a) => eprintln!("{}", crate::ui::words::tool_activity(a)),
    }
}

fn print_said(said: crate::ui::words::Said) {
    let tag = match said.severity {
        Severity::Info => "info",
        Severity::Warning => "warning",
        Severity::Error => "error",
    };
    eprintln!("{tag}: {}", said.message);
    if let Some(r) = said.remedy {
        eprintln!("  fix: {r}");
    }
}

/// Load progress on stderr about once a second per stage (and its end), not at the
/// rate loaders report it.
#[derive(Default)]
struct ProgressPace {
    last: Option<(String, std::time::Instant)>,
}

impl ProgressPace {
    fn due(&mut self, p: &crate::bus::LoadProgress) -> bool {
        let finished = p.total > 0 && p.done >= p.total;
        let now = std::time::Instant::now();
        let due = match &self.last {
            // A stage with no amount to count (a connect) is said once.
            Some((stage, _)) if *stage == p.stage && p.total == 0 => false,
            Some((stage, at)) if *stage == p.stage => {
                finished || now.duration_since(*at) >= std::time::Duration::from_secs(1)
            }
            _ => true,
        };
        if due {
            self.last = Some((p.stage.clone(), now));
        }
        due
    }
}
