//! The MCP host against real servers that no one here wrote, started by the tests:
//! `@modelcontextprotocol/server-everything` and `@modelcontextprotocol/server-filesystem`
//! from npm, `mcp-server-time` from PyPI (both installed into tools/mcp_servers by
//! `./dev test`), and a hostile server
//! (a Python script written here) that sends a huge result, garbage, never answers,
//! or dies mid-call. Every call is bounded; a broken server never stops the others.

use assistant::bus::{Cancel, ToolActivity};
use assistant::tools::config::Access;
use assistant::tools::consent::Desk;
use assistant::tools::{Effect, Offer, Outcome, Started, ToolBox, ToolsOptions};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn npm_server(bin: &str) -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tools/mcp_servers/node_modules/.bin")
        .join(bin);
    assert!(
        p.exists(),
        "{} is missing: run `npm ci --prefix tools/mcp_servers` (./dev test does)",
        p.display()
    );
    p
}

/// The hostile server: newline-delimited JSON-RPC by hand. Every message it reads is
/// appended to `$LOG`, so that a test can see what the host sent (a cancellation).
const HOSTILE: &str = r#"
import json, os, sys, time
log = open(os.environ["LOG"], "a")
def send(o):
    sys.stdout.write(json.dumps(o) + "\n"); sys.stdout.flush()
ro = {"readOnlyHint": True}
tools = [{"name": n, "description": n, "inputSchema": {"type": "object"}, "annotations": ro}
         for n in ["huge", "big", "garbage", "never", "die", "ok"]]
for line in sys.stdin:
    log.write(line); log.flush()
    m = json.loads(line)
    meth, i = m.get("method"), m.get("id")
    if meth == "initialize":
        send({"jsonrpc": "2.0", "id": i, "result": {"protocolVersion": m["params"]["protocolVersion"],
              "capabilities": {"tools": {}}, "serverInfo": {"name": "hostile", "version": "1"}}})
    elif meth == "tools/list":
        send({"jsonrpc": "2.0", "id": i, "result": {"tools": tools}})
    elif meth == "tools/call":
        name = m["params"]["name"]
        text = lambda t: {"jsonrpc": "2.0", "id": i, "result": {"content": [{"type": "text", "text": t}]}}
        if name == "huge":
            send(text("x" * (40 * 1024 * 1024)))
        elif name == "big":
            send(text("y" * (1024 * 1024)))
        elif name == "garbage":
            sys.stdout.write("{this is not json\n"); sys.stdout.flush()
            send(text("after the garbage"))
        elif name == "never":
            pass
        elif name == "die":
            sys.stderr.write("hostile: dying on purpose\n"); sys.stderr.flush()
            os._exit(3)
        else:
            send(text("fine"))
"#;

struct Box_ {
    tb: ToolBox,
    seen: Arc<Mutex<Vec<ToolActivity>>>,
    notices: Vec<String>,
    dir: tempfile::TempDir,
}

fn start(servers: serde_json::Value, timeout_s: f64) -> Box_ {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("mcp.json");
    let body = serde_json::json!({
        "mcpServers": servers,
        "assistant": {"access": "ask", "callTimeoutS": timeout_s},
    });
    std::fs::write(&cfg, body.to_string()).unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    let Started { tools, notices } = ToolBox::start(
        &ToolsOptions {
            config: Some(cfg),
            access: Some(Access::Ask),
            persona_tools: None,
            every_persona: true,
            workdir: dir.path().to_path_buf(),
            llm_url: None,
        },
        Desk::nobody(),
        Box::new(move |a| s.lock().unwrap().push(a)),
    )
    .unwrap();
    Box_ {
        tb: tools,
        seen,
        notices,
        dir,
    }
}

fn hostile(dir: &Path) -> serde_json::Value {
    let script = dir.join("hostile.py");
    std::fs::write(&script, HOSTILE).unwrap();
    serde_json::json!({
        "command": "python3",
        "args": [script],
        "env": {"LOG": dir.join("hostile.log")},
    })
}

#[test]
fn server_everything_lists_its_tools_and_answers_a_call() {
    let b = start(
        serde_json::json!({"everything": {"command": npm_server("mcp-server-everything")}}),
        30.0,
    );
    assert!(b.notices.is_empty(), "{:?}", b.notices);
    let echo =
        b.tb.tools()
            .iter()
            .find(|t| t.name == "echo")
            .expect("echo");
    assert_eq!(echo.effect, Effect::ReadOnly);
    assert_eq!(echo.offer, Offer::Offered);
    assert!(echo.origin().contains("everything"));
    let r =
        b.tb.call("get-sum", r#"{"a": 19, "b": 23}"#, &Cancel::new());
    assert_eq!(r.outcome, Outcome::Ok, "{r:?}");
    assert!(r.result.contains("42"), "{}", r.result);
    let r =
        b.tb.call("echo", r#"{"message": "over MCP"}"#, &Cancel::new());
    assert!(r.result.contains("over MCP"), "{}", r.result);
    // The journal's record: the call, its arguments, consent and result.
    let seen = b.seen.lock().unwrap();
    assert!(seen.iter().any(|a| matches!(a,
        ToolActivity::Done { tool, args, consent, outcome, result, .. }
            if tool == "get-sum" && args.contains("19") && consent == "not needed"
               && outcome == "ok" && result.contains("42"))));
}

#[test]
fn a_cancelled_call_returns_at_once_and_the_server_is_told() {
    let dir = tempfile::tempdir().unwrap();
    let b = start(
        serde_json::json!({
            "everything": {"command": npm_server("mcp-server-everything")},
            "hostile": hostile(dir.path()),
        }),
        60.0,
    );
    // server-everything's long operation: 20 s, cancelled after 300 ms.
    let cancel = Cancel::new();
    let c2 = cancel.clone();
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        c2.cancel();
    });
    let started = Instant::now();
    let r = b.tb.call(
        "trigger-long-running-operation",
        r#"{"duration": 20, "steps": 4}"#,
        &cancel,
    );
    t.join().unwrap();
    assert_eq!(r.outcome, Outcome::Cancelled, "{r:?}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    // The hostile server logs what it receives: MCP's cancellation for its call.
    let cancel = Cancel::new();
    let c2 = cancel.clone();
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        c2.cancel();
    });
    let r = b.tb.call("never", "{}", &cancel);
    t.join().unwrap();
    assert_eq!(r.outcome, Outcome::Cancelled);
    let log = dir.path().join("hostile.log");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("notifications/cancelled") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no cancellation was sent: {text}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // The server is still usable after it.
    assert_eq!(b.tb.call("ok", "{}", &Cancel::new()).result, "fine");
}

#[test]
fn a_hostile_server_is_bounded_in_size_and_time() {
    let dir = tempfile::tempdir().unwrap();
    let b = start(serde_json::json!({"hostile": hostile(dir.path())}), 3.0);
    assert!(b.notices.is_empty(), "{:?}", b.notices);
    let max = b.tb.limits().max_result_bytes;
    // 1 MiB of text: the LLM gets the first 16 KiB, and is told the rest was cut.
    let r = b.tb.call("big", "{}", &Cancel::new());
    assert_eq!(r.outcome, Outcome::Ok);
    assert!(r.result.len() < max + 100, "{}", r.result.len());
    assert!(r.result.contains("more bytes cut"));
    // A tool that never answers: cancelled at the call timeout (3 s here).
    let t = Instant::now();
    let r = b.tb.call("never", "{}", &Cancel::new());
    assert_eq!(r.outcome, Outcome::TimedOut, "{r:?}");
    assert!(r.result.contains("no result within 3"), "{}", r.result);
    assert!(t.elapsed() < Duration::from_secs(15));
    // A line that is not JSON: skipped or an error, never a hang.
    let t = Instant::now();
    let r = b.tb.call("garbage", "{}", &Cancel::new());
    eprintln!(
        "garbage: {:?}: {}",
        r.outcome,
        assistant::tools::shorten(&r.result, 200)
    );
    assert!(t.elapsed() < Duration::from_secs(15), "{r:?}");
    assert!(r.result.len() < max + 100);
    // 40 MiB in one message: over the transport's line limit; bounded either way.
    let t = Instant::now();
    let r = b.tb.call("huge", "{}", &Cancel::new());
    eprintln!(
        "huge: {:?} in {:?}: {}",
        r.outcome,
        t.elapsed(),
        assistant::tools::shorten(&r.result, 200)
    );
    assert!(t.elapsed() < Duration::from_secs(30), "{r:?}");
    assert!(r.result.len() < max + 100, "{}", r.result.len());
}

#[test]
fn a_server_that_dies_mid_call_is_a_clear_error_and_the_others_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let b = start(
        serde_json::json!({
            "hostile": hostile(dir.path()),
            "everything": {"command": npm_server("mcp-server-everything")},
        }),
        10.0,
    );
    let t = Instant::now();
    let r = b.tb.call("die", "{}", &Cancel::new());
    assert_eq!(r.outcome, Outcome::Error, "{r:?}");
    assert!(
        r.result.contains("hostile"),
        "the error names the server: {}",
        r.result
    );
    assert!(
        t.elapsed() < Duration::from_secs(9),
        "not a timeout: {:?}",
        t.elapsed()
    );
    // Its next call fails at once; the other server answers.
    let r = b.tb.call("ok", "{}", &Cancel::new());
    assert_eq!(r.outcome, Outcome::Error);
    assert!(r.result.contains("not running"), "{}", r.result);
    let r = b.tb.call("get-sum", r#"{"a": 1, "b": 2}"#, &Cancel::new());
    assert_eq!(r.outcome, Outcome::Ok, "{r:?}");
}

#[test]
fn a_server_that_cannot_start_is_a_notice_and_the_rest_go_on() {
    let b = start(
        serde_json::json!({
            "missing": {"command": "/nonexistent/mcp-server"},
            "quits": {"command": "sh", "args": ["-c", "echo 'no config for me' >&2; exit 1"]},
            "everything": {"command": npm_server("mcp-server-everything")},
        }),
        10.0,
    );
    assert_eq!(b.notices.len(), 2, "{:?}", b.notices);
    assert!(
        b.notices
            .iter()
            .any(|n| n.contains("`missing`") && n.contains("not found")),
        "{:?}",
        b.notices
    );
    assert!(
        b.notices.iter().any(|n| n.contains("`quits`")),
        "{:?}",
        b.notices
    );
    assert!(b.tb.tools().iter().any(|t| t.name == "echo"));
}

#[test]
fn server_filesystem_reads_freely_and_asks_before_it_writes() {
    let root = tempfile::tempdir().unwrap();
    let root_path = root.path().canonicalize().unwrap();
    std::fs::write(root_path.join("notes.txt"), "the answer is 42\n").unwrap();
    let b = start(
        serde_json::json!({"filesystem": {
            "command": npm_server("mcp-server-filesystem"),
            "args": [root_path],
        }}),
        20.0,
    );
    assert!(b.notices.is_empty(), "{:?}", b.notices);
    let args = serde_json::json!({"path": root_path.join("notes.txt")}).to_string();
    let r = b.tb.call("read_text_file", &args, &Cancel::new());
    assert_eq!(r.outcome, Outcome::Ok, "{r:?}");
    assert!(r.result.contains("the answer is 42"));
    // Its write_file meets the built-in's name: it is offered under its server's.
    let w =
        b.tb.tools()
            .iter()
            .find(|t| t.name == "filesystem__write_file")
            .expect("the server's write_file, renamed");
    assert_eq!(w.effect, Effect::Destructive);
    let target = root_path.join("new.txt");
    let args = serde_json::json!({"path": target, "content": "hi"}).to_string();
    let r = b.tb.call("filesystem__write_file", &args, &Cancel::new());
    assert_eq!(
        r.outcome,
        Outcome::Refused,
        "headless: nobody to ask: {r:?}"
    );
    assert!(!target.exists(), "a refused write does not happen");
    let seen = b.seen.lock().unwrap();
    assert!(seen.iter().any(|a| matches!(a,
        ToolActivity::Asking { question, .. } if question.contains("write_file") && question.contains("new.txt"))),
        "the question says exactly what will run: {seen:?}");
    let _ = &b.dir;
}

#[test]
fn a_python_server_from_pypi_answers_a_call() {
    let bin =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/mcp_servers/py/bin/mcp-server-time");
    assert!(
        bin.exists(),
        "{} is missing: ./dev test installs it (python3 -m venv tools/mcp_servers/py; its pip install -r tools/mcp_servers/requirements.txt)",
        bin.display()
    );
    let b = start(
        serde_json::json!({"time": {"command": bin, "args": ["--local-timezone", "UTC"]}}),
        30.0,
    );
    assert!(b.notices.is_empty(), "{:?}", b.notices);
    let t =
        b.tb.tools()
            .iter()
            .find(|t| t.name == "convert_time")
            .expect("convert_time");
    assert_eq!(t.effect, Effect::ReadOnly);
    let r = b.tb.call(
        "convert_time",
        r#"{"source_timezone": "Europe/Paris", "time": "16:30", "target_timezone": "Asia/Tokyo"}"#,
        &Cancel::new(),
    );
    assert_eq!(r.outcome, Outcome::Ok, "{r:?}");
    assert!(r.result.contains("00:30:00+09:00"), "{}", r.result);
}

/// A streamable HTTP server on 127.0.0.1, written with the Python MCP SDK (`mcp`, which
/// mcp-server-time brings along).
const HTTP_SERVER: &str = r#"
import sys
from mcp.server.mcpserver import MCPServer
from mcp_types import ToolAnnotations
mcp = MCPServer("adder")
@mcp.tool(annotations=ToolAnnotations(readOnlyHint=True))
def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b
@mcp.tool()
def forget(name: str) -> str:
    """No annotations: destructive, as MCP's defaults say."""
    return "forgotten " + name
mcp.run(transport="streamable-http", host="127.0.0.1", port=int(sys.argv[1]))
"#;

struct Child(std::process::Child);
impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_streamable_http_server_by_url() {
    let py = Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/mcp_servers/py/bin/python");
    assert!(
        py.exists(),
        "{} is missing: ./dev test makes it",
        py.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("http_server.py");
    std::fs::write(&script, HTTP_SERVER).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let _server = Child(
        std::process::Command::new(&py)
            .arg(&script)
            .arg(port.to_string())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the HTTP server did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    let b = start(
        serde_json::json!({"adder": {"url": format!("http://127.0.0.1:{port}/mcp")}}),
        20.0,
    );
    assert!(b.notices.is_empty(), "{:?}", b.notices);
    assert!(b
        .tb
        .tools()
        .iter()
        .any(|t| t.name == "add" && t.origin() == "mcp: adder"));
    let r = b.tb.call("add", r#"{"a": 40, "b": 2}"#, &Cancel::new());
    assert_eq!(r.outcome, Outcome::Ok, "{r:?}");
    assert!(r.result.contains("42"), "{}", r.result);
    // A tool that says nothing of itself is destructive (MCP's default): it asks.
    let r = b.tb.call("forget", r#"{"name": "x"}"#, &Cancel::new());
    assert_eq!(r.outcome, Outcome::Refused, "{r:?}");
}
