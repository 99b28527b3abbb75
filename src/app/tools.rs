//! The session's tools, wired: the tool box started with the session (cascade mode,
//! when tools are configured), its activity sent as engine events for the screen and
//! the journal, and its findings for `doctor`.

use super::doctor::Finding;
use super::StartError;
use crate::bus::{EngineEvent, Talk};
use crate::cli::{EngineKind, RunArgs};
use crate::persona::Persona;
use crate::tools::consent::Desk;
use crate::tools::{SharedTools, Started, ToolBox, ToolsOptions};
use crossbeam_channel::Sender;
use std::sync::Arc;

/// Whether tools are on for every persona: an MCP configuration (named, or the
/// default file) or `--tools-access`.
fn for_every_persona(args: &RunArgs) -> bool {
    let c = &args.cascade;
    c.mcp_config.is_some()
        || c.tools_access.is_some()
        || crate::tools::config::default_path().is_some_and(|p| p.is_file())
}

/// Whether the run asks for tools: for every persona, or for a persona that lists them
/// (the start persona, or one the session may switch to).
pub fn wanted(args: &RunArgs, personas: &[Persona]) -> bool {
    for_every_persona(args)
        || args.cascade.persona_tools.is_some()
        || personas.iter().any(|p| p.tools.is_some())
}

fn options(args: &RunArgs) -> ToolsOptions {
    ToolsOptions {
        config: args.cascade.mcp_config.clone(),
        access: args.cascade.tools_access,
        persona_tools: args.cascade.persona_tools.clone(),
        every_persona: for_every_persona(args),
        workdir: std::env::current_dir().unwrap_or_else(|_| ".".into()),
        llm_url: args.cascade.llm_url.clone(),
    }
}

/// Start the tools for a cascade run that wants them; `interactive`: someone answers
/// consent questions (the TUI). A bad configuration ends the run; a server that does
/// not start is a notice.
pub fn start(
    args: &RunArgs,
    personas: &[Persona],
    interactive: bool,
    events: Sender<EngineEvent>,
    notices: &mut Vec<EngineEvent>,
) -> Result<SharedTools, StartError> {
    if args.engine != EngineKind::Cascade || args.connect.is_some() || !wanted(args, personas) {
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

/// What the TUI gets: the tool box (the overlay lists the active persona's tools) and
/// the consent desk; `None` for an engine that calls no tools (the overlay then says
/// so).
pub fn ui_context(args: &RunArgs, tools: &SharedTools) -> Option<crate::ui::context::ToolsContext> {
    if args.engine != EngineKind::Cascade || args.connect.is_some() {
        return None;
    }
    Some(crate::ui::context::ToolsContext {
        desk: tools
            .0
            .as_ref()
            .map_or_else(Desk::nobody, |tb| tb.desk().clone()),
        toolbox: tools.clone(),
    })
}

/// `doctor`'s tools section: the servers that start and each tool, offered or not to
/// the persona a run would start with (`--persona`, or the first), and which tools
/// the other personas that list some may use.
pub fn doctor(args: &RunArgs, catalog: &crate::persona::Catalog) -> Vec<Finding> {
    const S: &str = "tools";
    let start = match super::start_persona(args, catalog.clone()) {
        Ok(s) => s,
        Err(e) => {
            return vec![Finding::problem(
                S,
                e.message,
                "name a persona that exists (`assistant personas list`)",
            )]
        }
    };
    let personas = &start.catalog.personas;
    let args = &start.args;
    if !wanted(args, personas) {
        let path = crate::tools::config::default_path()
            .map_or_else(|| "mcp.json".into(), |p| p.display().to_string());
        return vec![Finding::ok(
            S,
            format!("no tools configured (no {path}, and no persona lists `tools`); the cascade only talks"),
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
    let active = &personas[start.index];
    out.push(Finding::ok(
        S,
        format!(
            "access: {access}; persona {}: {} of {} tools offered; servers: {}",
            active.name,
            tb.offered().count(),
            tb.tools().len(),
            if tb.servers().is_empty() {
                "none".to_string()
            } else {
                tb.servers().join(", ")
            }
        ),
    ));
    for t in tb.listing(active.tools.as_deref()) {
        out.push(Finding::ok(S, t.line(tb.access())));
    }
    for (i, p) in personas.iter().enumerate() {
        // A persona without a list gets what the first line says (all, or none).
        if i == start.index || p.tools.is_none() {
            continue;
        }
        let names: Vec<String> = tb
            .listing(p.tools.as_deref())
            .into_iter()
            .filter(|t| t.offer == crate::tools::Offer::Offered)
            .map(|t| t.name)
            .collect();
        out.push(Finding::ok(
            S,
            format!(
                "persona {} (on a switch): {}",
                p.name,
                if names.is_empty() {
                    "no tools".to_string()
                } else {
                    names.join(", ")
                }
            ),
        ));
    }
    out
}
