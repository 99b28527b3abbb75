//! The built-in actions: run a shell command, write a file, tell the date and time.
//! Each is bounded (a timeout, a size limit on what it reads back) and knows exactly
//! what it will do, so that the consent question can say so before it runs.

use crate::bus::Cancel;
use serde_json::{json, Value};
use std::io::Read;
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, Instant};

pub const SHELL: &str = "run_shell";
pub const WRITE_FILE: &str = "write_file";
pub const DATE_TIME: &str = "date_time";
pub const SCREENSHOT: &str = "look_at_screen";

/// A built-in's name, description and JSON schema, as the LLM is offered them.
pub fn specs() -> Vec<(&'static str, &'static str, Value)> {
    vec![
        (
            DATE_TIME,
            "The current local date, time and time zone.",
            json!({"type": "object", "properties": {}}),
        ),
        (
            SCREENSHOT,
            "Take a screenshot of the user's screen and look at it (the image follows the tool's result).",
            json!({"type": "object", "properties": {}}),
        ),
        (
            SHELL,
            "Run a shell command (sh -c) in the working directory; returns its exit code and output. The user is asked first.",
            json!({"type": "object", "properties": {
                "command": {"type": "string", "description": "The command line to run"}
            }, "required": ["command"]}),
        ),
        (
            WRITE_FILE,
            "Write text to a file in the working directory (creating or replacing it). The user is asked first.",
            json!({"type": "object", "properties": {
                "path": {"type": "string", "description": "The file's path, relative to the working directory"},
                "content": {"type": "string", "description": "The whole text of the file"}
            }, "required": ["path", "content"]}),
        ),
    ]
}

/// Whether a built-in changes anything (and so asks first).
pub fn changes(name: &str) -> bool {
    name != DATE_TIME && name != SCREENSHOT
}

/// Whether a built-in sends something of the user's (the screen) to the LLM server.
pub fn sends_out(name: &str) -> bool {
    name == SCREENSHOT
}

/// A built-in call checked and ready: what it will do, in words, and how.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    DateTime,
    Screenshot,
    Shell { command: String },
    Write { path: PathBuf, content: String },
}

impl Action {
    /// Check a call's arguments (and, for a file, where it may write).
    pub fn parse(
        name: &str,
        args: &Value,
        workdir: &Path,
        allow_write: &[PathBuf],
    ) -> Result<Action, String> {
        let text = |k: &str| {
            args.get(k)
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| format!("`{name}` needs a string argument `{k}`"))
        };
        match name {
            DATE_TIME => Ok(Action::DateTime),
            SCREENSHOT => Ok(Action::Screenshot),
            SHELL => {
                let command = text("command")?;
                if command.trim().is_empty() {
                    return Err("the command is empty".into());
                }
                Ok(Action::Shell { command })
            }
            WRITE_FILE => {
                let path = writable_path(&text("path")?, workdir, allow_write)?;
                Ok(Action::Write {
                    path,
                    content: text("content")?,
                })
            }
            other => Err(format!("there is no built-in action `{other}`")),
        }
    }

    /// The consent question: exactly what will run, and where the screen would go
    /// (`llm_url`: the LLM server; `None`: the model in this process).
    pub fn question(&self, workdir: &Path, llm_url: Option<&str>) -> String {
        match self {
            Action::DateTime => "Tell the date and time?".into(),
            Action::Screenshot => match llm_url {
                Some(url) => format!(
                    "Take a screenshot of your screen and send it to the LLM server at {url}?"
                ),
                None => "Take a screenshot of your screen? (the LLM in this process reads no images: it gets only the screen's size)".into(),
            },
            Action::Shell { command } => {
                format!("Run `{command}` in {}?", workdir.display())
            }
            Action::Write { path, content } => format!(
                "{} {} ({} bytes)?",
                if path.exists() { "Replace" } else { "Create" },
                path.display(),
                content.len()
            ),
        }
    }

    /// Do it. The text is for the LLM; `Err` is a failure worded for it.
    pub fn run(
        &self,
        workdir: &Path,
        timeout: Duration,
        max_bytes: usize,
        cancel: &Cancel,
    ) -> Result<String, String> {
        match self {
            Action::DateTime => Ok(now_local()),
            // Taken by `ToolBox::call`, which hands the image on (see `screen`).
            Action::Screenshot => Err("a screenshot is taken by the tool box".into()),
            Action::Shell { command } => shell(command, workdir, timeout, max_bytes, cancel),
            Action::Write { path, content } => {
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir)
                        .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
                }
                std::fs::write(path, content)
                    .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
                Ok(format!(
                    "wrote {} bytes to {}",
                    content.len(),
                    path.display()
                ))
            }
        }
    }
}

/// `path` made absolute under `workdir`, if it stays inside the working directory
/// or a directory the configuration allows (`..` and symbolic links cannot leave it).
pub fn writable_path(path: &str, workdir: &Path, allow: &[PathBuf]) -> Result<PathBuf, String> {
    if path.trim().is_empty() {
        return Err("the path is empty".into());
    }
    let joined = workdir.join(path);
    // Lexically, then through the links of the part that exists.
    let mut clean = PathBuf::new();
    for c in joined.components() {
        match c {
            Component::ParentDir => {
                clean.pop();
            }
            Component::CurDir => {}
            other => clean.push(other),
        }
    }
    let mut existing = clean.as_path();
    let mut rest = Vec::new();
    while !existing.exists() {
        match (existing.parent(), existing.file_name()) {
            (Some(p), Some(n)) => {
                rest.push(n.to_os_string());
                existing = p;
            }
            _ => break,
        }
    }
    let mut real = existing
        .canonicalize()
        .unwrap_or_else(|_| existing.to_path_buf());
    for n in rest.iter().rev() {
        real.push(n);
    }
    let roots = std::iter::once(workdir).chain(allow.iter().map(PathBuf::as_path));
    for root in roots {
        let root = root.canonicalize().unwrap_or_else(|_| root.to_path_buf());
        if real.starts_with(&root) && real != root {
            return Ok(real);
        }
    }
    Err(format!(
        "{} is outside the working directory {} (allow a directory with assistant.allowWrite in mcp.json)",
        real.display(),
        workdir.display()
    ))
}

/// `sh -c command` in `workdir`, stdin closed; stdout and stderr read together up to
/// `max_bytes` (the rest is read and dropped, so the command never blocks on a full
/// pipe); the whole process group killed at the timeout or cancel.
fn shell(
    command: &str,
    workdir: &Path,
    timeout: Duration,
    max_bytes: usize,
    cancel: &Cancel,
) -> Result<String, String> {
    let mut cmd = std::process::Command::new("sh");
    cmd.arg("-c")
        .arg(command)
        .current_dir(workdir)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        cmd.process_group(0);
    }
    let mut child = cmd.spawn().map_err(|e| format!("cannot start sh: {e}"))?;
    let (tx, rx) = crossbeam_channel::unbounded::<Vec<u8>>();
    let readers: Vec<_> = [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    ]
    .into_iter()
    .flatten()
    .map(|mut r| {
        let tx = tx.clone();
        std::thread::spawn(move || {
            let mut b = [0u8; 8192];
            while let Ok(n) = r.read(&mut b) {
                if n == 0 || tx.send(b[..n].to_vec()).is_err() {
                    break;
                }
            }
        })
    })
    .collect();
    drop(tx);
    let started = Instant::now();
    let mut out = Vec::new();
    let mut dropped = 0usize;
    let mut keep = |chunk: Vec<u8>, out: &mut Vec<u8>| {
        let room = max_bytes.saturating_sub(out.len());
        out.extend_from_slice(&chunk[..chunk.len().min(room)]);
        dropped += chunk.len().saturating_sub(room);
    };
    let status = loop {
        while let Ok(c) = rx.try_recv() {
            keep(c, &mut out);
        }
        if let Some(s) = child.try_wait().map_err(|e| e.to_string())? {
            break Some(s);
        }
        if cancel.is_cancelled() || started.elapsed() > timeout {
            kill_group(&mut child);
            break None;
        }
        if let Ok(c) = rx.recv_timeout(Duration::from_millis(10)) {
            keep(c, &mut out);
        }
    };
    for r in readers {
        let _ = r.join();
    }
    while let Ok(c) = rx.try_recv() {
        keep(c, &mut out);
    }
    let mut text = String::from_utf8_lossy(&out).into_owned();
    if dropped > 0 {
        text.push_str(&format!("\n… ({dropped} more bytes of output cut)"));
    }
    match status {
        Some(s) => {
            let code = s
                .code()
                .map_or_else(|| "killed by a signal".to_string(), |c| c.to_string());
            Ok(format!("exit code: {code}\noutput:\n{text}"))
        }
        None if cancel.is_cancelled() => Err("cancelled".into()),
        None => Err(format!(
            "the command did not finish within {} s and was killed; output so far:\n{text}",
            timeout.as_secs_f64()
        )),
    }
}

fn kill_group(child: &mut std::process::Child) {
    #[cfg(unix)]
    // SAFETY: signalling the process group this child leads (process_group(0)).
    unsafe {
        libc::kill(-(child.id() as i32), libc::SIGKILL);
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// The local date and time, with its offset from UTC.
fn now_local() -> String {
    let now = time::OffsetDateTime::now_utc();
    let offset = local_offset_s(now.unix_timestamp());
    let local = time::UtcOffset::from_whole_seconds(offset)
        .map(|o| now.to_offset(o))
        .unwrap_or(now);
    let o = local.offset();
    format!(
        "{}, {} {} {}, {:02}:{:02}:{:02} (UTC{}{:02}:{:02})",
        local.weekday(),
        local.day(),
        local.month(),
        local.year(),
        local.hour(),
        local.minute(),
        local.second(),
        if o.is_negative() { '-' } else { '+' },
        o.whole_hours().abs(),
        o.minutes_past_hour().abs()
    )
}

#[cfg(unix)]
fn local_offset_s(t: i64) -> i32 {
    // SAFETY: localtime_r writes only into `tm`.
    unsafe {
        let t = t as libc::time_t;
        let mut tm: libc::tm = std::mem::zeroed();
        if libc::localtime_r(&t, &mut tm).is_null() {
            0
        } else {
            tm.tm_gmtoff as i32
        }
    }
}

#[cfg(not(unix))]
fn local_offset_s(_t: i64) -> i32 {
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_stays_inside_the_working_directory() {
        let d = tempfile::tempdir().unwrap();
        let ok = writable_path("notes/a.txt", d.path(), &[]).unwrap();
        assert!(ok.ends_with("notes/a.txt"));
        let e = writable_path("../escape.txt", d.path(), &[]).unwrap_err();
        assert!(e.contains("outside the working directory"), "{e}");
        assert!(writable_path("/etc/passwd", d.path(), &[]).is_err());
        let other = tempfile::tempdir().unwrap();
        let p = other.path().join("x.txt");
        assert!(writable_path(p.to_str().unwrap(), d.path(), &[other.path().into()]).is_ok());
    }

    #[cfg(unix)]
    #[test]
    fn a_link_out_of_the_working_directory_is_refused() {
        let d = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("/tmp", d.path().join("out")).unwrap();
        assert!(writable_path("out/x.txt", d.path(), &[]).is_err());
    }

    #[test]
    fn the_shell_gives_exit_code_and_bounded_output_and_stops_at_its_timeout() {
        let d = tempfile::tempdir().unwrap();
        let run = |c: &str, t: u64| {
            Action::Shell { command: c.into() }.run(
                d.path(),
                Duration::from_secs(t),
                100,
                &Cancel::new(),
            )
        };
        let r = run("echo hi; echo oops >&2; exit 3", 10).unwrap();
        assert!(
            r.contains("exit code: 3") && r.contains("hi") && r.contains("oops"),
            "{r}"
        );
        let r = run("yes | head -c 100000", 10).unwrap();
        assert!(r.contains("cut") && r.len() < 300, "{r}");
        let t = Instant::now();
        let e = run("sleep 30", 1).unwrap_err();
        assert!(e.contains("did not finish"), "{e}");
        assert!(t.elapsed() < Duration::from_secs(20));
    }

    #[test]
    fn the_date_names_the_year() {
        let s = now_local();
        let year = time::OffsetDateTime::now_utc().year().to_string();
        assert!(s.contains(&year) && s.contains("UTC"), "{s}");
    }
}
