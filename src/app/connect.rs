//! `assistant --connect URL --headless`: the model is a session on a remote server
//! (`net::client::RemoteModel`); input, output, echo cancellation and the journal stay
//! local, wired exactly as for a local model.

use crate::app::{wire, StartError};
use crate::audio::meters::Meters;
use crate::bus::{Cancel, EngineEvent, Weights};
use crate::cli::RunArgs;
use crate::engine::load::{loader, LoadFailure, Loaded};
use crate::engine::{runner, Command};
use crate::net::client::{connect, ConnectOptions, RemoteModel};
use crate::net::protocol::SessionParams;
use crate::session::{self, sessions_dir, Journal};
use std::io::Write;
use std::sync::Arc;

/// The session's query parameters: the persona's (or the command line's) sampling.
pub fn params_for(args: &RunArgs) -> SessionParams {
    let m = &args.model;
    SessionParams {
        text_temperature: m.text_temperature,
        audio_temperature: m.temperature,
        text_topk: m.top_k,
        audio_topk: m.top_k,
        text_seed: m.seed,
        audio_seed: m.seed,
        // The persona's role text, for a server whose model takes one (PersonaPlex). Its
        // voice WAV is a file here, which a server cannot read: not sent.
        text_prompt: m.text_prompt.clone().filter(|t| !t.trim().is_empty()),
        ..Default::default()
    }
}

pub fn options_for(args: &RunArgs, url: &str) -> ConnectOptions {
    ConnectOptions {
        params: params_for(args),
        token: args.token.clone(),
        insecure: args.insecure,
        // A file read as fast as possible waits for each answer.
        lockstep: args.input.is_some() && !args.realtime,
        ..ConnectOptions::new(url)
    }
}

/// A loader that hands over the model connected at start, and reconnects on a reload.
pub fn remote_loader(first: RemoteModel, opts: ConnectOptions) -> crate::engine::load::Loader {
    let mut first = Some(first);
    loader(move |_| {
        let m = match first.take() {
            Some(m) => m,
            None => connect(&opts).map_err(|e| LoadFailure {
                message: e.to_string(),
                remedy: "check that the server runs and is reachable; press r to reconnect".into(),
            })?,
        };
        Ok(loaded(m))
    })
}

/// The connected model, with a warning when its certificate was not checked.
pub fn loaded(m: RemoteModel) -> Loaded {
    let warning = m
        .server()
        .unchecked_certificate
        .then(|| crate::ui::words::insecure_tls(&m.server().url));
    let mut l = Loaded::plain(Box::new(m));
    if let Some(w) = warning {
        l.notices.push(crate::bus::Notice {
            severity: w.severity,
            message: w.message,
            remedy: w.remedy,
        });
    }
    l
}

/// Run headless against a server; returns the exit code (2 when it cannot start).
pub fn run(original: &RunArgs) -> i32 {
    let Some(url) = original.connect.clone() else {
        eprintln!("error: --connect URL is required");
        return 2;
    };
    let start = match crate::app::start_persona(original, crate::persona::Catalog::load()) {
        Ok(s) => s,
        Err(StartError { code, message }) => {
            eprintln!("error: {message}");
            return code;
        }
    };
    let persona = start.catalog.personas[start.index].name.clone();
    let args = &start.args;
    let opts = options_for(args, &url);
    let model = match connect(&opts) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    let net = model.stats();
    eprintln!(
        "connected: {} (handshake: {}{})",
        model.server().url,
        model.server().handshake,
        model
            .server()
            .model()
            .map(|m| format!(", model {m}"))
            .unwrap_or_default()
    );
    let meters = Arc::new(Meters::default());
    let (ev_tx, ev_rx) = crossbeam_channel::unbounded();
    let (cmd_tx, cmd_rx) = crossbeam_channel::unbounded();
    let shutdown = Cancel::new();
    let mut wired = match wire(
        args,
        false,
        Weights::Default,
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
    wired.setup.loader = remote_loader(model, opts);
    let interrupt = cmd_tx.clone();
    let _ = ctrlc::set_handler(move || {
        shutdown.cancel();
        let _ = interrupt.send(Command::Shutdown);
    });
    for n in &wired.notices {
        if let EngineEvent::Notice { message, .. } = n {
            eprintln!("warning: {message}");
        }
    }
    let streams = wired.streams;
    let input_desc = format!("{:?}", wired.input);
    let engine = runner::spawn(wired.setup);
    let ev_rx = if args.no_journal {
        ev_rx
    } else {
        match Journal::create(&sessions_dir(), &persona, &input_desc) {
            Ok(j) => session::tee(ev_rx, j.with_words(crate::ui::words::journal_words)),
            Err(e) => {
                eprintln!("warning: no session journal: {e:#}");
                ev_rx
            }
        }
    };
    let mut exit = 0;
    let mut stdout = std::io::stdout();
    let mut printed_text = false;
    for ev in ev_rx.iter() {
        match &ev {
            EngineEvent::Text(t) => {
                printed_text = true;
                let _ = write!(stdout, "{t}");
                let _ = stdout.flush();
            }
            EngineEvent::ModelFailed { error, remedy } => {
                exit = 1;
                eprintln!("error: {error}\n  fix: {remedy}");
                let _ = cmd_tx.send(Command::Shutdown);
            }
            EngineEvent::Notice { message, .. } => eprintln!("{message}"),
            EngineEvent::Happened(h) => eprintln!("{}", crate::ui::words::happening(h).message),
            EngineEvent::Stopped => break,
            _ => {}
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
    let g = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
    eprintln!(
        "network: {} frames sent, {} received, round trip mean {:.1} ms (max {:.1}), jitter buffer {} ms, {} underruns, {} frames dropped, {} connections lost, {} reconnected",
        g(&net.frames_sent),
        g(&net.frames_received),
        net.rtt_mean_ms(),
        g(&net.rtt_max_us) as f64 / 1000.0,
        g(&net.jitter_opus_frames) * 40,
        g(&net.underruns),
        g(&net.dropped_frames),
        g(&net.drops),
        g(&net.reconnects)
    );
    if let Some(path) = &args.stats_json {
        let mut json = stats.to_json();
        if let Some(o) = json.as_object_mut() {
            o.insert("net".into(), net.to_json());
        }
        let text = serde_json::to_string_pretty(&json).unwrap_or_default();
        if let Err(e) = std::fs::write(path, text + "\n") {
            eprintln!("error: {}: cannot write stats: {e}", path.display());
            exit = exit.max(1);
        }
    }
    exit
}
