//! The session's tools, wired: the tool box started with the session (cascade mode,
//! when tools are configured), its activity sent as engine events for the screen and
//! the journal, and its findings for `doctor`.

use super::doctor::Finding;
use super::StartError;
use crate::bus::{EngineEvent, Talk};
use crate::cli::{EngineKind, RunArgs};
use crate::tools::consent::Desk;
use crate::tools::{Offer, SharedTools, Started, ToolBox, ToolsOptions};
use crossbeam_channel::Sender;
use std::sync::Arc;

/// Whether the run asks for tools: an MCP configuration (named, or the default file),
/// `--tools-access`, or a persona that lists them.
pub fn wanted(args: &RunArgs) -> bool {
    let c = &args.cascade;
    c.mcp_config.is_some()
        || c.tools_access.is_some()
        || c.persona_tools.is_some()
        || crate::tools::config::default_path().is_some_and(|p| p.is_file())
}

fn options(args: &RunArgs) -> ToolsOptions {
    ToolsOptions {
        config: args.cascade.mcp_config.clone(),
        access: args.cascade.tools_access,
        persona_tools: args.cascade.persona_tools.clone(),
        workdir: std::env::current_dir().unwrap_or_else(|_| ".".into()),
    }
}

/// Start the tools for a cascade run that wants them; `interactive`: someone answers
/// consent questions (the TUI). A bad configuration ends the run; a server that does
/// not start is a notice.
pub fn start(
    args: &RunArgs,
    interactive: bool,
    events: Sender<EngineEvent>,
    notices: &mut Vec<EngineEvent>,
) -> Result<SharedTools, StartError> {
    if args.engine != EngineKind::Cascade || args.connect.is_some() || !wanted(args) {
        return Ok(SharedTools::default());
    }
    let desk = if interactive {
        Desk::interactive()
    } else {
        Desk::nobody()
    };
    let sink = Box::new(move |a| {
        let _ = events.send(EngineEvent::Talk(Talk::Tool(a)));
    });
    let Started { tools, notices: n } =
        ToolBox::start(&options(args), desk, sink).map_err(StartError::input)?;
    for m in n {
        notices.push(EngineEvent::warning(
            m,
            Some("check the server's entry in mcp.json (`assistant doctor` lists the tools that started)".into()),
        ));
    }
    Ok(SharedTools(Some(Arc::new(tools))))
}

/// What the TUI gets: the overlay's lines and the consent desk; `None` for an engine
/// that calls no tools (the overlay then says so).
pub fn ui_context(args: &RunArgs, tools: &SharedTools) -> Option<crate::ui::context::ToolsContext> {
    if args.engine != EngineKind::Cascade || args.connect.is_some() {
        return None;
    }
    Some(match &tools.0 {
        Some(tb) => crate::ui::context::ToolsContext {
            lines: tb.tools().iter().map(line).collect(),
            desk: tb.desk().clone(),
            toolbox: tools.clone(),
        },
        None => crate::ui::context::ToolsContext {
            lines: Vec::new(),
            desk: Desk::nobody(),
            toolbox: SharedTools::default(),
        },
    })
}

/// One tool on one line: name, where from, offered or why not, whether it asks.
pub fn line(t: &crate::tools::ToolInfo) -> String {
    let state = match t.offer {
        Offer::Offered => "offered",
        Offer::NotReadOnly => "not offered: changes things (--tools-access ask)",
        Offer::NotForPersona => "not offered: not in the persona's tools",
    };
    let asks = if t.effect == crate::tools::Effect::Destructive {
        ", asks first"
    } else {
        ""
    };
    format!("{} ({}{asks}): {state}", t.name, t.origin())
}

/// `doctor`'s tools section: the servers that start and each tool, offered or not.
pub fn doctor(args: &RunArgs) -> Vec<Finding> {
    const S: &str = "tools";
    if !wanted(args) {
        let path = crate::tools::config::default_path()
            .map_or_else(|| "mcp.json".into(), |p| p.display().to_string());
        return vec![Finding::ok(
            S,
            format!("no tools configured (no {path}); the cascade only talks"),
        )];
    }
    let started = match ToolBox::start(&options(args), Desk::nobody(), Box::new(|_| {})) {
        Ok(s) => s,
        Err(e) => {
            return vec![Finding::problem(
                S,
                e,
                "fix mcp.json (the `mcpServers` shape), or --mcp-config",
            )]
        }
    };
    let mut out: Vec<Finding> = started
        .notices
        .iter()
        .map(|n| Finding::warn(S, n.clone(), "check the server's entry in mcp.json"))
        .collect();
    let tb = &started.tools;
    let access = match tb.access() {
        crate::tools::config::Access::ReadOnly => "read-only",
        crate::tools::config::Access::Ask => "ask",
    };
    out.push(Finding::ok(
        S,
        format!(
            "access: {access}; {} of {} tools offered; servers: {}",
            tb.offered().count(),
            tb.tools().len(),
            if tb.servers().is_empty() {
                "none".to_string()
            } else {
                tb.servers().join(", ")
            }
        ),
    ));
    for t in tb.tools() {
        out.push(Finding::ok(S, line(t)));
    }
    out
}
