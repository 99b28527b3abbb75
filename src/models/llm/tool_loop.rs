//! An LLM that may call tools (an OpenAI-compatible server, or the in-process Qwen2.5
//! through its chat template): each reply is a loop of rounds. A
//! round that asks for tools gets them run (in order, through the `ToolBox`: consent,
//! timeout, bounded result) and their results sent back; the round that answers in
//! words is the reply the turn machine speaks. The turn machine sees only text
//! pieces, so barge-in (its cancel) stops a call as it stops a reply.

use super::openai::{OpenAiLlm, ToolCall};
use crate::bus::Cancel;
use crate::models::parts::{ChatRequest, Llm, LlmError};
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

/// An LLM that can be offered tools, one round at a time.
pub trait ToolRounds: Llm {
    /// One round of a reply: `request` plus `extra` messages (the calls and results of
    /// earlier rounds, in the OpenAI API's shape), with `tools` offered (OpenAI
    /// `function` definitions; none when empty). Words go to `on_piece` as they come;
    /// the calls the model asked for are returned.
    fn stream_round(
        &self,
        request: &ChatRequest,
        extra: &[Value],
        tools: &[Value],
        cancel: &Cancel,
        on_piece: &mut dyn FnMut(&str),
    ) -> Result<Vec<ToolCall>, LlmError>;

    /// Read `request` ahead as a round offering `tools` would read it.
    fn prepare_round(
        &self,
        request: &ChatRequest,
        _tools: &[Value],
        cancel: &Cancel,
    ) -> Result<(), LlmError> {
        self.prepare(request, cancel)
    }

    /// The prompt's size with `tools` offered.
    fn count_prompt_round(&self, request: &ChatRequest, _tools: &[Value]) -> usize {
        self.count_prompt(request)
    }

    /// Whether a screenshot can follow the results as an image.
    fn takes_images(&self) -> bool {
        true
    }
}

impl ToolRounds for OpenAiLlm {
    fn stream_round(
        &self,
        request: &ChatRequest,
        extra: &[Value],
        tools: &[Value],
        cancel: &Cancel,
        on_piece: &mut dyn FnMut(&str),
    ) -> Result<Vec<ToolCall>, LlmError> {
        OpenAiLlm::stream_round(self, request, extra, tools, cancel, on_piece)
    }
}

pub struct ToolUsingLlm<L: ToolRounds = OpenAiLlm> {
    llm: L,
    tools: Arc<ToolBox>,
}

impl<L: ToolRounds> ToolUsingLlm<L> {
    pub fn new(llm: L, tools: Arc<ToolBox>) -> Self {
        Self { llm, tools }
    }

    /// The LLM it drives.
    pub fn inner(&self) -> &L {
        &self.llm
    }

    /// The tools offered now (the current persona's), as OpenAI `function`
    /// definitions.
    pub fn specs(&self) -> Vec<Value> {
        self.tools.offered().map(function_spec).collect()
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

impl<L: ToolRounds> Llm for ToolUsingLlm<L> {
    fn name(&self) -> String {
        format!("{} with tools", self.llm.name())
    }

    fn stream(
        &self,
        request: &ChatRequest,
        cancel: &Cancel,
        on_piece: &mut dyn FnMut(&str),
    ) -> Result<(), LlmError> {
        let mut extra: Vec<Value> = Vec::new();
        let specs = self.specs();
        for round in 0..=MAX_ROUNDS {
            // The last round offers no tools: the model answers with what it has; so
            // does a persona allowed none.
            let tools: &[Value] = if round < MAX_ROUNDS { &specs } else { &[] };
            let mut said = String::new();
            let calls = self
                .llm
                .stream_round(request, &extra, tools, cancel, &mut |p| {
                    said.push_str(p);
                    on_piece(p)
                })?;
            // A model that calls tools in the round that offers none (one writing the
            // calls as text) is not obeyed: its words were the answer.
            if calls.is_empty() || cancel.is_cancelled() || round == MAX_ROUNDS {
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
                } else if let Some(why) = &c.malformed {
                    super::qwen_tools::malformed_result(why)
                } else {
                    let rec = self.run_call(c, cancel, on_piece);
                    if let Some(url) = rec.image.filter(|_| self.llm.takes_images()) {
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

    fn count_prompt(&self, request: &ChatRequest) -> usize {
        self.llm.count_prompt_round(request, &self.specs())
    }

    fn prepare(&self, request: &ChatRequest, cancel: &Cancel) -> Result<(), LlmError> {
        self.llm.prepare_round(request, &self.specs(), cancel)
    }
}

#[cfg(test)]
mod tests {
    //! The in-process path end to end but for the weights: Qwen2.5's template
    //! (`qwen_tools::render`), the streaming call parser and this loop, with a real
    //! `ToolBox` (consent included), driven by a scripted reply instead of sampled
    //! tokens (a tiny synthetic model writes random text).
    use super::super::qwen_tools::{prompt_text, render, stream_calls};
    use super::*;
    use crate::bus::ToolActivity;
    use crate::models::parts::{ChatMessage, ChatRole};
    use crate::tools::config::Access;
    use crate::tools::consent::Desk;
    use crate::tools::ToolsOptions;
    use std::collections::VecDeque;
    use std::sync::Mutex;

    /// Qwen2.5 as the loop sees it, its replies read from a script piece by piece.
    struct ScriptedQwen {
        replies: Mutex<VecDeque<Vec<String>>>,
        /// Each round's prompt, as the model would read it.
        prompts: Mutex<Vec<String>>,
    }

    impl ScriptedQwen {
        fn new(replies: &[&str], piece: usize) -> Self {
            // Split into `piece`-character pieces, so tags straddle pieces.
            let split = |r: &str| {
                let cs: Vec<char> = r.chars().collect();
                cs.chunks(piece).map(|c| c.iter().collect()).collect()
            };
            Self {
                replies: Mutex::new(replies.iter().map(|r| split(r)).collect()),
                prompts: Mutex::new(Vec::new()),
            }
        }
    }

    impl Llm for ScriptedQwen {
        fn name(&self) -> String {
            "scripted qwen".into()
        }
        fn stream(
            &self,
            request: &ChatRequest,
            cancel: &Cancel,
            on_piece: &mut dyn FnMut(&str),
        ) -> Result<(), LlmError> {
            self.stream_round(request, &[], &[], cancel, on_piece)
                .map(|_| ())
        }
        fn count_tokens(&self, text: &str) -> usize {
            text.len() / 4
        }
        fn context_tokens(&self) -> usize {
            4096
        }
    }

    impl ToolRounds for ScriptedQwen {
        fn stream_round(
            &self,
            request: &ChatRequest,
            extra: &[Value],
            tools: &[Value],
            _cancel: &Cancel,
            on_piece: &mut dyn FnMut(&str),
        ) -> Result<Vec<ToolCall>, LlmError> {
            self.prompts
                .lock()
                .unwrap()
                .push(prompt_text(&render(request, extra, tools)));
            let pieces = self.replies.lock().unwrap().pop_front().unwrap_or_default();
            stream_calls(
                |words| {
                    for p in &pieces {
                        words(p);
                    }
                    Ok(())
                },
                on_piece,
            )
        }
        fn takes_images(&self) -> bool {
            false
        }
    }

    type Tools = (
        Arc<ToolBox>,
        Arc<Mutex<Vec<ToolActivity>>>,
        tempfile::TempDir,
    );

    fn toolbox(access: Access) -> Tools {
        toolbox_for(access, true)
    }

    /// `every_persona`: false when only the personas that list tools get them.
    fn toolbox_for(access: Access, every_persona: bool) -> Tools {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("mcp.json");
        std::fs::write(&cfg, r#"{"mcpServers": {}}"#).unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        let started = ToolBox::start(
            &ToolsOptions {
                config: Some(cfg),
                access: Some(access),
                persona_tools: None,
                every_persona,
                workdir: dir.path().to_path_buf(),
                llm_url: None,
            },
            Desk::nobody(),
            Box::new(move |a| s.lock().unwrap().push(a)),
        )
        .unwrap();
        (Arc::new(started.tools), seen, dir)
    }

    fn ask(words: &str) -> ChatRequest {
        ChatRequest {
            system: "You are brief.".into(),
            messages: vec![ChatMessage {
                role: ChatRole::User,
                content: words.into(),
            }],
            temperature: 0.0,
            max_tokens: 128,
            model: None,
        }
    }

    fn results(seen: &Mutex<Vec<ToolActivity>>) -> Vec<(String, String, String)> {
        seen.lock()
            .unwrap()
            .iter()
            .filter_map(|a| match a {
                ToolActivity::Done {
                    tool,
                    outcome,
                    result,
                    ..
                } => Some((tool.clone(), outcome.clone(), result.clone())),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn qwen_calls_a_tool_and_speaks_only_its_answer() {
        let (tools, seen, _d) = toolbox(Access::ReadOnly);
        for piece in [1, 3, 7, 500] {
            let model = ScriptedQwen::new(
                &[
                    "Let me look. <tool_call>\n{\"name\": \"date_time\", \"arguments\": {}}\n</tool_call>\n<tool_call>\n{\"name\": \"date_time\", \"arguments\": {oops}}\n</tool_call>",
                    "It is late.",
                ],
                piece,
            );
            let llm = ToolUsingLlm::new(model, tools.clone());
            let mut spoken = String::new();
            llm.stream(&ask("What time is it?"), &Cancel::new(), &mut |p| {
                spoken.push_str(p)
            })
            .unwrap();
            assert_eq!(spoken, "Let me look. \nIt is late.", "piece size {piece}");
            let prompts = llm.llm.prompts.lock().unwrap().clone();
            assert_eq!(prompts.len(), 2);
            assert!(
                prompts[0].contains("# Tools") && prompts[0].contains("\"name\": \"date_time\"")
            );
            // The date went back as a tool response, the bad call as an error; nothing
            // ran for it.
            let done = results(&seen);
            let (tool, outcome, result) = done.last().unwrap();
            assert_eq!((tool.as_str(), outcome.as_str()), ("date_time", "ok"));
            let second = &prompts[1];
            assert!(
                second.contains(&format!("<|im_start|>user\n<tool_response>\n{result}\n</tool_response>\n<tool_response>\nYour tool call could not be read: it is not JSON")),
                "{second}"
            );
            assert!(second.contains("<|im_start|>assistant\nLet me look.\n<tool_call>\n{\"name\": \"date_time\", \"arguments\": {}}\n</tool_call>\n<tool_call>\n{\"name\": \"date_time\", \"arguments\": {oops}}\n</tool_call><|im_end|>"), "{second}");
        }
        assert_eq!(
            results(&seen).len(),
            4,
            "one real call per run: {:?}",
            results(&seen)
        );
    }

    #[test]
    fn a_persona_switch_changes_the_tools_the_next_reply_offers() {
        let (tools, _, _d) = toolbox(Access::Ask);
        let model = ScriptedQwen::new(&["Hi.", "Hi again."], 3);
        let llm = ToolUsingLlm::new(model, tools.clone());
        llm.stream(&ask("Hello."), &Cancel::new(), &mut |_| {})
            .unwrap();
        tools.set_persona_tools(Some(vec!["date_time".into()]));
        llm.stream(&ask("Hello."), &Cancel::new(), &mut |_| {})
            .unwrap();
        let prompts = llm.llm.prompts.lock().unwrap();
        assert!(
            prompts[0].contains("\"name\": \"run_shell\""),
            "{}",
            prompts[0]
        );
        assert!(
            !prompts[1].contains("\"name\": \"run_shell\""),
            "{}",
            prompts[1]
        );
        assert!(
            prompts[1].contains("\"name\": \"date_time\""),
            "{}",
            prompts[1]
        );
    }

    /// A session started as a persona that lists no tools: its replies offer none (the
    /// prompt has no `# Tools`); a switch to one that lists `date_time` offers it and
    /// its call runs; a switch back offers none again.
    #[test]
    fn a_persona_that_lists_tools_brings_them_to_a_session_started_without() {
        let (tools, seen, _d) = toolbox_for(Access::ReadOnly, false);
        let call = "<tool_call>\n{\"name\": \"date_time\", \"arguments\": {}}\n</tool_call>";
        let model = ScriptedQwen::new(&["Hi.", call, "It is late.", "Bye."], 4);
        let llm = ToolUsingLlm::new(model, tools.clone());
        let mut spoken = String::new();
        let mut say = |llm: &ToolUsingLlm<ScriptedQwen>, words: &str| {
            llm.stream(&ask(words), &Cancel::new(), &mut |p| spoken.push_str(p))
                .unwrap()
        };
        say(&llm, "Hello.");
        tools.set_persona_tools(Some(vec!["date_time".into()]));
        say(&llm, "What time is it?");
        tools.set_persona_tools(None);
        say(&llm, "Goodbye.");
        assert_eq!(spoken, "Hi.It is late.Bye.");
        let prompts = llm.llm.prompts.lock().unwrap();
        assert_eq!(prompts.len(), 4, "one round, two, one");
        assert!(!prompts[0].contains("# Tools"), "{}", prompts[0]);
        assert!(
            prompts[1].contains("\"name\": \"date_time\""),
            "{}",
            prompts[1]
        );
        assert!(!prompts[1].contains("look_at_screen"), "{}", prompts[1]);
        assert!(prompts[2].contains("<tool_response>"), "{}", prompts[2]);
        assert!(!prompts[3].contains("# Tools"), "{}", prompts[3]);
        let done = results(&seen);
        assert_eq!(done.len(), 1);
        assert_eq!(
            (done[0].0.as_str(), done[0].1.as_str()),
            ("date_time", "ok")
        );
    }

    #[test]
    fn a_refused_shell_runs_nothing_and_qwen_is_told() {
        let (tools, seen, d) = toolbox(Access::Ask);
        let marker = d.path().join("ran");
        let call = format!(
            "<tool_call>\n{{\"name\": \"run_shell\", \"arguments\": {{\"command\": \"touch {}\"}}}}\n</tool_call>",
            marker.display()
        );
        let model = ScriptedQwen::new(&[&call, "I may not."], 5);
        let llm = ToolUsingLlm::new(model, tools);
        let mut spoken = String::new();
        llm.stream(&ask("Make a file."), &Cancel::new(), &mut |p| {
            spoken.push_str(p)
        })
        .unwrap();
        assert_eq!(spoken, "I may not.");
        assert!(!marker.exists(), "a refused command does not run");
        let done = results(&seen);
        assert_eq!(done[0].1, "refused");
        let prompts = llm.llm.prompts.lock().unwrap();
        assert!(prompts[1].contains(&format!("<tool_response>\n{}\n</tool_response>", done[0].2)));
    }

    #[test]
    fn calls_stop_after_the_last_round_which_offers_no_tools() {
        let (tools, seen, _d) = toolbox(Access::ReadOnly);
        let again = "<tool_call>{\"name\": \"date_time\", \"arguments\": {}}</tool_call>";
        let model = ScriptedQwen::new(&[again; MAX_ROUNDS + 3], 4);
        let llm = ToolUsingLlm::new(model, tools);
        let mut spoken = String::new();
        llm.stream(&ask("Loop."), &Cancel::new(), &mut |p| spoken.push_str(p))
            .unwrap();
        let prompts = llm.llm.prompts.lock().unwrap();
        assert_eq!(prompts.len(), MAX_ROUNDS + 1);
        assert!(
            !prompts[MAX_ROUNDS].contains("# Tools"),
            "the last round offers none"
        );
        assert_eq!(results(&seen).len(), MAX_ROUNDS);
        assert_eq!(spoken, "", "calls are never spoken");
    }
}
