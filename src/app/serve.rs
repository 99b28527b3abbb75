//! `assistant serve`: our engine for remote clients, over Kyutai's protocol
//! (`net::server`). Each session gets its own engine, built by the same loader a
//! local run uses, with the session's query parameters as its sampling.

use crate::cli::{RunArgs, ServeArgs};
use crate::engine::load::{loader, LoadFailure};
use crate::net::protocol::{Limits, SessionParams};
use crate::net::server::{EventTap, LoaderFactory, ServeOptions, Server};
use crate::session::{self, sessions_dir, Journal};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

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
            .map(|d| d.join(crate::engine::moshi::personaplex_voices::VOICES_SUBDIR))
    })
}

/// A client's `voice_prompt`, as a file for the engine: a voice name (`NATF2`, or
/// `NATF2.pt` as NVIDIA's client sends it) from the server's voices directory, or a WAV
/// path relative to the server's working directory (never absolute, never `..`, so a
/// client cannot make the server read files elsewhere).
pub fn voice_file(v: &str, voices_dir: Option<&Path>) -> Result<PathBuf, String> {
    use crate::engine::moshi::personaplex_voices::{resolve_voice, VoiceOrigin};
    if voices_dir.is_some() {
        if let Ok(found) = resolve_voice(v, voices_dir, VoiceOrigin::Remote) {
            return Ok(found.path().to_path_buf());
        }
    }
    let p = Path::new(v);
    if v.is_empty() || p.is_absolute() || p.components().any(|c| !matches!(c, Component::Normal(_)))
    {
        return Err(format!(
            "voice_prompt {v:?}: a voice is named by a path relative to the server's directory, without `..`"
        ));
    }
    Ok(p.to_path_buf())
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

/// Serve until Ctrl-C; returns the exit code (2: cannot start).
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
    let server = match Server::start_with(opts, factory(args), tap) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    let addr = server.local_addr();
    eprintln!(
        "serving {model} at {scheme}://{addr}{} ({} session(s) at a time, {} may wait{}); Ctrl-C stops",
        crate::net::server::CHAT_PATH,
        serve.max_sessions,
        serve.queue,
        if args.token.is_some() {
            ", token required"
        } else {
            ""
        }
    );
    let (tx, rx) = crossbeam_channel::bounded::<()>(1);
    let _ = ctrlc::set_handler(move || {
        let _ = tx.try_send(());
    });
    let _ = rx.recv();
    eprintln!("stopping");
    server.stop();
    0
}

#[cfg(test)]
mod voice_tests {
    use super::voice_file;

    #[test]
    fn nvidia_voice_names_come_from_the_voices_directory_and_paths_stay_inside() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("NATF2.pt"), b"x").unwrap();
        // NVIDIA's client sends `NATF2.pt`; ours may send `NATF2`.
        for name in ["NATF2.pt", "NATF2"] {
            assert_eq!(
                voice_file(name, Some(dir.path())).unwrap(),
                dir.path().join("NATF2.pt")
            );
        }
        // Anything that leaves the server's directory is refused, voices dir or not.
        for bad in ["../secret.wav", "/etc/passwd", "a/../../b.wav", ""] {
            assert!(voice_file(bad, Some(dir.path())).is_err(), "{bad}");
            assert!(voice_file(bad, None).is_err(), "{bad}");
        }
        // A relative WAV path is still the server's own file.
        assert_eq!(
            voice_file("voices/me.wav", None).unwrap(),
            std::path::PathBuf::from("voices/me.wav")
        );
    }
}
