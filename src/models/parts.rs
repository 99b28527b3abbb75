//! The three streaming parts of the cascade, as the turn machine sees them. All audio
//! is 24 kHz mono in 1920-sample (80 ms) frames, the engine's own frame.

use crate::bus::Cancel;
use anyhow::Result;

/// What the recogniser made of one 80 ms frame.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SttStep {
    /// Words completed this frame, in order, without leading spaces.
    pub words: Vec<String>,
    /// The model's probability that the user has finished speaking (its pause
    /// prediction head), when the checkpoint has one; turn-taking reads this.
    pub end_of_speech: Option<f32>,
}

/// Kyutai's streaming STT (or anything that streams words from audio).
pub trait SpeechToText: Send {
    /// Human name for the header and journal, e.g. "kyutai/stt-1b-en_fr".
    fn name(&self) -> String;
    /// Feed exactly one 1920-sample frame at 24 kHz.
    fn step(&mut self, pcm: &[f32]) -> Result<SttStep>;
    /// Frames between a word's audio and its word event (the model's text delay),
    /// for latency reporting.
    fn delay_frames(&self) -> usize;
    /// Forget the utterance: caches and text assembly.
    fn reset(&mut self);
    /// Words of audio already heard are still on their way (a recogniser that
    /// transcribes a whole utterance after its end): the turn waits for them.
    fn pending(&self) -> bool {
        false
    }
    /// Frames of silence that push the last words out at the end of a turn (a model
    /// with a text delay needs its delay); none for one that transcribes the
    /// utterance after it ends.
    fn flush_frames(&self) -> usize {
        self.delay_frames()
    }
}

/// What the synthesiser did for one 80 ms frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TtsStep {
    /// `out` holds a frame of speech. `words_started` counts the words of the current
    /// utterance whose audio has begun, so far (monotonic), so that the history keeps
    /// only what was heard.
    Audio { words_started: usize },
    /// Waiting for more text; `out` is silence.
    Waiting,
    /// The utterance is finished (after `finish` and all its audio); `out` is silence.
    Done,
}

/// Samples in a synthesiser's frame: 80 ms at 24 kHz.
pub const TTS_FRAME: usize = 1920;

/// Kyutai's streaming TTS (or anything that speaks text as it arrives).
pub trait TextToSpeech: Send {
    fn name(&self) -> String;
    /// Choose the voice for the next utterance: a name or path the part resolves
    /// (for Kyutai TTS, a voice embedding file). An error leaves the old voice.
    fn set_voice(&mut self, voice: &str) -> Result<()>;
    /// Whether `voice` names a voice of this synthesiser's kind at all (found or not):
    /// a persona written for another synthesiser (Kyutai's `expresso/…` voices under
    /// Pocket TTS) keeps the current voice instead of failing the switch.
    fn takes_voice(&self, _voice: &str) -> bool {
        true
    }
    /// Begin a new utterance (drops any unfinished one). An error (the model could not
    /// set up its state) leaves no utterance: the reply cannot be spoken.
    fn start(&mut self) -> Result<()>;
    /// More text of the utterance, as the LLM writes it (any split: words may span
    /// calls). Speech may start before the text is complete.
    fn push_text(&mut self, text: &str);
    /// No more text will come for this utterance.
    fn finish(&mut self);
    /// Produce the next frame into `out` (`TTS_FRAME` samples, already zeroed).
    fn step(&mut self, out: &mut [f32]) -> Result<TtsStep>;
    /// Whether the input keeps a clock (a microphone) or is a file read as fast as the
    /// model steps; a synthesiser on a thread of its own takes what is ready only in
    /// the first case.
    fn set_realtime(&mut self, _realtime: bool) {}
    /// Stop at once (barge-in): forget the unspoken rest of the utterance.
    fn cancel(&mut self);
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChatRole {
    System,
    User,
    Assistant,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ChatMessage {
    pub role: ChatRole,
    pub content: String,
}

/// One reply to ask for: the persona's prompt as the system message, then the history.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatRequest {
    pub system: String,
    pub messages: Vec<ChatMessage>,
    pub temperature: f32,
    pub max_tokens: u32,
    /// The persona's model choice; `None` means the LLM's configured default.
    pub model: Option<String>,
}

/// Why a reply failed, worded for the user, with what to do about it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct LlmError {
    pub message: String,
    pub remedy: String,
    /// Worth trying again later (server down, slow, overloaded), rather than a
    /// configuration mistake.
    pub transient: bool,
}

/// A text LLM that streams its reply.
pub trait Llm: Send + Sync {
    /// e.g. "ollama llama3.2 at http://127.0.0.1:11434" or "qwen2.5-0.5b q4 (in-process)".
    fn name(&self) -> String;
    /// Stream one reply, calling `on_piece` with each piece of text as it arrives.
    /// Returns when the reply is complete, or early (Ok) once `cancel` is set. Blocks:
    /// the turn machine runs it on a thread of its own.
    fn stream(
        &self,
        request: &ChatRequest,
        cancel: &Cancel,
        on_piece: &mut dyn FnMut(&str),
    ) -> Result<(), LlmError>;
    /// Tokens in `text` as this LLM counts them.
    fn count_tokens(&self, text: &str) -> usize;
    /// Positions one exchange may take, prompt and reply together: the history is
    /// bounded so that the rendered prompt and `max_tokens` fit in it.
    fn context_tokens(&self) -> usize;
    /// Tokens of `request` as the model reads it: the system prompt, every message and
    /// the chat template around them, up to where the reply begins. Unless the LLM
    /// renders the prompt itself, an estimate: `count_tokens` of each text and
    /// `TEMPLATE_TOKENS` for each message's markup and the reply's opening.
    fn count_prompt(&self, request: &ChatRequest) -> usize {
        let texts = std::iter::once(request.system.as_str())
            .chain(request.messages.iter().map(|m| m.content.as_str()));
        texts
            .map(|t| self.count_tokens(t) + TEMPLATE_TOKENS)
            .sum::<usize>()
            + TEMPLATE_TOKENS
    }
    /// Read `request` ahead of the reply, while the user speaks, so that the reply
    /// reads only what is new: the system prompt and history, and when the last
    /// message is the user's, their words so far (still open: more may come, so its
    /// end is not read). Called again as the words grow or change; what the model
    /// already read of a shared prefix is kept. Blocks; nothing to do for a server.
    fn prepare(&self, _request: &ChatRequest, _cancel: &Cancel) -> Result<(), LlmError> {
        Ok(())
    }
}

/// Tokens a chat template puts around one message (ChatML: `<|im_start|>`, the role,
/// a newline, `<|im_end|>`, a newline), for `Llm::count_prompt`'s estimate.
pub const TEMPLATE_TOKENS: usize = 5;
