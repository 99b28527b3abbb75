//! A run without an engine flag: the engine choice applied to the arguments, and the
//! first start with nothing on disk. The TUI then shows the chooser and the engine
//! waits for its pick; a headless run cannot ask, so it names the flags and exits 2.
//!
//! `--demo`, `--engine`, `--model-dir`, `--hf-repo` and `--connect` on the command line
//! bypass all of this (`RunArgs::auto_engine` is false), as before.

use super::engine_choice::{choose, size, Assessment, Decision, Pick, PICKS};
use super::engine_figures as fig;
use crate::cli::{EngineKind, RunArgs};
use crate::engine::load::{loader, LoadFailure, Loader};
use crate::models::moshi::{DeviceChoice, Discovery};
use crate::ui::chooser::{ChooserOption, ChooserPick, ChooserSetup};
use crossbeam_channel::{Receiver, RecvTimeoutError};
use std::time::Duration;

/// A run's arguments with the engine decided, and the decision when the app made it.
pub struct Start {
    pub args: RunArgs,
    pub decision: Option<Decision>,
}

impl Start {
    /// The first start: the picked engine's weights are not here, so the user decides
    /// what to download.
    pub fn asks(&self) -> Option<&Decision> {
        self.decision.as_ref().filter(|d| d.needs_download())
    }
}

/// The command line's engine, or the one this machine runs best.
pub fn resolve(original: &RunArgs) -> Start {
    if !original.auto_engine {
        return Start {
            args: original.clone(),
            decision: None,
        };
    }
    let disc = Discovery::from_env();
    let decision = choose(&super::machine_profile::read(original, &disc));
    let mut args = original.clone();
    let chosen = decision.chosen();
    apply(
        &mut args,
        decision.pick,
        chosen.device.as_deref(),
        original.connect.clone(),
    );
    Start {
        args,
        decision: Some(decision),
    }
}

/// Set the arguments for a pick: the engine, its GPU, the server's address.
pub fn apply(args: &mut RunArgs, pick: Pick, device: Option<&str>, url: Option<String>) {
    args.connect = None;
    match pick {
        Pick::MoshiGpu => {
            args.engine = EngineKind::Moshi;
            if let Some(d) = device
                .and_then(|d| d.parse::<DeviceChoice>().ok())
                .filter(|d| *d != DeviceChoice::Cpu)
            {
                args.model.device = d;
            }
        }
        Pick::CpuCascade => args.engine = EngineKind::Cascade,
        Pick::Server => args.connect = url,
        Pick::Demo => {
            args.engine = EngineKind::Moshi;
            args.model.demo = true;
        }
    }
}

/// The chooser's view of the decision: every engine, worded, the pick recommended.
pub fn chooser_setup(d: &Decision) -> ChooserSetup {
    ChooserSetup {
        options: d.options.iter().map(option).collect(),
        recommended: PICKS.iter().position(|p| *p == d.pick).unwrap_or(0),
        why: d.line(),
        machine: d.machine.clone(),
        url: "ws://".into(),
    }
}

fn title(a: &Assessment) -> String {
    match a.pick {
        Pick::MoshiGpu => match a.device.as_deref() {
            Some(gpu) if gpu != "cpu" => format!("Moshi on the GPU ({gpu})"),
            _ => "Moshi on the GPU".into(),
        },
        Pick::CpuCascade => "CPU cascade".into(),
        Pick::Server => "Connect to a server".into(),
        Pick::Demo => "Demo model".into(),
    }
}

/// What it is or what stands in its way, and whether it can call tools.
fn note(a: &Assessment) -> String {
    let tools = if super::engine_choice::calls_tools(a.pick) {
        "tools"
    } else {
        "no tools"
    };
    format!("{}; {tools}", what(a))
}

fn what(a: &Assessment) -> String {
    match a.pick {
        Pick::MoshiGpu => {
            let slower = a
                .step_ms
                .filter(|ms| *ms > fig::FRAME_MS)
                .map(|ms| format!(", {:.0}× too slow", ms / fig::FRAME_MS));
            match (&a.problem, slower) {
                (Some(p), Some(s)) => format!("{p}: it would run on the CPU{s}"),
                (Some(p), None) => p.clone(),
                (None, _) => "full duplex: it listens while it speaks".into(),
            }
        }
        Pick::CpuCascade => format!(
            "{} → {} → {}; takes turns",
            fig::CPU_STT.what,
            fig::CPU_LLM.what,
            fig::CPU_TTS.what
        ),
        Pick::Server => "`assistant serve` or moshi-server on another machine".into(),
        Pick::Demo => "starts at once; a tiny random model: sounds, not sense".into(),
    }
}

fn option(a: &Assessment) -> ChooserOption {
    let download = match a.pick {
        Pick::Server | Pick::Demo => "nothing to download".to_string(),
        _ if a.on_disk() => "on disk".to_string(),
        _ => format!("download {}", size(a.download)),
    };
    let short = format!("memory {}", size(a.memory));
    let (memory, memory_short) = match (a.pick, a.device.as_deref()) {
        (Pick::Server, _) => ("no memory here".to_string(), "no memory here".to_string()),
        // A GPU's own memory is not the machine's: say how much it has.
        (_, Some(gpu)) if gpu != "cpu" => {
            (format!("{short} of {} on {gpu}", size(a.budget)), short)
        }
        _ => (short.clone(), short),
    };
    ChooserOption {
        title: title(a),
        download,
        memory,
        memory_short,
        speed: a.speed(),
        speed_short: match a.step_ms {
            Some(ms) => format!("~{ms:.0} ms a step"),
            None if a.pick == Pick::Server => "server's speed".into(),
            None => "does not fit".into(),
        },
        realtime: a.step_ms.map(|_| a.realtime()),
        note: note(a),
        takes_url: a.pick == Pick::Server,
    }
}

/// How often the waiting loader looks at the cancel flag.
const POLL: Duration = Duration::from_millis(50);

/// The engine's loader while the chooser is open: it waits for the pick, then loads
/// that engine (downloads with the usual progress) and keeps it for every reload.
pub fn waiting_loader(args: RunArgs, d: &Decision, picks: Receiver<ChooserPick>) -> Loader {
    let devices: Vec<Option<String>> = d.options.iter().map(|a| a.device.clone()).collect();
    let mut chosen: Option<Loader> = None;
    loader(move |req| {
        if chosen.is_none() {
            let pick = loop {
                if req.cancel.is_cancelled() {
                    return Err(LoadFailure::cancelled());
                }
                match picks.recv_timeout(POLL) {
                    Ok(p) => break p,
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => return Err(LoadFailure::cancelled()),
                }
            };
            let (Some(which), Some(device)) = (PICKS.get(pick.index), devices.get(pick.index))
            else {
                return Err(LoadFailure {
                    message: format!(
                        "the chooser picked option {}, which does not exist",
                        pick.index
                    ),
                    remedy: "a bug: restart with --engine, --connect or --demo".into(),
                });
            };
            let mut a = args.clone();
            apply(&mut a, *which, device.as_deref(), pick.url);
            chosen = Some(super::loader_for(&a));
        }
        match chosen.as_mut() {
            Some(load) => load(req),
            None => Err(LoadFailure::cancelled()),
        }
    })
}

/// What a headless run with nothing on disk says on stderr, before exiting 2.
pub fn headless_message(d: &Decision) -> String {
    let moshi = d.option(Pick::MoshiGpu);
    let cascade = d.option(Pick::CpuCascade);
    let dl = |a: &Assessment| {
        if a.on_disk() {
            "on disk".to_string()
        } else {
            format!("downloads {}", size(a.download))
        }
    };
    format!(
        "error: no weights here yet, and --headless cannot ask which engine to download.\n\
         \x20 this machine would pick: {}\n\
         \x20 choose one with a flag:\n\
         \x20   --engine cascade   the CPU cascade: {}, {}, {}\n\
         \x20   --engine moshi     {}: {}, {}\n\
         \x20   --connect URL      a server (`assistant serve`, moshi-server): nothing to download\n\
         \x20   --model-dir DIR    a checkpoint already on disk\n\
         \x20   --demo             the built-in demo model: starts at once, makes sounds, not sense\n",
        d.line().trim_start_matches("engine: "),
        dl(cascade),
        option(cascade).memory_short,
        cascade.speed(),
        moshi.name,
        dl(moshi),
        moshi.speed(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::engine_choice::MachineProfile;
    use clap::Parser;

    fn laptop() -> MachineProfile {
        MachineProfile::two_core_laptop()
    }

    #[test]
    fn the_chooser_offers_four_engines_with_this_machines_figures() {
        let setup = chooser_setup(&choose(&laptop()));
        let titles: Vec<&str> = setup.options.iter().map(|o| o.title.as_str()).collect();
        assert_eq!(
            titles,
            [
                "Moshi on the GPU",
                "CPU cascade",
                "Connect to a server",
                "Demo model"
            ]
        );
        assert_eq!(setup.recommended, 1);
        let moshi = &setup.options[0];
        assert_eq!(moshi.download, "download 8.0 GiB");
        assert_eq!(moshi.speed, "~765 ms a step (measured)");
        assert_eq!(moshi.realtime, Some(false));
        assert_eq!(
            moshi.note,
            "no GPU: it would run on the CPU, 10× too slow; no tools"
        );
        assert!(setup.options[1].note.ends_with("takes turns; tools"));
        assert!(setup.options[3].note.ends_with("; no tools"));
        assert_eq!(setup.options[1].download, "download 1.0 GiB");
        assert_eq!(setup.options[1].memory, "memory 1.4 GiB");
        assert_eq!(setup.machine, "2 cores, 23.0 GiB available, no GPU");
        assert!(setup.options[2].takes_url && setup.options[2].realtime.is_none());
        assert_eq!(setup.options[3].realtime, Some(true));
    }

    #[test]
    fn a_pick_sets_the_engine_flags() {
        let base = crate::cli::Cli::parse_from(["assistant"]).run;
        let mut a = base.clone();
        apply(&mut a, Pick::CpuCascade, Some("cpu"), None);
        assert_eq!(a.engine, EngineKind::Cascade);
        let mut a = base.clone();
        apply(&mut a, Pick::MoshiGpu, Some("cuda:1"), None);
        assert_eq!(
            (a.engine, a.model.device),
            (EngineKind::Moshi, DeviceChoice::Cuda(1))
        );
        let mut a = base.clone();
        apply(&mut a, Pick::Server, None, Some("ws://h:1".into()));
        assert_eq!(a.connect.as_deref(), Some("ws://h:1"));
        let mut a = base;
        apply(&mut a, Pick::Demo, Some("cpu"), None);
        assert!(a.model.demo && a.model.device == DeviceChoice::Auto);
    }

    #[test]
    fn headless_names_the_flags() {
        let m = headless_message(&choose(&laptop()));
        eprintln!("{m}");
        for flag in [
            "--demo",
            "--engine cascade",
            "--connect URL",
            "--model-dir DIR",
        ] {
            assert!(m.contains(flag), "{flag}: {m}");
        }
        assert!(
            m.contains("this machine would pick: CPU cascade (no GPU;"),
            "{m}"
        );
    }
}
