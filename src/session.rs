//! The session journal: every transcript piece and event, appended as JSONL to
//! `$XDG_DATA_HOME/assistant/sessions/<start>.jsonl`. Each record is written
//! straight to the file (a killed process loses nothing the kernel has seen);
//! each assistant turn is fsynced when it ends.

use crate::bus::{EngineEvent, Severity, Talk};
use crossbeam_channel::Receiver;
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Record {
    Start {
        started: String,
        persona: String,
        input: String,
        version: String,
    },
    /// `t`: seconds since the start of the session.
    Text {
        t: f64,
        text: String,
    },
    TurnEnd {
        t: f64,
    },
    /// Words the recogniser heard from the user (cascade mode), in pieces.
    Said {
        t: f64,
        text: String,
    },
    /// A turn the user typed (cascade mode), whole.
    Typed {
        t: f64,
        text: String,
    },
    Model {
        t: f64,
        name: String,
        device: String,
        dtype: String,
    },
    Event {
        t: f64,
        severity: String,
        message: String,
        remedy: Option<String>,
    },
    End {
        t: f64,
    },
    /// A tool call the LLM made (cascade mode): the consent asked and given, and the
    /// result the LLM got.
    Tool {
        t: f64,
        call: u64,
        tool: String,
        args: String,
        consent: String,
        outcome: String,
        result: String,
        ms: f64,
    },
}

fn severity_name(s: Severity) -> &'static str {
    match s {
        Severity::Info => "info",
        Severity::Warning => "warning",
        Severity::Error => "error",
    }
}

pub fn sessions_dir() -> PathBuf {
    let base = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| directories::BaseDirs::new().map(|d| d.data_dir().to_path_buf()))
        .unwrap_or_else(std::env::temp_dir);
    base.join("assistant").join("sessions")
}

/// How the front-end words an event it shows as a notice (device status, engine
/// happenings), so the journal records what the user read. `None`: not a notice.
pub type Words = fn(&EngineEvent) -> Option<(Severity, String, Option<String>)>;

pub struct Journal {
    words: Option<Words>,
    file: File,
    path: PathBuf,
    started: Instant,
    turn_open: bool,
}

impl Journal {
    /// Create `<dir>/<start time>.jsonl` and write the start record.
    pub fn create(dir: &Path, persona: &str, input: &str) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| {
            anyhow::anyhow!(
                "{}: cannot create the sessions directory: {e}",
                dir.display()
            )
        })?;
        let now = OffsetDateTime::now_utc();
        let now = now.replace_nanosecond(0).unwrap_or(now);
        let started = now.format(&Rfc3339)?;
        let mut stem = started.replace(':', "-");
        let mut path = dir.join(format!("{stem}.jsonl"));
        for n in 2.. {
            if !path.exists() {
                break;
            }
            stem = format!("{}-{n}", started.replace(':', "-"));
            path = dir.join(format!("{stem}.jsonl"));
        }
        let file = std::fs::OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&path)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let mut j = Self {
            words: None,
            file,
            path,
            started: Instant::now(),
            turn_open: false,
        };
        j.append(&Record::Start {
            started,
            persona: persona.into(),
            input: input.into(),
            version: env!("CARGO_PKG_VERSION").into(),
        })?;
        j.file.sync_all()?;
        Ok(j)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Record typed notices (device status, engine happenings) as the front-end words them.
    pub fn with_words(mut self, words: Words) -> Self {
        self.words = Some(words);
        self
    }

    fn t(&self) -> f64 {
        (self.started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0
    }

    fn append(&mut self, r: &Record) -> anyhow::Result<()> {
        let mut line = serde_json::to_string(r)?;
        line.push('\n');
        // One write per record: no user-space buffer to lose on a kill.
        self.file.write_all(line.as_bytes())?;
        Ok(())
    }

    fn end_turn(&mut self) -> anyhow::Result<()> {
        if self.turn_open {
            self.turn_open = false;
            let t = self.t();
            self.append(&Record::TurnEnd { t })?;
            self.file.sync_data()?;
        }
        Ok(())
    }

    /// Journal one engine event (levels and timings are not journalled).
    pub fn record(&mut self, ev: &EngineEvent) -> anyhow::Result<()> {
        let t = self.t();
        match ev {
            EngineEvent::Text(text) => {
                self.turn_open = true;
                self.append(&Record::Text {
                    t,
                    text: text.clone(),
                })?;
            }
            EngineEvent::Talk(talk) => self.record_talk(t, talk)?,
            // The engine's turn rule, the same one the feed follows.
            EngineEvent::TurnEnded => self.end_turn()?,
            EngineEvent::ModelReady { info, .. } => {
                self.append(&Record::Model {
                    t,
                    name: info.name.clone(),
                    device: info.device.clone(),
                    dtype: info.dtype.clone(),
                })?;
            }
            EngineEvent::ModelFailed { error, remedy } => {
                self.append(&Record::Event {
                    t,
                    severity: "error".into(),
                    message: error.clone(),
                    remedy: Some(remedy.clone()),
                })?;
                self.file.sync_data()?;
            }
            EngineEvent::Notice {
                severity,
                message,
                remedy,
            } => {
                let severity = match severity {
                    Severity::Info => "info",
                    Severity::Warning => "warning",
                    Severity::Error => "error",
                };
                self.append(&Record::Event {
                    t,
                    severity: severity.into(),
                    message: message.clone(),
                    remedy: remedy.clone(),
                })?;
            }
            EngineEvent::Muted(m) => self.append(&Record::Event {
                t,
                severity: "info".into(),
                message: if *m {
                    "microphone muted"
                } else {
                    "microphone unmuted"
                }
                .into(),
                remedy: None,
            })?,
            EngineEvent::Reset => {
                self.end_turn()?;
                self.append(&Record::Event {
                    t,
                    severity: "info".into(),
                    message: "conversation reset".into(),
                    remedy: None,
                })?;
            }
            EngineEvent::PersonaSwitched { name } => self.append(&Record::Event {
                t,
                severity: "info".into(),
                message: format!("persona: {name}"),
                remedy: None,
            })?,
            EngineEvent::VoiceFailed {
                persona,
                error,
                remedy,
            } => self.append(&Record::Event {
                t,
                severity: "warning".into(),
                message: format!("{persona}'s voice did not load: {error}"),
                remedy: Some(remedy.clone()),
            })?,
            EngineEvent::Stopped => self.finish()?,
            EngineEvent::Device(_) | EngineEvent::Happened(_) => {
                if let Some((severity, message, remedy)) = self.words.and_then(|w| w(ev)) {
                    self.append(&Record::Event {
                        t,
                        severity: severity_name(severity).into(),
                        message,
                        remedy,
                    })?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn record_talk(&mut self, t: f64, talk: &Talk) -> anyhow::Result<()> {
        match talk {
            Talk::UserWords(text) => self.append(&Record::Said {
                t,
                text: text.clone(),
            }),
            Talk::UserTurnEnded => Ok(self.file.sync_data()?),
            Talk::Typed(text) => {
                self.append(&Record::Typed {
                    t,
                    text: text.clone(),
                })?;
                Ok(self.file.sync_data()?)
            }
            Talk::BargedIn { heard, of } => {
                self.end_turn()?;
                self.append(&Record::Event {
                    t,
                    severity: "info".into(),
                    message: format!("barge-in: the reply stopped after {heard} of {of} words"),
                    remedy: None,
                })
            }
            Talk::LlmTrouble { message, remedy } => self.append(&Record::Event {
                t,
                severity: "warning".into(),
                message: message.clone(),
                remedy: Some(remedy.clone()),
            }),
            Talk::Phase(_) => Ok(()),
            // The end of a call holds all of it; asking and running are the screen's.
            Talk::Tool(crate::bus::ToolActivity::Done {
                call,
                tool,
                args,
                consent,
                outcome,
                result,
                ms,
            }) => self.append(&Record::Tool {
                t,
                call: *call,
                tool: tool.clone(),
                args: args.clone(),
                consent: consent.clone(),
                outcome: outcome.clone(),
                result: result.clone(),
                ms: *ms,
            }),
            Talk::Tool(_) => Ok(()),
        }
    }

    pub fn finish(&mut self) -> anyhow::Result<()> {
        self.end_turn()?;
        let t = self.t();
        self.append(&Record::End { t })?;
        self.file.sync_all()?;
        Ok(())
    }
}

/// Pass engine events through, journalling each one on the way. The journal is
/// owned by this thread alone; a failing disk costs the journal, not the run.
pub fn tee(events: Receiver<EngineEvent>, mut journal: Journal) -> Receiver<EngineEvent> {
    let (tx, rx) = crossbeam_channel::unbounded();
    std::thread::Builder::new()
        .name("journal".into())
        .spawn(move || {
            let mut healthy = true;
            for ev in events.iter() {
                if healthy {
                    if let Err(e) = journal.record(&ev) {
                        healthy = false;
                        tracing::error!("journal {}: {e:#}", journal.path().display());
                        let _ = tx.send(EngineEvent::warning(
                            format!("the session journal stopped: {e:#}"),
                            Some("check free space and permissions of the data directory".into()),
                        ));
                    }
                }
                if tx.send(ev).is_err() {
                    break;
                }
            }
        })
        .expect("spawn journal thread");
    rx
}

/// One journalled session, summarised.
#[derive(Debug, Clone)]
pub struct SessionSummary {
    pub id: String,
    pub path: PathBuf,
    pub started: String,
    pub persona: String,
    pub duration_s: f64,
    pub first_words: String,
    /// Lines that did not parse (a kill mid-write leaves at most one).
    pub damaged_lines: usize,
}

/// Parse a journal, tolerating damaged lines (counted).
pub fn read_session(path: &Path) -> anyhow::Result<(Vec<Record>, usize)> {
    let text =
        std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let mut records = Vec::new();
    let mut damaged = 0;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        match serde_json::from_str::<Record>(line) {
            Ok(r) => records.push(r),
            Err(_) => damaged += 1,
        }
    }
    Ok((records, damaged))
}

fn record_t(r: &Record) -> f64 {
    match r {
        Record::Start { .. } => 0.0,
        Record::Text { t, .. }
        | Record::Said { t, .. }
        | Record::Typed { t, .. }
        | Record::TurnEnd { t }
        | Record::Model { t, .. }
        | Record::Event { t, .. }
        | Record::Tool { t, .. }
        | Record::End { t } => *t,
    }
}

pub fn summarize(path: &Path) -> anyhow::Result<SessionSummary> {
    let (records, damaged_lines) = read_session(path)?;
    let (started, persona) = match records.first() {
        Some(Record::Start {
            started, persona, ..
        }) => (started.clone(), persona.clone()),
        _ => ("?".into(), "?".into()),
    };
    let text: String = records
        .iter()
        .filter_map(|r| {
            if let Record::Text { text, .. } = r {
                Some(text.as_str())
            } else {
                None
            }
        })
        .collect();
    let first_words = text
        .split_whitespace()
        .take(8)
        .collect::<Vec<_>>()
        .join(" ");
    Ok(SessionSummary {
        id: path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default(),
        path: path.to_path_buf(),
        started,
        persona,
        duration_s: records.iter().map(record_t).fold(0.0, f64::max),
        first_words,
        damaged_lines,
    })
}

/// All sessions, oldest first.
pub fn list_sessions(dir: &Path) -> Vec<SessionSummary> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
                .collect()
        })
        .unwrap_or_default();
    paths.sort();
    paths.iter().filter_map(|p| summarize(p).ok()).collect()
}

fn clock(t: f64) -> String {
    let s = t.max(0.0) as u64;
    format!("{:02}:{:02}", s / 60, s % 60)
}

/// A session as Markdown: one paragraph per assistant turn, events as quotes.
pub fn to_markdown(path: &Path) -> anyhow::Result<String> {
    let summary = summarize(path)?;
    let (records, _) = read_session(path)?;
    let mut md = format!(
        "# Session {}\n\n- started: {}\n- persona: {}\n- duration: {}\n",
        summary.id,
        summary.started,
        summary.persona,
        clock(summary.duration_s)
    );
    let mut turn: Option<(f64, String)> = None;
    let mut said: Option<(f64, String)> = None;
    let flush = |md: &mut String, turn: &mut Option<(f64, String)>| {
        if let Some((t, text)) = turn.take() {
            md.push_str(&format!(
                "\n**assistant** ({}):{}\n",
                clock(t),
                text.trim_end()
            ));
        }
    };
    for r in &records {
        if !matches!(r, Record::Said { .. }) {
            if let Some((t, text)) = said.take() {
                md.push_str(&format!("\n**you** ({}):{}\n", clock(t), text.trim_end()));
            }
        }
        match r {
            Record::Said { t, text } => {
                flush(&mut md, &mut turn);
                said.get_or_insert_with(|| (*t, String::new()))
                    .1
                    .push_str(text)
            }
            Record::Text { t, text } => turn
                .get_or_insert_with(|| (*t, String::new()))
                .1
                .push_str(text),
            Record::TurnEnd { .. } => flush(&mut md, &mut turn),
            Record::Typed { t, text } => {
                flush(&mut md, &mut turn);
                md.push_str(&format!(
                    "\n**you** (typed, {}): {}\n",
                    clock(*t),
                    text.trim()
                ));
            }
            Record::Model {
                t,
                name,
                device,
                dtype,
            } => {
                flush(&mut md, &mut turn);
                md.push_str(&format!(
                    "\n> {} model ready: {name} on {device} ({dtype})\n",
                    clock(*t)
                ));
            }
            Record::Event {
                t,
                severity,
                message,
                remedy,
            } => {
                flush(&mut md, &mut turn);
                md.push_str(&format!("\n> {} {severity}: {message}\n", clock(*t)));
                if let Some(r) = remedy {
                    md.push_str(&format!("> fix: {r}\n"));
                }
            }
            Record::Tool {
                t,
                tool,
                args,
                consent,
                outcome,
                result,
                ms,
                ..
            } => {
                flush(&mut md, &mut turn);
                md.push_str(&format!(
                    "\n> {} tool `{tool}` {args} (consent: {consent}): {outcome} in {ms:.0} ms\n",
                    clock(*t)
                ));
                for line in result.lines().take(20) {
                    md.push_str(&format!(">     {line}\n"));
                }
                if result.lines().count() > 20 {
                    md.push_str(">     …\n");
                }
            }
            Record::Start { .. } | Record::End { .. } => {}
        }
    }
    flush(&mut md, &mut turn);
    if let Some((t, text)) = said.take() {
        md.push_str(&format!("\n**you** ({}):{}\n", clock(t), text.trim_end()));
    }
    if summary.damaged_lines > 0 {
        md.push_str(&format!(
            "\n_({} damaged line(s) skipped: the session ended abruptly)_\n",
            summary.damaged_lines
        ));
    }
    Ok(md)
}

/// The newest session's assistant turns, for `--resume`.
pub fn last_transcript(dir: &Path) -> Option<(SessionSummary, Vec<String>)> {
    let last = list_sessions(dir).pop()?;
    let (records, _) = read_session(&last.path).ok()?;
    let mut turns = Vec::new();
    let mut cur = String::new();
    for r in records {
        match r {
            Record::Text { text, .. } => cur.push_str(&text),
            Record::TurnEnd { .. } | Record::End { .. } if !cur.trim().is_empty() => {
                turns.push(std::mem::take(&mut cur).trim().to_string())
            }
            _ => {}
        }
    }
    if !cur.trim().is_empty() {
        turns.push(cur.trim().to_string());
    }
    Some((last, turns))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::ModelInfo;

    #[test]
    fn a_typed_turn_is_kept_whole_and_reads_back_as_typed() {
        use crate::bus::Talk;
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::create(dir.path(), "Default", "mic").unwrap();
        j.record(&EngineEvent::Talk(Talk::Typed("what time is it".into())))
            .unwrap();
        j.record(&EngineEvent::Text(" Noon.".into())).unwrap();
        j.record(&EngineEvent::TurnEnded).unwrap();
        j.finish().unwrap();
        let path = list_sessions(dir.path())[0].path.clone();
        let (records, _) = read_session(&path).unwrap();
        assert!(records
            .iter()
            .any(|r| matches!(r, Record::Typed { text, .. } if text == "what time is it")));
        let md = to_markdown(&path).unwrap();
        let you = md
            .find("**you** (typed, 00:00): what time is it")
            .expect(&md);
        let reply = md.find("**assistant** (00:00): Noon.").expect(&md);
        assert!(you < reply, "{md}");
    }

    #[test]
    fn a_cascade_chat_reads_back_as_you_and_assistant() {
        use crate::bus::{Talk, TalkPhase};
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::create(dir.path(), "Default", "mic").unwrap();
        for ev in [
            Talk::UserWords(" what".into()),
            Talk::UserWords(" time?".into()),
            Talk::UserTurnEnded,
            Talk::Phase(TalkPhase::Thinking),
        ] {
            j.record(&EngineEvent::Talk(ev)).unwrap();
        }
        j.record(&EngineEvent::Text(" It is".into())).unwrap();
        j.record(&EngineEvent::Talk(Talk::BargedIn { heard: 2, of: 4 }))
            .unwrap();
        j.record(&EngineEvent::Talk(Talk::UserWords(" thanks".into())))
            .unwrap();
        j.finish().unwrap();
        let md = to_markdown(&list_sessions(dir.path())[0].path).unwrap();
        let you = md.find("**you** (00:00): what time?").expect(&md);
        let reply = md.find("**assistant** (00:00): It is").expect(&md);
        let barge = md
            .find("barge-in: the reply stopped after 2 of 4 words")
            .expect(&md);
        let thanks = md.find("**you** (00:00): thanks").expect(&md);
        assert!(you < reply && reply < barge && barge < thanks, "{md}");
    }

    #[test]
    fn journal_round_trips_to_markdown() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::create(dir.path(), "Default", "mic").unwrap();
        j.record(&EngineEvent::ModelReady {
            info: ModelInfo {
                name: "demo".into(),
                device: "cpu".into(),
                dtype: "f32".into(),
            },
            load_ms: 1.0,
        })
        .unwrap();
        j.record(&EngineEvent::Text(" Hello".into())).unwrap();
        j.record(&EngineEvent::Text(" there.".into())).unwrap();
        j.record(&EngineEvent::warning(
            "no speaker: gone",
            Some("plug it in".into()),
        ))
        .unwrap();
        j.finish().unwrap();
        let sessions = list_sessions(dir.path());
        assert_eq!(sessions.len(), 1);
        assert_eq!(sessions[0].first_words, "Hello there.");
        assert_eq!(sessions[0].persona, "Default");
        let md = to_markdown(&sessions[0].path).unwrap();
        assert!(md.contains("model ready: demo on cpu (f32)"), "{md}");
        assert!(md.contains("**assistant** (00:00): Hello there."), "{md}");
        assert!(
            md.contains("warning: no speaker: gone\n> fix: plug it in"),
            "{md}"
        );
        let (_, turns) = last_transcript(dir.path()).unwrap();
        assert_eq!(turns, vec!["Hello there."]);
    }
}
