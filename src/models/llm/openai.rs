//! An OpenAI-compatible chat server (Ollama, llama.cpp's server, vLLM, OpenAI itself):
//! `POST …/v1/chat/completions` with `"stream": true`, its server-sent events read as
//! they come. Each reply runs on a current-thread tokio runtime of its own (reqwest is
//! async; `Llm::stream` blocks on the turn machine's thread), polled every
//! `CANCEL_POLL`: a cancelled reply drops the request and its connection at once.
//! Every wait is bounded: connecting, the first piece, the gap between chunks, the size.

use super::sse::SseParser;
use crate::bus::Cancel;
use crate::models::parts::{ChatRequest, ChatRole, Llm, LlmError};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// Where the API key is read from unless the options name another variable.
pub const DEFAULT_API_KEY_ENV: &str = "OPENAI_API_KEY";

/// How often a wait looks at the cancel flag.
const CANCEL_POLL: Duration = Duration::from_millis(10);

/// Bytes of an error body worth reading for its message.
const ERROR_BODY_BYTES: usize = 16 * 1024;

#[derive(Debug, Clone, PartialEq)]
pub struct OpenAiOptions {
    /// The server's root (`http://127.0.0.1:11434`), its `/v1`, or the full
    /// `/v1/chat/completions` URL.
    pub url: String,
    /// The model to ask for when the request names none.
    pub model: String,
    /// The environment variable holding the API key; unset or empty sends none
    /// (local servers need none).
    pub api_key_env: String,
    pub connect_timeout: Duration,
    /// From sending the request to the first piece of text: the server may load the
    /// model and read the whole prompt first.
    pub first_piece_timeout: Duration,
    /// The longest silence between chunks once text flows.
    pub chunk_gap_timeout: Duration,
    /// The most bytes of response body read for one reply.
    pub max_response_bytes: usize,
    /// Tokens the server's model holds, prompt and reply (the history is bounded to
    /// fit): the API does not say, so it is configured, or `DEFAULT_SERVER_CONTEXT`.
    pub context: usize,
}

/// The context assumed for a server's model: generous (today's chat models hold 8k
/// tokens or more). A server whose model holds less cuts the oldest part itself
/// (Ollama) or refuses with an HTTP error the user is shown; assumed too small, the
/// history would be lost for nothing.
pub const DEFAULT_SERVER_CONTEXT: usize = 8192;

impl OpenAiOptions {
    /// Default limits: 5 s to connect, 60 s to the first piece (Ollama loads a model
    /// on its first request), 20 s between chunks, 4 MiB of body.
    pub fn new(url: impl Into<String>, model: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            model: model.into(),
            api_key_env: DEFAULT_API_KEY_ENV.into(),
            connect_timeout: Duration::from_secs(5),
            first_piece_timeout: Duration::from_secs(60),
            chunk_gap_timeout: Duration::from_secs(20),
            max_response_bytes: 4 * 1024 * 1024,
            context: DEFAULT_SERVER_CONTEXT,
        }
    }
}

/// The chat endpoint for what the user gave as `--llm-url`.
pub fn chat_endpoint(url: &str) -> String {
    let u = url.trim().trim_end_matches('/');
    if u.ends_with("/chat/completions") {
        u.to_string()
    } else if u.ends_with("/v1") {
        format!("{u}/chat/completions")
    } else {
        format!("{u}/v1/chat/completions")
    }
}

pub struct OpenAiLlm {
    options: OpenAiOptions,
    endpoint: String,
    api_key: Option<String>,
}

impl OpenAiLlm {
    /// Checks the URL and reads the API key from its variable (now, not per reply).
    pub fn new(options: OpenAiOptions) -> Result<Self, LlmError> {
        let endpoint = chat_endpoint(&options.url);
        let ok = reqwest::Url::parse(&endpoint)
            .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some());
        if !ok {
            return Err(LlmError {
                message: format!("The LLM URL `{}` is not an http(s) URL.", options.url),
                remedy: "Give --llm-url as http://HOST:PORT (for Ollama, http://127.0.0.1:11434)."
                    .into(),
                transient: false,
            });
        }
        if options.model.trim().is_empty() {
            return Err(LlmError {
                message: format!("No model named for the LLM server at {}.", options.url),
                remedy: "Give --llm-model (for Ollama, a name from `ollama list`).".into(),
                transient: false,
            });
        }
        let api_key = std::env::var(&options.api_key_env)
            .ok()
            .map(|k| k.trim().to_string())
            .filter(|k| !k.is_empty());
        Ok(Self {
            options,
            endpoint,
            api_key,
        })
    }

    /// The URL replies are asked from.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    async fn reply(
        &self,
        body: Value,
        model: &str,
        cancel: &Cancel,
        on_piece: &mut dyn FnMut(&str),
        calls: &mut Vec<ToolCall>,
    ) -> Result<(), LlmError> {
        let o = &self.options;
        let client = reqwest::Client::builder()
            .connect_timeout(o.connect_timeout)
            // One connection per reply: dropping it is how a cancel stops the server.
            .pool_max_idle_per_host(0)
            .build()
            .map_err(|e| self.error(format!("cannot set up HTTP: {}", chain(&e)), "", false))?;
        let mut req = client
            .post(&self.endpoint)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(reqwest::header::ACCEPT, "text/event-stream")
            .body(body.to_string());
        if let Some(k) = &self.api_key {
            req = req.bearer_auth(k);
        }
        let first_deadline = Instant::now() + o.first_piece_timeout;
        let mut resp = match wait(req.send(), first_deadline, cancel).await {
            Waited::Cancelled => return Ok(()),
            Waited::TimedOut => return Err(self.slow(None)),
            Waited::Done(Err(e)) => return Err(self.send_error(&e)),
            Waited::Done(Ok(r)) => r,
        };
        if !resp.status().is_success() {
            let status = resp.status();
            let mut text = Vec::new();
            let deadline = Instant::now() + Duration::from_secs(5);
            while text.len() < ERROR_BODY_BYTES {
                match wait(resp.chunk(), deadline, cancel).await {
                    Waited::Done(Ok(Some(b))) => text.extend_from_slice(&b),
                    Waited::Cancelled => return Ok(()),
                    _ => break,
                }
            }
            return Err(self.http_error(status.as_u16(), model, &String::from_utf8_lossy(&text)));
        }
        // A server that ignores `stream` answers with one JSON completion.
        let whole_json = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| t.starts_with("application/json"));
        let mut parser = SseParser::new();
        let mut body_bytes = Vec::new();
        let mut total = 0usize;
        let mut got_piece = false;
        let mut finished = false;
        loop {
            let deadline = if got_piece {
                Instant::now() + o.chunk_gap_timeout
            } else {
                first_deadline
            };
            let chunk = match wait(resp.chunk(), deadline, cancel).await {
                Waited::Cancelled => return Ok(()),
                Waited::TimedOut => return Err(self.slow(Some(got_piece))),
                Waited::Done(Err(e)) => return Err(self.cut(Some(&e))),
                Waited::Done(Ok(None)) => break,
                Waited::Done(Ok(Some(c))) => c,
            };
            total += chunk.len();
            if whole_json {
                if total > o.max_response_bytes {
                    return Err(self.too_long());
                }
                body_bytes.extend_from_slice(&chunk);
                continue;
            }
            for data in parser.push(&chunk) {
                match self.event(&data, on_piece, calls)? {
                    Event::Done => return Ok(()),
                    Event::Piece => got_piece = true,
                    Event::Finished => finished = true,
                    Event::Nothing => {}
                }
                if cancel.is_cancelled() {
                    return Ok(());
                }
            }
            // Checked after the chunk's pieces are passed on: what came is heard.
            if total > o.max_response_bytes {
                return Err(self.too_long());
            }
        }
        if whole_json {
            return self.whole(&body_bytes, on_piece, calls);
        }
        if let Some(data) = parser.finish() {
            match self.event(&data, on_piece, calls)? {
                Event::Done | Event::Finished => return Ok(()),
                _ => {}
            }
        }
        // Some servers end the body after the finish reason without `[DONE]`.
        if finished {
            Ok(())
        } else {
            Err(self.cut(None))
        }
    }

    /// One event's data: a chunk of the reply, its end, or the server's error.
    fn event(
        &self,
        data: &str,
        on_piece: &mut dyn FnMut(&str),
        calls: &mut Vec<ToolCall>,
    ) -> Result<Event, LlmError> {
        if data.trim() == "[DONE]" {
            return Ok(Event::Done);
        }
        let v: Value = serde_json::from_str(data).map_err(|e| {
            self.malformed(format!("an event is not JSON ({e}): {}", snippet(data)))
        })?;
        if let Some(err) = v.get("error") {
            return Err(self.error(
                format!(
                    "The LLM server at {} failed mid-reply: {}",
                    self.endpoint,
                    error_text(err)
                ),
                "Check the server's log; the next turn tries again.",
                true,
            ));
        }
        let Some(choices) = v.get("choices").and_then(Value::as_array) else {
            return Err(self.malformed(format!("an event has no `choices`: {}", snippet(data))));
        };
        // A usage-only chunk has an empty list.
        let Some(c) = choices.first() else {
            return Ok(Event::Nothing);
        };
        let mut ev = Event::Nothing;
        if let Some(s) = c.pointer("/delta/content").and_then(Value::as_str) {
            if !s.is_empty() {
                on_piece(s);
                ev = Event::Piece;
            }
        }
        // A tool call streams as pieces of its name and arguments, by index.
        for d in c
            .pointer("/delta/tool_calls")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let i = d.get("index").and_then(Value::as_u64).unwrap_or(0) as usize;
            if i >= MAX_TOOL_CALLS {
                continue;
            }
            if calls.len() <= i {
                calls.resize_with(i + 1, ToolCall::default);
            }
            let call = &mut calls[i];
            if let Some(id) = d.get("id").and_then(Value::as_str) {
                call.id = id.to_string();
            }
            if let Some(n) = d.pointer("/function/name").and_then(Value::as_str) {
                call.name.push_str(n);
            }
            if let Some(a) = d.pointer("/function/arguments").and_then(Value::as_str) {
                call.arguments.push_str(a);
            }
            ev = Event::Piece;
        }
        if c.get("finish_reason").is_some_and(Value::is_string) {
            ev = Event::Finished;
        }
        Ok(ev)
    }

    fn whole(
        &self,
        body: &[u8],
        on_piece: &mut dyn FnMut(&str),
        calls: &mut Vec<ToolCall>,
    ) -> Result<(), LlmError> {
        let text = String::from_utf8_lossy(body);
        let v: Value = serde_json::from_str(&text).map_err(|e| {
            self.malformed(format!("the reply is not JSON ({e}): {}", snippet(&text)))
        })?;
        for c in v
            .pointer("/choices/0/message/tool_calls")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .take(MAX_TOOL_CALLS)
        {
            let s = |p: &str| {
                c.pointer(p)
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string()
            };
            calls.push(ToolCall {
                id: s("/id"),
                name: s("/function/name"),
                arguments: s("/function/arguments"),
                malformed: None,
            });
        }
        match v.pointer("/choices/0/message/content") {
            Some(Value::Null) | None if !calls.is_empty() => Ok(()),
            Some(Value::String(s)) => {
                if !s.is_empty() {
                    on_piece(s);
                }
                Ok(())
            }
            _ => Err(self.malformed(format!(
                "the reply has no `choices[0].message.content`: {}",
                snippet(&text)
            ))),
        }
    }

    fn error(&self, message: String, remedy: &str, transient: bool) -> LlmError {
        LlmError {
            message,
            remedy: remedy.to_string(),
            transient,
        }
    }

    fn malformed(&self, what: String) -> LlmError {
        self.error(
            format!("The LLM server at {} sent a malformed stream: {what}", self.endpoint),
            "Check that --llm-url is an OpenAI-compatible server (Ollama, llama.cpp's server, vLLM).",
            false,
        )
    }

    fn too_long(&self) -> LlmError {
        self.error(
            format!(
                "The reply from {} passed {} without ending.",
                self.endpoint,
                crate::bus::Bytes(self.options.max_response_bytes as u64)
            ),
            "Lower the persona's max_tokens, or check the server: it may be repeating itself.",
            false,
        )
    }

    fn cut(&self, e: Option<&reqwest::Error>) -> LlmError {
        let why = e.map_or_else(
            || "the stream ended before the reply was complete".to_string(),
            |e| format!("the connection broke mid-reply: {}", chain(e)),
        );
        self.error(
            format!("The LLM server at {}: {why}.", self.endpoint),
            "The server may have restarted or run out of memory; the next turn tries again.",
            true,
        )
    }

    fn slow(&self, got_piece: Option<bool>) -> LlmError {
        let o = &self.options;
        let message = match got_piece {
            Some(true) => format!(
                "The LLM server at {} stopped sending for {} s mid-reply.",
                self.endpoint,
                o.chunk_gap_timeout.as_secs_f32()
            ),
            _ => format!(
                "The LLM server at {} sent no reply within {} s.",
                self.endpoint,
                o.first_piece_timeout.as_secs_f32()
            ),
        };
        self.error(
            message,
            "The server is busy or the model is too large for it; try a smaller model. The next turn tries again.",
            true,
        )
    }

    fn send_error(&self, e: &reqwest::Error) -> LlmError {
        let detail = chain(e);
        let host = reqwest::Url::parse(&self.endpoint)
            .ok()
            .and_then(|u| Some(format!("{}:{}", u.host_str()?, u.port_or_known_default()?)))
            .unwrap_or_else(|| self.endpoint.clone());
        if e.is_connect() && detail.to_ascii_lowercase().contains("refused") {
            return self.error(
                format!("Nothing is listening at {host}: the LLM server is down (connection refused)."),
                "Start the server (for example `ollama serve`) or fix --llm-url; the next turn tries again.",
                true,
            );
        }
        if e.is_timeout() || detail.to_ascii_lowercase().contains("timed out") {
            return self.error(
                format!(
                    "The LLM server at {host} did not accept a connection within {} s.",
                    self.options.connect_timeout.as_secs_f32()
                ),
                "Check that the server is running and reachable, and --llm-url; the next turn tries again.",
                true,
            );
        }
        self.error(
            format!("Cannot reach the LLM server at {host}: {detail}"),
            "Check --llm-url and the network; the next turn tries again.",
            true,
        )
    }

    fn http_error(&self, status: u16, model: &str, body: &str) -> LlmError {
        let said = server_message(body);
        let at = &self.endpoint;
        let env = &self.options.api_key_env;
        match status {
            401 | 403 => self.error(
                format!("The LLM server at {at} refused the API key (HTTP {status}: {said})."),
                &if self.api_key.is_some() {
                    format!("Check the key in ${env}.")
                } else {
                    format!("Set ${env} to an API key for this server.")
                },
                false,
            ),
            404 => self.error(
                format!("The LLM server at {at} has no model `{model}` or no chat endpoint there (HTTP 404: {said})."),
                "Check --llm-model (the server's list: GET /v1/models; for Ollama, `ollama list`) and --llm-url.",
                false,
            ),
            408 | 429 => self.error(
                format!("The LLM server at {at} is overloaded or rate-limiting (HTTP {status}: {said})."),
                "Wait a moment; the next turn tries again.",
                true,
            ),
            500..=599 => self.error(
                format!("The LLM server at {at} failed (HTTP {status}: {said})."),
                "Check the server's log; the next turn tries again.",
                true,
            ),
            // llama-server: "request (N tokens) exceeds the available context size";
            // OpenAI: "maximum context length", `context_length_exceeded`.
            400 | 413 if said.to_lowercase().contains("context") => self.error(
                format!("The request is larger than the context of the LLM server at {at} (HTTP {status}: {said})."),
                "Raise the server's context size (llama-server -c, Ollama's num_ctx), or offer fewer tools: fewer MCP servers, or a persona's `tools = [...]`.",
                false,
            ),
            _ => self.error(
                format!("The LLM server at {at} rejected the request (HTTP {status}: {said})."),
                "Check --llm-model and the persona's LLM settings (temperature, max tokens).",
                false,
            ),
        }
    }
}

impl Llm for OpenAiLlm {
    fn name(&self) -> String {
        format!("{} at {}", self.options.model, self.options.url)
    }

    fn stream(
        &self,
        request: &ChatRequest,
        cancel: &Cancel,
        on_piece: &mut dyn FnMut(&str),
    ) -> Result<(), LlmError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| self.error(format!("Cannot start the HTTP runtime: {e}"), "", false))?;
        let model = request.model.as_deref().unwrap_or(&self.options.model);
        let out = rt.block_on(self.reply(
            body(request, model),
            model,
            cancel,
            on_piece,
            &mut Vec::new(),
        ));
        // Whatever hyper left (a connection task) goes now, without waiting.
        rt.shutdown_background();
        out
    }

    /// An estimate, not the server's tokenizer: about four characters a token, as for
    /// English with GPT- and Llama-style vocabularies (rounded up, so the history errs
    /// on the short side).
    fn count_tokens(&self, text: &str) -> usize {
        text.chars().count().div_ceil(4)
    }

    fn context_tokens(&self) -> usize {
        self.options.context
    }
}

/// One tool call the model asked for: its id (to answer it by), the tool's name and
/// its arguments as a JSON text (not yet checked).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    pub arguments: String,
    /// Why the model's call could not be read (a chat template's tool-call text that
    /// is not JSON): the loop tells the model so instead of running anything.
    pub malformed: Option<String>,
}

/// Tool calls read from one reply at most (a model that asks for more gets these).
pub const MAX_TOOL_CALLS: usize = 8;

impl OpenAiLlm {
    /// One round of a reply that may call tools: `request` plus `extra` messages (the
    /// calls and results of earlier rounds, in the API's shape), with `tools` offered
    /// (OpenAI `function` definitions; none offered when empty). Text goes to
    /// `on_piece` as it comes; the calls the model asked for are returned.
    pub fn stream_round(
        &self,
        request: &ChatRequest,
        extra: &[Value],
        tools: &[Value],
        cancel: &Cancel,
        on_piece: &mut dyn FnMut(&str),
    ) -> Result<Vec<ToolCall>, LlmError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| self.error(format!("Cannot start the HTTP runtime: {e}"), "", false))?;
        let model = request.model.as_deref().unwrap_or(&self.options.model);
        let mut b = body(request, model);
        if let Some(m) = b["messages"].as_array_mut() {
            m.extend(extra.iter().cloned());
        }
        if !tools.is_empty() {
            b["tools"] = Value::Array(tools.to_vec());
        }
        let mut calls = Vec::new();
        let out = rt.block_on(self.reply(b, model, cancel, on_piece, &mut calls));
        rt.shutdown_background();
        out?;
        calls.retain(|c| !c.name.is_empty());
        for (i, c) in calls.iter_mut().enumerate() {
            if c.id.is_empty() {
                c.id = format!("call_{i}");
            }
        }
        Ok(calls)
    }
}

enum Event {
    Done,
    Piece,
    Finished,
    Nothing,
}

enum Waited<T> {
    Done(T),
    Cancelled,
    TimedOut,
}

/// Await `fut` until `deadline`, returning early once `cancel` is set.
async fn wait<T>(
    fut: impl std::future::Future<Output = T>,
    deadline: Instant,
    cancel: &Cancel,
) -> Waited<T> {
    let mut fut = std::pin::pin!(fut);
    let sleep = tokio::time::sleep_until(deadline.into());
    let mut sleep = std::pin::pin!(sleep);
    let mut poll = tokio::time::interval(CANCEL_POLL);
    loop {
        if cancel.is_cancelled() {
            return Waited::Cancelled;
        }
        tokio::select! {
            biased;
            out = &mut fut => return Waited::Done(out),
            _ = &mut sleep => return Waited::TimedOut,
            _ = poll.tick() => {}
        }
    }
}

fn body(request: &ChatRequest, model: &str) -> Value {
    let mut messages = Vec::with_capacity(request.messages.len() + 1);
    if !request.system.trim().is_empty() {
        messages.push(json!({"role": "system", "content": request.system}));
    }
    for m in &request.messages {
        let role = match m.role {
            ChatRole::System => "system",
            ChatRole::User => "user",
            ChatRole::Assistant => "assistant",
        };
        messages.push(json!({"role": role, "content": m.content}));
    }
    json!({
        "model": model,
        "messages": messages,
        "stream": true,
        "temperature": request.temperature,
        "max_tokens": request.max_tokens,
    })
}

/// The server's own words from an error body: OpenAI's `{"error":{"message"}}`,
/// `{"error":"…"}`, FastAPI's `{"detail"}`, else the text itself, shortened.
fn server_message(body: &str) -> String {
    if let Ok(v) = serde_json::from_str::<Value>(body) {
        if let Some(e) = v.get("error") {
            return snippet(&error_text(e));
        }
        if let Some(d) = v.get("detail") {
            return snippet(&d.as_str().map_or_else(|| d.to_string(), str::to_string));
        }
    }
    let t = body.trim();
    if t.is_empty() {
        "no message".into()
    } else {
        snippet(t)
    }
}

fn error_text(e: &Value) -> String {
    e.get("message")
        .and_then(Value::as_str)
        .map(str::to_string)
        .or_else(|| e.as_str().map(str::to_string))
        .unwrap_or_else(|| e.to_string())
}

fn snippet(s: &str) -> String {
    const MAX: usize = 200;
    let s = s.trim();
    match s.char_indices().nth(MAX) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

/// An error and its causes on one line (reqwest keeps the useful part in its sources).
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !s.contains(&text) {
            s = format!("{s}: {text}");
        }
        cause = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::parts::ChatMessage;

    #[test]
    fn endpoint_from_root_v1_or_full_url() {
        assert_eq!(
            chat_endpoint("http://h:1"),
            "http://h:1/v1/chat/completions"
        );
        assert_eq!(
            chat_endpoint("http://h:1/v1/"),
            "http://h:1/v1/chat/completions"
        );
        assert_eq!(
            chat_endpoint("https://h/v1/chat/completions"),
            "https://h/v1/chat/completions"
        );
    }

    #[test]
    fn body_has_system_then_history_and_streams() {
        let req = ChatRequest {
            system: "Be brief.".into(),
            messages: vec![ChatMessage {
                role: ChatRole::User,
                content: "hi".into(),
            }],
            temperature: 0.5,
            max_tokens: 7,
            model: None,
        };
        let b = body(&req, "m");
        assert_eq!(b["stream"], true);
        assert_eq!(b["model"], "m");
        assert_eq!(b["max_tokens"], 7);
        assert_eq!(b["messages"][0]["role"], "system");
        assert_eq!(b["messages"][1]["content"], "hi");
    }

    #[test]
    fn server_messages_in_the_usual_shapes() {
        assert_eq!(
            server_message(r#"{"error":{"message":"model 'x' not found"}}"#),
            "model 'x' not found"
        );
        assert_eq!(server_message(r#"{"error":"bad key"}"#), "bad key");
        assert_eq!(server_message(r#"{"detail":"Not Found"}"#), "Not Found");
        assert_eq!(server_message("  "), "no message");
    }

    #[test]
    fn bad_url_and_missing_model_are_configuration_errors() {
        let e = OpenAiLlm::new(OpenAiOptions::new("localhost:11434", "m"))
            .err()
            .unwrap();
        assert!(!e.transient && e.remedy.contains("--llm-url"), "{e:?}");
        let e = OpenAiLlm::new(OpenAiOptions::new("http://127.0.0.1:1", " "))
            .err()
            .unwrap();
        assert!(e.remedy.contains("--llm-model"), "{e:?}");
    }
}
