//! The MCP host: each configured server started (a child process over stdio, or a
//! streamable HTTP endpoint) through the official Rust SDK, `rmcp`, its tools listed,
//! and calls made with a timeout, a cancel and a bounded result.
//!
//! The servers live on a small tokio runtime of their own for the whole session; the
//! cascade's LLM thread blocks on a call. A call that is cancelled (barge-in) or runs
//! out of time is dropped, and rmcp then sends the server MCP's
//! `notifications/cancelled` for it.

use super::config::{Limits, ServerSpec};
use crate::bus::Cancel;
use rmcp::service::{RoleClient, RunningService, ServiceExt};
use serde_json::Value;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How often a call looks at its cancel flag.
const CANCEL_POLL: Duration = Duration::from_millis(10);
/// Lines of a server's stderr kept to explain its failure.
const STDERR_LINES: usize = 12;

/// One tool a server offers.
#[derive(Debug, Clone, PartialEq)]
pub struct McpTool {
    pub server: String,
    pub name: String,
    pub description: String,
    /// Its JSON schema for the arguments.
    pub input_schema: Value,
    /// MCP's `readOnlyHint` (default false).
    pub read_only: bool,
    /// MCP's `destructiveHint` (default true, as the specification says, for a
    /// tool that is not read-only).
    pub destructive: bool,
}

/// A call's result as the server gave it: text for the LLM (not yet bounded), and
/// whether the tool said it failed (`isError`).
#[derive(Debug, Clone, PartialEq)]
pub struct McpOutput {
    pub text: String,
    pub is_error: bool,
}

/// Why a call gave no result.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum McpCallError {
    #[error("cancelled")]
    Cancelled,
    #[error("the server `{server}` gave no result within {secs} s")]
    TimedOut { server: String, secs: f64 },
    #[error("the server `{server}` failed the call: {message}")]
    Failed { server: String, message: String },
    #[error("the server `{server}` is not running{why}")]
    Gone { server: String, why: String },
    #[error("no server is named `{0}`")]
    NoServer(String),
}

struct Server {
    name: String,
    client: RunningService<RoleClient, ()>,
    stderr: Arc<Mutex<VecDeque<String>>>,
}

/// The running servers.
pub struct McpHost {
    rt: tokio::runtime::Runtime,
    servers: Vec<Server>,
    tools: Vec<McpTool>,
}

/// A server that did not start, and why, worded for the user.
#[derive(Debug, Clone, PartialEq)]
pub struct StartFailure {
    pub server: String,
    pub message: String,
}

impl McpHost {
    /// Start every server at once and list their tools; a server that fails (not
    /// found, exits, no answer within `limits.start_timeout`) is left out and reported.
    pub fn start(specs: &[(String, ServerSpec)], limits: &Limits) -> (Self, Vec<StartFailure>) {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("mcp-host")
            .enable_all()
            .build()
            .expect("a tokio runtime for the MCP host");
        // reqwest's rustls (the HTTP transport) takes the process's default provider.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let started =
            rt.block_on(futures_util::future::join_all(specs.iter().map(
                |(name, spec)| start_one(name.clone(), spec.clone(), limits.start_timeout),
            )));
        let mut servers = Vec::new();
        let mut tools = Vec::new();
        let mut failures = Vec::new();
        for r in started {
            match r {
                Ok((server, listed)) => {
                    tools.extend(listed);
                    servers.push(server);
                }
                Err(f) => failures.push(f),
            }
        }
        (Self { rt, servers, tools }, failures)
    }

    /// Every tool of every server that started, in server order.
    pub fn tools(&self) -> &[McpTool] {
        &self.tools
    }

    /// The servers that started.
    pub fn server_names(&self) -> Vec<String> {
        self.servers.iter().map(|s| s.name.clone()).collect()
    }

    /// Call `tool` on `server`. Blocks until the result, `timeout`, or `cancel`.
    pub fn call(
        &self,
        server: &str,
        tool: &str,
        arguments: serde_json::Map<String, Value>,
        timeout: Duration,
        cancel: &Cancel,
    ) -> Result<McpOutput, McpCallError> {
        let s = self
            .servers
            .iter()
            .find(|s| s.name == server)
            .ok_or_else(|| McpCallError::NoServer(server.to_string()))?;
        if s.client.is_closed() {
            return Err(McpCallError::Gone {
                server: server.to_string(),
                why: s.last_words(),
            });
        }
        let params =
            rmcp::model::CallToolRequestParams::new(tool.to_string()).with_arguments(arguments);
        let call = s.client.call_tool(params);
        self.rt.block_on(async {
            let mut call = std::pin::pin!(call);
            let deadline = tokio::time::sleep(timeout);
            let mut deadline = std::pin::pin!(deadline);
            let mut poll = tokio::time::interval(CANCEL_POLL);
            loop {
                if cancel.is_cancelled() {
                    // Dropping the call sends `notifications/cancelled`.
                    return Err(McpCallError::Cancelled);
                }
                tokio::select! {
                    biased;
                    r = &mut call => return match r {
                        Ok(result) => Ok(output(&result)),
                        Err(rmcp::ServiceError::TransportClosed) => Err(McpCallError::Gone {
                            server: server.to_string(),
                            why: format!(": it stopped during the call{}", s.last_words()),
                        }),
                        Err(e) => Err(McpCallError::Failed {
                            server: server.to_string(),
                            message: e.to_string(),
                        }),
                    },
                    _ = &mut deadline => return Err(McpCallError::TimedOut {
                        server: server.to_string(),
                        secs: timeout.as_secs_f64(),
                    }),
                    _ = poll.tick() => {}
                }
            }
        })
    }
}

impl Drop for McpHost {
    fn drop(&mut self) {
        // Closing each service ends its child process (rmcp kills what does not exit).
        for s in self.servers.drain(..) {
            let _ = self.rt.block_on(async {
                tokio::time::timeout(Duration::from_secs(2), s.client.cancel()).await
            });
        }
    }
}

impl Server {
    /// The end of what the server wrote to stderr, to explain why it stopped.
    fn last_words(&self) -> String {
        stderr_tail(&self.stderr)
    }
}

fn stderr_tail(lines: &Mutex<VecDeque<String>>) -> String {
    let lines = lines.lock().unwrap_or_else(|e| e.into_inner());
    match lines.back() {
        Some(l) => format!(" (it said: {})", super::shorten(l, 200)),
        None => String::new(),
    }
}

async fn start_one(
    name: String,
    spec: ServerSpec,
    timeout: Duration,
) -> Result<(Server, Vec<McpTool>), StartFailure> {
    let fail = |message: String| StartFailure {
        server: name.clone(),
        message,
    };
    let stderr = Arc::new(Mutex::new(VecDeque::new()));
    let work = async {
        let client = match &spec {
            ServerSpec::Stdio { command, args, env } => {
                let mut cmd = tokio::process::Command::new(command);
                cmd.args(args).envs(env).kill_on_drop(true);
                let (transport, err) = rmcp::transport::TokioChildProcess::builder(cmd)
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .map_err(|e| match e.kind() {
                        std::io::ErrorKind::NotFound => format!(
                            "`{command}` was not found (install it, or give its full path in mcp.json)"
                        ),
                        _ => format!("cannot start `{command}`: {e}"),
                    })?;
                if let Some(err) = err {
                    tokio::spawn(keep_stderr(name.clone(), err, stderr.clone()));
                }
                ().serve(transport).await.map_err(|e| {
                    format!(
                        "`{command}` did not answer MCP's initialize: {e}{}",
                        stderr_tail(&stderr)
                    )
                })?
            }
            ServerSpec::Http { url } => {
                let transport =
                    rmcp::transport::StreamableHttpClientTransport::from_uri(url.as_str());
                ().serve(transport)
                    .await
                    .map_err(|e| format!("{url} did not answer MCP's initialize: {e}"))?
            }
        };
        let listed = client
            .list_all_tools()
            .await
            .map_err(|e| format!("it did not list its tools: {e}"))?;
        Ok::<_, String>((client, listed))
    };
    let (client, listed) = match tokio::time::timeout(timeout, work).await {
        Ok(Ok(v)) => v,
        Ok(Err(m)) => return Err(fail(m)),
        Err(_) => {
            return Err(fail(format!(
                "no answer within {} s{}",
                timeout.as_secs_f64(),
                stderr_tail(&stderr)
            )))
        }
    };
    let tools = listed
        .into_iter()
        .map(|t| {
            let a = t.annotations.as_ref();
            let read_only = a.and_then(|a| a.read_only_hint).unwrap_or(false);
            McpTool {
                server: name.clone(),
                name: t.name.to_string(),
                description: t.description.as_deref().unwrap_or("").to_string(),
                input_schema: Value::Object((*t.input_schema).clone()),
                read_only,
                destructive: !read_only && a.and_then(|a| a.destructive_hint).unwrap_or(true),
            }
        })
        .collect();
    Ok((
        Server {
            name,
            client,
            stderr,
        },
        tools,
    ))
}

/// Read a server's stderr to its end (so that it never blocks on a full pipe),
/// keeping the last lines and logging each.
async fn keep_stderr(
    server: String,
    err: tokio::process::ChildStderr,
    keep: Arc<Mutex<VecDeque<String>>>,
) {
    use tokio::io::AsyncBufReadExt;
    let mut lines = tokio::io::BufReader::new(err).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        tracing::debug!("mcp server {server}: {line}");
        let mut k = keep.lock().unwrap_or_else(|e| e.into_inner());
        if k.len() == STDERR_LINES {
            k.pop_front();
        }
        k.push_back(super::shorten(&line, 500));
    }
}

/// The result as text for the LLM: text parts as they are, other parts named.
fn output(result: &rmcp::model::CallToolResult) -> McpOutput {
    // Read through JSON: the content types grow with the protocol's versions.
    let v = serde_json::to_value(result).unwrap_or(Value::Null);
    let mut parts = Vec::new();
    for c in v["content"].as_array().into_iter().flatten() {
        let part = match c["type"].as_str() {
            Some("text") => c["text"].as_str().unwrap_or("").to_string(),
            Some("image") | Some("audio") => format!(
                "[{} {}, {} bytes of base64]",
                c["type"].as_str().unwrap_or(""),
                c["mimeType"].as_str().unwrap_or("?"),
                c["data"].as_str().map_or(0, str::len)
            ),
            Some("resource") => match c["resource"]["text"].as_str() {
                Some(t) => t.to_string(),
                None => format!(
                    "[resource {}]",
                    c["resource"]["uri"].as_str().unwrap_or("?")
                ),
            },
            Some("resource_link") => {
                format!("[resource link {}]", c["uri"].as_str().unwrap_or("?"))
            }
            _ => c.to_string(),
        };
        parts.push(part);
    }
    if parts.is_empty() {
        if let Some(s) = v.get("structuredContent") {
            parts.push(s.to_string());
        }
    }
    McpOutput {
        text: parts.join("\n"),
        is_error: v["isError"].as_bool().unwrap_or(false),
    }
}
