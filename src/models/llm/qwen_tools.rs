//! Tools for the in-process Qwen2.5, in its own chat template's format: the offered
//! functions listed as JSON in a `# Tools` block of the system turn, the model's calls
//! as `<tool_call>{"name": ..., "arguments": {...}}</tool_call>` in its reply, and the
//! results sent back as a user turn of `<tool_response>` blocks.
//!
//! The template text is Qwen2.5-Instruct's `chat_template` (tokenizer_config.json of
//! Qwen/Qwen2.5-*-Instruct on Hugging Face, the Jinja template transformers renders);
//! `render` follows it block for block, and its tests pin the exact strings.

use super::openai::{ToolCall, MAX_TOOL_CALLS};
use crate::models::parts::{ChatRequest, ChatRole};
use serde_json::Value;

/// The template's system prompt when tools are offered and the persona has none.
pub const DEFAULT_SYSTEM: &str =
    "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.";

const TOOLS_HEAD: &str = "\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>";
const TOOLS_TAIL: &str = "\n</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call>";

pub const CALL_OPEN: &str = "<tool_call>";
pub const CALL_CLOSE: &str = "</tool_call>";
pub const RESPONSE_OPEN: &str = "<tool_response>";
pub const RESPONSE_CLOSE: &str = "</tool_response>";

/// A piece of a turn's text: words, or one of the template's tags (Qwen2.5's
/// vocabulary has each as a token of its own; words that merely contain a tag, such
/// as a tool's result, stay words).
#[derive(Debug, Clone, PartialEq)]
pub enum Seg {
    Text(String),
    Tag(&'static str),
}

/// One `<|im_start|>ROLE\n ... <|im_end|>\n` turn.
#[derive(Debug, Clone, PartialEq)]
pub struct Block {
    pub role: &'static str,
    pub content: Vec<Seg>,
}

impl Block {
    fn text(role: &'static str, s: impl Into<String>) -> Self {
        Self {
            role,
            content: vec![Seg::Text(s.into())],
        }
    }

    /// The content as one string.
    pub fn joined(&self) -> String {
        self.content
            .iter()
            .map(|s| match s {
                Seg::Text(t) => t.as_str(),
                Seg::Tag(t) => t,
            })
            .collect()
    }
}

/// The system turn's content: the persona's prompt (or Qwen's default) and, with
/// `tools` (OpenAI `function` definitions), the `# Tools` block.
pub fn system_content(system: &str, tools: &[Value]) -> Option<String> {
    if tools.is_empty() {
        return (!system.trim().is_empty()).then(|| system.to_string());
    }
    let mut s = if system.trim().is_empty() {
        DEFAULT_SYSTEM.to_string()
    } else {
        system.to_string()
    };
    s.push_str(TOOLS_HEAD);
    for t in tools {
        s.push('\n');
        s.push_str(&py_json(t));
    }
    s.push_str(TOOLS_TAIL);
    Some(s)
}

/// The turns of `request` and, after them, `extra` (earlier rounds' calls and results,
/// in the OpenAI shape the tool loop keeps), with `tools` offered. The caller adds the
/// assistant's opening.
pub fn render(request: &ChatRequest, extra: &[Value], tools: &[Value]) -> Vec<Block> {
    let mut out = Vec::new();
    if let Some(s) = system_content(&request.system, tools) {
        out.push(Block::text("system", s));
    }
    for m in &request.messages {
        let role = match m.role {
            ChatRole::System => "system",
            ChatRole::User => "user",
            ChatRole::Assistant => "assistant",
        };
        out.push(Block::text(role, m.content.clone()));
    }
    let mut i = 0;
    while i < extra.len() {
        let m = &extra[i];
        match m.get("role").and_then(Value::as_str).unwrap_or("") {
            "assistant" => out.push(assistant_block(m)),
            // Results in a row share one user turn.
            "tool" => {
                let mut content = Vec::new();
                while let Some(t) = extra.get(i).filter(|t| t["role"] == "tool") {
                    if !content.is_empty() {
                        content.push(Seg::Text("\n".into()));
                    }
                    content.push(Seg::Tag(RESPONSE_OPEN));
                    content.push(Seg::Text(format!("\n{}\n", text_of(&t["content"]))));
                    content.push(Seg::Tag(RESPONSE_CLOSE));
                    i += 1;
                }
                out.push(Block {
                    role: "user",
                    content,
                });
                continue;
            }
            "system" => out.push(Block::text("system", text_of(&m["content"]))),
            _ => out.push(Block::text("user", text_of(&m["content"]))),
        }
        i += 1;
    }
    out
}

/// An assistant turn with calls: its words, then each call on lines of its own.
fn assistant_block(m: &Value) -> Block {
    let mut content = Vec::new();
    // Its words as spoken (the blank between calls included): trimmed at the end.
    let said = text_of(&m["content"]);
    if !said.trim().is_empty() {
        content.push(Seg::Text(said.trim_end().to_string()));
    }
    for c in m["tool_calls"].as_array().into_iter().flatten() {
        let f = c.get("function").unwrap_or(c);
        let name = f["name"].as_str().unwrap_or("");
        // The loop keeps arguments as JSON text; the template writes them as an object.
        let args = match &f["arguments"] {
            Value::String(s) => serde_json::from_str::<Value>(s)
                .map(|v| py_json(&v))
                .unwrap_or_else(|_| s.clone()),
            v => py_json(v),
        };
        if !content.is_empty() {
            content.push(Seg::Text("\n".into()));
        }
        content.push(Seg::Tag(CALL_OPEN));
        content.push(Seg::Text(if name.is_empty() {
            // A call that could not be read: what the model wrote.
            format!("\n{}\n", f["arguments"].as_str().unwrap_or(""))
        } else {
            format!("\n{{\"name\": \"{name}\", \"arguments\": {args}}}\n")
        }));
        content.push(Seg::Tag(CALL_CLOSE));
    }
    Block {
        role: "assistant",
        content,
    }
}

/// A message's text; the text parts of a multi-part one (images are left out: this
/// model reads no images).
fn text_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

/// The whole prompt as text, ending where the assistant's reply begins (what
/// transformers' `apply_chat_template(..., add_generation_prompt=True)` gives).
pub fn prompt_text(blocks: &[Block]) -> String {
    let mut s = String::new();
    for b in blocks {
        s.push_str(&format!(
            "<|im_start|>{}\n{}<|im_end|>\n",
            b.role,
            b.joined()
        ));
    }
    s.push_str("<|im_start|>assistant\n");
    s
}

/// JSON as Jinja's `tojson` in transformers writes it (Python's `json.dumps`: `", "`
/// and `": "` between items, non-ASCII kept, keys in the order given: serde_json's
/// `preserve_order`), so the tools read as in training.
pub fn py_json(v: &Value) -> String {
    let mut s = String::new();
    write_py(v, &mut s);
    s
}

fn write_py(v: &Value, out: &mut String) {
    match v {
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_py(x, out);
            }
            out.push(']');
        }
        Value::Object(o) => {
            out.push('{');
            for (i, (k, x)) in o.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push_str(": ");
                write_py(x, out);
            }
            out.push('}');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// Reads a streamed reply, passing on the words and keeping back what is inside
/// `<tool_call>...</tool_call>` (never spoken), which becomes calls.
#[derive(Debug, Default)]
pub struct CallStream {
    /// Words held back because they may be the start of `<tool_call>`.
    held: String,
    /// Inside a call: its text so far.
    inside: Option<String>,
    calls: Vec<ToolCall>,
}

impl CallStream {
    /// Take one piece of the reply; returns the words to speak now.
    pub fn push(&mut self, piece: &str) -> String {
        let mut spoken = String::new();
        let mut rest = piece.to_string();
        loop {
            if let Some(body) = &mut self.inside {
                body.push_str(&rest);
                let Some(end) = body.find(CALL_CLOSE) else {
                    return spoken;
                };
                let after = body[end + CALL_CLOSE.len()..].to_string();
                body.truncate(end);
                let body = self.inside.take().unwrap_or_default();
                self.add(&body, true);
                rest = after;
            } else {
                self.held.push_str(&rest);
                rest.clear();
                if let Some(start) = self.held.find(CALL_OPEN) {
                    spoken.push_str(&self.held[..start]);
                    rest = self.held[start + CALL_OPEN.len()..].to_string();
                    self.held.clear();
                    self.inside = Some(String::new());
                    continue;
                }
                // Keep back the longest tail that could begin the tag.
                let keep = (1..CALL_OPEN.len().min(self.held.len() + 1))
                    .rev()
                    .find(|&n| {
                        self.held.is_char_boundary(self.held.len() - n)
                            && CALL_OPEN.starts_with(&self.held[self.held.len() - n..])
                    })
                    .unwrap_or(0);
                let cut = self.held.len() - keep;
                spoken.push_str(&self.held[..cut]);
                self.held.drain(..cut);
                return spoken;
            }
        }
    }

    /// The reply is over: the words still held, and the calls read. A call left open
    /// (the model stopped before `</tool_call>`) counts if its JSON is whole.
    pub fn finish(mut self) -> (String, Vec<ToolCall>) {
        if let Some(body) = self.inside.take() {
            self.add(&body, false);
        }
        (std::mem::take(&mut self.held), self.calls)
    }

    pub fn calls(&self) -> &[ToolCall] {
        &self.calls
    }

    fn add(&mut self, body: &str, closed: bool) {
        if self.calls.len() >= MAX_TOOL_CALLS {
            return;
        }
        let mut call = parse_call(body);
        if !closed && call.malformed.is_some() {
            call.malformed = Some(format!(
                "it ended before {CALL_CLOSE} ({})",
                call.malformed.unwrap_or_default()
            ));
        }
        call.id = format!("call_{}", self.calls.len() + 1);
        self.calls.push(call);
    }
}

/// One call's JSON: `{"name": "...", "arguments": {...}}` (arguments also taken as a
/// JSON string of an object, as some fine-tunes write them). A call that cannot be
/// read has no name, and what the model wrote as its arguments.
pub fn parse_call(body: &str) -> ToolCall {
    let body = body.trim();
    let bad = |why: String| ToolCall {
        name: String::new(),
        arguments: body.to_string(),
        malformed: Some(why),
        ..Default::default()
    };
    let v: Value = match serde_json::from_str(body) {
        Ok(v) => v,
        Err(e) => return bad(format!("it is not JSON ({e})")),
    };
    let Some(name) = v
        .get("name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
    else {
        return bad("it has no \"name\" string".into());
    };
    let arguments = match v.get("arguments") {
        None | Some(Value::Null) => "{}".to_string(),
        Some(o @ Value::Object(_)) => o.to_string(),
        Some(Value::String(s)) if serde_json::from_str::<Value>(s).is_ok_and(|a| a.is_object()) => {
            s.clone()
        }
        Some(_) => return bad("its \"arguments\" is not a JSON object".into()),
    };
    ToolCall {
        name: name.to_string(),
        arguments,
        ..Default::default()
    }
}

/// One round's reply through a `CallStream`: `generate` writes the reply piece by
/// piece; its words go on to `on_piece` (the speech), its calls come back.
pub fn stream_calls(
    generate: impl FnOnce(&mut dyn FnMut(&str)) -> Result<(), crate::models::parts::LlmError>,
    on_piece: &mut dyn FnMut(&str),
) -> Result<Vec<ToolCall>, crate::models::parts::LlmError> {
    let mut stream = CallStream::default();
    generate(&mut |p: &str| {
        let words = stream.push(p);
        if !words.is_empty() {
            on_piece(&words);
        }
    })?;
    let (rest, calls) = stream.finish();
    if !rest.is_empty() {
        on_piece(&rest);
    }
    Ok(calls)
}

/// What the model is told about a call it wrote badly.
pub fn malformed_result(why: &str) -> String {
    format!(
        "Your tool call could not be read: {why}. Nothing ran. Write each call as \
         <tool_call>\n{{\"name\": <function-name>, \"arguments\": <args-json-object>}}\n</tool_call>"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::parts::ChatMessage;
    use serde_json::json;

    fn weather() -> Value {
        json!({"type": "function", "function": {
            "name": "get_weather",
            "description": "The weather in a city.",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        }})
    }

    fn request(system: &str) -> ChatRequest {
        ChatRequest {
            system: system.into(),
            messages: vec![ChatMessage {
                role: ChatRole::User,
                content: "Weather in Paris?".into(),
            }],
            temperature: 0.0,
            max_tokens: 64,
            model: None,
        }
    }

    #[test]
    fn the_tools_block_is_qwens_template_text() {
        let blocks = render(&request(""), &[], &[weather()]);
        let expected = "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>\n{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"description\": \"The weather in a city.\", \"parameters\": {\"type\": \"object\", \"properties\": {\"city\": {\"type\": \"string\"}}, \"required\": [\"city\"]}}}\n</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n<|im_start|>user\nWeather in Paris?<|im_end|>\n<|im_start|>assistant\n";
        assert_eq!(prompt_text(&blocks), expected);
    }

    /// The whole prompt for a conversation with two tools (properties not in
    /// alphabetical order, non-ASCII, `<`, `&`, a float), a call with words before it
    /// and its result, against transformers' rendering of Qwen2.5-Instruct's template
    /// (`tools/qwen_template_reference/render.py` made the fixture). The tools go
    /// through `function_spec`, as the tool loop offers them.
    #[test]
    fn the_prompt_matches_the_reference_template_rendering() {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/qwen_tools");
        let case: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("weather.json")).unwrap())
                .unwrap();
        let expected = std::fs::read_to_string(dir.join("weather.prompt.txt")).unwrap();
        let tools: Vec<Value> = case["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| {
                let f = &t["function"];
                super::super::tool_loop::function_spec(&crate::tools::ToolInfo {
                    name: f["name"].as_str().unwrap().into(),
                    source: crate::tools::Source::BuiltIn,
                    description: f["description"].as_str().unwrap().into(),
                    parameters: f["parameters"].clone(),
                    effect: crate::tools::Effect::ReadOnly,
                    offer: crate::tools::Offer::Offered,
                })
            })
            .collect();
        let mut request = request(case["system"].as_str().unwrap());
        request.messages[0].content = case["messages"][0]["content"].as_str().unwrap().into();
        let rounds = case["rounds"].as_array().unwrap();
        let text = prompt_text(&render(&request, rounds, &tools));
        assert_eq!(text, expected);
    }

    #[test]
    fn without_tools_the_prompt_is_plain_chatml() {
        let blocks = render(&request("Be brief."), &[], &[]);
        assert_eq!(
            prompt_text(&blocks),
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nWeather in Paris?<|im_end|>\n<|im_start|>assistant\n"
        );
    }

    #[test]
    fn calls_and_results_render_as_the_template_does() {
        let extra = vec![
            json!({"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
                {"id": "call_2", "type": "function", "function": {"name": "date_time", "arguments": "{}"}},
            ]}),
            json!({"role": "tool", "tool_call_id": "call_1", "content": "Sunny, 21 °C"}),
            json!({"role": "tool", "tool_call_id": "call_2", "content": "Monday"}),
        ];
        let blocks = render(&request("Be brief."), &extra, &[]);
        let text = prompt_text(&blocks);
        let tail = "<|im_start|>assistant\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>\n<tool_call>\n{\"name\": \"date_time\", \"arguments\": {}}\n</tool_call><|im_end|>\n<|im_start|>user\n<tool_response>\nSunny, 21 °C\n</tool_response>\n<tool_response>\nMonday\n</tool_response><|im_end|>\n<|im_start|>assistant\n";
        assert!(text.ends_with(tail), "{text}");
        // Tags are tokens of their own; the tool's words are words.
        assert_eq!(blocks[3].content[0], Seg::Tag(RESPONSE_OPEN));
        assert_eq!(blocks[3].content[1], Seg::Text("\nSunny, 21 °C\n".into()));
    }

    #[test]
    fn words_before_a_call_are_kept_in_its_turn() {
        let extra = vec![
            json!({"role": "assistant", "content": "Let me look.", "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "date_time", "arguments": "{}"}}]}),
        ];
        let b = &render(&request(""), &extra, &[])[1];
        assert_eq!(
            b.joined(),
            "Let me look.\n<tool_call>\n{\"name\": \"date_time\", \"arguments\": {}}\n</tool_call>"
        );
    }

    const REPLY: &str = "Let me check. <tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>\n<tool_call>\n{\"name\": \"date_time\", \"arguments\": {}}\n</tool_call>";

    fn stream(pieces: &[&str]) -> (String, Vec<ToolCall>) {
        let mut s = CallStream::default();
        let mut spoken = String::new();
        for p in pieces {
            spoken.push_str(&s.push(p));
        }
        let (rest, calls) = s.finish();
        spoken.push_str(&rest);
        (spoken, calls)
    }

    #[test]
    fn calls_are_read_and_never_spoken_at_any_split() {
        let chars: Vec<&str> = REPLY
            .char_indices()
            .map(|(i, c)| &REPLY[i..i + c.len_utf8()])
            .collect();
        // Every piece size, so a tag is split at every place.
        for size in 1..=14 {
            let pieces: Vec<String> = chars.chunks(size).map(|c| c.concat()).collect();
            let refs: Vec<&str> = pieces.iter().map(String::as_str).collect();
            let (spoken, calls) = stream(&refs);
            assert_eq!(spoken, "Let me check. \n", "piece size {size}");
            assert_eq!(calls.len(), 2, "piece size {size}");
            assert_eq!(calls[0].name, "get_weather");
            assert_eq!(calls[0].arguments, r#"{"city":"Paris"}"#);
            assert_eq!(calls[0].id, "call_1");
            assert_eq!(calls[1].name, "date_time");
            assert!(calls.iter().all(|c| c.malformed.is_none()));
        }
    }

    #[test]
    fn words_that_only_look_like_a_tag_are_spoken() {
        let (spoken, calls) = stream(&["a <to", "ol> and <", "tool_ca", "t. x < y"]);
        assert_eq!(spoken, "a <tool> and <tool_cat. x < y");
        assert!(calls.is_empty());
    }

    #[test]
    fn a_call_cut_off_before_its_end_tag_still_counts_if_whole() {
        let (spoken, calls) = stream(&[
            "Sure.",
            "<tool_call>\n{\"name\": \"date_time\", \"arguments\": {}}\n",
        ]);
        assert_eq!(spoken, "Sure.");
        assert_eq!(calls[0].name, "date_time");
        assert!(calls[0].malformed.is_none());
    }

    #[test]
    fn malformed_calls_become_errors_for_the_model() {
        let (spoken, calls) = stream(&[
            "<tool_call>{\"name\": \"get_weather\", \"arguments\": {\"city\": Paris}}</tool_call>",
            "<tool_call>{\"arguments\": {}}</tool_call>",
            "<tool_call>{\"name\": \"x\", \"arguments\": [1]}</tool_call>",
            "<tool_call>{\"name\": \"y\"",
        ]);
        assert_eq!(spoken, "");
        let why: Vec<String> = calls.iter().map(|c| c.malformed.clone().unwrap()).collect();
        assert!(why[0].contains("not JSON"), "{why:?}");
        assert_eq!(why[1], "it has no \"name\" string");
        assert_eq!(why[2], "its \"arguments\" is not a JSON object");
        assert!(
            why[3].starts_with("it ended before </tool_call>"),
            "{why:?}"
        );
        assert!(calls.iter().all(|c| c.name.is_empty()), "{calls:?}");
        let told = malformed_result(&why[1]);
        assert!(
            told.contains("could not be read") && told.contains("Nothing ran"),
            "{told}"
        );
    }

    #[test]
    fn string_arguments_holding_an_object_are_accepted() {
        let c = parse_call(r#"{"name": "date_time", "arguments": "{\"tz\": \"UTC\"}"}"#);
        assert_eq!(
            (c.name.as_str(), c.arguments.as_str()),
            ("date_time", r#"{"tz": "UTC"}"#)
        );
        assert!(c.malformed.is_none());
    }

    #[test]
    fn no_more_than_the_limit_of_calls_are_kept() {
        let one = "<tool_call>{\"name\": \"date_time\", \"arguments\": {}}</tool_call>";
        let many = one.repeat(MAX_TOOL_CALLS + 3);
        let (_, calls) = stream(&[&many]);
        assert_eq!(calls.len(), MAX_TOOL_CALLS);
    }
}
