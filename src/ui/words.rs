//! How typed events are said to the user: the one place that words them, shared by
//! the TUI feed and the headless front-end.

use crate::bus::{DeviceSide, DeviceStatus, Happening, LossReason, Severity};

/// A message for the feed or stderr: how serious, what happened, what to do.
#[derive(Debug, Clone, PartialEq)]
pub struct Said {
    pub severity: Severity,
    pub message: String,
    pub remedy: Option<String>,
}

pub fn side(s: DeviceSide) -> &'static str {
    match s {
        DeviceSide::Microphone => "microphone",
        DeviceSide::Speaker => "speaker",
    }
}

pub fn loss_reason(r: &LossReason) -> String {
    match r {
        // The audio layer passes cpal's sentence; it goes before "; retrying".
        LossReason::Gone(why) => why.trim_end_matches('.').to_string(),
        LossReason::Stalled(s) => format!("no audio for {s} s"),
    }
}

pub fn device_status(s: &DeviceStatus) -> Said {
    match s {
        DeviceStatus::Ready { side: d, name } => Said {
            severity: Severity::Info,
            message: format!("{} ready: {name}", side(*d)),
            remedy: None,
        },
        DeviceStatus::Lost {
            side: d,
            reason,
            retry_every_s,
        } => Said {
            severity: Severity::Warning,
            message: format!(
                "{} lost: {}; retrying every {retry_every_s} s",
                side(*d),
                loss_reason(reason)
            ),
            remedy: Some(format!(
                "reconnect the {}, or restart with --{} FILE.wav",
                side(*d),
                if *d == DeviceSide::Microphone {
                    "input"
                } else {
                    "output"
                }
            )),
        },
        DeviceStatus::Switched {
            side: d,
            name,
            open_ms,
        } => Said {
            severity: Severity::Info,
            message: format!(
                "{} switched to {name} (opened in {open_ms:.0} ms)",
                side(*d)
            ),
            remedy: None,
        },
        DeviceStatus::SwitchFailed {
            side: d,
            wanted,
            reason,
        } => Said {
            severity: Severity::Warning,
            message: format!("{} {wanted} did not open: {reason}", side(*d)),
            remedy: Some(format!(
                "the previous {} stays; pick another with d",
                side(*d)
            )),
        },
        DeviceStatus::Trouble { side: d, message } => Said {
            severity: Severity::Warning,
            message: format!("{}: {message}", side(*d)),
            remedy: None,
        },
    }
}

/// Bytes for people, or "n/a" when unknown.
fn size(b: Option<u64>) -> String {
    b.map_or("n/a".to_string(), |b| crate::bus::Bytes(b).to_string())
}

/// How to type to the assistant when the engine hears only audio.
pub const TYPE_WITH_CASCADE: &str = "the cascade takes typed turns: start with --engine cascade";

pub fn happening(h: &Happening) -> Said {
    let info = |message: String| Said {
        severity: Severity::Info,
        message,
        remedy: None,
    };
    let warn = |message: String, remedy: Option<String>| Said {
        severity: Severity::Warning,
        message,
        remedy,
    };
    match h {
        Happening::Unloaded { silent_s, rss_before, rss_after } => {
            info(format!("model unloaded after {silent_s:.0} s of silence; memory freed (RSS {} -> {}); it reloads when you speak", size(*rss_before), size(*rss_after)))
        }
        Happening::WokeBySpeech => info("you spoke: reloading the model".into()),
        Happening::Reloaded { load_ms, replay_s } => info(format!("model reloaded in {:.1} s; replaying {replay_s:.1} s of audio heard meanwhile", load_ms / 1000.0)),
        Happening::Restarting => info("restarting the engine".into()),
        Happening::Degraded(why) => warn(format!("degraded: {why}"), Some("free GPU memory (or lower --context) and press r to retry on the GPU".into())),
        Happening::NoEcho => info("no echo to cancel: nothing is played to a speaker".into()),
        Happening::PortRejected { side: d, error } => warn(format!("cannot use the new {}: {error}", side(*d)), None),
        Happening::VoiceRejected { name, why } => warn(format!("cannot swap in {name}: {why}"), None),
        Happening::VoiceHeld { name, failed: true } => warn(format!("{name} loaded, but the engine has failed"), Some("press r to restart the engine with it".into())),
        Happening::VoiceHeld { name, failed: false } => info(format!("{name} loaded; the model is unloaded, so it speaks when you do")),
        Happening::LoadCancelled => info("loading cancelled".into()),
        Happening::Priming => info("priming the model with the persona's prompts; what you say meanwhile is kept".into()),
        Happening::Primed { steps, ms } => info(format!("primed in {:.2} s ({steps} prefill steps)", ms / 1000.0)),
        Happening::PrimeFailed { error } => warn(format!("the persona's prompts were not applied: {error}"), Some("fix the persona's voice_prompt (a WAV, a .pt voice, or a voice name in the voices directory: --voices-dir) or its prompt; the previous prompts stay".into())),
        Happening::EchoReconverging => info("another audio device: the echo canceller is finding the new echo path (a few seconds)".into()),
        Happening::TypedRefused { why } => warn(format!("not answered: {why}"), Some(TYPE_WITH_CASCADE.into())),
        Happening::LinkLost { why, attempt, of, retry_in_s } => warn(format!("connection lost: {why}; reconnecting in {retry_in_s:.1} s (attempt {attempt} of {of}); the transcript is kept"), Some("check the server and the network; after the last attempt, press r to reconnect".into())),
        Happening::LinkBack { outage_s } => info(format!("reconnected after {outage_s:.1} s: a new session on the server (it does not remember the conversation)")),
        Happening::WakeWaiting { phrases } => info(format!("waiting for {}: nothing you say reaches the model until then", quoted_list(phrases))),
        Happening::WakeHeard { phrase, score: Some(score) } => info(format!("heard \"{phrase}\" (score {score:.2}): listening")),
        Happening::WakeHeard { phrase, score: None } => info(format!("heard \"{phrase}\" (in the recogniser's words): listening")),
        Happening::WakeOff => info("wake word off: the model hears the microphone".into()),
        Happening::WakeUnavailable { why } => warn(format!("wake word unavailable: {why}"), Some("record takes of the name: assistant wake record NAME".into())),
    }
}

/// "a", "a" or "b", "a", "b" or "c".
pub fn quoted_list(items: &[String]) -> String {
    let q: Vec<String> = items.iter().map(|i| format!("\"{i}\"")).collect();
    match q.split_last() {
        None => String::new(),
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
    }
}

/// `--insecure` on a `wss://` connection: said once it is connected.
pub fn insecure_tls(url: &str) -> Said {
    Said {
        severity: Severity::Warning,
        message: format!("--insecure: the certificate of {url} was not checked; the connection is encrypted, but anyone on the way could pose as the server"),
        remedy: Some("install a certificate from a known authority on the server, then drop --insecure".into()),
    }
}

/// The status line's network segments (`--connect`): round trip, jitter buffer, pace.
/// Each is (long, short, alarm).
pub fn link_segments(l: &crate::bus::LinkStats) -> [(String, String, bool); 3] {
    let pace = if !l.connected {
        ("reconnecting…".to_string(), "recon".to_string(), true)
    } else if l.keeping_pace {
        ("server in time".to_string(), "ok".to_string(), false)
    } else {
        ("server behind".to_string(), "late".to_string(), true)
    };
    [
        (
            format!("net {:.0} ms", l.rtt_ms),
            format!("n{:.0}", l.rtt_ms),
            false,
        ),
        (
            format!("buffer {} ms", l.jitter_ms),
            format!("b{}", l.jitter_ms),
            false,
        ),
        pace,
    ]
}

/// The notices a journal records as the user read them (for `Journal::with_words`).
pub fn journal_words(ev: &crate::bus::EngineEvent) -> Option<(Severity, String, Option<String>)> {
    let said = match ev {
        crate::bus::EngineEvent::Device(d) => device_status(d),
        crate::bus::EngineEvent::Happened(h) => happening(h),
        _ => return None,
    };
    Some((said.severity, said.message, said.remedy))
}

/// The user spoke over a reply (cascade mode): playback stopped.
pub fn barged_in(heard: usize, of: usize) -> String {
    if heard >= of {
        "you spoke over the reply: stopped at its end".into()
    } else {
        format!(
            "you spoke over the reply: stopped after {heard} of {of} words (the rest is not kept)"
        )
    }
}

/// The persona card's line on where its prompts go: only a model that takes them
/// (PersonaPlex) hears them; Moshi takes none.
pub fn prompt_reach(voice: Option<&std::path::Path>) -> String {
    match voice {
        Some(v) => format!(
            "voice prompt {} · role text and voice reach PersonaPlex only (Moshi takes no prompt)",
            v.display()
        ),
        None => "role text reaches PersonaPlex only (Moshi takes no prompt)".into(),
    }
}

/// A tool call (cascade mode) on one line: the question, the call, its end.
pub fn tool_activity(a: &crate::bus::ToolActivity) -> String {
    use crate::bus::ToolActivity;
    match a {
        ToolActivity::Asking { question, .. } => format!("tool: allow? {question} (y/n)"),
        ToolActivity::Running { tool, args, .. } => {
            format!("tool: {tool} {}", crate::tools::shorten(args, 120))
        }
        ToolActivity::Done {
            tool,
            outcome,
            consent,
            result,
            ms,
            ..
        } => format!(
            "tool: {tool} {outcome} in {ms:.0} ms (consent: {consent}): {}",
            crate::tools::shorten(result, 120)
        ),
    }
}
