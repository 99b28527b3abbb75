//! The docs run: every `assistant …` line in a ```sh block of README.md and docs/*.md is
//! run against the real binary, in order within its block, and what the line promises is
//! checked (the exit code, the files it names, a word of its output).
//!
//! What this machine lacks is stood in for, as the rest of the suite does it:
//! - weights: a Hugging Face cache (`HF_HOME`) holding the default repositories with tiny
//!   synthetic checkpoints (the state after a download), `~/moshiko` and the other
//!   directories the docs name as small checkpoints of the same layout; downloads go to
//!   127.0.0.1:9, so nothing is fetched;
//! - the microphone and speaker: ALSA file devices (`~/.asoundrc`, tests/common);
//! - the terminal: tmux (a TUI command runs until "model ready", then `q`);
//! - other machines: `serve` binds 127.0.0.1 on a free port, and `--connect` to
//!   `desktop.local:8998` goes there; `--llm-url http://127.0.0.1:11434` goes to an
//!   OpenAI-compatible stand-in that streams one reply.
//!
//! A line that cannot run here is marked in the doc, just before its block, with
//! `<!-- docs-test: skip `PREFIX`: why -->`: it is counted, printed, and must match a line.
//! Every fenced block is tagged: `sh` (run or checked), `text` or `json` (JSON is parsed).
//! Other commands in `sh` blocks (./dev, scripts, cargo test) must name files that exist.

use crate::common;
use crate::docs_commands::{doc_files, is_env_assignment, read, root, Continuation};
use crate::tmux_support::Tmux;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long one command may run (a load of the tiny models takes a few seconds; a
/// machine at load 8 gets ten times that).
const LIMIT: Duration = Duration::from_secs(120);
/// Blocks run at once (each runs its lines in order).
const WORKERS: usize = 4;

/// One fenced block of a page.
#[derive(Debug, Clone)]
struct Block {
    file: String,
    /// 1-based line of the opening fence.
    line: usize,
    lang: String,
    /// (1-based line, the line's text, `\` continuations joined).
    lines: Vec<(usize, String)>,
    /// (command prefix, why) from `<!-- docs-test: skip `PREFIX`: why -->` above it.
    skips: Vec<(String, String)>,
}

fn blocks(file: &str, text: &str) -> Vec<Block> {
    let mut out = Vec::new();
    let mut current: Option<Block> = None;
    let mut skips = Vec::new();
    let mut pending = Continuation::default();
    for (index, raw) in text.lines().enumerate() {
        let trimmed = raw.trim();
        if let Some(fence) = trimmed.strip_prefix("```") {
            match current.take() {
                Some(b) => out.push(b),
                None => {
                    current = Some(Block {
                        file: file.into(),
                        line: index + 1,
                        lang: fence.trim().to_string(),
                        lines: Vec::new(),
                        skips: std::mem::take(&mut skips),
                    })
                }
            }
            continue;
        }
        let Some(block) = current.as_mut() else {
            if let Some(rest) = trimmed
                .strip_prefix("<!-- docs-test: skip `")
                .and_then(|r| r.strip_suffix("-->"))
            {
                let (prefix, why) = rest.split_once('`').unwrap_or((rest, ""));
                let why = why.trim().trim_start_matches(':').trim();
                skips.push((prefix.trim().to_string(), why.to_string()));
            } else if !trimmed.is_empty() {
                skips.clear();
            }
            continue;
        };
        let Some((number, joined)) = pending.push(index + 1, trimmed) else {
            continue;
        };
        block.lines.push((number, joined));
    }
    out
}

/// The line without its `# comment` (outside quotes), trimmed.
fn without_comment(line: &str) -> String {
    let mut quote = None;
    let mut prev = ' ';
    for (at, c) in line.char_indices() {
        match (quote, c) {
            (None, '\'' | '"') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, '#') if prev.is_whitespace() => return line[..at].trim().to_string(),
            _ => {}
        }
        prev = c;
    }
    line.trim().to_string()
}

/// What happened to one command.
#[derive(Debug)]
enum Outcome {
    Ran(String),
    Skipped(String),
    Failed(String),
}

struct Report {
    place: String,
    command: String,
    outcome: Outcome,
}

/// The tiny checkpoints and inputs, made once for every block.
struct World {
    _dir: tempfile::TempDir,
    root: PathBuf,
    /// An OpenAI-compatible stand-in on 127.0.0.1 for the docs' `--llm-url`.
    llm_url: String,
}

impl World {
    fn hf(&self) -> PathBuf {
        self.root.join("hf")
    }
    fn models(&self) -> PathBuf {
        self.root.join("models")
    }
    fn inputs(&self) -> PathBuf {
        self.root.join("inputs")
    }
}

fn fixtures() -> PathBuf {
    root().join("tests/fixtures")
}

fn copy(from: PathBuf, to: PathBuf) {
    std::fs::create_dir_all(to.parent().unwrap()).unwrap();
    std::fs::copy(&from, &to)
        .unwrap_or_else(|e| panic!("{} → {}: {e}", from.display(), to.display()));
}

/// A repository in the Hugging Face cache at revision `abc`: its snapshot folder.
fn cached_repo(hf: &Path, repo: &str) -> PathBuf {
    let dir = hf
        .join("hub")
        .join(format!("models--{}", repo.replace('/', "--")));
    std::fs::create_dir_all(dir.join("refs")).unwrap();
    std::fs::write(dir.join("refs/main"), "abc").unwrap();
    let snapshot = dir.join("snapshots/abc");
    std::fs::create_dir_all(&snapshot).unwrap();
    snapshot
}

/// A Pocket TTS folder from one of the tiny fixtures (`lsd`: English, `drifting`: 18M).
fn pocket_files(fixture: &str, dir: &Path, voices: &[&str]) {
    let from = fixtures().join("pocket_tts").join(fixture);
    for f in [
        "model.safetensors",
        "tokenizer.json",
        "tokenizer.model",
        "config.yaml",
    ] {
        if from.join(f).exists() {
            copy(from.join(f), dir.join(f));
        }
    }
    for v in voices {
        copy(
            from.join("voice.safetensors"),
            dir.join(format!("embeddings/{v}.safetensors")),
        );
    }
}

/// A chat-completions server that streams one short reply to every request.
fn llm_stand_in() -> String {
    use std::io::Write;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut s) = conn else { return };
            std::thread::spawn(move || {
                let _ = common::read_http_request(&mut s);
                let piece = serde_json::json!({"choices":[{"index":0,"delta":{"content":"It is noon."},"finish_reason":null}]});
                let _ = write!(
                    s,
                    "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\ndata: {piece}\n\ndata: [DONE]\n\n"
                );
            });
        }
    });
    url
}

/// Made for each run and removed after it (about 20 MB of tiny checkpoints).
fn world() -> World {
    use assistant::models::{llm, moshi, speech};
    let dir = tempfile::tempdir().unwrap();
    let w = World {
        root: dir.path().to_path_buf(),
        _dir: dir,
        llm_url: llm_stand_in(),
    };
    let (hf, models, inputs) = (w.hf(), w.models(), w.inputs());

    // The defaults, as a download leaves them.
    moshi::export::write_demo(
        &cached_repo(&hf, assistant::bus::MOSHIKO),
        moshi::LmFormat::Q8,
    )
    .unwrap();
    speech::stt::whisper::synthetic::write_tiny(&cached_repo(&hf, speech::files::WHISPER_REPO), 1)
        .unwrap();
    llm::synthetic::write_tiny_qwen2(
        &cached_repo(&hf, llm::gguf::DEFAULT_REPO).join(llm::gguf::DEFAULT_FILE),
        &Default::default(),
    )
    .unwrap();
    let pocket = cached_repo(&hf, "kyutai/pocket-tts-without-voice-cloning");
    let voices = ["alba", "marius", "javert", "jean", "fantine", "cosette"];
    pocket_files("lsd", &pocket.join("languages/english"), &voices);
    pocket_files(
        "drifting",
        &pocket.join("languages/english_18m_2026-10"),
        &voices,
    );
    speech::synthetic::write_stt(&cached_repo(&hf, speech::files::STT_REPO), 1).unwrap();
    speech::synthetic::write_tts(&cached_repo(&hf, speech::files::TTS_REPO), 2).unwrap();
    speech::synthetic::write_voice(
        &cached_repo(&hf, speech::files::VOICES_REPO)
            .join(format!("{}.safetensors", speech::files::DEFAULT_VOICE)),
        3,
    )
    .unwrap();

    // The directories the docs name under ~.
    moshi::export::write_demo(&models.join("moshiko"), moshi::LmFormat::Q8).unwrap();
    let pp = models.join("personaplex");
    copy(
        fixtures().join("personaplex/model.safetensors"),
        pp.join("model.safetensors"),
    );
    crate::personaplex_common::complete_checkpoint(&pp);
    for v in ["NATF0", "NATF2", "NATM1", "NATM2", "VARF3", "VARM2"] {
        copy(
            fixtures().join("personaplex/voice.pt"),
            pp.join(format!("voices/{v}.pt")),
        );
    }
    copy(
        fixtures().join("personaplex/voice.wav"),
        models.join("voices/my-voice.wav"),
    );
    speech::stt::whisper::synthetic::write_tiny(&models.join("whisper-base.en"), 1).unwrap();
    std::fs::create_dir_all(models.join("stt-1b-en_fr")).unwrap();
    speech::synthetic::write_stt(&models.join("stt-1b-en_fr"), 1).unwrap();
    pocket_files("lsd", &models.join("my-pocket"), &[]);

    // The files the docs' commands read from the working directory.
    let audio = fixtures().join("audio");
    for (name, from) in [
        ("talk.wav", audio.join("hello_24k_mono.wav")),
        ("question.wav", audio.join("two_sentences_16k_mono.wav")),
        ("room.wav", audio.join("hello_24k_mono.wav")),
        ("take1.wav", audio.join("hello_24k_mono.wav")),
        ("take2.wav", audio.join("hello_24k_mono.wav")),
        ("take3.wav", audio.join("hello_24k_mono.wav")),
        ("played.wav", audio.join("echo/far.wav")),
        ("heard.wav", audio.join("echo/mic.wav")),
        ("me.wav", fixtures().join("pocket_tts/voice.wav")),
        (
            "me.safetensors",
            fixtures().join("pocket_tts/lsd/voice.safetensors"),
        ),
        ("my-voice.wav", fixtures().join("personaplex/voice.wav")),
        ("my.toml", fixtures().join("personas/valid/nova.toml")),
    ] {
        copy(from, inputs.join(name));
    }
    w
}

/// One block's scratch space: HOME (with the world's directories and ALSA file
/// devices), the XDG directories, and a working directory with the inputs.
struct Scratch {
    _dir: tempfile::TempDir,
    home: PathBuf,
    cwd: PathBuf,
    env: Vec<(String, String)>,
    llm_url: String,
    /// The address `serve` listens on, once a line started it.
    served: Option<String>,
    servers: Vec<(String, Child, PathBuf)>,
}

impl Scratch {
    fn new(w: &World) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("home");
        let cwd = dir.path().join("work");
        std::fs::create_dir_all(&home).unwrap();
        std::fs::create_dir_all(&cwd).unwrap();
        common::alsa_home(&home);
        for entry in std::fs::read_dir(w.models()).unwrap() {
            let p = entry.unwrap().path();
            std::os::unix::fs::symlink(&p, home.join(p.file_name().unwrap())).unwrap();
        }
        for entry in std::fs::read_dir(w.inputs()).unwrap() {
            let p = entry.unwrap().path();
            std::fs::copy(&p, cwd.join(p.file_name().unwrap())).unwrap();
        }
        let p = |s: &str| dir.path().join(s).display().to_string();
        let env = vec![
            ("HOME".into(), home.display().to_string()),
            ("XDG_CONFIG_HOME".into(), p("config")),
            ("XDG_DATA_HOME".into(), p("data")),
            ("XDG_STATE_HOME".into(), p("state")),
            ("XDG_CACHE_HOME".into(), p("cache")),
            ("HF_HOME".into(), w.hf().display().to_string()),
            ("HF_ENDPOINT".into(), "http://127.0.0.1:9".into()),
            // No PulseAudio: the default devices are ALSA's, the files.
            ("PULSE_SERVER".into(), p("no-pulse")),
        ];
        Self {
            _dir: dir,
            home,
            cwd,
            env,
            llm_url: w.llm_url.clone(),
            served: None,
            servers: Vec::new(),
        }
    }

    fn command(&self, args: &[String], env: &[(String, String)]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_assistant"));
        c.current_dir(&self.cwd)
            .args(args)
            .stdin(Stdio::null())
            .env_remove("HF_HUB_CACHE")
            .env_remove("HF_TOKEN")
            .env_remove("ASSISTANT_CONNECT")
            .env_remove("ASSISTANT_TOKEN")
            .env_remove("NO_COLOR");
        for (k, v) in self.env.iter().chain(env) {
            c.env(k, v);
        }
        c
    }

    /// `~` as the shell expands it, the docs' other machine as the served address.
    fn substitute(&self, word: &str) -> String {
        let word = if word == "~" {
            self.home.display().to_string()
        } else if let Some(rest) = word.strip_prefix("~/") {
            self.home.join(rest).display().to_string()
        } else {
            word.to_string()
        };
        let word = word.replace("http://127.0.0.1:11434", &self.llm_url);
        match &self.served {
            Some(addr) => word.replace("desktop.local:8998", addr),
            None => word,
        }
    }
}

/// Run one block's lines in order.
fn run_block(block: &Block, w: &World) -> Vec<Report> {
    let mut reports = Vec::new();
    let mut scratch = Scratch::new(w);
    let mut exported: Vec<(String, String)> = Vec::new();
    let mut used_skips = vec![false; block.skips.len()];
    for (line, text) in &block.lines {
        let place = format!("{}:{line}", block.file);
        let command = without_comment(text);
        if command.is_empty() {
            continue;
        }
        let report = |outcome| Report {
            place: place.clone(),
            command: command.clone(),
            outcome,
        };
        if let Some(rest) = command.strip_prefix("export ") {
            let name = rest.split('=').next().unwrap_or_default().to_string();
            let out = Command::new("sh")
                .arg("-c")
                .arg(format!("export {rest}\nprintf %s \"${name}\""))
                .output()
                .unwrap();
            let value = String::from_utf8_lossy(&out.stdout).to_string();
            reports.push(report(if out.status.success() && !value.is_empty() {
                exported.push((name.clone(), value));
                Outcome::Ran(format!("{name} set"))
            } else {
                Outcome::Failed(format!("sh could not evaluate it: {out:?}"))
            }));
            continue;
        }
        let Some(words) = shlex::split(&command) else {
            reports.push(report(Outcome::Failed("unbalanced quotes".into())));
            continue;
        };
        let mut env = exported.clone();
        let mut args: Vec<String> = Vec::new();
        for word in words {
            if args.is_empty() && is_env_assignment(&word) {
                let (k, v) = word.split_once('=').unwrap();
                // `NAME=…` in a doc: the value exported above.
                let v = if v == "…" {
                    exported
                        .iter()
                        .find(|(name, _)| name == k)
                        .map(|(_, v)| v.clone())
                        .unwrap_or_default()
                } else {
                    v.to_string()
                };
                env.push((k.to_string(), v));
            } else {
                args.push(word);
            }
        }
        if args.first().map(String::as_str) != Some("assistant") {
            reports.push(report(check_other(&args)));
            continue;
        }
        if let Some(i) = block
            .skips
            .iter()
            .position(|(prefix, _)| command.starts_with(prefix.as_str()))
        {
            used_skips[i] = true;
            reports.push(report(Outcome::Skipped(block.skips[i].1.clone())));
            continue;
        }
        let args: Vec<String> = args[1..].iter().map(|a| scratch.substitute(a)).collect();
        let outcome = run_assistant(&mut scratch, &args, &env);
        reports.push(report(outcome));
    }
    for (i, used) in used_skips.iter().enumerate() {
        if !used {
            reports.push(Report {
                place: format!("{}:{}", block.file, block.line),
                command: format!("<!-- docs-test: skip `{}` -->", block.skips[i].0),
                outcome: Outcome::Failed("the skip matches no line of its block".into()),
            });
        }
    }
    // Servers drain on SIGTERM and exit 0.
    for (command, mut child, log) in scratch.servers.drain(..) {
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let outcome = match wait(&mut child, LIMIT) {
            Some(0) => Outcome::Ran("drained on SIGTERM, exit 0".into()),
            code => Outcome::Failed(format!(
                "serve after SIGTERM: exit {code:?}\n{}",
                tail(&log)
            )),
        };
        reports.push(Report {
            place: format!("{}:{}", block.file, block.line),
            command: format!("{command} (SIGTERM)"),
            outcome,
        });
    }
    reports
}

/// Wait for a child up to `limit`; None (and the child killed) past it.
fn wait(child: &mut Child, limit: Duration) -> Option<i32> {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status.code().unwrap_or(-1));
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

fn flag<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
}

fn run_assistant(s: &mut Scratch, args: &[String], env: &[(String, String)]) -> Outcome {
    let sub = args.first().filter(|a| !a.starts_with('-')).cloned();
    match sub.as_deref() {
        Some("serve") => serve(s, args, env),
        Some(_) => finished(s, args, env),
        None if args.iter().any(|a| a == "--headless") => {
            if flag(args, "--input").is_some() {
                finished(s, args, env)
            } else {
                interrupted(s, args, env)
            }
        }
        None => tui(s, args, env),
    }
}

/// A command that ends by itself: exit 0, the files it names, its promise.
fn finished(s: &Scratch, args: &[String], env: &[(String, String)]) -> Outcome {
    let (out, err) = (s.cwd.join(".stdout"), s.cwd.join(".stderr"));
    let mut c = s.command(args, env);
    c.stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap());
    let mut child = c.spawn().unwrap();
    let code = wait(&mut child, LIMIT);
    let stdout = std::fs::read_to_string(&out).unwrap_or_default();
    let stderr = std::fs::read_to_string(&err).unwrap_or_default();
    if code != Some(0) {
        return Outcome::Failed(format!(
            "exit {code:?}\nstdout: {}\nstderr: {}",
            stdout.trim_end(),
            stderr.trim_end()
        ));
    }
    match promised(s, args, &stdout, &stderr) {
        Ok(what) => Outcome::Ran(what),
        Err(e) => Outcome::Failed(format!(
            "{e}\nstdout: {}\nstderr: {}",
            stdout.trim_end(),
            stderr.trim_end()
        )),
    }
}

/// What the docs promise of a finished command's output, beyond exit 0.
fn promised(s: &Scratch, args: &[String], stdout: &str, stderr: &str) -> Result<String, String> {
    let mut checked = vec!["exit 0".to_string()];
    let words: Vec<&str> = args.iter().map(String::as_str).collect();
    let file = |name: &str| s.cwd.join(name);
    if let Some(out) = flag(args, "--output") {
        let bytes = std::fs::read(file(out)).map_err(|e| format!("{out}: {e}"))?;
        if bytes.len() <= 44 || &bytes[..4] != b"RIFF" {
            return Err(format!(
                "{out}: not a WAV with audio ({} bytes)",
                bytes.len()
            ));
        }
        checked.push(format!("{out} is a WAV of {} bytes", bytes.len()));
    }
    if let Some(stats) = flag(args, "--stats-json") {
        let text = std::fs::read_to_string(file(stats)).map_err(|e| format!("{stats}: {e}"))?;
        serde_json::from_str::<serde_json::Value>(&text).map_err(|e| format!("{stats}: {e}"))?;
        checked.push(format!("{stats} is JSON"));
    }
    // (words that select the promise, what the output holds)
    let promises: &[(&[&str], &str)] = &[
        (&["doctor"], "engine"),
        (&["devices"], "ALSA"),
        (&["personas", "check"], "ok"),
        (&["personas"], "JARVIS"),
        (&["history"], "Moshi"),
        (&["wake", "list"], "friday"),
        (&["wake", "add"], "friday"),
        (&["wake", "record"], "saved"),
        (&["transcribe"], "{"),
        (&["wake", "test"], "{"),
        (&["bench", "ui"], "frames drawn"),
    ];
    let both = format!("{stdout}\n{stderr}");
    if let Some((sel, want)) = promises
        .iter()
        .find(|(sel, _)| sel.iter().enumerate().all(|(i, w)| words.get(i) == Some(w)))
    {
        if !both.contains(want) {
            return Err(format!("`{}` output lacks {want:?}", sel.join(" ")));
        }
        checked.push(format!("says {want:?}"));
    }
    if words.contains(&"--json") {
        let lines: Vec<&str> = stdout.lines().filter(|l| !l.trim().is_empty()).collect();
        let parsed = serde_json::from_str::<serde_json::Value>(stdout).is_ok()
            || (!lines.is_empty()
                && lines
                    .iter()
                    .all(|l| serde_json::from_str::<serde_json::Value>(l).is_ok()));
        if !parsed {
            return Err("--json: stdout is not JSON".into());
        }
        checked.push("JSON on stdout".into());
    }
    if matches!(words.first(), Some(&"export-demo" | &"convert")) {
        let to = words
            .get(if words[0] == "convert" { 2 } else { 1 })
            .unwrap_or(&"");
        let n = std::fs::read_dir(to).map(|d| d.count()).unwrap_or(0);
        if n == 0 {
            return Err(format!("{to}: nothing written"));
        }
        checked.push(format!("{n} files written"));
    }
    Ok(checked.join(", "))
}

/// A headless run with no input file ("then on as usual"): it runs from the
/// microphone (ALSA's file device) until Ctrl-C, then exits 0.
fn interrupted(s: &Scratch, args: &[String], env: &[(String, String)]) -> Outcome {
    let err = s.cwd.join(".stderr");
    let mut c = s.command(args, env);
    c.stdout(Stdio::null())
        .stderr(std::fs::File::create(&err).unwrap());
    let mut child = c.spawn().unwrap();
    let start = Instant::now();
    // Loaded ("model: …"), and a typed turn taken.
    let typed = flag(args, "--say").map(|t| format!("you (typed): {t}"));
    let ready = loop {
        let text = std::fs::read_to_string(&err).unwrap_or_default();
        let loaded = text.lines().any(|l| l.starts_with("model: "));
        if loaded && typed.as_ref().is_none_or(|t| text.contains(t.as_str())) {
            break true;
        }
        if start.elapsed() > LIMIT || child.try_wait().unwrap().is_some() {
            break false;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    // A turn's worth of running before the interrupt.
    std::thread::sleep(Duration::from_secs(2));
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let code = wait(&mut child, LIMIT);
    if ready && code == Some(0) {
        Outcome::Ran(match typed {
            Some(t) => format!("loaded, {t:?}, then Ctrl-C: exit 0"),
            None => "loaded, then Ctrl-C: exit 0".into(),
        })
    } else {
        Outcome::Failed(format!(
            "ready: {ready}, exit after Ctrl-C: {code:?}\n{}",
            tail(&err)
        ))
    }
}

/// `serve` in the background on 127.0.0.1 (any port); `--connect` lines go to it.
fn serve(s: &mut Scratch, args: &[String], env: &[(String, String)]) -> Outcome {
    let mut args = args.to_vec();
    match args.iter().position(|a| a == "--bind") {
        Some(i) if i + 1 < args.len() => args[i + 1] = "127.0.0.1:0".into(),
        _ => args.extend(["--bind".to_string(), "127.0.0.1:0".to_string()]),
    }
    let err = s.cwd.join(format!(".serve{}.stderr", s.servers.len()));
    let mut c = s.command(&args, env);
    c.stdout(Stdio::null())
        .stderr(std::fs::File::create(&err).unwrap());
    let mut child = c.spawn().unwrap();
    let start = Instant::now();
    loop {
        let text = std::fs::read_to_string(&err).unwrap_or_default();
        if let Some(line) = text.lines().find(|l| l.starts_with("ready: serving ")) {
            let addr = line
                .split("://")
                .nth(1)
                .and_then(|r| r.split('/').next())
                .unwrap_or_default()
                .to_string();
            s.served = Some(addr.clone());
            s.servers
                .push((format!("assistant {}", args.join(" ")), child, err));
            return Outcome::Ran(format!("ready, serving at {addr}"));
        }
        if let Some(status) = child.try_wait().unwrap() {
            return Outcome::Failed(format!("serve exited {status}\n{}", tail(&err)));
        }
        if start.elapsed() > LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            return Outcome::Failed(format!("serve not ready in {LIMIT:?}\n{}", tail(&err)));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A TUI command in tmux: the model is ready on screen, `q` quits with exit 0.
fn tui(s: &Scratch, args: &[String], env: &[(String, String)]) -> Outcome {
    let env: Vec<(&str, String)> = s
        .env
        .iter()
        .chain(env)
        .map(|(k, v)| (k.as_str(), v.clone()))
        .collect();
    let words: Vec<&str> = args.iter().map(String::as_str).collect();
    let Some(t) = Tmux::start_in(&s.cwd, &env, &words) else {
        return Outcome::Failed("tmux is not installed (./dev installs it)".into());
    };
    let start = Instant::now();
    let screen = loop {
        let screen = t.screen();
        if screen.contains("model ready") {
            break screen;
        }
        // A failed load stays on screen, in the header: no need to wait it out.
        let failed = screen.lines().next().is_some_and(|l| l.contains("✗ error"));
        if failed || start.elapsed() > LIMIT || t.exit_code().is_some() {
            return Outcome::Failed(format!(
                "no \"model ready\" on screen (exit {:?}):\n{screen}\nlog:\n{}",
                t.exit_code(),
                t.log()
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut checked = vec!["\"model ready\" on screen".to_string()];
    if let Some(persona) = flag(args, "--persona") {
        let header = screen.lines().next().unwrap_or_default().to_lowercase();
        if !header.contains(persona) {
            return Outcome::Failed(format!("{persona} not in the header:\n{screen}"));
        }
        checked.push(format!("{persona} in the header"));
    }
    t.keys("q");
    let start = Instant::now();
    while t.exit_code().is_none() && start.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(50));
    }
    match t.exit_code() {
        Some(0) => {
            checked.push("q: exit 0".into());
            Outcome::Ran(checked.join(", "))
        }
        code => Outcome::Failed(format!("after q: exit {code:?}\nlog:\n{}", t.log())),
    }
}

/// A command other than `assistant`: the repository files it names exist (a script is
/// executable, `cargo test --test NAME` names a test binary and its module).
fn check_other(words: &[String]) -> Outcome {
    let Some(program) = words.first() else {
        return Outcome::Ran("empty".into());
    };
    let mut named = Vec::new();
    let tracked = [
        "src/",
        "tests/",
        "scripts/",
        "tools/",
        "docs/",
        "personas/",
        "./",
    ];
    for (i, w) in words.iter().enumerate() {
        if tracked.iter().any(|t| w.starts_with(t)) && !w.contains('$') {
            let path = root().join(w);
            if !path.exists() {
                return Outcome::Failed(format!("{w}: no such file in the repository"));
            }
            if i == 0 && !is_executable(&path) {
                return Outcome::Failed(format!("{w}: not executable"));
            }
            named.push(w.clone());
        }
    }
    if program == "cargo" && words.get(1).map(String::as_str) == Some("test") {
        if let Some(name) = flag(words, "--test") {
            let file = [format!("tests/{name}.rs"), format!("tests/{name}/main.rs")]
                .into_iter()
                .find(|f| root().join(f).exists());
            let Some(file) = file else {
                return Outcome::Failed(format!("--test {name}: no such test binary"));
            };
            named.push(file);
            // A module filter (`gguf::`) is a file of that binary.
            let at = words.iter().position(|w| w == name).unwrap();
            if let Some(module) = words.get(at + 1).and_then(|w| w.strip_suffix("::")) {
                let file = format!("tests/{name}/{module}.rs");
                if !root().join(&file).exists() {
                    return Outcome::Failed(format!("{module}::: no {file}"));
                }
                named.push(file);
            }
        }
    }
    if named.is_empty() {
        Outcome::Ran("names no repository file".into())
    } else {
        Outcome::Ran(format!("exists: {}", named.join(", ")))
    }
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .map(|m| m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Run every `sh` block of `pages` (name, text), WORKERS blocks at a time.
fn run_pages(pages: &[(String, String)]) -> (Vec<Report>, Vec<String>) {
    let mut problems = Vec::new();
    let mut queue = Vec::new();
    for (name, text) in pages {
        for b in blocks(name, text) {
            match b.lang.as_str() {
                "sh" => queue.push(b),
                "json" => {
                    let body: Vec<&str> = b.lines.iter().map(|(_, l)| l.as_str()).collect();
                    if let Err(e) = serde_json::from_str::<serde_json::Value>(&body.join("\n")) {
                        problems.push(format!("{}:{}: JSON block: {e}", b.file, b.line));
                    }
                }
                "text" => {}
                other => problems.push(format!(
                    "{}:{}: a block tagged {other:?}: tag it sh (run), text or json",
                    b.file, b.line
                )),
            }
        }
    }
    let world = world();
    let w = &world;
    let queue = Mutex::new(queue.into_iter().enumerate().collect::<Vec<_>>());
    let done = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..WORKERS {
            scope.spawn(|| loop {
                let Some((i, b)) = queue.lock().unwrap().pop() else {
                    break;
                };
                let reports = run_block(&b, w);
                done.lock().unwrap().push((i, reports));
            });
        }
    });
    let mut done = done.into_inner().unwrap();
    done.sort_by_key(|(i, _)| *i);
    (done.into_iter().flat_map(|(_, r)| r).collect(), problems)
}

#[test]
fn every_command_in_the_docs_runs_and_does_what_its_page_says() {
    let pages: Vec<(String, String)> = doc_files()
        .iter()
        .map(|p| {
            let name = p.strip_prefix(root()).unwrap().display().to_string();
            (name, read(p))
        })
        .collect();
    let started = Instant::now();
    let (reports, mut problems) = run_pages(&pages);
    let (mut ran, mut skipped) = (0, 0);
    for r in &reports {
        match &r.outcome {
            Outcome::Ran(what) => {
                ran += 1;
                eprintln!("ran      {}: {}  [{what}]", r.place, r.command);
            }
            Outcome::Skipped(why) => {
                skipped += 1;
                eprintln!("SKIPPED  {}: {}  ({why})", r.place, r.command);
            }
            Outcome::Failed(why) => {
                eprintln!("FAILED   {}: {}\n{why}\n", r.place, r.command);
                problems.push(format!("{}: {}", r.place, r.command));
            }
        }
    }
    eprintln!(
        "docs: {ran} commands ran or checked, {skipped} skipped by annotation, {} failed, in {:.0} s",
        problems.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(
        problems.is_empty(),
        "docs commands that failed:\n{}",
        problems.join("\n")
    );
    assert!(ran >= 60, "only {ran} commands ran: the extraction broke");
}

#[test]
fn a_command_that_fails_fails_the_docs_run_and_a_skip_must_match() {
    let page = "```sh\nassistant personas check missing.toml   # no such file: exit 1\n```\n\
        <!-- docs-test: skip `assistant bench nothing`: matches no line -->\n\
        ```sh\nassistant personas\n```\n```\nuntagged\n```\n";
    let (reports, problems) = run_pages(&[("page.md".into(), page.into())]);
    let failed: Vec<&Report> = reports
        .iter()
        .filter(|r| matches!(r.outcome, Outcome::Failed(_)))
        .collect();
    assert_eq!(
        failed.len(),
        2,
        "{reports:#?}",
        reports = reports
            .iter()
            .map(|r| (&r.place, &r.command, &r.outcome))
            .collect::<Vec<_>>()
    );
    assert_eq!(failed[0].place, "page.md:2");
    assert!(failed[1].outcome_text().contains("matches no line"));
    assert!(
        reports
            .iter()
            .any(|r| r.command == "assistant personas" && matches!(r.outcome, Outcome::Ran(_))),
        "the good line ran"
    );
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].contains("page.md:8"), "{problems:?}");
}

impl Report {
    fn outcome_text(&self) -> String {
        format!("{:?}", self.outcome)
    }
}
