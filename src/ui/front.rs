//! The TUI front-end of a run: wire input, output and engine as `headless` does,
//! then hand the terminal to the UI until the user quits.

use super::{terminal, UiContext};
use crate::app::{wire, StartError};
use crate::audio::meters::Meters;
use crate::cli::RunArgs;
use crate::engine::events::EngineEvent;
use crate::engine::{runner, Command};
use std::path::Path;
use std::sync::Arc;

/// Runs the assistant in the terminal; returns the process exit code.
pub fn run_app(args: &RunArgs, log_path: &Path) -> i32 {
    let meters = Arc::new(Meters::default());
    let (ev_tx, ev_rx) = crossbeam_channel::unbounded();
    let (cmd_tx, cmd_rx) = crossbeam_channel::unbounded();
    let wired = match wire(args, true, meters.clone(), ev_tx.clone(), cmd_rx) {
        Ok(w) => w,
        Err(StartError { code, message }) => {
            eprintln!("error: {message}");
            return code;
        }
    };
    // What the app learned while wiring reaches the UI in order, before the engine's events.
    let _ = ev_tx.send(EngineEvent::Endpoints {
        input: wired.input.clone(),
        output: wired.output.clone(),
    });
    for n in wired.notices {
        let _ = ev_tx.send(n);
    }
    drop(ev_tx);
    crate::telemetry::set_terminal_restore(|| {
        let _ = terminal::restore();
    });
    let streams = wired.streams;
    let engine = runner::spawn(wired.setup);
    let ctx = UiContext::new(meters, Some(log_path.to_path_buf()));
    let result = super::run(ctx, ev_rx, cmd_tx.clone());
    // The UI sent Shutdown on quit; on a UI error the engine must stop too.
    let _ = cmd_tx.send(Command::Shutdown);
    let stats = engine.join().unwrap_or_default();
    drop(streams);
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
