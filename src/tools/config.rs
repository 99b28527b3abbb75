//! Where the tools come from and what they may do: `mcp.json` in the `mcpServers` shape
//! other MCP hosts read (`command`, `args`, `env` for a stdio server; `url` for a
//! streamable HTTP one), plus an `assistant` section of our own (other hosts ignore it)
//! for the limits and what the user allows.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What tools may do without asking (`--tools-access`, or `assistant.access`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Access {
    /// Only tools that change nothing are offered (the default).
    #[default]
    ReadOnly,
    /// Every tool is offered; a destructive one, and every built-in action that
    /// changes anything, asks the user first.
    Ask,
}

/// One server as the file gives it.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct RawServer {
    command: Option<String>,
    args: Vec<String>,
    env: BTreeMap<String, String>,
    url: Option<String>,
    disabled: bool,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct RawAssistant {
    access: Option<Access>,
    /// Directories `write_file` may write into besides the working directory.
    allow_write: Vec<PathBuf>,
    call_timeout_s: Option<f64>,
    max_result_bytes: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct RawFile {
    mcp_servers: BTreeMap<String, RawServer>,
    assistant: RawAssistant,
}

/// How to reach one MCP server.
#[derive(Debug, Clone, PartialEq)]
pub enum ServerSpec {
    Stdio {
        command: String,
        args: Vec<String>,
        env: BTreeMap<String, String>,
    },
    Http {
        url: String,
    },
}

/// The bounds every call keeps.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// From the call to its result (a tool that never answers is cancelled then).
    pub call_timeout: Duration,
    /// The most bytes of a result the LLM is given (the rest is cut, and says so).
    pub max_result_bytes: usize,
    /// From starting a server to its list of tools.
    pub start_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            call_timeout: Duration::from_secs(30),
            max_result_bytes: 16 * 1024,
            start_timeout: Duration::from_secs(20),
        }
    }
}

/// The whole configuration, read and checked.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ToolsConfig {
    /// Servers by name, in name order.
    pub servers: Vec<(String, ServerSpec)>,
    pub access: Access,
    pub allow_write: Vec<PathBuf>,
    pub limits: Limits,
}

/// `$XDG_CONFIG_HOME/assistant/mcp.json` (or the platform's config directory).
pub fn default_path() -> Option<PathBuf> {
    std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| directories::BaseDirs::new().map(|d| d.config_dir().to_path_buf()))
        .map(|d| d.join("assistant").join("mcp.json"))
}

/// Read `path`; a file that is not there is no servers when it was not asked for by
/// name (`explicit` false), and an error when it was.
pub fn load(path: &Path, explicit: bool) -> Result<ToolsConfig, String> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => {
            return Ok(ToolsConfig::default())
        }
        Err(e) => {
            return Err(format!(
                "{}: cannot read the MCP configuration: {e}",
                path.display()
            ))
        }
    };
    parse(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// Parse the file's text.
pub fn parse(text: &str) -> Result<ToolsConfig, String> {
    let raw: RawFile = serde_json::from_str(text).map_err(|e| {
        format!(
            "not a valid MCP configuration ({e}); expected {{\"mcpServers\": {{\"NAME\": {{\"command\": …, \"args\": […]}}}}}}"
        )
    })?;
    let mut servers = Vec::new();
    for (name, s) in raw.mcp_servers {
        if s.disabled {
            continue;
        }
        let spec = match (s.command, s.url) {
            (Some(command), None) if !command.trim().is_empty() => ServerSpec::Stdio {
                command,
                args: s.args,
                env: s.env,
            },
            (None, Some(url)) if url.starts_with("http://") || url.starts_with("https://") => {
                ServerSpec::Http { url }
            }
            (None, Some(url)) => {
                return Err(format!(
                    "server `{name}`: url `{url}` is not an http(s) URL"
                ))
            }
            (Some(_), Some(_)) => {
                return Err(format!(
                    "server `{name}` has both `command` and `url`; give one"
                ))
            }
            _ => {
                return Err(format!(
                    "server `{name}` has neither `command` (a stdio server) nor `url` (streamable HTTP)"
                ))
            }
        };
        servers.push((name, spec));
    }
    let a = raw.assistant;
    let mut limits = Limits::default();
    if let Some(s) = a.call_timeout_s {
        if !(s > 0.0 && s <= 3600.0) {
            return Err(format!(
                "assistant.callTimeoutS = {s}: give seconds between 0 and 3600"
            ));
        }
        limits.call_timeout = Duration::from_secs_f64(s);
    }
    if let Some(n) = a.max_result_bytes {
        limits.max_result_bytes = n.clamp(256, 1 << 20);
    }
    Ok(ToolsConfig {
        servers,
        access: a.access.unwrap_or_default(),
        allow_write: a.allow_write,
        limits,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mcp_servers_shape_with_stdio_and_http() {
        let c = parse(
            r#"{"mcpServers": {
                "fs": {"command": "npx", "args": ["-y", "x", "/tmp"], "env": {"A": "1"}},
                "web": {"url": "http://127.0.0.1:9/mcp"},
                "off": {"command": "x", "disabled": true}
            }, "assistant": {"access": "ask", "callTimeoutS": 5}}"#,
        )
        .unwrap();
        assert_eq!(c.servers.len(), 2);
        assert_eq!(c.servers[0].0, "fs");
        assert!(matches!(&c.servers[1].1, ServerSpec::Http { url } if url.ends_with("/mcp")));
        assert_eq!(c.access, Access::Ask);
        assert_eq!(c.limits.call_timeout, Duration::from_secs(5));
    }

    #[test]
    fn a_server_without_a_way_to_reach_it_is_named() {
        let e = parse(r#"{"mcpServers": {"bad": {"args": []}}}"#).unwrap_err();
        assert!(e.contains("`bad`") && e.contains("command"), "{e}");
        let e = parse("{ not json").unwrap_err();
        assert!(e.contains("mcpServers"), "{e}");
    }

    #[test]
    fn a_missing_default_file_is_no_servers_but_a_named_one_is_an_error() {
        let p = Path::new("/nonexistent/assistant/mcp.json");
        assert_eq!(load(p, false).unwrap(), ToolsConfig::default());
        assert!(load(p, true).unwrap_err().contains("cannot read"));
    }
}
