//! `assistant --connect URL`: the model is a session on a remote server
//! (`net::client::RemoteModel`); input, output, echo cancellation and the journal stay
//! local, wired exactly as for a local model. Both front-ends (TUI and headless) get
//! it through [`loader`].

use crate::bus::LoadProgress;
use crate::cli::RunArgs;
use crate::engine::load::{loader as boxed, LoadFailure, Loaded, Loader};
use crate::net::client::{
    connect_with, ConnectError, ConnectOptions, ConnectPhase, NetStats, RemoteModel,
};
use crate::net::protocol::SessionParams;
use std::sync::{Arc, Mutex};

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

/// The options for a session. `realtime`: the input is paced (a microphone, or a file
/// played in real time, as the TUI and `--realtime` do); otherwise each step waits for
/// its answer (lock step), so a file goes through at the speed of the round trip.
pub fn options_for(args: &RunArgs, url: &str, realtime: bool) -> ConnectOptions {
    ConnectOptions {
        params: params_for(args),
        // `--token=` or an empty ASSISTANT_TOKEN is no token: nothing is sent.
        token: args.token.clone().filter(|t| !t.trim().is_empty()),
        insecure: args.insecure,
        lockstep: !realtime,
        ..ConnectOptions::new(url)
    }
}

/// The network figures of the session the loader connected last (a reconnect with `r`
/// makes a new one), for the run's summary.
#[derive(Clone, Default)]
pub struct LinkFigures(Arc<Mutex<Option<Arc<NetStats>>>>);

impl LinkFigures {
    pub fn get(&self) -> Option<Arc<NetStats>> {
        self.0.lock().ok()?.clone()
    }
    fn set(&self, s: Arc<NetStats>) {
        if let Ok(mut g) = self.0.lock() {
            *g = Some(s);
        }
    }
}

/// The engine's loader for a server: connects on the first load and again on `r`,
/// shows where the connect is as load progress (which also keeps the engine's commands
/// flowing), and gives up at once when the load is cancelled (the user quit).
pub fn loader(opts: ConnectOptions, figures: LinkFigures) -> Loader {
    boxed(move |req| {
        let o = ConnectOptions {
            cancel: req.cancel.clone(),
            ..opts.clone()
        };
        // Shown without the session's query (sampling, the role text).
        let url = crate::net::client::chat_url(&o.url, &SessionParams::default())
            .unwrap_or(o.url.clone());
        let progress = &mut *req.progress;
        let mut waiting = |phase: ConnectPhase, spent: std::time::Duration| {
            progress(LoadProgress {
                stage: match phase {
                    ConnectPhase::Connecting => format!("{url} (connecting)"),
                    ConnectPhase::AwaitingHandshake => {
                        format!("{url} (connected; waiting for its handshake: the server may be loading its model)")
                    }
                },
                done: 0,
                total: 0,
                unit: crate::bus::ProgressUnit::Bytes,
                elapsed_s: spent.as_secs_f64(),
            })
        };
        waiting(ConnectPhase::Connecting, std::time::Duration::ZERO);
        let m = connect_with(&o, &mut waiting).map_err(|e| match e {
            ConnectError::Cancelled { .. } => LoadFailure::cancelled(),
            e => LoadFailure {
                message: e.to_string(),
                remedy: "check that the server runs and is reachable; press r to reconnect".into(),
            },
        })?;
        figures.set(m.stats());
        Ok(loaded(m))
    })
}

/// The connected model: who answered, and a warning when its certificate was not
/// checked.
pub fn loaded(m: RemoteModel) -> Loaded {
    let server = m.server();
    let connected = format!(
        "connected: {} (handshake: {}{})",
        server.url,
        server.handshake,
        server
            .model()
            .map(|m| format!(", model {m}"))
            .unwrap_or_default()
    );
    let warning = server
        .unchecked_certificate
        .then(|| crate::ui::words::insecure_tls(&server.url));
    let mut l = Loaded::plain(Box::new(m));
    l.notices.push(crate::bus::Notice {
        severity: crate::bus::Severity::Info,
        message: connected,
        remedy: None,
    });
    if let Some(w) = warning {
        l.notices.push(crate::bus::Notice {
            severity: w.severity,
            message: w.message,
            remedy: w.remedy,
        });
    }
    l
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn args(argv: &[&str]) -> RunArgs {
        crate::cli::Cli::try_parse_from(argv).unwrap().run
    }

    #[test]
    fn lock_step_follows_the_inputs_pacing_and_an_empty_token_is_none() {
        // The same flags (a file, no --realtime): the port's pacing decides.
        let a = args(&["assistant", "--connect", "ws://h:1", "--input", "x.wav"]);
        assert!(options_for(&a, "ws://h:1", false).lockstep);
        assert!(!options_for(&a, "ws://h:1", true).lockstep);
        for (token, sent) in [
            ("--token=", None),
            ("--token= ", None),
            ("--token=s3cret-s3cret-s3cret", Some("s3cret-s3cret-s3cret")),
        ] {
            let a = args(&["assistant", "--connect", "ws://h:1", token]);
            assert_eq!(options_for(&a, "ws://h:1", true).token.as_deref(), sent);
        }
    }
}
