//! Tools the cascade's LLM may call: MCP servers' tools (`mcp`) and the built-in
//! actions (`builtin`), behind one `ToolBox` that offers them, asks consent
//! (`consent`), bounds each call and reports it as `ToolActivity` events. Tools know no
//! engine: the cascade hands a call over and gets its result as text.

pub mod builtin;
pub mod config;
pub mod consent;
pub mod mcp;
pub mod screen;

use crate::bus::{Cancel, ToolActivity};
use config::{Access, Limits};
use consent::{Answer, Desk};
use serde_json::Value;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// What starts the tools, from the command line and the persona.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ToolsOptions {
    /// `--mcp-config`; `None` reads the default file if there is one.
    pub config: Option<PathBuf>,
    /// `--tools-access`, over the file's `assistant.access`.
    pub access: Option<Access>,
    /// The start persona's `tools = [...]`: only these are offered (`None`: all, or
    /// none when `every_persona` is false).
    pub persona_tools: Option<Vec<String>>,
    /// Tools for every persona (an MCP configuration or `--tools-access` turned them
    /// on); otherwise only for the personas that list `tools`, so that a session can
    /// switch to one of those and back.
    pub every_persona: bool,
    /// Where the shell runs and files are written.
    pub workdir: PathBuf,
    /// Where the LLM runs, for a question about sending it something (the screen):
    /// `--llm-url`, or `None` for the model in this process.
    pub llm_url: Option<String>,
}

/// Where a tool comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    BuiltIn,
    Mcp { server: String, tool: String },
}

/// What a tool does to the world, as its server (or we, for a built-in) says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    ReadOnly,
    /// Changes something, but is marked not destructive: runs without asking.
    Changes,
    /// Changes nothing, but sends something of the user's (the screen) to the LLM
    /// server: offered when read-only, asks first with `--tools-access ask`.
    SendsOut,
    /// Asks the user first.
    Destructive,
}

impl Effect {
    /// Whether it changes anything (and so is not offered when read-only).
    pub fn changes(self) -> bool {
        matches!(self, Effect::Changes | Effect::Destructive)
    }
}

/// Whether the LLM is offered a tool, and if not why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offer {
    Offered,
    /// Access is read-only and the tool changes things.
    NotReadOnly,
    /// The persona's list leaves it out.
    NotForPersona,
    /// The persona lists no tools, and tools are only for personas that do.
    PersonaUsesNone,
}

impl Offer {
    /// As the overlay and `doctor` say it.
    pub fn words(self) -> &'static str {
        match self {
            Offer::Offered => "offered",
            Offer::NotReadOnly => "not offered: changes things (--tools-access ask)",
            Offer::NotForPersona => "not offered: not in the persona's tools",
            Offer::PersonaUsesNone => "not offered: this persona lists no tools",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ToolInfo {
    /// The name the LLM calls it by.
    pub name: String,
    pub source: Source,
    pub description: String,
    /// JSON schema of its arguments.
    pub parameters: Value,
    pub effect: Effect,
    pub offer: Offer,
}

impl ToolInfo {
    /// "built-in" or "mcp: SERVER".
    pub fn origin(&self) -> String {
        match &self.source {
            Source::BuiltIn => "built-in".into(),
            Source::Mcp { server, .. } => format!("mcp: {server}"),
        }
    }

    /// Whether a call asks the user first under `access`.
    pub fn asks(&self, access: Access) -> bool {
        self.effect == Effect::Destructive
            || (self.effect == Effect::SendsOut && access == Access::Ask)
    }

    /// One line: name, where from, whether it asks first under `access`, offered or
    /// why not.
    pub fn line(&self, access: Access) -> String {
        let asks = if self.asks(access) {
            ", asks first"
        } else {
            ""
        };
        format!(
            "{} ({}{asks}): {}",
            self.name,
            self.origin(),
            self.offer.words()
        )
    }
}

/// How a call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    /// The tool ran and failed, or could not run.
    Error,
    Refused,
    Cancelled,
    TimedOut,
    /// No such tool is offered.
    Unavailable,
}

impl Outcome {
    pub fn word(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Error => "error",
            Outcome::Refused => "refused",
            Outcome::Cancelled => "cancelled",
            Outcome::TimedOut => "timed out",
            Outcome::Unavailable => "unavailable",
        }
    }
}

/// One call, as the LLM is told and the journal keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct CallRecord {
    pub call: u64,
    pub tool: String,
    pub args: String,
    pub consent: String,
    pub outcome: Outcome,
    /// What the LLM is given (bounded to `Limits::max_result_bytes`).
    pub result: String,
    /// An image for the LLM to look at (a screenshot), as a `data:` URL.
    pub image: Option<String>,
}

pub type Sink = Box<dyn Fn(ToolActivity) + Send + Sync>;

/// The session's tool box, if it has one, shared by whoever needs it (compared by
/// identity, so that options holding it stay plain values).
#[derive(Clone, Default)]
pub struct SharedTools(pub Option<Arc<ToolBox>>);

impl PartialEq for SharedTools {
    fn eq(&self, other: &Self) -> bool {
        match (&self.0, &other.0) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        }
    }
}

impl std::fmt::Debug for SharedTools {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Some(t) => write!(f, "SharedTools({} tools)", t.tools().len()),
            None => write!(f, "SharedTools(none)"),
        }
    }
}

/// The tools of a session: servers started, built-ins, the consent desk.
pub struct ToolBox {
    host: Option<mcp::McpHost>,
    tools: Vec<ToolInfo>,
    desk: Arc<Desk>,
    sink: Sink,
    limits: Limits,
    access: Access,
    every_persona: bool,
    workdir: PathBuf,
    llm_url: Option<String>,
    allow_write: Vec<PathBuf>,
    next_call: AtomicU64,
    /// The current persona's `tools = [...]` (`None`: all); a switch sets it.
    persona: std::sync::RwLock<Option<Vec<String>>>,
}

/// A started tool box, and what the user should hear about its start.
pub struct Started {
    pub tools: ToolBox,
    /// A server that did not start, one line each (the rest go on).
    pub notices: Vec<String>,
}

impl ToolBox {
    /// Read the configuration, start its servers, list every tool. A configuration
    /// file that cannot be read (or was named and is missing) is an error; a server
    /// that fails to start is a notice.
    pub fn start(opts: &ToolsOptions, desk: Arc<Desk>, sink: Sink) -> Result<Started, String> {
        let cfg = match &opts.config {
            Some(p) => config::load(p, true)?,
            None => match config::default_path() {
                Some(p) => config::load(&p, false)?,
                None => config::ToolsConfig::default(),
            },
        };
        let access = opts.access.unwrap_or(cfg.access);
        let (host, failures) = if cfg.servers.is_empty() {
            (None, Vec::new())
        } else {
            let (h, f) = mcp::McpHost::start(&cfg.servers, &cfg.limits);
            (Some(h), f)
        };
        let notices = failures
            .iter()
            .map(|f| format!("MCP server `{}` did not start: {}", f.server, f.message))
            .collect();
        let mut tools: Vec<ToolInfo> = builtin::specs()
            .into_iter()
            .map(|(name, description, parameters)| ToolInfo {
                name: name.into(),
                source: Source::BuiltIn,
                description: description.into(),
                parameters,
                effect: if builtin::changes(name) {
                    Effect::Destructive
                } else if builtin::sends_out(name) {
                    Effect::SendsOut
                } else {
                    Effect::ReadOnly
                },
                offer: Offer::Offered,
            })
            .collect();
        for t in host.iter().flat_map(|h| h.tools()) {
            let plain = llm_name(&t.name);
            let name = if tools.iter().any(|x| x.name == plain) {
                llm_name(&format!("{}__{}", t.server, t.name))
            } else {
                plain
            };
            tools.push(ToolInfo {
                name,
                source: Source::Mcp {
                    server: t.server.clone(),
                    tool: t.name.clone(),
                },
                description: t.description.clone(),
                parameters: t.input_schema.clone(),
                effect: if t.read_only {
                    Effect::ReadOnly
                } else if t.destructive {
                    Effect::Destructive
                } else {
                    Effect::Changes
                },
                offer: Offer::Offered,
            });
        }
        let mut tb = ToolBox {
            host,
            tools,
            desk,
            sink,
            limits: cfg.limits,
            access,
            every_persona: opts.every_persona,
            workdir: opts.workdir.clone(),
            llm_url: opts.llm_url.clone(),
            allow_write: cfg.allow_write,
            next_call: AtomicU64::new(1),
            persona: std::sync::RwLock::new(opts.persona_tools.clone()),
        };
        tb.tools = tb.listing(opts.persona_tools.as_deref());
        Ok(Started { tools: tb, notices })
    }

    /// Every tool, offered or not, as the session started.
    pub fn tools(&self) -> &[ToolInfo] {
        &self.tools
    }

    /// Every tool, with its offer to a persona whose list is `list` (for the overlay
    /// and `doctor`, which show the active persona's).
    pub fn listing(&self, list: Option<&[String]>) -> Vec<ToolInfo> {
        self.tools
            .iter()
            .map(|t| ToolInfo {
                offer: self.offer(list, t),
                ..t.clone()
            })
            .collect()
    }

    /// The tools the LLM is offered now (the current persona's list applied).
    pub fn offered(&self) -> impl Iterator<Item = &ToolInfo> {
        let list = self.persona_tools();
        self.tools
            .iter()
            .filter(move |t| self.offer(list.as_deref(), t) == Offer::Offered)
    }

    /// A persona switched to mid-session: its `tools = [...]` are offered from the next
    /// reply on (`None`: all, or none when tools are only for personas that list them).
    pub fn set_persona_tools(&self, list: Option<Vec<String>>) {
        *self.persona.write().unwrap_or_else(|p| p.into_inner()) = list;
    }

    pub fn persona_tools(&self) -> Option<Vec<String>> {
        self.persona
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Whether some persona could be offered a tool (the access allows one).
    pub fn any_for_some_persona(&self) -> bool {
        self.tools
            .iter()
            .any(|t| self.access == Access::Ask || !t.effect.changes())
    }

    /// How `t` is offered under the persona list `list`.
    fn offer(&self, list: Option<&[String]>, t: &ToolInfo) -> Offer {
        if list.is_none() && !self.every_persona {
            Offer::PersonaUsesNone
        } else if !persona_allows(list, t) {
            Offer::NotForPersona
        } else if self.access == Access::ReadOnly && t.effect.changes() {
            Offer::NotReadOnly
        } else {
            Offer::Offered
        }
    }

    pub fn access(&self) -> Access {
        self.access
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The MCP servers that started.
    pub fn servers(&self) -> Vec<String> {
        self.host
            .as_ref()
            .map_or_else(Vec::new, |h| h.server_names())
    }

    /// Where consent questions are answered.
    pub fn desk(&self) -> &Arc<Desk> {
        &self.desk
    }

    /// Make one call: check it, ask if it changes anything, run it within the limits.
    /// Blocks; `cancel` (barge-in) ends it, the consent question included.
    pub fn call(&self, name: &str, arguments: &str, cancel: &Cancel) -> CallRecord {
        let call = self.next_call.fetch_add(1, Ordering::SeqCst);
        let args = if arguments.trim().is_empty() {
            "{}".to_string()
        } else {
            arguments.trim().to_string()
        };
        let mut rec = CallRecord {
            call,
            tool: name.to_string(),
            args: args.clone(),
            consent: "not needed".into(),
            outcome: Outcome::Ok,
            result: String::new(),
            image: None,
        };
        let started = Instant::now();
        let finish = |mut rec: CallRecord, outcome: Outcome, result: String| {
            rec.outcome = outcome;
            rec.result = bound(&result, self.limits.max_result_bytes);
            (self.sink)(ToolActivity::Done {
                call,
                tool: rec.tool.clone(),
                args: rec.args.clone(),
                consent: rec.consent.clone(),
                outcome: outcome.word().into(),
                result: rec.result.clone(),
                ms: started.elapsed().as_secs_f64() * 1e3,
            });
            rec
        };
        let Some(info) = self.tools.iter().find(|t| t.name == name) else {
            return finish(
                rec,
                Outcome::Unavailable,
                format!("There is no tool named `{name}`."),
            );
        };
        match self.offer(self.persona_tools().as_deref(), info) {
            Offer::Offered => {}
            Offer::NotForPersona | Offer::PersonaUsesNone => {
                return finish(
                    rec,
                    Outcome::Unavailable,
                    format!("The tool `{name}` is not allowed for this persona."),
                )
            }
            Offer::NotReadOnly => {
                return finish(
                    rec,
                    Outcome::Unavailable,
                    format!("The tool `{name}` changes things, and tools are read-only (the user can allow more with --tools-access ask)."),
                )
            }
        }
        let parsed: Value = match serde_json::from_str(&args) {
            Ok(v @ Value::Object(_)) => v,
            Ok(_) | Err(_) => {
                return finish(
                    rec,
                    Outcome::Error,
                    format!(
                        "The arguments for `{name}` are not a JSON object: {}",
                        shorten(&args, 200)
                    ),
                )
            }
        };
        // Exactly what will run, for the question.
        let (question, action) = match &info.source {
            Source::BuiltIn => {
                match builtin::Action::parse(name, &parsed, &self.workdir, &self.allow_write) {
                    Ok(a) => (a.question(&self.workdir, self.llm_url.as_deref()), Some(a)),
                    Err(e) => return finish(rec, Outcome::Error, e),
                }
            }
            Source::Mcp { server, tool } => (
                format!(
                    "Call `{tool}` on the MCP server `{server}` with {}?",
                    shorten(&args, 300)
                ),
                None,
            ),
        };
        if info.asks(self.access) {
            (self.sink)(ToolActivity::Asking {
                call,
                tool: name.to_string(),
                question: question.clone(),
            });
            let refused = |rec: &mut CallRecord, how: &str| {
                rec.consent = format!("refused ({how})");
                "The user did not allow this, so it did not run. Tell them it was not done."
                    .to_string()
            };
            match self.desk.ask(cancel) {
                Answer::Yes(by) => rec.consent = format!("given ({by})"),
                Answer::No(by) => {
                    let r = refused(&mut rec, by);
                    return finish(rec, Outcome::Refused, r);
                }
                Answer::NobodyToAsk => {
                    let r = refused(&mut rec, "nobody to ask: headless");
                    return finish(rec, Outcome::Refused, r);
                }
                Answer::NoAnswer => {
                    let r = refused(&mut rec, "no answer");
                    return finish(rec, Outcome::Refused, r);
                }
                Answer::Cancelled => {
                    rec.consent = "not given (cancelled)".into();
                    return finish(rec, Outcome::Cancelled, "Cancelled by the user.".into());
                }
            }
        }
        (self.sink)(ToolActivity::Running {
            call,
            tool: name.to_string(),
            args: args.clone(),
        });
        let l = &self.limits;
        match (&info.source, action) {
            (Source::BuiltIn, Some(builtin::Action::Screenshot)) => {
                let display = std::env::var("DISPLAY").ok();
                let wayland = std::env::var("WAYLAND_DISPLAY").ok();
                match screen::capture(display.as_deref(), wayland.as_deref(), l.call_timeout) {
                    Ok(shot) => {
                        use base64::Engine as _;
                        rec.image = Some(format!(
                            "data:image/png;base64,{}",
                            base64::engine::general_purpose::STANDARD.encode(&shot.png)
                        ));
                        let text = format!(
                            "took a screenshot through {}, {}x{} ({} bytes of PNG); it follows as an image",
                            shot.via,
                            shot.width,
                            shot.height,
                            shot.png.len()
                        );
                        finish(rec, Outcome::Ok, text)
                    }
                    Err(e) => finish(rec, Outcome::Error, e),
                }
            }
            (Source::BuiltIn, Some(a)) => {
                // The shell's output is bounded as it is read.
                match a.run(&self.workdir, l.call_timeout, l.max_result_bytes, cancel) {
                    Ok(text) => finish(rec, Outcome::Ok, text),
                    Err(e) if cancel.is_cancelled() => finish(rec, Outcome::Cancelled, e),
                    Err(e) if e.contains("did not finish") => finish(rec, Outcome::TimedOut, e),
                    Err(e) => finish(rec, Outcome::Error, e),
                }
            }
            (Source::Mcp { server, tool }, _) => {
                let Some(host) = &self.host else {
                    return finish(rec, Outcome::Error, "No MCP server is running.".into());
                };
                let map = match parsed {
                    Value::Object(m) => m,
                    _ => Default::default(),
                };
                match host.call(server, tool, map, l.call_timeout, cancel) {
                    Ok(o) if o.is_error => finish(rec, Outcome::Error, o.text),
                    Ok(o) => finish(rec, Outcome::Ok, o.text),
                    Err(mcp::McpCallError::Cancelled) => {
                        finish(rec, Outcome::Cancelled, "Cancelled by the user.".into())
                    }
                    Err(e @ mcp::McpCallError::TimedOut { .. }) => {
                        finish(rec, Outcome::TimedOut, e.to_string())
                    }
                    Err(e) => finish(rec, Outcome::Error, e.to_string()),
                }
            }
            (Source::BuiltIn, None) => finish(rec, Outcome::Error, "not a built-in".into()),
        }
    }
}

/// A name the OpenAI API takes: letters, digits, `_` and `-`, at most 64.
fn llm_name(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect()
}

/// The persona's list: a tool's name, `SERVER/TOOL`, `SERVER/*`, or a name ending
/// in `*`.
fn persona_allows(list: Option<&[String]>, t: &ToolInfo) -> bool {
    let Some(list) = list else { return true };
    list.iter().any(|p| {
        let p = p.trim();
        if p == t.name {
            return true;
        }
        if let Some(prefix) = p.strip_suffix('*') {
            if !prefix.contains('/') && t.name.starts_with(prefix) {
                return true;
            }
        }
        match &t.source {
            Source::Mcp { server, tool } => {
                p == format!("{server}/{tool}") || p == format!("{server}/*")
            }
            Source::BuiltIn => false,
        }
    })
}

/// `text` cut to at most `max` bytes (at a character boundary), saying how much went.
pub fn bound(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}\n… ({} more bytes cut)", &text[..end], text.len() - end)
}

/// One line of at most `max` characters.
pub fn shorten(s: &str, max: usize) -> String {
    let one: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    match one.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &one[..i]),
        None => one,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    fn toolbox(
        access: Access,
        persona: Option<Vec<String>>,
        desk: Arc<Desk>,
    ) -> (ToolBox, Arc<Mutex<Vec<ToolActivity>>>, tempfile::TempDir) {
        toolbox_for(access, persona, true, desk)
    }

    fn toolbox_for(
        access: Access,
        persona: Option<Vec<String>>,
        every_persona: bool,
        desk: Arc<Desk>,
    ) -> (ToolBox, Arc<Mutex<Vec<ToolActivity>>>, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("mcp.json");
        std::fs::write(&cfg, r#"{"mcpServers": {}}"#).unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        let started = ToolBox::start(
            &ToolsOptions {
                config: Some(cfg),
                access: Some(access),
                persona_tools: persona,
                every_persona,
                workdir: dir.path().to_path_buf(),
                llm_url: Some("http://127.0.0.1:9/v1".into()),
            },
            desk,
            Box::new(move |a| s.lock().unwrap().push(a)),
        )
        .unwrap();
        (started.tools, seen, dir)
    }

    #[test]
    fn read_only_offers_only_what_changes_nothing() {
        let (tb, _, _d) = toolbox(Access::ReadOnly, None, Desk::nobody());
        let offered: Vec<_> = tb.offered().map(|t| t.name.as_str()).collect();
        assert_eq!(offered, ["date_time", "look_at_screen"]);
        let r = tb.call("run_shell", r#"{"command":"echo hi"}"#, &Cancel::new());
        assert_eq!(r.outcome, Outcome::Unavailable);
        assert!(r.result.contains("read-only"), "{}", r.result);
    }

    #[test]
    fn a_persona_list_denies_the_shell() {
        let (tb, _, _d) = toolbox(
            Access::Ask,
            Some(vec!["date_time".into(), "write_*".into()]),
            Desk::nobody(),
        );
        let offered: Vec<_> = tb.offered().map(|t| t.name.as_str()).collect();
        assert_eq!(offered, ["date_time", "write_file"]);
        let r = tb.call("run_shell", r#"{"command":"echo hi"}"#, &Cancel::new());
        assert!(
            r.result.contains("not allowed for this persona"),
            "{}",
            r.result
        );
    }

    #[test]
    fn a_persona_switched_to_changes_the_tools_offered_and_allowed() {
        let (tb, _, _d) = toolbox(Access::Ask, Some(vec!["date_time".into()]), Desk::nobody());
        let offered = |tb: &ToolBox| tb.offered().map(|t| t.name.clone()).collect::<Vec<_>>();
        assert_eq!(offered(&tb), ["date_time"]);
        // A persona that may write files, but not run the shell.
        tb.set_persona_tools(Some(vec!["write_file".into()]));
        assert_eq!(offered(&tb), ["write_file"]);
        let r = tb.call("date_time", "{}", &Cancel::new());
        assert!(
            r.result.contains("not allowed for this persona"),
            "{}",
            r.result
        );
        let r = tb.call("run_shell", r#"{"command":"echo hi"}"#, &Cancel::new());
        assert!(
            r.result.contains("not allowed for this persona"),
            "{}",
            r.result
        );
        // One with no list: everything the access allows.
        tb.set_persona_tools(None);
        assert_eq!(offered(&tb).len(), tb.tools().len());
        let r = tb.call("date_time", "{}", &Cancel::new());
        assert_eq!(r.outcome, Outcome::Ok, "{r:?}");
    }

    /// Tools only because some persona lists them: a persona that lists none gets
    /// none, and switching to one that lists some brings them.
    #[test]
    fn tools_only_for_the_personas_that_list_them() {
        let (tb, _, _d) = toolbox_for(Access::ReadOnly, None, false, Desk::nobody());
        assert_eq!(tb.offered().count(), 0);
        assert!(
            tb.any_for_some_persona(),
            "the LLM still gets the tool loop"
        );
        assert!(tb.tools().iter().all(|t| t.offer == Offer::PersonaUsesNone));
        let r = tb.call("date_time", "{}", &Cancel::new());
        assert_eq!(r.outcome, Outcome::Unavailable);
        tb.set_persona_tools(Some(vec!["date_time".into()]));
        let offered: Vec<_> = tb.offered().map(|t| t.name.clone()).collect();
        assert_eq!(offered, ["date_time"]);
        let r = tb.call("date_time", "{}", &Cancel::new());
        assert_eq!(r.outcome, Outcome::Ok, "{r:?}");
        let listing = tb.listing(Some(&["date_time".to_string()]));
        assert_eq!(
            listing[0].line(Access::Ask),
            "date_time (built-in): offered"
        );
        tb.set_persona_tools(None);
        assert_eq!(tb.offered().count(), 0);
    }

    /// The screen goes to the LLM server: with `--tools-access ask` the question says
    /// where, and a refusal takes no screenshot; read-only offers it without asking.
    #[test]
    fn looking_at_the_screen_asks_where_the_image_goes() {
        let (tb, seen, _d) = toolbox(Access::Ask, None, Desk::nobody());
        let r = tb.call("look_at_screen", "{}", &Cancel::new());
        assert_eq!(r.outcome, Outcome::Refused, "{r:?}");
        assert!(r.image.is_none());
        let seen = seen.lock().unwrap();
        assert!(
            matches!(&seen[0], ToolActivity::Asking { question, .. }
                if question.contains("screenshot") && question.contains("http://127.0.0.1:9/v1")),
            "the question says where the image goes: {seen:?}"
        );
        let (ro, seen, _d) = toolbox(Access::ReadOnly, None, Desk::nobody());
        let shot = ro
            .tools()
            .iter()
            .find(|t| t.name == "look_at_screen")
            .unwrap();
        assert_eq!(
            (shot.offer, shot.asks(Access::ReadOnly)),
            (Offer::Offered, false)
        );
        ro.call("look_at_screen", "{}", &Cancel::new());
        assert!(
            !seen
                .lock()
                .unwrap()
                .iter()
                .any(|a| matches!(a, ToolActivity::Asking { .. })),
            "read-only does not ask"
        );
    }

    #[test]
    fn the_shell_asks_first_and_a_refusal_runs_nothing() {
        let (tb, seen, d) = toolbox(Access::Ask, None, Desk::nobody());
        let marker = d.path().join("ran");
        let cmd = format!(r#"{{"command":"touch {}"}}"#, marker.display());
        let r = tb.call("run_shell", &cmd, &Cancel::new());
        assert_eq!(r.outcome, Outcome::Refused);
        assert!(r.consent.contains("headless"), "{}", r.consent);
        assert!(!marker.exists(), "a refused command does not run");
        let seen = seen.lock().unwrap();
        assert!(
            matches!(&seen[0], ToolActivity::Asking { question, .. } if question.contains("touch")),
            "the question shows the command: {seen:?}"
        );
    }

    #[test]
    fn the_shell_runs_once_allowed_by_a_key() {
        let desk = Desk::interactive();
        let (tb, _, d) = toolbox(Access::Ask, None, desk.clone());
        let answer = std::thread::spawn(move || {
            while !desk.waiting() {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            desk.answer(true, "key");
        });
        let r = tb.call(
            "run_shell",
            r#"{"command":"echo made > f.txt; cat f.txt"}"#,
            &Cancel::new(),
        );
        answer.join().unwrap();
        assert_eq!(r.outcome, Outcome::Ok, "{r:?}");
        assert_eq!(r.consent, "given (key)");
        assert!(
            r.result.contains("exit code: 0") && r.result.contains("made"),
            "{}",
            r.result
        );
        assert!(d.path().join("f.txt").exists());
    }

    #[test]
    fn results_are_bounded_at_a_character_boundary() {
        let s = "é".repeat(100);
        let b = bound(&s, 11);
        assert!(
            b.starts_with("ééééé") && b.contains("more bytes cut"),
            "{b}"
        );
    }
}
