//! An OpenAI-compatible LLM that may call tools: each reply is a loop of rounds. A
//! round that asks for tools gets them run (in order, through the `ToolBox`: consent,
//! timeout, bounded result) and their results sent back; the round that answers in
//! words is the reply the turn machine speaks. The turn machine sees only text
//! pieces, so barge-in (its cancel) stops a call as it stops a reply.

use super::openai::{OpenAiLlm, ToolCall};
use crate::bus::Cancel;
use crate::engine::cascade::parts::{ChatRequest, Llm, LlmError};
use crate::tools::{CallRecord, ToolBox, ToolInfo};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

/// Rounds of calls in one reply before the model must answer without tools.
pub const MAX_ROUNDS: usize = 4;

/// After this long a running tool gets a short spoken acknowledgement.
pub const ACK_AFTER: Duration = Duration::from_secs(1);

/// What the user hears when a tool takes a while.
pub const ACK: &str = "One moment. ";

pub struct ToolUsingLlm {
    llm: OpenAiLlm,
    tools: Arc<ToolBox>,
    specs: Vec<Value>,
}

impl ToolUsingLlm {
    pub fn new(llm: OpenAiLlm, tools: Arc<ToolBox>) -> Self {
        let specs = tools.offered().map(function_spec).collect();
        Self { llm, tools, specs }
    }

    /// Run one call on a thread of its own, so that a slow tool can be acknowledged
    /// in speech while it runs.
    fn run_call(
        &self,
        call: &ToolCall,
        cancel: &Cancel,
        on_piece: &mut dyn FnMut(&str),
    ) -> CallRecord {
        let (tx, rx) = crossbeam_channel::bounded(1);
        std::thread::scope(|s| {
            s.spawn(|| {
                let _ = tx.send(self.tools.call(&call.name, &call.arguments, cancel));
            });
            let mut acknowledged = false;
            loop {
                match rx.recv_timeout(ACK_AFTER) {
                    Ok(rec) => return rec,
                    Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                        // Not while the user is being asked: the question is on screen.
                        if !acknowledged && !self.tools.desk().waiting() && !cancel.is_cancelled() {
                            on_piece(ACK);
                            acknowledged = true;
                        }
                    }
                    Err(_) => {
                        return CallRecord {
                            call: 0,
                            tool: call.name.clone(),
                            args: call.arguments.clone(),
                            consent: String::new(),
                            outcome: crate::tools::Outcome::Error,
                            result: "The tool failed without a result.".into(),
                            image: None,
                        }
                    }
                }
            }
        })
    }
}

/// A tool as the OpenAI API offers it.
pub fn function_spec(t: &ToolInfo) -> Value {
    let mut parameters = t.parameters.clone();
    if !parameters.is_object() {
        parameters = json!({"type": "object", "properties": {}});
    }
    json!({
        "type": "function",
        "function": {
            "name": t.name,
            "description": t.description,
            "parameters": parameters,
        }
    })
}

impl Llm for ToolUsingLlm {
    fn name(&self) -> String {
        format!("{} with {} tools", self.llm.name(), self.specs.len())
    }

    fn stream(
        &self,
        request: &ChatRequest,
        cancel: &Cancel,
        on_piece: &mut dyn FnMut(&str),
    ) -> Result<(), LlmError> {
        let mut extra: Vec<Value> = Vec::new();
        for round in 0..=MAX_ROUNDS {
            // The last round offers no tools: the model answers with what it has.
            let tools: &[Value] = if round < MAX_ROUNDS { &self.specs } else { &[] };
            let mut said = String::new();
            let calls = self
                .llm
                .stream_round(request, &extra, tools, cancel, &mut |p| {
                    said.push_str(p);
                    on_piece(p)
                })?;
            if calls.is_empty() || cancel.is_cancelled() {
                return Ok(());
            }
            extra.push(json!({
                "role": "assistant",
                "content": if said.is_empty() { Value::Null } else { Value::String(said) },
                "tool_calls": calls.iter().map(|c| json!({
                    "id": c.id,
                    "type": "function",
                    "function": {"name": c.name, "arguments": c.arguments},
                })).collect::<Vec<_>>(),
            }));
            // Images (a screenshot) cannot be a tool's content in the API: they follow
            // the results as a user message with `image_url` parts.
            let mut images = Vec::new();
            for c in &calls {
                let result = if cancel.is_cancelled() {
                    "Cancelled by the user.".to_string()
                } else {
                    let rec = self.run_call(c, cancel, on_piece);
                    if let Some(url) = rec.image {
                        images.push((c.name.clone(), url));
                    }
                    rec.result
                };
                extra.push(json!({"role": "tool", "tool_call_id": c.id, "content": result}));
            }
            for (tool, url) in images {
                extra.push(json!({"role": "user", "content": [
                    {"type": "text", "text": format!("The image from {tool}:")},
                    {"type": "image_url", "image_url": {"url": url}},
                ]}));
            }
            if cancel.is_cancelled() {
                return Ok(());
            }
        }
        Ok(())
    }

    fn count_tokens(&self, text: &str) -> usize {
        self.llm.count_tokens(text)
    }

    fn context_tokens(&self) -> usize {
        self.llm.context_tokens()
    }
}
