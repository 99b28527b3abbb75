//! `assistant serve`: our engine for remote clients, over Kyutai's protocol
//! (`net::server`). The model is loaded once, before the server says it is ready;
//! each session forks it (`DuplexModel::fork`): the weights are shared, the state
//! (KV cache, Mimi's streams, the prompt's prefill, the sampling) is the session's.
//! A model that cannot share (the cascade) is loaded by each session, as a local run
//! loads it.

use crate::bus::{Cancel, LoadProgress, Weights};
use crate::cli::{EngineKind, RunArgs, ServeArgs};
use crate::engine::load::{loader, LoadFailure, LoadRequest, Loaded, Loader};
use crate::models::duplex::{DuplexModel, Prompt};
use crate::net::metrics::BatchSource;
use crate::net::protocol::{Limits, SessionParams};
use crate::net::server::{EventTap, LoaderFactory, ServeOptions, Server};
use crate::session::{self, sessions_dir, Journal};
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The run's arguments with a session's sampling in place (the command line's where the
/// client sent none).
pub fn args_for_session(base: &RunArgs, p: &SessionParams) -> RunArgs {
    let mut a = base.clone();
    let m = &mut a.model;
    if let Some(t) = p.audio_temperature {
        m.temperature = Some(t);
    }
    if let Some(t) = p.text_temperature {
        m.text_temperature = Some(t);
    }
    if let Some(k) = p.audio_topk.or(p.text_topk) {
        m.top_k = Some(k);
    }
    if let Some(s) = p.text_seed.or(p.audio_seed) {
        m.seed = Some(s);
    }
    // PersonaPlex's prompts: a model that takes them is primed before the handshake.
    if let Some(t) = &p.text_prompt {
        m.text_prompt = Some(t.clone());
    }
    if let Some(v) = &p.voice_prompt {
        m.voice_prompt = Some(PathBuf::from(v));
    }
    a
}

/// Where the server looks up voice names: `--voices-dir`, else the model directory's
/// `voices/` (where NVIDIA's voices.tgz unpacks).
fn voices_dir(args: &RunArgs) -> Option<PathBuf> {
    let m = &args.model;
    m.voices_dir.clone().or_else(|| {
        m.model_dir
            .as_ref()
            .map(|d| d.join(crate::models::moshi::personaplex::voices::VOICES_SUBDIR))
    })
}

/// A client's `voice_prompt`, as a file for the engine: a voice name (`NATF2`, or
/// `NATF2.pt` as NVIDIA's client sends it) in the server's voices directory, and
/// nothing else: no path, no lookup in the working directory (under systemd that is
/// `/`). The error goes to the client, so it names no server path.
pub fn voice_file(v: &str, voices_dir: Option<&Path>) -> Result<PathBuf, String> {
    use crate::models::moshi::personaplex::voices::{resolve_voice, VoiceOrigin};
    let plain = !v.is_empty()
        && !v.contains(['/', '\\'])
        && Path::new(v)
            .components()
            .all(|c| matches!(c, Component::Normal(_)));
    if !plain {
        return Err(format!(
            "voice_prompt {v:?}: a client names a voice (such as NATF2), not a path"
        ));
    }
    let Some(dir) = voices_dir else {
        return Err(format!(
            "voice_prompt {v:?}: this server has no voices directory (its operator passes --voices-dir)"
        ));
    };
    resolve_voice(v, Some(dir), VoiceOrigin::Remote)
        .map(|found| found.path().to_path_buf())
        .map_err(|_| format!("voice_prompt {v:?}: this server has no voice of that name"))
}

/// What `serve` will do, from the command line; an unreadable certificate or key is
/// an error that names the file.
pub fn options(args: &RunArgs, serve: &ServeArgs) -> Result<ServeOptions, String> {
    let model_name = match args.engine {
        crate::cli::EngineKind::Loopback => "loopback".to_string(),
        crate::cli::EngineKind::Cascade => "cascade".to_string(),
        crate::cli::EngineKind::Moshi if args.model.demo => "demo".to_string(),
        crate::cli::EngineKind::Moshi => match &args.model.model_dir {
            Some(d) => d.display().to_string(),
            None => args.model.hf_repo.clone(),
        },
    };
    let tls = match (&serve.cert, &serve.key) {
        (Some(cert), Some(key)) => Some(crate::net::tls::server_config(cert, key)?),
        (None, None) => None,
        _ => return Err("--cert and --key go together".into()),
    };
    // An empty `--token=` or ASSISTANT_TOKEN is a token of 0 bytes, refused as too short
    // (`Server::start`), never "no token".
    Ok(ServeOptions {
        addr: serve.bind,
        token: args.token.clone(),
        no_auth: serve.no_auth,
        max_sessions: serve.max_sessions,
        limits: Limits {
            max_message: serve.max_message.max(1024),
            ..Limits::default()
        },
        idle: Duration::from_secs_f64(serve.idle_timeout.clamp(0.1, 86_400.0)),
        max_backlog: args.max_backlog,
        model_name,
        tls,
        queue: serve.queue,
        queue_wait: Duration::from_secs_f64(serve.queue_wait.clamp(0.0, 86_400.0)),
        send_timeout: Duration::from_secs_f64(serve.idle_timeout.clamp(0.1, 86_400.0)),
        ..ServeOptions::default()
    })
}

pub fn factory(args: &RunArgs) -> LoaderFactory {
    let base = args.clone();
    let voices = voices_dir(args);
    Arc::new(move |p: &SessionParams| {
        let voice = p
            .voice_prompt
            .as_deref()
            .map(|v| voice_file(v, voices.as_deref()))
            .transpose();
        let mut session = args_for_session(&base, p);
        if let Ok(Some(found)) = &voice {
            session.model.voice_prompt = Some(found.clone());
        }
        let mut inner = crate::app::loader_for(&session);
        let asked = p.text_prompt.is_some() || p.voice_prompt.is_some();
        loader(move |req| {
            if let Err(e) = &voice {
                return Err(LoadFailure {
                    message: e.clone(),
                    remedy: "send a voice the server has, or no voice_prompt".into(),
                });
            }
            let l = inner(req)?;
            if asked && !l.model.takes_prompt() {
                tracing::info!(
                    "serve: {} takes no prompt: the session's text_prompt and voice_prompt are ignored",
                    l.model.info().name
                );
            }
            Ok(l)
        })
    })
}

/// The model every session forks, loaded once.
pub type SharedModel = Arc<Mutex<Box<dyn DuplexModel>>>;

/// The loader of the model the sessions will share: a local run's, with the memory
/// plan sized for `sessions` KV caches.
fn shared_loader(args: &RunArgs, sessions: usize, batch: bool) -> Loader {
    if args.connect.is_some() || args.engine != EngineKind::Moshi {
        return crate::app::loader_for(args);
    }
    let mut base = args.model.options();
    base.sessions = sessions;
    base.batch = batch;
    loader(move |req| {
        let o = base.with_weights(req.weights);
        let loaded = crate::models::moshi::load_model(&o, req.progress, req.cancel)
            .map_err(crate::app::load_failure)?;
        Ok(Loaded {
            model: loaded.model,
            notices: loaded.notices,
            degraded: loaded.degraded,
        })
    })
}

/// Whether sessions share one load: the cascade (its recogniser, LLM client and
/// synthesiser hold per-conversation state throughout) loads one per session.
pub fn shares_weights(args: &RunArgs) -> bool {
    args.connect.is_none() && args.engine != EngineKind::Cascade
}

/// Load the model once for all sessions, its memory plan sized for `sessions`.
pub fn load_shared(
    args: &RunArgs,
    (sessions, batch): (usize, bool),
    progress: &mut dyn FnMut(LoadProgress),
    cancel: &Cancel,
) -> Result<Loaded, LoadFailure> {
    shared_loader(args, sessions, batch)(&mut LoadRequest {
        weights: &Weights::Default,
        progress,
        cancel,
    })
}

/// Sessions on the shared model: each forks it, with its own sampling, and primes
/// its own prompts when it sent any (a model that takes them).
pub fn shared_factory(args: &RunArgs, shared: SharedModel) -> LoaderFactory {
    let base = args.clone();
    let voices = voices_dir(args);
    Arc::new(move |p: &SessionParams| {
        let voice = p
            .voice_prompt
            .as_deref()
            .map(|v| voice_file(v, voices.as_deref()))
            .transpose();
        let session = args_for_session(&base, p);
        let sampling = session.model.options().sampling;
        let asked = p.text_prompt.is_some() || p.voice_prompt.is_some();
        let prompt = Prompt {
            text: session.model.text_prompt.clone().unwrap_or_default(),
            voice: voice.clone().ok().flatten(),
            ..Default::default()
        };
        let shared = shared.clone();
        loader(move |_req| {
            // The lock covers the cheap clone only; the prefill below runs on this
            // session's engine thread while others fork.
            let forked = shared
                .lock()
                .map_err(|_| LoadFailure {
                    message: "the shared model was poisoned by a failed session".into(),
                    remedy: "restart the server".into(),
                })?
                .fork();
            let mut model = forked.ok_or_else(|| LoadFailure {
                message: "no free session slot on this model (or it cannot share its weights)"
                    .into(),
                remedy: "try again when a session ends".into(),
            })?;
            model.set_sampling(&sampling);
            let own_prompt = asked && model.takes_prompt() && !prompt.text.trim().is_empty();
            if !own_prompt {
                // The server's prompt (if any), replayed into this session's cache.
                model.reset();
            }
            let mut loaded = Loaded::plain(model);
            if !asked {
                return Ok(loaded);
            }
            if !loaded.model.takes_prompt() {
                // NVIDIA's client always sends a voice: a Moshi server serves it anyway.
                tracing::info!(
                    "serve: {} takes no prompt: the session's text_prompt and voice_prompt are ignored",
                    loaded.model.info().name
                );
                return Ok(loaded);
            }
            let refused = |message: String| LoadFailure {
                message,
                remedy: "send a voice name the server has (such as NATF2), or no voice_prompt"
                    .into(),
            };
            if let Err(e) = &voice {
                return Err(refused(e.clone()));
            }
            if !prompt.text.trim().is_empty() {
                let primed = loaded
                    .model
                    .prime(&prompt)
                    .map_err(|e| refused(format!("the session's prompts: {e:#}")))?;
                loaded
                    .notices
                    .push(crate::models::moshi::primed_notice(&prompt, &primed));
            }
            Ok(loaded)
        })
    })
}

/// The sessions' loader factory for `serve`: the model loaded now, once, with its
/// progress, and shared by every session; or, for a model that cannot share (the
/// cascade), each session's own load.
pub fn serve_factory(
    args: &RunArgs,
    (sessions, batch): (usize, bool),
    progress: &mut dyn FnMut(LoadProgress),
    cancel: &Cancel,
) -> Result<Ready, LoadFailure> {
    if batch {
        if let Some(why) = batch_refused(args) {
            return Err(LoadFailure {
                message: why,
                remedy: "run serve without --batch: its sessions still share the weights".into(),
            });
        }
    }
    if !shares_weights(args) {
        return Ok(Ready {
            factory: factory(args),
            loaded: None,
        });
    }
    let Loaded {
        model,
        notices,
        degraded,
    } = load_shared(args, (sessions, batch), progress, cancel)?;
    let info = model.info();
    let batched = model.batch_stats().is_some();
    let shared = Arc::new(Mutex::new(model));
    // A scrape locks the template only to copy the stepper's counters.
    let batch = batched.then(|| {
        let shared = shared.clone();
        BatchSource(Box::new(move || shared.lock().ok()?.batch_stats()))
    });
    Ok(Ready {
        factory: shared_factory(args, shared),
        loaded: Some(LoadedOnce {
            info,
            notices,
            degraded,
            batch,
        }),
    })
}

/// Why `--batch` cannot serve what the arguments ask for (`None`: it can). The model's
/// own limits (PersonaPlex, an LM the batched transformer cannot run) are found by the
/// load, which says so.
pub fn batch_refused(args: &RunArgs) -> Option<String> {
    if args.connect.is_some() {
        Some("--batch steps a local model; a --connect server steps its own".into())
    } else if args.engine != EngineKind::Moshi {
        Some("--batch steps the Moshi LM; the cascade's parts are per session".into())
    } else {
        None
    }
}

/// The server's sessions, ready to start.
pub struct Ready {
    pub factory: LoaderFactory,
    /// The shared model, when there is one.
    pub loaded: Option<LoadedOnce>,
}

/// What the one load said.
pub struct LoadedOnce {
    pub info: crate::bus::ModelInfo,
    pub notices: Vec<crate::bus::Notice>,
    pub degraded: Option<String>,
    /// `--batch`: the stepper's counters, for `/metrics`.
    pub batch: Option<BatchSource>,
}

/// Load progress on stderr about once a second per stage, and each stage's end.
fn print_progress() -> impl FnMut(LoadProgress) {
    let mut last: Option<(String, Instant)> = None;
    move |p: LoadProgress| {
        let finished = p.total > 0 && p.done >= p.total;
        let due = match &last {
            Some((stage, at)) if *stage == p.stage => {
                finished || at.elapsed() >= Duration::from_secs(1)
            }
            _ => true,
        };
        if due {
            last = Some((p.stage.clone(), Instant::now()));
            let pct = if p.total > 0 {
                format!(" {:.0}%", 100.0 * p.done as f64 / p.total as f64)
            } else {
                String::new()
            };
            eprintln!("loading {}{pct} ({:.1} s)", p.stage, p.elapsed_s);
        }
    }
}

/// Each session journalled like a local run, its input named by the peer; the session
/// adds its summary (how long, frames, drops, why it ended) before its end.
pub fn journal_tap() -> EventTap {
    Arc::new(|peer, events| {
        match Journal::create(&sessions_dir(), "serve", &format!("network {peer}")) {
            Ok(j) => session::tee(events, j.with_words(crate::ui::words::journal_words)),
            Err(e) => {
                tracing::warn!("serve: no journal for {peer}: {e:#}");
                events
            }
        }
    })
}

/// Serve until Ctrl-C or SIGTERM; returns the exit code (2: cannot start). Either
/// signal drains: no new clients, the sessions finish up to `--drain-timeout`, the
/// rest are closed with a reason; a second signal stops at once.
pub fn run(args: &RunArgs, serve: &ServeArgs) -> i32 {
    let opts = match options(args, serve) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    let scheme = if opts.tls.is_some() { "wss" } else { "ws" };
    let model = opts.model_name.clone();
    let tap = (!args.no_journal).then(journal_tap);
    // Ctrl-C and SIGTERM stop a load as well as the server.
    let cancel = Cancel::new();
    let signals = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let stop = (cancel.clone(), signals.clone());
    let _ = ctrlc::set_handler(move || {
        stop.0.cancel();
        stop.1.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    });
    let term = Arc::new(std::sync::atomic::AtomicBool::new(false));
    if let Err(e) = signal_hook::flag::register(signal_hook::consts::SIGTERM, term.clone()) {
        tracing::warn!("serve: SIGTERM will not drain: {e}");
    }
    let signalled = {
        let (signals, term, cancel) = (signals.clone(), term.clone(), cancel.clone());
        move || {
            // SIGTERM counts once per delivery: the flag is taken.
            if term.swap(false, std::sync::atomic::Ordering::SeqCst) {
                signals.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                cancel.cancel();
            }
            signals.load(std::sync::atomic::Ordering::SeqCst)
        }
    };
    // The load polls the cancel flag; SIGTERM sets it from here.
    let watcher = {
        let signalled = signalled.clone();
        let cancel = cancel.clone();
        std::thread::spawn(move || {
            while !cancel.is_cancelled() && signalled() == 0 {
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    // Listen first: a port in use fails now, not after a long load, and health checks
    // see the server alive (and not ready) while it loads.
    let server = match Server::start_loading(opts, tap) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    let addr = server.local_addr();
    eprintln!(
        "listening at {scheme}://{addr}{} (/healthz, /readyz, /metrics); loading {model}",
        crate::net::server::CHAT_PATH
    );
    let started = Instant::now();
    if !shares_weights(args) {
        eprintln!("the cascade cannot share its parts: each session loads its own");
    }
    let ready = if serve.load_per_session {
        Ok(Ready {
            factory: factory(args),
            loaded: None,
        })
    } else {
        serve_factory(
            args,
            (serve.max_sessions, serve.batch),
            &mut print_progress(),
            &cancel,
        )
    };
    match ready {
        Ok(Ready { factory, loaded }) => {
            if let Some(mut l) = loaded {
                if let Some(b) = l.batch.take() {
                    let _ = server.stats.batch.set(b);
                }
                for n in &l.notices {
                    eprintln!("note: {}", n.message);
                }
                if let Some(d) = &l.degraded {
                    eprintln!("warning: {d}");
                }
                eprintln!(
                    "loaded {} on {} in {:.1} s; {} session(s) share its weights{}",
                    l.info.name,
                    l.info.device,
                    started.elapsed().as_secs_f64(),
                    serve.max_sessions,
                    if serve.batch {
                        ", stepped together in one batch"
                    } else {
                        ""
                    }
                );
            }
            server.loaded(factory);
        }
        Err(e) if cancel.is_cancelled() || signalled() > 0 => {
            eprintln!("stopped while loading: {}", e.message);
            return 0;
        }
        Err(e) => {
            eprintln!("error: the model did not load: {}", e.message);
            if !e.remedy.is_empty() {
                eprintln!("  fix: {}", e.remedy);
            }
            return 2;
        }
    }
    eprintln!(
        "ready: serving {model} at {scheme}://{addr}{} ({} session(s) at a time, {} may wait{}); Ctrl-C or SIGTERM drains",
        crate::net::server::CHAT_PATH,
        serve.max_sessions,
        serve.queue,
        if args.token.is_some() {
            ", token required"
        } else {
            ""
        }
    );
    drop(watcher);
    while signalled() == 0 {
        std::thread::sleep(Duration::from_millis(100));
    }
    let deadline = Duration::from_secs_f64(serve.drain_timeout.clamp(0.0, 86_400.0));
    eprintln!(
        "draining: no new sessions; {} running may finish within {:.0} s (signal again to close them now)",
        server.stats.active.load(std::sync::atomic::Ordering::Relaxed),
        deadline.as_secs_f64()
    );
    let d = server.drain_until(deadline, || signalled() > 1);
    eprintln!(
        "drained in {:.1} s: {} session(s) were running, {} finished, {} closed{}",
        d.waited.as_secs_f64(),
        d.active,
        d.finished,
        d.closed,
        if signalled() > 1 {
            " (signalled again)"
        } else {
            " at the deadline"
        }
    );
    server.stop();
    0
}

#[cfg(test)]
mod voice_tests {
    use super::voice_file;

    #[test]
    fn a_client_names_a_voice_in_the_voices_directory_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("NATF2.pt"), b"x").unwrap();
        // NVIDIA's client sends `NATF2.pt`; ours may send `NATF2`.
        for name in ["NATF2.pt", "NATF2"] {
            assert_eq!(
                voice_file(name, Some(dir.path())).unwrap(),
                dir.path().join("NATF2.pt")
            );
        }
        // A file in the working directory is not a voice: no fallback there.
        let cwd = std::env::current_dir().unwrap();
        let here = cwd.join("Cargo.toml");
        assert!(here.is_file());
        for bad in [
            "Cargo.toml",
            "../secret.wav",
            "/etc/passwd",
            "etc/shadow",
            "a/../../b.wav",
            "..",
            "",
            "NATM9",
        ] {
            let e = voice_file(bad, Some(dir.path())).unwrap_err();
            // What the client reads names no path of the server's.
            let server_paths = [dir.path().to_str().unwrap(), cwd.to_str().unwrap()];
            assert!(!server_paths.iter().any(|p| e.contains(p)), "{e}");
            assert!(voice_file(bad, None).is_err(), "{bad}");
        }
        // Without a voices directory even a good name is refused, and says why.
        let e = voice_file("NATF2", None).unwrap_err();
        assert!(e.contains("no voices directory"), "{e}");
    }
}
