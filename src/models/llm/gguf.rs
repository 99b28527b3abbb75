//! The in-process LLM: a Qwen2 GGUF chat model (by default Qwen2.5 0.5B instruct,
//! Q4_K_M) on candle, its tokenizer read from the GGUF's own metadata, prompted with
//! Qwen's ChatML template. A reply decodes token by token, each piece of text passed
//! on as soon as its bytes make whole characters; the KV cache keeps the conversation
//! so far, so a turn reads only what changed since the last one.

use super::bpe::{vocabulary, BpeTokenizer, Utf8Stream};
use super::openai::ToolCall;
use super::qwen2::{Qwen2, Qwen2Config};
use super::qwen_tools;
use super::tool_loop::ToolRounds;
use crate::bus::Cancel;
use crate::models::parts::{ChatRequest, ChatRole, Llm, LlmError};
use candle_transformers::generation::{LogitsProcessor, Sampling};
use moshi::candle::quantized::gguf_file;
use moshi::candle::Device;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

pub const DEFAULT_REPO: &str = "Qwen/Qwen2.5-0.5B-Instruct-GGUF";
pub const DEFAULT_FILE: &str = "qwen2.5-0.5b-instruct-q4_k_m.gguf";
/// Positions a conversation may hold (prompt and reply): bounds the KV cache.
pub const DEFAULT_CONTEXT: usize = 4096;
/// Prompt tokens read per forward pass; the cancel flag is looked at between passes.
const PREFILL_CHUNK: usize = 64;
/// Nucleus sampling above temperature 0 (Qwen's own generation config uses 0.8).
const TOP_P: f64 = 0.8;

#[derive(Debug, Clone, PartialEq)]
pub struct GgufLlmOptions {
    /// `--llm-gguf`: a file to use instead of the default model.
    pub gguf: Option<PathBuf>,
    /// Where the default comes from: Hugging Face repository and file.
    pub repo: String,
    pub file: String,
    /// Positions a conversation may hold; the history must stay below this.
    pub context: usize,
    /// Sampling seed (each reply adds its turn number).
    pub seed: u64,
    /// Benchmarks: every reply writes this text's tokens in place of the sampled ones
    /// (random weights write no words), ending with it as at an end token; each token
    /// still costs its forward pass, and the cache holds what the history will.
    pub scripted_reply: Option<String>,
}

impl Default for GgufLlmOptions {
    fn default() -> Self {
        Self {
            gguf: None,
            repo: DEFAULT_REPO.into(),
            file: DEFAULT_FILE.into(),
            context: DEFAULT_CONTEXT,
            seed: 299_792_458,
            scripted_reply: None,
        }
    }
}

fn bad_file(path: &Path, why: impl std::fmt::Display) -> LlmError {
    LlmError {
        message: format!("The LLM file {} cannot be used: {why}.", path.display()),
        remedy: format!(
            "Give --llm-gguf a Qwen2 instruct GGUF (e.g. {DEFAULT_FILE} from {DEFAULT_REPO}), \
             or delete the file so the default is downloaded again."
        ),
        transient: false,
    }
}

/// What a GGUF header says, checked: a Qwen2 chat model with a byte-level tokenizer
/// and all its tensor data present.
pub struct GgufSummary {
    pub config: Qwen2Config,
    pub vocab: usize,
    /// Bytes of tensor data in the file.
    pub tensor_bytes: u64,
    /// Bytes of the token embedding as stored (it is also held as f32 in memory).
    pub embedding_bytes: u64,
}

/// Check `path` without loading its weights: a readable, complete GGUF of a model this
/// LLM runs. The error names the file, what is wrong and the fix.
pub fn check_file(path: &Path) -> Result<GgufSummary, LlmError> {
    if !path.is_file() {
        return Err(LlmError {
            message: format!("The LLM file {} does not exist.", path.display()),
            remedy: format!(
                "Give --llm-gguf the path of a GGUF chat model, or leave it out to use \
                 {DEFAULT_FILE} from the Hugging Face cache (downloaded if missing)."
            ),
            transient: false,
        });
    }
    // Not a GGUF, or cut short: named by the checkpoint checker Moshi's files use.
    let tensors = crate::models::moshi::files::check_gguf(path).map_err(|e| LlmError {
        message: format!("The LLM file is broken: {e}."),
        remedy: format!(
            "Download it again (delete it; without --llm-gguf, {DEFAULT_FILE} is fetched from \
             {DEFAULT_REPO}), or give --llm-gguf another file."
        ),
        transient: false,
    })?;
    let mut f = std::fs::File::open(path).map_err(|e| bad_file(path, e))?;
    let content = gguf_file::Content::read(&mut f).map_err(|e| bad_file(path, e))?;
    let config = Qwen2Config::from_gguf(&content.metadata).map_err(|e| bad_file(path, e))?;
    let tokens = vocabulary(&content.metadata).map_err(|e| bad_file(path, e))?;
    for t in ["<|im_start|>", "<|im_end|>"] {
        if !tokens.iter().any(|x| x == t) {
            return Err(bad_file(
                path,
                format!("its vocabulary has no `{t}` (not a ChatML chat model)"),
            ));
        }
    }
    let embedding_bytes = tensors
        .get("token_embd.weight")
        .map(|t| t.bytes())
        .ok_or_else(|| bad_file(path, "it has no `token_embd.weight` tensor"))?;
    Ok(GgufSummary {
        config,
        vocab: tokens.len(),
        tensor_bytes: tensors.values().map(|t| t.bytes()).sum(),
        embedding_bytes,
    })
}

/// Memory the loaded model takes, in bytes, for the memory plan: its tensors as
/// stored, the token embedding again as f32 (candle looks rows up in a dense copy),
/// the KV cache and rotary tables for `context` positions, and room for one prefill
/// chunk's activations and the logits.
pub fn memory_bytes(summary: &GgufSummary, context: usize) -> u64 {
    let c = &summary.config;
    let positions = context.min(c.context) as u64;
    let embed_f32 = (summary.vocab * c.hidden * 4) as u64;
    let rotary = positions * c.head_dim() as u64 * 4;
    let chunk = PREFILL_CHUNK as u64;
    let activations = chunk * (c.hidden + c.ffn * 3) as u64 * 4
        + chunk * positions * c.n_head as u64 * 4 * 2
        + summary.vocab as u64 * 4 * 2;
    summary.tensor_bytes + embed_f32 + c.kv_bytes(positions as usize) + rotary + activations
}

/// `--llm-gguf`, else the default in the Hugging Face cache `hf_cache`; `None` means
/// it must be downloaded (`super::locate_gguf` does).
pub fn find_gguf(options: &GgufLlmOptions, hf_cache: Option<&Path>) -> Option<PathBuf> {
    if let Some(p) = &options.gguf {
        return Some(p.clone());
    }
    let file = options.file.as_str();
    let snapshot =
        crate::models::moshi::discovery::find_snapshot(hf_cache?, &options.repo, &|d| {
            d.join(file).is_file()
        })?;
    Some(snapshot.join(file))
}

struct Conversation {
    model: Qwen2,
    /// The tokens in the model's KV cache, in order.
    tokens: Vec<u32>,
    replies: u64,
}

pub struct GgufLlm {
    name: String,
    tok: BpeTokenizer,
    im_start: u32,
    im_end: u32,
    stops: Vec<u32>,
    /// The tool template's tags that are tokens of their own: written out as text
    /// even if the file types them as control tokens (which decode to nothing), so
    /// the call parser sees them.
    tags: Vec<(u32, &'static str)>,
    seed: u64,
    /// Positions a conversation may hold (read without the conversation's lock, which
    /// a reply holds while it writes).
    context: usize,
    conv: Mutex<Conversation>,
    /// Prompt tokens read so far (not those the model wrote), for tests and figures:
    /// outside the lock, so a caller may read it from inside a reply's callback.
    read: AtomicU64,
    /// `GgufLlmOptions::scripted_reply`'s tokens.
    scripted: Option<Vec<u32>>,
}

impl GgufLlm {
    /// Load `path` onto `device`, the conversation bounded to `options.context`
    /// positions. Checks the file first (`check_file`); `cancel` is looked at
    /// before and after the weights are read.
    pub fn load(
        path: &Path,
        device: &Device,
        options: &GgufLlmOptions,
        cancel: &Cancel,
    ) -> Result<Self, LlmError> {
        check_file(path)?;
        let cancelled = || LlmError {
            message: "Loading the LLM was cancelled.".into(),
            remedy: String::new(),
            transient: true,
        };
        if cancel.is_cancelled() {
            return Err(cancelled());
        }
        let mut f = std::fs::File::open(path).map_err(|e| bad_file(path, e))?;
        let content = gguf_file::Content::read(&mut f).map_err(|e| bad_file(path, e))?;
        let tok = BpeTokenizer::from_gguf(&content.metadata).map_err(|e| bad_file(path, e))?;
        let model = Qwen2::load(&content, &mut f, device, options.context.max(16))
            .map_err(|e| bad_file(path, e))?;
        if cancel.is_cancelled() {
            return Err(cancelled());
        }
        let id = |t: &str| {
            tok.token_id(t)
                .ok_or_else(|| bad_file(path, format!("no `{t}` token")))
        };
        let (im_start, im_end) = (id("<|im_start|>")?, id("<|im_end|>")?);
        let mut stops = vec![im_end];
        stops.extend(tok.token_id("<|endoftext|>"));
        if let Some(eos) = content
            .metadata
            .get("tokenizer.ggml.eos_token_id")
            .and_then(|v| v.to_u32().ok())
        {
            stops.push(eos);
        }
        let stem = path.file_stem().map_or_else(
            || path.display().to_string(),
            |s| s.to_string_lossy().into_owned(),
        );
        let tags = [
            qwen_tools::CALL_OPEN,
            qwen_tools::CALL_CLOSE,
            qwen_tools::RESPONSE_OPEN,
            qwen_tools::RESPONSE_CLOSE,
        ]
        .into_iter()
        .filter_map(|t| Some((tok.token_id(t)?, t)))
        .collect();
        let scripted = options.scripted_reply.as_deref().map(|t| tok.encode(t));
        Ok(Self {
            name: format!("{stem} (in-process)"),
            tags,
            tok,
            im_start,
            im_end,
            stops,
            seed: options.seed,
            context: model.max_positions(),
            conv: Mutex::new(Conversation {
                model,
                tokens: Vec::new(),
                replies: 0,
            }),
            read: AtomicU64::new(0),
            scripted,
        })
    }

    /// The tokens of `request` in Qwen's ChatML template, ending where the
    /// assistant's reply begins.
    pub fn prompt_tokens(&self, request: &ChatRequest) -> Vec<u32> {
        self.round_tokens(request, &[], &[])
    }

    /// The tokens of a round offering `tools` (OpenAI function definitions), with
    /// `extra` (earlier rounds' calls and results) after the history, in Qwen2.5's
    /// tool template (`qwen_tools::render`), ending where the reply begins.
    pub fn round_tokens(
        &self,
        request: &ChatRequest,
        extra: &[Value],
        tools: &[Value],
    ) -> Vec<u32> {
        let mut out = self.block_tokens(&qwen_tools::render(request, extra, tools), false);
        out.push(self.im_start);
        out.extend(self.tok.encode("assistant\n"));
        out
    }

    /// The tokens of `request`'s system prompt (with `tools`' block) and messages in
    /// ChatML; with `open`, the last message is left unended (a user still speaking).
    fn conversation_tokens(&self, request: &ChatRequest, tools: &[Value], open: bool) -> Vec<u32> {
        self.block_tokens(&qwen_tools::render(request, &[], tools), open)
    }

    /// Each block is encoded on its own, and words split before their leading space,
    /// so the tokens of a user's words so far are a prefix of the tokens of their
    /// whole turn. The template's tags are their own tokens (words stay words).
    fn block_tokens(&self, blocks: &[qwen_tools::Block], open: bool) -> Vec<u32> {
        let mut out = Vec::new();
        let n = blocks.len();
        for (i, b) in blocks.iter().enumerate() {
            out.push(self.im_start);
            let mut words = format!("{}\n", b.role);
            for seg in &b.content {
                match seg {
                    qwen_tools::Seg::Text(t) => words.push_str(t),
                    qwen_tools::Seg::Tag(tag) => {
                        out.extend(self.tok.encode(&std::mem::take(&mut words)));
                        match self.tok.token_id(tag) {
                            Some(id) => out.push(id),
                            None => out.extend(self.tok.encode(tag)),
                        }
                    }
                }
            }
            out.extend(self.tok.encode(&words));
            if !(open && i + 1 == n) {
                out.push(self.im_end);
                out.extend(self.tok.encode("\n"));
            }
        }
        out
    }

    /// Where the system turn ends in `tokens` (after its `<|im_end|>`).
    fn system_end(&self, tokens: &[u32]) -> usize {
        tokens
            .iter()
            .position(|&t| t == self.im_end)
            .map_or(tokens.len(), |p| p + 1)
    }

    /// Positions a conversation may hold (prompt and reply).
    pub fn context(&self) -> usize {
        self.context
    }

    /// Tokens in the KV cache, kept from the last reply.
    pub fn cached_tokens(&self) -> usize {
        self.lock().tokens.len()
    }

    /// The tokens in the KV cache, in order.
    pub fn cached(&self) -> Vec<u32> {
        self.lock().tokens.clone()
    }

    /// Prompt tokens read since loading (a cache hit reads none).
    pub fn tokens_read(&self) -> u64 {
        self.read.load(Ordering::Relaxed)
    }

    pub fn tokenizer(&self) -> &BpeTokenizer {
        &self.tok
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Conversation> {
        // A panic mid-reply leaves a cache we cannot trust: start it afresh.
        self.conv.lock().unwrap_or_else(|p| {
            let mut g = p.into_inner();
            g.tokens.clear();
            let _ = g.model.truncate(0);
            g
        })
    }

    /// Reply to `prompt` (tokens), sampled as `request` asks.
    fn generate(
        &self,
        conv: &mut Conversation,
        prompt: &[u32],
        request: &ChatRequest,
        cancel: &Cancel,
        on_piece: &mut dyn FnMut(&str),
    ) -> Result<(), LlmError> {
        let room = conv.model.max_positions();
        if prompt.len() + 1 > room {
            return Err(LlmError {
                message: format!(
                    "The conversation is {} tokens; the in-process LLM holds {room}.",
                    prompt.len()
                ),
                remedy:
                    "Keep the history shorter than the LLM's context (or start a new conversation)."
                        .into(),
                transient: false,
            });
        }
        let logits = read(conv, prompt, self.system_end(prompt), &self.read, cancel)?;
        let Some(mut logits) = logits else {
            return Ok(());
        };
        let sampling = if request.temperature <= 0.0 {
            Sampling::ArgMax
        } else {
            Sampling::TopP {
                p: TOP_P,
                temperature: request.temperature as f64,
            }
        };
        conv.replies += 1;
        let mut sampler =
            LogitsProcessor::from_sampling(self.seed.wrapping_add(conv.replies), sampling);
        let mut text = Utf8Stream::default();
        let budget = (request.max_tokens as usize).min(room - prompt.len());
        for i in 0..budget {
            if cancel.is_cancelled() {
                return Ok(());
            }
            let sampled = sampler.sample(&logits).map_err(failed)?;
            let next = match &self.scripted {
                Some(script) => match script.get(i) {
                    Some(&t) => t,
                    None => break,
                },
                None => sampled,
            };
            if self.stops.contains(&next) {
                break;
            }
            let piece = match self.tags.iter().find(|(id, _)| *id == next) {
                Some((_, tag)) => text.push(tag.as_bytes()),
                None => text.push(&self.tok.token_bytes(next)),
            };
            if !piece.is_empty() {
                on_piece(&piece);
            }
            if i + 1 < budget {
                logits = conv.model.forward(&[next]).map_err(failed)?;
                conv.tokens.push(next);
            }
        }
        let rest = text.finish();
        if !rest.is_empty() {
            on_piece(&rest);
        }
        Ok(())
    }
}

fn failed(e: moshi::candle::Error) -> LlmError {
    LlmError {
        message: format!("The in-process LLM failed: {e}"),
        remedy: "Try again; if it repeats, use another --llm-gguf or an LLM server (--llm-url)."
            .into(),
        transient: false,
    }
}

fn common_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(a, b)| a == b).count()
}

/// Fewest cached tokens worth moving rather than reading again.
const MIN_MOVED: usize = 32;

/// Where the cached tokens after the prefix `same` that they share with `tokens` go on
/// as `tokens` do, a gap later: the history was cut at its front, after the system
/// prompt, and the rest follows unchanged. (The gap, the tokens that follow it alike.)
/// Only past `system_end`: a change inside the system turn (a tool offered no longer)
/// is read again, so that nothing after it keeps what it read of the old one.
fn dropped_gap(
    cached: &[u32],
    tokens: &[u32],
    same: usize,
    system_end: usize,
) -> Option<(usize, usize)> {
    if same < system_end {
        return None;
    }
    let want = tokens.get(same..).filter(|w| w.len() >= MIN_MOVED)?;
    (1..cached.len().saturating_sub(same))
        .filter(|&gap| cached[same + gap] == want[0])
        .map(|gap| (gap, common_prefix(&cached[same + gap..], want)))
        .max_by_key(|&(gap, moved)| (moved, std::cmp::Reverse(gap)))
        .filter(|&(_, moved)| moved >= MIN_MOVED)
}

/// Bring the KV cache to `tokens`: keep the prefix it shares with them (and the part
/// after a cut at the front, moved down: `dropped_gap`), read the rest
/// (at least one token, for logits) in chunks, looking at `cancel` between chunks.
/// The logits after the last token; `None` when cancelled.
fn read(
    conv: &mut Conversation,
    tokens: &[u32],
    system_end: usize,
    counted: &AtomicU64,
    cancel: &Cancel,
) -> Result<Option<moshi::candle::Tensor>, LlmError> {
    let mut same = common_prefix(&conv.tokens, tokens);
    if let Some((gap, moved)) = dropped_gap(&conv.tokens, tokens, same, system_end) {
        tracing::debug!(
            "llm: {gap} cached tokens after the first {same} were dropped (the history cut at its front); {moved} after them moved down, not read again"
        );
        conv.model.remove(same, gap).map_err(failed)?;
        conv.tokens.drain(same..same + gap);
        same = common_prefix(&conv.tokens, tokens);
    }
    let keep = same.min(tokens.len().saturating_sub(1));
    tracing::debug!(
        "llm: {} tokens cached, {keep} kept, {} to read",
        conv.tokens.len(),
        tokens.len() - keep
    );
    conv.model.truncate(keep).map_err(failed)?;
    conv.tokens.truncate(keep);
    let mut logits = None;
    for chunk in tokens[keep..].chunks(PREFILL_CHUNK) {
        if cancel.is_cancelled() {
            return Ok(None);
        }
        logits = Some(conv.model.forward(chunk).map_err(failed)?);
        conv.tokens.extend_from_slice(chunk);
        counted.fetch_add(chunk.len() as u64, Ordering::Relaxed);
    }
    Ok(logits)
}

impl Llm for GgufLlm {
    fn name(&self) -> String {
        self.name.clone()
    }

    /// Read `request`'s system prompt and history into the KV cache now, without
    /// replying (and without the assistant's opening): after a persona switch, or
    /// while the user speaks, so that the reply reads only what is new. When the last
    /// message is the user's it is their turn so far: read without its end, so the
    /// next call (more words, or words that changed) reads on from where the tokens
    /// differ. Cancel stops between chunks of 64 tokens; what was read stays.
    fn prepare(&self, request: &ChatRequest, cancel: &Cancel) -> Result<(), LlmError> {
        self.prepare_with(request, &[], cancel)
    }

    fn stream(
        &self,
        request: &ChatRequest,
        cancel: &Cancel,
        on_piece: &mut dyn FnMut(&str),
    ) -> Result<(), LlmError> {
        self.stream_tokens(&self.prompt_tokens(request), request, cancel, on_piece)
    }

    /// Exact: this model's own tokenizer.
    fn count_tokens(&self, text: &str) -> usize {
        self.tok.encode(text).len()
    }

    fn context_tokens(&self) -> usize {
        self.context
    }

    /// Exact: the ChatML prompt as `stream` renders it.
    fn count_prompt(&self, request: &ChatRequest) -> usize {
        self.prompt_tokens(request).len()
    }
}

/// Tools in Qwen2.5's own template: calls are read out of the reply as it streams
/// (`qwen_tools::CallStream`), and never spoken.
impl ToolRounds for GgufLlm {
    fn stream_round(
        &self,
        request: &ChatRequest,
        extra: &[Value],
        tools: &[Value],
        cancel: &Cancel,
        on_piece: &mut dyn FnMut(&str),
    ) -> Result<Vec<ToolCall>, LlmError> {
        let prompt = self.round_tokens(request, extra, tools);
        qwen_tools::stream_calls(
            |words| self.stream_tokens(&prompt, request, cancel, words),
            on_piece,
        )
    }

    fn prepare_round(
        &self,
        request: &ChatRequest,
        tools: &[Value],
        cancel: &Cancel,
    ) -> Result<(), LlmError> {
        self.prepare_with(request, tools, cancel)
    }

    fn count_prompt_round(&self, request: &ChatRequest, tools: &[Value]) -> usize {
        self.round_tokens(request, &[], tools).len()
    }

    /// A 0.5B text model: a screenshot's image would be lost on it.
    fn takes_images(&self) -> bool {
        false
    }
}

impl GgufLlm {
    /// Reply to `prompt` under the conversation's lock; a failure empties the cache.
    fn stream_tokens(
        &self,
        prompt: &[u32],
        request: &ChatRequest,
        cancel: &Cancel,
        on_piece: &mut dyn FnMut(&str),
    ) -> Result<(), LlmError> {
        let mut conv = self.lock();
        let out = self.generate(&mut conv, prompt, request, cancel, on_piece);
        if out.is_err() {
            // The cache may hold half a step.
            conv.tokens.clear();
            let _ = conv.model.truncate(0);
        }
        out
    }

    /// `Llm::prepare`, the system turn with `tools`' block (none when empty).
    fn prepare_with(
        &self,
        request: &ChatRequest,
        tools: &[Value],
        cancel: &Cancel,
    ) -> Result<(), LlmError> {
        let open = request
            .messages
            .last()
            .is_some_and(|m| m.role == ChatRole::User);
        let tokens = self.conversation_tokens(request, tools, open);
        let mut conv = self.lock();
        if tokens.is_empty() || tokens.len() >= conv.model.max_positions() {
            return Ok(());
        }
        let out = read(
            &mut conv,
            &tokens,
            self.system_end(&tokens),
            &self.read,
            cancel,
        )
        .map(|_| ());
        if out.is_err() {
            conv.tokens.clear();
            let _ = conv.model.truncate(0);
        }
        out
    }
}
