//! The cascade's turn machine: one `DuplexModel` made of a streaming recogniser, an
//! LLM on a thread of its own and a streaming synthesiser. Listening → (the user's
//! turn ends) → Thinking → (the first audio) → Speaking → (the reply played) →
//! Listening; the user's voice during Thinking or Speaking stops the reply at once.
//!
//! A turn opens with a speech onset (by loudness). The recogniser's words join it
//! only when they come after that onset (less its delay): words with no onset before
//! them are someone else's (a TV the onset detector learnt as the room's floor). While
//! the user speaks, the LLM reads the conversation and their words so far ahead, so
//! that at the end of speech only the last words and the template's tail are left.

use super::history::History;
use crate::audio::onset::Onset;
use crate::bus::{Cancel, Talk, TalkPhase};
use crate::models::duplex::{DuplexModel, ModelInfo, Primed, Prompt, Sampling, StepOutput};
use crate::models::llm::worker::{LlmThread, Piece};
use crate::models::parts::{
    ChatMessage, ChatRequest, ChatRole, Llm, SpeechToText, TextToSpeech, TtsStep,
};
use anyhow::Result;
use crossbeam_channel::{Receiver, TryRecvError};
use std::sync::Arc;
use std::time::Instant;

pub const SAMPLE_RATE: u32 = 24_000;
pub const FRAME_LEN: usize = 1920;

/// Quiet frames after speech before the user's turn may end when the recogniser
/// predicts the end of speech (320 ms), and after which it ends regardless (800 ms):
/// ended and answered if it was an utterance, forgotten if it was a noise.
const MIN_QUIET_FRAMES: u32 = 4;
const MAX_QUIET_FRAMES: u32 = 10;
/// How long the turn waits past `MAX_QUIET_FRAMES` for a recogniser whose words are
/// still on their way (Whisper transcribes an utterance after its end): 3 s.
const MAX_PENDING_QUIET_FRAMES: u32 = 38;
/// The recogniser's end-of-speech probability that ends a turn early.
const END_OF_SPEECH: f32 = 0.5;
/// Frames of speech (by loudness) that make an utterance rather than a noise.
const MIN_SPEECH_FRAMES: u32 = 2;
/// Frames a word's audio may begin before the onset that opened the turn (a soft
/// first sound under the detector's threshold) and still be the user's.
const ONSET_SLACK_FRAMES: u64 = 2;
/// Tokens left free for the user's words when the history is bounded at their onset
/// (at most an eighth of the context),
/// so that their words do not push the oldest turn out at the end of speech (which
/// would change the prompt's start and make the LLM read it all again).
const USER_WORDS_RESERVE: usize = 256;
/// Frames the synthesiser may hold, the one playing included (480 ms). It makes one frame per
/// engine step at least; when a step leaves time it makes another, so a slow step
/// later (the machine busy, a new chunk's text read in) plays from this lead instead
/// of running the speaker dry. A barge-in drops the lead with the reply. (On a CPU
/// the synthesiser runs on a thread of its own, `TtsThread`, and a step here only
/// takes what it has made.)
const LEAD_FRAMES: usize = 6;
/// Synthesise ahead only while the engine step has used less than this of its 80 ms.
const LEAD_BUDGET: std::time::Duration = std::time::Duration::from_millis(40);

/// What the LLM is told when the persona has no prompt.
pub const DEFAULT_SYSTEM_PROMPT: &str = "You are a helpful voice assistant talking with \
someone out loud. Answer briefly, in plain spoken sentences, without lists or markup.";

/// How replies are asked for; a persona switch changes them from the next turn.
#[derive(Debug, Clone, PartialEq)]
pub struct TurnSettings {
    pub system_prompt: String,
    pub temperature: f32,
    /// The persona's LLM model, or the LLM's default.
    pub llm_model: Option<String>,
    /// The reply's length bound; the history is bounded so that the rendered prompt
    /// and this fit in the LLM's context.
    pub max_tokens: u32,
}

impl Default for TurnSettings {
    fn default() -> Self {
        Self {
            system_prompt: DEFAULT_SYSTEM_PROMPT.into(),
            temperature: 0.7,
            llm_model: None,
            max_tokens: 300,
        }
    }
}

/// The reply being written and played. Dropping it stops the LLM writing it.
struct Reply {
    pieces: Receiver<Piece>,
    cancel: Cancel,
    /// Everything the LLM wrote so far.
    text: String,
    written: bool,
    finished: bool,
    /// Words whose audio has started (the synthesiser's count).
    started: usize,
    /// Words already sent to the feed.
    fed: usize,
    /// Frames synthesised and not played yet, with what the synthesiser said of each.
    ahead: std::collections::VecDeque<(Vec<f32>, TtsStep)>,
}

impl Drop for Reply {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

impl Reply {
    /// The words from `fed` to `started`, each with its leading space, for the feed.
    fn newly_heard(&mut self) -> Option<String> {
        if self.started <= self.fed {
            return None;
        }
        let mut s = String::new();
        for w in self
            .text
            .split_whitespace()
            .skip(self.fed)
            .take(self.started - self.fed)
        {
            s.push(' ');
            s.push_str(w);
        }
        self.fed = self.started;
        (!s.is_empty()).then_some(s)
    }

    fn heard_text(&self) -> String {
        let words: Vec<&str> = self.text.split_whitespace().take(self.started).collect();
        words.join(" ")
    }

    fn word_count(&self) -> usize {
        self.text.split_whitespace().count()
    }
}

/// The user's turn as it is heard.
#[derive(Default)]
struct UserTurn {
    words: String,
    speech_frames: u32,
    quiet_frames: u32,
    end_of_speech: Option<f32>,
    /// The frame of the speech onset that opened the turn; none, no turn is open.
    onset: Option<u64>,
    /// The history was bounded for this turn (at its onset, leaving room for it).
    bounded: bool,
}

pub struct Cascade {
    stt: Box<dyn SpeechToText>,
    tts: Box<dyn TextToSpeech>,
    llm: Arc<dyn Llm>,
    /// The LLM's thread, started with the first job.
    llm_thread: Option<LlmThread>,
    device: String,
    /// The speech parts' compute type, for the header.
    dtype: String,
    /// Personas keep the voice it has (the demo's tiny TTS has only one).
    fixed_voice: bool,
    settings: TurnSettings,
    /// Settings (persona) that take over when the current reply is over.
    next: Option<TurnSettings>,
    history: History,
    onset: Onset,
    phase: TalkPhase,
    user: UserTurn,
    reply: Option<Reply>,
    /// The LLM reading the user's turn ahead (its cancel flag: a reset drops it).
    reading_ahead: Option<Cancel>,
    /// Frames stepped, for placing the recogniser's words against the onset.
    frame: u64,
    /// The first step says "listening", so front-ends know turns come from here (and
    /// show the recogniser's words rather than their own voice detection).
    announced: bool,
    /// When this engine step began (the lead's budget counts from it).
    step_began: Instant,
    /// Frame buffers the lead has played, kept for the next frames it makes (the
    /// engine step allocates none once a reply is under way).
    spare_frames: Vec<Vec<f32>>,
    silence: Vec<f32>,
    /// Where a tool's consent question waits (src/tools): while one does, the user's
    /// next turn is its spoken answer, not a barge-in.
    consent: Option<Arc<crate::tools::consent::Desk>>,
    /// Turns the user typed, taken at the next step.
    typed: std::collections::VecDeque<String>,
    /// The wake gate waits: the recogniser's words go to `wake_words` only.
    wake_listen: bool,
    wake_words: String,
    /// Words said after the wake phrase, to start the next turn with.
    carried: Option<String>,
}

impl Cascade {
    pub fn new(
        stt: Box<dyn SpeechToText>,
        tts: Box<dyn TextToSpeech>,
        llm: Arc<dyn Llm>,
        device: impl Into<String>,
        settings: TurnSettings,
    ) -> Self {
        Self {
            stt,
            tts,
            llm,
            llm_thread: None,
            device: device.into(),
            dtype: String::new(),
            fixed_voice: false,
            settings,
            next: None,
            history: History::default(),
            onset: Onset::default(),
            phase: TalkPhase::Listening,
            user: UserTurn::default(),
            reply: None,
            reading_ahead: None,
            frame: 0,
            announced: false,
            step_began: Instant::now(),
            spare_frames: Vec::new(),
            silence: vec![0.0; FRAME_LEN],
            consent: None,
            typed: std::collections::VecDeque::new(),
            wake_listen: false,
            wake_words: String::new(),
            carried: None,
        }
    }

    /// Let the user answer tools' consent questions by voice.
    pub fn with_consent(mut self, desk: Arc<crate::tools::consent::Desk>) -> Self {
        self.consent = Some(desk);
        self
    }

    fn consent_waiting(&self) -> bool {
        self.consent.as_ref().is_some_and(|d| d.waiting())
    }

    /// The user's turn while a consent question waits: a yes or a no answers it; other
    /// words are not a question to the LLM (the reply is still being written).
    fn consent_turn(&mut self, out: &mut StepOutput) -> Result<()> {
        for _ in 0..self.stt.flush_frames() {
            let step = self.stt.step(&self.silence)?;
            self.heard_words(step.words, out);
        }
        let said = std::mem::take(&mut self.user.words);
        self.user = UserTurn::default();
        out.talk.push(Talk::UserTurnEnded);
        if let (Some(desk), Some(yes)) =
            (&self.consent, crate::tools::consent::spoken_answer(&said))
        {
            desk.answer(yes, "voice");
        }
        Ok(())
    }

    pub fn with_fixed_voice(mut self, fixed: bool) -> Self {
        self.fixed_voice = fixed;
        self
    }

    pub fn with_dtype(mut self, dtype: &str) -> Self {
        self.dtype = dtype.into();
        self
    }

    pub fn phase(&self) -> TalkPhase {
        self.phase
    }

    pub fn history(&self) -> &History {
        &self.history
    }

    fn set_phase(&mut self, phase: TalkPhase, out: &mut StepOutput) {
        if self.phase != phase {
            self.phase = phase;
            out.talk.push(Talk::Phase(phase));
        }
    }

    /// The LLM's thread, started if it is not running.
    fn llm_thread(&mut self) -> std::io::Result<&LlmThread> {
        if self.llm_thread.is_none() {
            self.llm_thread = Some(LlmThread::spawn(self.llm.clone())?);
        }
        Ok(self.llm_thread.as_ref().expect("started above"))
    }

    /// Words from the recogniser this frame. They join the user's turn if it is open
    /// and they came after its onset: a word arrives `delay_frames` after its audio,
    /// so one that arrives sooner after the onset was said before it, by someone else.
    /// True when any joined.
    fn heard_words(&mut self, words: Vec<String>, out: &mut StepOutput) -> bool {
        let delay = self.stt.delay_frames() as u64;
        let theirs = self
            .user
            .onset
            .is_some_and(|k| self.frame + ONSET_SLACK_FRAMES >= k + delay);
        let mut joined = false;
        for w in words {
            let w = w.trim();
            if w.is_empty() {
                continue;
            }
            if !theirs {
                tracing::debug!("cascade: {w:?} heard with no speech onset before it: not a turn");
                continue;
            }
            self.user.words.push(' ');
            self.user.words.push_str(w);
            out.talk.push(Talk::UserWords(format!(" {w}")));
            joined = true;
        }
        joined
    }

    fn user_turn_over(&self) -> bool {
        let u = &self.user;
        let words_coming = self.stt.pending() && u.quiet_frames < MAX_PENDING_QUIET_FRAMES;
        u.speech_frames >= MIN_SPEECH_FRAMES
            && u.quiet_frames >= MIN_QUIET_FRAMES
            && !words_coming
            && (u.quiet_frames >= MAX_QUIET_FRAMES
                || u.end_of_speech.is_some_and(|p| p >= END_OF_SPEECH))
    }

    /// A turn of too little speech to be an utterance (a click, a knock), quiet for
    /// the longest pause: it is forgotten, with any words it had, and what is heard
    /// next needs an onset of its own.
    fn noise_over(&self) -> bool {
        let u = &self.user;
        u.speech_frames > 0
            && u.speech_frames < MIN_SPEECH_FRAMES
            && u.quiet_frames >= MAX_QUIET_FRAMES
    }

    /// The user stopped: flush the recogniser's delay with silence (faster than real
    /// time) so their last words are in, then ask the LLM.
    fn end_user_turn(&mut self, out: &mut StepOutput) -> Result<()> {
        for _ in 0..self.stt.flush_frames() {
            let step = self.stt.step(&self.silence)?;
            self.heard_words(step.words, out);
        }
        let said = std::mem::take(&mut self.user.words);
        self.user = UserTurn::default();
        if said.trim().is_empty() {
            // A noise, or speech the recogniser made nothing of: nothing to answer.
            self.stop_reading_ahead();
            return Ok(());
        }
        out.talk.push(Talk::UserTurnEnded);
        self.history.push(ChatRole::User, &said);
        self.ask(out);
        Ok(())
    }

    /// Drop the oldest turns until the rendered prompt and the reply's `max_tokens`
    /// fit in the LLM's context, and room for the user's words `for_words` (at their
    /// onset). Once over, it drops a quarter more, so that
    /// the next turns do not each drop one (each drop changes the prompt's start, and
    /// the in-process LLM reads it all again).
    fn bound_history(&mut self, for_words: bool) {
        let llm = self.llm.clone();
        let context = llm.context_tokens();
        let reply = (self.settings.max_tokens as usize).min(context / 2);
        let reserve = if for_words {
            USER_WORDS_RESERVE.min(context / 8)
        } else {
            0
        };
        let budget = context.saturating_sub(reply + reserve);
        let system = self.settings.system_prompt.clone();
        let measure = |messages: &[ChatMessage]| {
            llm.count_prompt(&ChatRequest {
                system: system.clone(),
                messages: messages.to_vec(),
                temperature: 0.0,
                max_tokens: 0,
                model: None,
            })
        };
        self.history.bound(budget, budget - budget / 4, &measure);
    }

    /// The request for the conversation so far, and `open` (the user's words still
    /// being heard) as its last message when given.
    fn request(&self, open: Option<&str>) -> ChatRequest {
        let mut messages = self.history.messages().to_vec();
        if let Some(words) = open.map(str::trim).filter(|w| !w.is_empty()) {
            messages.push(ChatMessage {
                role: ChatRole::User,
                content: words.to_string(),
            });
        }
        ChatRequest {
            system: self.settings.system_prompt.clone(),
            messages,
            temperature: self.settings.temperature,
            max_tokens: self.settings.max_tokens,
            model: self.settings.llm_model.clone(),
        }
    }

    /// The user is speaking: let the LLM read the conversation so far and their words
    /// as heard, so the reply reads only what is left at the end of speech. Called at
    /// the onset and as words join; each call reads on from what changed.
    fn read_ahead(&mut self) {
        if !std::mem::replace(&mut self.user.bounded, true) {
            self.bound_history(true);
        }
        let request = self.request(Some(&self.user.words));
        let cancel = self.reading_ahead.get_or_insert_with(Cancel::new).clone();
        match self.llm_thread() {
            Ok(t) => t.prepare(request, &cancel),
            Err(e) => tracing::debug!("cascade: no LLM thread to read ahead on: {e}"),
        }
    }

    fn stop_reading_ahead(&mut self) {
        if let Some(c) = self.reading_ahead.take() {
            c.cancel();
        }
    }

    fn ask(&mut self, out: &mut StepOutput) {
        // What was read ahead is the reply's prefix: let it finish, not cancel it.
        self.reading_ahead = None;
        if let Err(e) = self.tts.start() {
            // Nothing could be spoken: ask nothing. The user's words stay in the
            // history, so the next turn asks again.
            out.talk.push(Talk::LlmTrouble {
                message: format!("The synthesiser could not start the reply: {e:#}."),
                remedy: "Speak again to retry; if it repeats, check --tts-model-dir and \
                         --tts-voice (or the persona's voice)."
                    .into(),
            });
            return;
        }
        self.bound_history(false);
        let request = self.request(None);
        let cancel = Cancel::new();
        let pieces = match self.llm_thread() {
            Ok(t) => t.reply(request, &cancel),
            Err(e) => {
                self.tts.cancel();
                out.talk.push(Talk::LlmTrouble {
                    message: format!("could not start the LLM thread: {e}"),
                    remedy: "free some memory or threads and speak again".into(),
                });
                return;
            }
        };
        self.reply = Some(Reply {
            pieces,
            cancel,
            text: String::new(),
            written: false,
            finished: false,
            started: 0,
            fed: 0,
            ahead: std::collections::VecDeque::new(),
        });
        self.set_phase(TalkPhase::Thinking, out);
    }

    /// The user spoke over the reply: silence from this frame on, cancel the writing,
    /// keep in the history only what was played.
    fn barge_in(&mut self, out: &mut StepOutput) {
        let Some(reply) = self.reply.take() else {
            return;
        };
        self.tts.cancel();
        if self.phase == TalkPhase::Speaking {
            self.history.push(ChatRole::Assistant, &reply.heard_text());
            out.talk.push(Talk::BargedIn {
                heard: reply.started,
                of: reply.word_count(),
            });
            // What the speaker still holds of the reply goes too.
            out.cut = true;
        } else if let Some(said) = self.history.take_last_user() {
            // Nothing played yet: the user is still talking. Their words rejoin the turn.
            self.user.words = format!(" {said}{}", self.user.words);
        }
        drop(reply);
        // Their turn opens here: words heard from now on (less the delay) are theirs.
        self.user.onset = Some(self.frame);
        self.set_phase(TalkPhase::Listening, out);
        self.take_next_settings();
        self.read_ahead();
    }

    fn take_next_settings(&mut self) {
        if let Some(next) = self.next.take() {
            self.settings = next;
        }
    }

    /// A typed turn: it stops a reply under way (what was played of it stays in the
    /// history, as at a barge-in) and drops the words heard so far, then goes to the
    /// LLM as the user's words.
    fn take_typed(&mut self, text: String, out: &mut StepOutput) {
        if let Some(reply) = self.reply.take() {
            self.tts.cancel();
            if self.phase == TalkPhase::Speaking {
                self.history.push(ChatRole::Assistant, &reply.heard_text());
                out.talk.push(Talk::BargedIn {
                    heard: reply.started,
                    of: reply.word_count(),
                });
                out.cut = true;
            }
            self.set_phase(TalkPhase::Listening, out);
            self.take_next_settings();
        }
        self.stop_reading_ahead();
        self.user = UserTurn::default();
        out.talk.push(Talk::Typed(text.clone()));
        self.history.push(ChatRole::User, &text);
        self.ask(out);
    }

    /// The reply is over (played, or nothing to play): back to listening, with a
    /// fresh turn (what the microphone heard meanwhile was our own voice).
    fn reply_over(&mut self, out: &mut StepOutput) {
        self.reply = None;
        self.user = UserTurn::default();
        self.set_phase(TalkPhase::Listening, out);
        self.take_next_settings();
    }

    /// Pass the LLM's pieces to the synthesiser and play one frame of the reply.
    fn speak(&mut self, out: &mut StepOutput) -> Result<()> {
        let Some(reply) = self.reply.as_mut() else {
            return Ok(());
        };
        loop {
            match reply.pieces.try_recv() {
                Ok(Piece::Text(p)) => {
                    reply.text.push_str(&p);
                    self.tts.push_text(&p);
                }
                Ok(Piece::Done) | Err(TryRecvError::Disconnected) => {
                    reply.written = true;
                    break;
                }
                Ok(Piece::Failed(e)) => {
                    reply.written = true;
                    out.talk.push(Talk::LlmTrouble {
                        message: e.message,
                        remedy: e.remedy,
                    });
                    if reply.text.trim().is_empty() {
                        // Nothing to say: the user's words stay in the history, so the
                        // next turn asks again.
                        self.tts.cancel();
                        self.reply_over(out);
                        return Ok(());
                    }
                    break;
                }
                Err(TryRecvError::Empty) => break,
            }
        }
        if reply.written && !reply.finished {
            reply.finished = true;
            self.tts.finish();
        }
        // This frame's audio comes from the lead, else from a step now; then, while
        // this engine step has time, the synthesiser runs ahead.
        let frame = out.pcm.len();
        loop {
            let need = reply.ahead.is_empty();
            let room = reply.ahead.len() < LEAD_FRAMES
                && matches!(reply.ahead.back(), Some((_, TtsStep::Audio { .. })))
                && self.step_began.elapsed() < LEAD_BUDGET;
            if !need && !room {
                break;
            }
            let mut pcm = self.spare_frames.pop().unwrap_or_default();
            pcm.clear();
            pcm.resize(frame, 0.0);
            match self.tts.step(&mut pcm) {
                Ok(TtsStep::Waiting) if !need => {
                    self.spare_frames.push(pcm);
                    break;
                }
                Ok(s) => reply.ahead.push_back((pcm, s)),
                Err(e) => {
                    // The reply cannot go on: stop writing it (dropping it does).
                    self.reply_over(out);
                    return Err(e);
                }
            }
        }
        let Some((pcm, step)) = reply.ahead.pop_front() else {
            return Ok(());
        };
        out.pcm.copy_from_slice(&pcm);
        if self.spare_frames.len() < LEAD_FRAMES {
            self.spare_frames.push(pcm);
        }
        match step {
            TtsStep::Audio { words_started } => {
                reply.started = reply.started.max(words_started);
                out.text = reply.newly_heard();
                self.set_phase(TalkPhase::Speaking, out);
            }
            TtsStep::Waiting => {}
            TtsStep::Done => {
                reply.started = reply.word_count();
                out.text = reply.newly_heard();
                let heard = reply.heard_text();
                self.history.push(ChatRole::Assistant, &heard);
                self.reply_over(out);
            }
        }
        Ok(())
    }
}

impl DuplexModel for Cascade {
    fn info(&self) -> ModelInfo {
        ModelInfo {
            name: format!(
                "cascade: {} → {} → {}",
                self.stt.name(),
                self.llm.name(),
                self.tts.name()
            ),
            device: self.device.clone(),
            dtype: self.dtype.clone(),
        }
    }

    fn sample_rate(&self) -> u32 {
        SAMPLE_RATE
    }

    fn frame_len(&self) -> usize {
        FRAME_LEN
    }

    fn delay_frames(&self) -> usize {
        self.stt.delay_frames()
    }

    fn step(&mut self, pcm_in: &[f32], out: &mut StepOutput) -> Result<()> {
        self.step_began = Instant::now();
        if !std::mem::replace(&mut self.announced, true) {
            out.talk.push(Talk::Phase(self.phase));
        }
        self.frame += 1;
        if self.wake_listen {
            // Waiting for a wake phrase: the recogniser runs so its words can be
            // spotted, and nothing else happens (no turn, no LLM, no talk events).
            self.onset.frame(pcm_in);
            let stt = self.stt.step(pcm_in)?;
            for w in stt.words.iter().map(|w| w.trim()).filter(|w| !w.is_empty()) {
                self.wake_words.push(' ');
                self.wake_words.push_str(w);
            }
            return self.speak(out);
        }
        if let Some(words) = self.carried.take() {
            self.user.words.push_str(&words);
            out.talk.push(Talk::UserWords(words));
        }
        if let Some(text) = self.typed.pop_front() {
            // The microphone's frame still goes to the recogniser and the onset
            // detector, so their clocks keep time; its words are not this turn's.
            self.onset.frame(pcm_in);
            self.stt.step(pcm_in)?;
            self.take_typed(text, out);
            return self.speak(out);
        }
        let heard = self.onset.frame(pcm_in);
        let stt = self.stt.step(pcm_in)?;
        if stt.end_of_speech.is_some() {
            self.user.end_of_speech = stt.end_of_speech;
        }
        if heard.speech {
            self.user.speech_frames += 1;
            self.user.quiet_frames = 0;
            self.user.onset.get_or_insert(self.frame);
        } else {
            self.user.quiet_frames = self.user.quiet_frames.saturating_add(1);
        }
        // While a reply is on its way the recogniser hears our own voice (what the echo
        // canceller left) and the tail of the turn already sent: not the user's words.
        // A barge-in returns to Listening first, and the user's words come after it.
        let answering = self.consent_waiting();
        if self.phase == TalkPhase::Listening {
            if self.heard_words(stt.words, out) {
                self.read_ahead();
            }
        } else if answering {
            self.heard_words(stt.words, out);
        }
        match self.phase {
            TalkPhase::Thinking | TalkPhase::Speaking if answering && self.user_turn_over() => {
                return self.consent_turn(out);
            }
            // Speech while a tool asks is the answer, not a barge-in.
            TalkPhase::Thinking | TalkPhase::Speaking if answering => {}
            TalkPhase::Listening if self.user_turn_over() => {
                // The reply starts next frame at the earliest (no LLM answers in
                // microseconds), so the thinking phase always shows.
                return self.end_user_turn(out);
            }
            TalkPhase::Listening if self.noise_over() => {
                self.user = UserTurn::default();
                self.stop_reading_ahead();
            }
            TalkPhase::Listening if heard.onset => self.read_ahead(),
            TalkPhase::Thinking | TalkPhase::Speaking if heard.onset => self.barge_in(out),
            _ => {}
        }
        self.speak(out)
    }

    fn reset(&mut self) {
        self.reply = None;
        self.typed.clear();
        self.stop_reading_ahead();
        self.tts.cancel();
        self.stt.reset();
        self.history.clear();
        self.onset.reset();
        self.user = UserTurn::default();
        self.carried = None;
        self.wake_words.clear();
        self.phase = TalkPhase::Listening;
        self.take_next_settings();
    }

    fn set_realtime(&mut self, realtime: bool) {
        self.tts.set_realtime(realtime);
    }

    fn set_sampling(&mut self, sampling: &Sampling) {
        let mut s = self.next.clone().unwrap_or_else(|| self.settings.clone());
        s.temperature = sampling.text_temperature as f32;
        self.schedule(s);
    }

    fn takes_prompt(&self) -> bool {
        true
    }

    fn takes_text(&self) -> bool {
        true
    }

    fn type_text(&mut self, text: &str) -> Result<()> {
        let text = text.trim();
        anyhow::ensure!(!text.is_empty(), "nothing was typed");
        self.typed.push_back(text.to_string());
        Ok(())
    }

    fn busy(&self) -> bool {
        self.reply.is_some() || self.user.speech_frames > 0 || !self.typed.is_empty()
    }

    fn wake_listen(&mut self, on: bool, carry: &str) -> bool {
        if on == self.wake_listen {
            return true;
        }
        self.wake_listen = on;
        self.wake_words.clear();
        self.user = UserTurn::default();
        if !on {
            // The phrase was heard `delay` frames after it was said: what the user says
            // after it is still in the recogniser, and joins the turn opened here.
            let delay = self.stt.delay_frames() as u64;
            self.user.onset = Some(self.frame.saturating_sub(delay + ONSET_SLACK_FRAMES));
            let carry = carry.trim();
            if !carry.is_empty() {
                self.user.speech_frames = MIN_SPEECH_FRAMES;
                self.carried = Some(format!(" {carry}"));
            }
        }
        true
    }

    fn take_wake_words(&mut self) -> Option<String> {
        (!self.wake_words.is_empty()).then(|| std::mem::take(&mut self.wake_words))
    }

    /// A persona's prompt becomes the system prompt and its voice the TTS voice, from
    /// the next turn on; the conversation is kept.
    fn prime(&mut self, prompt: &Prompt) -> Result<Primed> {
        let t = Instant::now();
        let voice = prompt.speaker.as_ref().filter(|_| !self.fixed_voice);
        if let Some(voice) = voice.filter(|v| self.tts.takes_voice(v)) {
            self.tts.set_voice(voice)?;
        }
        let mut s = self.next.clone().unwrap_or_else(|| self.settings.clone());
        if prompt.llm_model.is_some() {
            s.llm_model = prompt.llm_model.clone();
        }
        s.system_prompt = if prompt.text.trim().is_empty() {
            DEFAULT_SYSTEM_PROMPT.into()
        } else {
            prompt.text.clone()
        };
        self.schedule(s);
        Ok(Primed {
            steps: 0,
            elapsed: t.elapsed(),
        })
    }
}

impl Cascade {
    fn schedule(&mut self, s: TurnSettings) {
        if self.reply.is_some() {
            self.next = Some(s);
        } else {
            self.settings = s;
        }
    }
}

impl Drop for Cascade {
    fn drop(&mut self) {
        // The reply's own drop cancels it; the LLM's thread ends after its job.
        self.reply = None;
        self.stop_reading_ahead();
    }
}

#[cfg(test)]
mod tests {
    //! The turn machine with scripted parts: words on cue, two frames of audio per
    //! word, an LLM that writes what it is told. The real parts have their own tests.
    use super::*;
    use crate::models::parts::{ChatMessage, LlmError, SttStep};
    use std::collections::VecDeque;
    use std::sync::Mutex;

    struct ScriptStt {
        /// Words to report on the given step numbers.
        words: Vec<(usize, &'static str)>,
        /// Words to report `DELAY` steps after the n-th loud frame it hears (from 1),
        /// as a recogniser does, whenever the test's frames come.
        cues: Vec<(usize, &'static str)>,
        loud: usize,
        pending: Vec<(usize, &'static str)>,
        step: usize,
    }
    const DELAY: usize = 2;
    impl SpeechToText for ScriptStt {
        fn name(&self) -> String {
            "script-stt".into()
        }
        fn step(&mut self, pcm: &[f32]) -> Result<SttStep> {
            if pcm.iter().any(|x| x.abs() > 0.1) {
                self.loud += 1;
                for &(n, w) in &self.cues {
                    if n == self.loud {
                        self.pending.push((self.step + DELAY, w));
                    }
                }
            }
            let words = self
                .words
                .iter()
                .chain(&self.pending)
                .filter(|(s, _)| *s == self.step)
                .map(|(_, w)| w.to_string())
                .collect();
            self.step += 1;
            Ok(SttStep {
                words,
                end_of_speech: None,
            })
        }
        fn delay_frames(&self) -> usize {
            DELAY
        }
        fn reset(&mut self) {
            self.step = 0;
        }
    }

    #[derive(Default)]
    struct WordTts {
        pending: String,
        words: VecDeque<()>,
        started: usize,
        frames_left: u32,
        finished: bool,
        voice: String,
        /// Where it fails, when it does: "start" or "step".
        fault: Arc<Mutex<Option<&'static str>>>,
        /// Frames it has made.
        made: Arc<std::sync::atomic::AtomicUsize>,
    }
    impl TextToSpeech for WordTts {
        fn name(&self) -> String {
            "word-tts".into()
        }
        fn set_voice(&mut self, voice: &str) -> Result<()> {
            anyhow::ensure!(
                voice != "missing" && self.takes_voice(voice),
                "no voice called {voice}"
            );
            self.voice = voice.into();
            Ok(())
        }
        /// Voices under `other/` belong to another kind of synthesiser.
        fn takes_voice(&self, voice: &str) -> bool {
            !voice.starts_with("other/")
        }
        fn start(&mut self) -> Result<()> {
            let fault = self.fault.clone();
            anyhow::ensure!(
                *fault.lock().unwrap() != Some("start"),
                "out of memory for the voice's state"
            );
            *self = Self {
                voice: std::mem::take(&mut self.voice),
                fault,
                made: self.made.clone(),
                ..Default::default()
            };
            Ok(())
        }
        fn push_text(&mut self, text: &str) {
            self.pending.push_str(text);
            // Whole words only: the last one may go on in the next piece.
            while let Some(i) = self
                .pending
                .trim_start()
                .find(' ')
                .map(|i| i + self.pending.len() - self.pending.trim_start().len())
            {
                self.pending.drain(..=i);
                self.words.push_back(());
            }
        }
        fn finish(&mut self) {
            if !self.pending.trim().is_empty() {
                self.words.push_back(());
            }
            self.pending.clear();
            self.finished = true;
        }
        fn step(&mut self, out: &mut [f32]) -> Result<TtsStep> {
            anyhow::ensure!(
                *self.fault.lock().unwrap() != Some("step"),
                "the synthesiser failed"
            );
            if self.frames_left == 0 {
                if self.words.pop_front().is_some() {
                    self.started += 1;
                    self.frames_left = 2;
                } else if self.finished {
                    return Ok(TtsStep::Done);
                } else {
                    return Ok(TtsStep::Waiting);
                }
            }
            self.frames_left -= 1;
            out.fill(0.25);
            self.made.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok(TtsStep::Audio {
                words_started: self.started,
            })
        }
        fn cancel(&mut self) {
            self.words.clear();
            self.pending.clear();
            self.frames_left = 0;
        }
    }

    /// Writes `reply` in 3-character pieces, or fails; records every request.
    struct ScriptLlm {
        reply: Mutex<Result<String, LlmError>>,
        requests: Mutex<Vec<ChatRequest>>,
        prepared: Mutex<Vec<ChatRequest>>,
        cancelled: Mutex<bool>,
        context: Mutex<usize>,
        /// Wait this long between pieces.
        pace: std::time::Duration,
    }
    impl Llm for ScriptLlm {
        fn name(&self) -> String {
            "script-llm".into()
        }
        fn stream(
            &self,
            request: &ChatRequest,
            cancel: &Cancel,
            on_piece: &mut dyn FnMut(&str),
        ) -> Result<(), LlmError> {
            self.requests.lock().unwrap().push(request.clone());
            let reply = self.reply.lock().unwrap().clone()?;
            let chars: Vec<char> = reply.chars().collect();
            for piece in chars.chunks(3) {
                if cancel.is_cancelled() {
                    *self.cancelled.lock().unwrap() = true;
                    return Ok(());
                }
                std::thread::sleep(self.pace);
                if cancel.is_cancelled() {
                    *self.cancelled.lock().unwrap() = true;
                    return Ok(());
                }
                on_piece(&piece.iter().collect::<String>());
            }
            Ok(())
        }
        fn count_tokens(&self, text: &str) -> usize {
            text.split_whitespace().count()
        }
        fn context_tokens(&self) -> usize {
            *self.context.lock().unwrap()
        }
        fn prepare(&self, request: &ChatRequest, _cancel: &Cancel) -> Result<(), LlmError> {
            self.prepared.lock().unwrap().push(request.clone());
            Ok(())
        }
    }

    fn llm(reply: Result<&str, LlmError>, pace_ms: u64) -> Arc<ScriptLlm> {
        Arc::new(ScriptLlm {
            reply: Mutex::new(reply.map(String::from)),
            requests: Mutex::new(Vec::new()),
            prepared: Mutex::new(Vec::new()),
            cancelled: Mutex::new(false),
            context: Mutex::new(4096),
            pace: std::time::Duration::from_millis(pace_ms),
        })
    }

    /// A cascade that has heard two quiet frames (a room before anyone speaks); the
    /// recogniser's steps count from 0 including them. `cues` are words said at the
    /// n-th loud frame (from 1), heard `DELAY` frames later.
    fn cascade_with(
        words: Vec<(usize, &'static str)>,
        cues: Vec<(usize, &'static str)>,
        llm: Arc<ScriptLlm>,
        tts: WordTts,
    ) -> Cascade {
        let stt = ScriptStt {
            words,
            cues,
            loud: 0,
            pending: Vec::new(),
            step: 0,
        };
        let mut c = Cascade::new(
            Box::new(stt),
            Box::new(tts),
            llm,
            "cpu",
            TurnSettings::default(),
        );
        run(&mut c, QUIET, 2, &mut Vec::new());
        c
    }

    fn cascade(words: Vec<(usize, &'static str)>, llm: Arc<ScriptLlm>) -> Cascade {
        cascade_with(words, vec![], llm, WordTts::default())
    }

    /// A cascade whose recogniser hears `cues` (word at the n-th loud frame).
    fn cascade_cued(cues: Vec<(usize, &'static str)>, llm: Arc<ScriptLlm>) -> Cascade {
        cascade_with(vec![], cues, llm, WordTts::default())
    }

    const LOUD: f32 = 0.3;
    const QUIET: f32 = 0.0;

    /// Step with a constant input level; collect what came out.
    fn run(c: &mut Cascade, level: f32, frames: usize, log: &mut Vec<StepOutput>) {
        for _ in 0..frames {
            let mut out = StepOutput::default();
            out.clear(FRAME_LEN);
            c.step(&vec![level; FRAME_LEN], &mut out).unwrap();
            log.push(out);
        }
    }

    /// Step quietly until `until` holds (bounded: the LLM runs on a thread).
    fn run_until(c: &mut Cascade, log: &mut Vec<StepOutput>, until: impl Fn(&Cascade) -> bool) {
        for _ in 0..500 {
            if until(c) {
                return;
            }
            run(c, QUIET, 1, log);
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        panic!("the machine never got there; phase {:?}", c.phase());
    }

    /// Waits for the LLM's thread are bounded in time, not in tries: on a loaded machine
    /// that thread can wait more than a second for a core.
    fn within_10_s() -> impl FnMut() -> bool {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        move || std::time::Instant::now() < deadline
    }

    /// The requests, once `n` have reached the LLM (its thread starts them).
    fn requests(l: &ScriptLlm, n: usize) -> Vec<ChatRequest> {
        let mut waiting = within_10_s();
        while waiting() {
            let r = l.requests.lock().unwrap().clone();
            if r.len() >= n {
                return r;
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        panic!("fewer than {n} requests reached the LLM");
    }

    fn talk(log: &[StepOutput]) -> Vec<Talk> {
        log.iter().flat_map(|o| o.talk.clone()).collect()
    }

    fn text(log: &[StepOutput]) -> String {
        log.iter().filter_map(|o| o.text.clone()).collect()
    }

    #[test]
    fn a_question_gets_a_spoken_answer_and_both_enter_the_history() {
        let l = llm(Ok("It is noon now."), 0);
        let mut c = cascade(
            vec![(2, "what"), (4, "time"), (7, "is"), (9, "it")],
            l.clone(),
        );
        let mut log = Vec::new();
        run(&mut c, LOUD, 6, &mut log);
        // The last word arrives within the recogniser's delay: the flush catches it.
        run_until(&mut c, &mut log, |c| c.phase() == TalkPhase::Thinking);
        run_until(&mut c, &mut log, |c| c.phase() == TalkPhase::Listening);
        let t = talk(&log);
        let said: String = t
            .iter()
            .filter_map(|t| match t {
                Talk::UserWords(w) => Some(w.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(said, " what time is it");
        let phases: Vec<_> = t
            .iter()
            .filter_map(|t| match t {
                Talk::Phase(p) => Some(*p),
                _ => None,
            })
            .collect();
        assert_eq!(
            phases,
            [
                TalkPhase::Thinking,
                TalkPhase::Speaking,
                TalkPhase::Listening
            ]
        );
        assert_eq!(text(&log), " It is noon now.");
        let audio = log
            .iter()
            .filter(|o| o.pcm.iter().any(|&x| x != 0.0))
            .count();
        assert_eq!(audio, 8, "two frames per word");
        let req = &l.requests.lock().unwrap()[0];
        assert_eq!(req.system, DEFAULT_SYSTEM_PROMPT);
        assert_eq!(
            req.messages,
            [ChatMessage {
                role: ChatRole::User,
                content: "what time is it".into()
            }]
        );
        let h = c.history().messages();
        assert_eq!(h.len(), 2);
        assert_eq!(h[1].content, "It is noon now.");
    }

    #[test]
    fn speaking_over_the_reply_silences_that_frame_and_keeps_only_what_played() {
        let l = llm(Ok("one two three four five six seven eight nine ten"), 0);
        let mut c = cascade_cued(vec![(1, "hello")], l.clone());
        let mut log = Vec::new();
        run(&mut c, LOUD, 3, &mut log);
        run_until(&mut c, &mut log, |c| c.phase() == TalkPhase::Speaking);
        run(&mut c, QUIET, 4, &mut log);
        let before = log.len();
        run(&mut c, LOUD, 1, &mut log);
        let barge = &log[before];
        assert!(
            barge.pcm.iter().all(|&x| x == 0.0),
            "silent from the onset frame"
        );
        // And what the speaker still holds of the reply is cut, once.
        assert!(barge.cut);
        assert_eq!(log.iter().filter(|o| o.cut).count(), 1);
        assert!(barge
            .talk
            .iter()
            .any(|t| matches!(t, Talk::BargedIn { heard: 3, of: 10 })));
        assert_eq!(c.phase(), TalkPhase::Listening);
        run(&mut c, QUIET, 3, &mut log);
        assert!(log[before..]
            .iter()
            .all(|o| o.pcm.iter().all(|&x| x == 0.0)));
        let h = c.history().messages();
        assert_eq!(h[1].content, "one two three", "only the words that played");
        assert_eq!(text(&log), " one two three");
    }

    #[test]
    fn the_synthesiser_runs_a_bounded_lead_ahead_of_playback_and_a_barge_in_drops_it() {
        let l = llm(Ok(&"word ".repeat(30)), 0);
        let tts = WordTts::default();
        let made = tts.made.clone();
        let mut c = cascade_with(vec![], vec![(1, "hello")], l.clone(), tts);
        let mut log = Vec::new();
        run(&mut c, LOUD, 3, &mut log);
        run_until(&mut c, &mut log, |c| c.phase() == TalkPhase::Speaking);
        // Quick steps fill the lead as the LLM's words come in, never beyond its bound.
        let made_beyond_played = |log: &[StepOutput]| {
            let played = log
                .iter()
                .filter(|o| o.pcm.iter().any(|&x| x != 0.0))
                .count();
            made.load(std::sync::atomic::Ordering::SeqCst) - played
        };
        for _ in 0..500 {
            run(&mut c, QUIET, 1, &mut log);
            let ahead = made_beyond_played(&log);
            assert!(ahead < LEAD_FRAMES, "{ahead} frames made and not played");
            if ahead == LEAD_FRAMES - 1 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        // Up to LEAD_FRAMES made in a step, one of them played at once.
        assert_eq!(made_beyond_played(&log), LEAD_FRAMES - 1);
        // Talking over it: silent at once, and the lead is never played.
        run(&mut c, LOUD, 1, &mut log);
        run(&mut c, QUIET, LEAD_FRAMES + 2, &mut log);
        let after = &log[log.len() - LEAD_FRAMES - 3..];
        assert!(after.iter().all(|o| o.pcm.iter().all(|&x| x == 0.0)));
        assert_eq!(c.phase(), TalkPhase::Listening);
    }

    /// An LLM whose reply needs the user's consent first (as a tool call does).
    struct ConsentLlm(Arc<crate::tools::consent::Desk>);
    impl Llm for ConsentLlm {
        fn name(&self) -> String {
            "consent-llm".into()
        }
        fn stream(
            &self,
            _request: &ChatRequest,
            cancel: &Cancel,
            on_piece: &mut dyn FnMut(&str),
        ) -> Result<(), LlmError> {
            let said = match self.0.ask(cancel) {
                crate::tools::consent::Answer::Yes(by) => format!("allowed by {by}"),
                other => format!("not allowed: {other:?}"),
            };
            on_piece(&said);
            Ok(())
        }
        fn count_tokens(&self, text: &str) -> usize {
            text.split_whitespace().count()
        }
        fn context_tokens(&self) -> usize {
            4096
        }
    }

    #[test]
    fn a_spoken_yes_answers_a_waiting_consent_question_instead_of_barging_in() {
        let desk = crate::tools::consent::Desk::interactive();
        let stt = ScriptStt {
            words: vec![],
            cues: vec![(1, "delete"), (4, "yes")],
            loud: 0,
            pending: Vec::new(),
            step: 0,
        };
        let mut c = Cascade::new(
            Box::new(stt),
            Box::new(WordTts::default()),
            Arc::new(ConsentLlm(desk.clone())),
            "cpu",
            TurnSettings::default(),
        )
        .with_consent(desk.clone());
        let mut log = Vec::new();
        run(&mut c, QUIET, 2, &mut log);
        run(&mut c, LOUD, 3, &mut log);
        run_until(&mut c, &mut log, |c| c.phase() == TalkPhase::Thinking);
        for _ in 0..500 {
            if desk.waiting() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        assert!(desk.waiting(), "the LLM asks");
        run(&mut c, LOUD, 3, &mut log);
        run_until(&mut c, &mut log, |c| c.phase() == TalkPhase::Speaking);
        run_until(&mut c, &mut log, |c| c.phase() == TalkPhase::Listening);
        let t = talk(&log);
        assert!(
            !t.iter().any(|t| matches!(t, Talk::BargedIn { .. })),
            "{t:?}"
        );
        assert!(text(&log).contains("allowed by voice"), "{}", text(&log));
        // The answer is not a question to the LLM: one user turn in the history.
        let users = c
            .history()
            .messages()
            .iter()
            .filter(|m| m.role == ChatRole::User)
            .count();
        assert_eq!(users, 1);
    }

    #[test]
    fn talking_on_while_it_thinks_cancels_the_request_and_joins_the_turn() {
        let l = llm(Ok("a long considered answer"), 50);
        let mut c = cascade_cued(vec![(1, "tell"), (4, "more")], l.clone());
        let mut log = Vec::new();
        run(&mut c, LOUD, 3, &mut log);
        run_until(&mut c, &mut log, |c| c.phase() == TalkPhase::Thinking);
        run(&mut c, LOUD, 3, &mut log);
        assert_eq!(c.phase(), TalkPhase::Listening);
        run_until(&mut c, &mut log, |c| c.phase() == TalkPhase::Thinking);
        let mut waiting = within_10_s();
        let reqs = loop {
            let r = l.requests.lock().unwrap().clone();
            if r.iter()
                .flat_map(|q| &q.messages)
                .any(|m| m.content.contains("more"))
            {
                break r;
            }
            assert!(waiting(), "the joined turn never reached the LLM: {r:?}");
            std::thread::sleep(std::time::Duration::from_millis(2));
        };
        let joined = reqs.last().unwrap();
        assert_eq!(joined.messages.len(), 1, "one user turn, not two: {reqs:?}");
        assert_eq!(joined.messages[0].content, "tell more");
        // The first request was cancelled: the LLM stops writing it or, where its thread
        // had not taken it yet (a busy machine), never gets it.
        assert!(reqs.len() <= 2, "{reqs:?}");
        while reqs.len() == 2 && !*l.cancelled.lock().unwrap() {
            assert!(waiting(), "the first request was not cancelled");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    #[test]
    fn an_llm_failure_is_reported_and_the_next_turn_asks_again() {
        let err = LlmError {
            message: "the LLM server at http://127.0.0.1:9 refused the connection".into(),
            remedy: "start it".into(),
            transient: true,
        };
        let l = llm(Err(err.clone()), 0);
        let mut c = cascade_cued(vec![(1, "hello"), (4, "again")], l.clone());
        let mut log = Vec::new();
        run(&mut c, LOUD, 3, &mut log);
        run_until(&mut c, &mut log, |c| c.phase() == TalkPhase::Thinking);
        run_until(&mut c, &mut log, |c| c.phase() == TalkPhase::Listening);
        assert!(talk(&log)
            .iter()
            .any(|t| matches!(t, Talk::LlmTrouble { message, .. } if *message == err.message)));
        *l.reply.lock().unwrap() = Ok("back".into());
        run(&mut c, LOUD, 3, &mut log);
        run_until(&mut c, &mut log, |c| c.phase() == TalkPhase::Speaking);
        let reqs = l.requests.lock().unwrap().clone();
        assert_eq!(reqs[1].messages.len(), 1);
        assert_eq!(reqs[1].messages[0].content, "hello again");
    }

    #[test]
    fn a_persona_switch_mid_reply_applies_from_the_next_turn() {
        let l = llm(Ok("first reply here"), 5);
        let mut c = cascade_cued(vec![(1, "hi"), (4, "bye")], l.clone());
        let mut log = Vec::new();
        run(&mut c, LOUD, 3, &mut log);
        run_until(&mut c, &mut log, |c| c.phase() == TalkPhase::Thinking);
        let prompt = Prompt {
            text: "You are JARVIS.".into(),
            speaker: Some("jarvis-voice".into()),
            llm_model: Some("big-model".into()),
            ..Default::default()
        };
        c.prime(&prompt).unwrap();
        assert!(c
            .prime(&Prompt {
                text: "x".into(),
                speaker: Some("missing".into()),
                ..Default::default()
            })
            .is_err());
        // A persona written for another synthesiser keeps the voice and still switches.
        c.prime(&Prompt {
            text: "You are JARVIS.".into(),
            speaker: Some("other/jarvis.wav".into()),
            llm_model: Some("big-model".into()),
            ..Default::default()
        })
        .unwrap();
        run_until(&mut c, &mut log, |c| c.phase() == TalkPhase::Listening);
        run(&mut c, LOUD, 3, &mut log);
        run_until(&mut c, &mut log, |c| c.phase() == TalkPhase::Speaking);
        let reqs = l.requests.lock().unwrap().clone();
        assert_eq!(reqs[0].system, DEFAULT_SYSTEM_PROMPT);
        assert_eq!(
            reqs[1].system, "You are JARVIS.",
            "the failed switch changed nothing"
        );
        assert_eq!(reqs[0].model, None);
        assert_eq!(reqs[1].model.as_deref(), Some("big-model"));
    }

    fn contents(r: &ChatRequest) -> Vec<&str> {
        r.messages.iter().map(|m| m.content.as_str()).collect()
    }

    /// Wait until the LLM has read ahead a request of these messages (its thread runs
    /// the read-aheads).
    fn read_ahead_of(l: &ScriptLlm, want: &[&str]) {
        let mut waiting = within_10_s();
        while waiting() {
            if l.prepared
                .lock()
                .unwrap()
                .iter()
                .any(|r| contents(r) == want)
            {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        panic!(
            "no read-ahead of {want:?}: {:?}",
            l.prepared
                .lock()
                .unwrap()
                .iter()
                .map(contents)
                .collect::<Vec<_>>()
        );
    }

    #[test]
    fn the_llm_reads_the_conversation_and_the_users_words_ahead_as_they_come() {
        let l = llm(Ok("noon"), 0);
        let cues = vec![(1, "time?"), (4, "thanks"), (5, "a"), (6, "lot")];
        let mut c = cascade_cued(cues, l.clone());
        let mut log = Vec::new();
        run(&mut c, LOUD, 3, &mut log);
        // The first word is read while the user is still speaking.
        read_ahead_of(&l, &["time?"]);
        assert!(l.requests.lock().unwrap().is_empty(), "no reply yet");
        run_until(&mut c, &mut log, |c| c.phase() == TalkPhase::Thinking);
        run_until(&mut c, &mut log, |c| c.phase() == TalkPhase::Listening);
        // The next turn: the first exchange, then the new words as they come.
        run(&mut c, LOUD, 3, &mut log);
        read_ahead_of(&l, &["time?", "noon", "thanks"]);
        run(&mut c, LOUD, 1, &mut log);
        read_ahead_of(&l, &["time?", "noon", "thanks a"]);
        assert_eq!(l.requests.lock().unwrap().len(), 1, "still the user's turn");
        // The last word comes with the end of speech, in the reply's request.
        run_until(&mut c, &mut log, |c| c.phase() == TalkPhase::Thinking);
        let reqs = requests(&l, 2);
        assert_eq!(contents(&reqs[1]), ["time?", "noon", "thanks a lot"]);
    }

    #[test]
    fn background_words_with_no_onset_do_not_join_the_next_question() {
        const TV: f32 = 0.045;
        let l = llm(Ok("noon"), 0);
        // A TV talks at a steady level: the onset detector learns it as the floor
        // (while the window still holds the first quiet frames it counts as speech,
        // an empty turn). Its words come anyway.
        let tv = vec![(150, "the"), (160, "news"), (170, "tonight")];
        let mut c = cascade_with(
            tv,
            vec![(1, "what"), (3, "time")],
            l.clone(),
            WordTts::default(),
        );
        let mut log = Vec::new();
        run(&mut c, TV, 199, &mut log);
        assert!(!c.busy(), "no turn open over the TV");
        run(&mut c, LOUD, 4, &mut log);
        run(&mut c, TV, MAX_QUIET_FRAMES as usize, &mut log);
        run_until(&mut c, &mut log, |c| c.phase() != TalkPhase::Listening);
        let reqs = requests(&l, 1);
        assert_eq!(contents(&reqs[0]), ["what time"], "only the user's words");
        let said: String = talk(&log)
            .iter()
            .filter_map(|t| match t {
                Talk::UserWords(w) => Some(w.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(
            said, " what time",
            "the TV's words are not shown as the user's"
        );
    }

    /// A recogniser like Whisper: it hears the utterance, then gives all its words
    /// `late` quiet frames after it ended, saying meanwhile that they are coming.
    struct LateStt {
        late: u32,
        loud: u32,
        quiet: u32,
        given: bool,
    }
    impl SpeechToText for LateStt {
        fn name(&self) -> String {
            "late-stt".into()
        }
        fn step(&mut self, pcm: &[f32]) -> Result<SttStep> {
            if pcm.iter().any(|x| x.abs() > 0.1) {
                (self.loud, self.quiet, self.given) = (self.loud + 1, 0, false);
            } else if self.loud > 0 {
                self.quiet += 1;
            }
            let due = self.loud > 0 && !self.given && self.quiet >= self.late;
            self.given |= due;
            Ok(SttStep {
                words: if due {
                    vec!["what".into(), "time".into()]
                } else {
                    vec![]
                },
                end_of_speech: Some(if self.given { 0.9 } else { 0.0 }),
            })
        }
        fn delay_frames(&self) -> usize {
            8
        }
        fn reset(&mut self) {}
        fn pending(&self) -> bool {
            self.loud > 0 && !self.given
        }
    }

    #[test]
    fn a_recogniser_whose_words_come_after_the_longest_pause_is_waited_for() {
        let l = llm(Ok("noon"), 0);
        let stt = LateStt {
            late: MAX_QUIET_FRAMES + 8,
            loud: 0,
            quiet: 0,
            given: false,
        };
        let mut c = Cascade::new(
            Box::new(stt),
            Box::new(WordTts::default()),
            l.clone(),
            "cpu",
            TurnSettings::default(),
        );
        let mut log = Vec::new();
        run(&mut c, QUIET, 2, &mut log);
        run(&mut c, LOUD, 12, &mut log);
        run(&mut c, QUIET, MAX_QUIET_FRAMES as usize + 2, &mut log);
        assert_eq!(
            c.phase(),
            TalkPhase::Listening,
            "still waiting for the words"
        );
        run_until(&mut c, &mut log, |c| c.phase() != TalkPhase::Listening);
        assert_eq!(contents(&requests(&l, 1)[0]), ["what time"]);
    }

    #[test]
    fn a_click_is_forgotten_after_the_quiet_limit_and_the_engine_is_not_busy() {
        let l = llm(Ok("noon"), 0);
        // One frame 20 dB over the floor, and a word the recogniser made of it.
        let mut c = cascade_cued(vec![(1, "tick"), (2, "hello")], l.clone());
        let mut log = Vec::new();
        run(&mut c, LOUD, 1, &mut log);
        assert!(c.busy(), "a turn may be starting");
        run(&mut c, QUIET, MAX_QUIET_FRAMES as usize, &mut log);
        assert!(
            !c.busy(),
            "quiet for the longest pause: the click is forgotten"
        );
        assert!(l.requests.lock().unwrap().is_empty());
        // The next question is only itself.
        run(&mut c, LOUD, 3, &mut log);
        run_until(&mut c, &mut log, |c| c.phase() == TalkPhase::Thinking);
        assert_eq!(contents(&requests(&l, 1)[0]), ["hello"]);
    }

    #[test]
    fn the_history_is_bounded_by_the_llms_context_with_the_prompt_and_the_reply() {
        let l = llm(Ok("fine"), 0);
        *l.context.lock().unwrap() = 300;
        let mut c = cascade_cued(vec![(1, "question")], l.clone());
        c.settings.system_prompt = "persona ".repeat(100);
        c.settings.max_tokens = 50;
        for i in 0..10 {
            c.history
                .push(ChatRole::User, &format!("asked {i} {}", "word ".repeat(8)));
            c.history.push(
                ChatRole::Assistant,
                &format!("said {i} {}", "word ".repeat(8)),
            );
        }
        let mut log = Vec::new();
        run(&mut c, LOUD, 3, &mut log);
        run_until(&mut c, &mut log, |c| c.phase() == TalkPhase::Thinking);
        let req = &requests(&l, 1)[0];
        let prompt = l.count_prompt(req);
        assert!(
            prompt + 50 <= 300,
            "{prompt} tokens of prompt and 50 of reply in 300"
        );
        assert!(
            req.messages.len() >= 3,
            "recent turns are kept: {:?}",
            contents(req)
        );
        assert_eq!(req.messages[0].role, ChatRole::User);
        assert_eq!(req.messages.last().unwrap().content, "question");
    }

    #[test]
    fn a_long_persona_prompt_and_many_turns_stay_within_the_in_process_llms_context() {
        use crate::models::llm::synthetic::{write_tiny_qwen2, TinyQwen2};
        use crate::models::llm::{GgufLlm, GgufLlmOptions};
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("tiny.gguf");
        write_tiny_qwen2(&p, &TinyQwen2::default()).unwrap();
        let opts = GgufLlmOptions {
            context: 512,
            ..Default::default()
        };
        let llm = GgufLlm::load(&p, &moshi::candle::Device::Cpu, &opts, &Cancel::new()).unwrap();
        let cues: Vec<(usize, &'static str)> = (0..6).map(|i| (3 * i + 1, "hello")).collect();
        let stt = ScriptStt {
            words: vec![],
            cues,
            loud: 0,
            pending: Vec::new(),
            step: 0,
        };
        let settings = TurnSettings {
            // About 130 of the 512 positions, and 100 for each reply (the tiny model
            // never ends one early): the history must make room.
            system_prompt: "hello world ".repeat(60),
            max_tokens: 100,
            temperature: 0.0,
            ..Default::default()
        };
        let mut c = Cascade::new(
            Box::new(stt),
            Box::new(WordTts::default()),
            Arc::new(llm),
            "cpu",
            settings,
        );
        let mut log = Vec::new();
        run(&mut c, QUIET, 2, &mut log);
        for _ in 0..6 {
            run(&mut c, LOUD, 3, &mut log);
            run_until(&mut c, &mut log, |c| c.phase() == TalkPhase::Speaking);
            run_until(&mut c, &mut log, |c| c.phase() == TalkPhase::Listening);
        }
        let trouble: Vec<_> = talk(&log)
            .into_iter()
            .filter(|t| matches!(t, Talk::LlmTrouble { .. }))
            .collect();
        assert!(trouble.is_empty(), "{trouble:?}");
        let h = c.history().messages();
        assert!(h.len() < 12, "older turns made room: {}", h.len());
        assert_eq!(h.last().unwrap().role, ChatRole::Assistant);
    }

    #[test]
    fn a_synthesiser_that_cannot_start_is_reported_and_nothing_is_asked() {
        let l = llm(Ok("a reply nobody hears"), 0);
        let tts = WordTts::default();
        let fault = tts.fault.clone();
        *fault.lock().unwrap() = Some("start");
        let mut c = cascade_with(vec![], vec![(1, "hello"), (4, "again")], l.clone(), tts);
        let mut log = Vec::new();
        run(&mut c, LOUD, 3, &mut log);
        run(&mut c, QUIET, MAX_QUIET_FRAMES as usize + 2, &mut log);
        assert!(talk(&log).iter().any(
            |t| matches!(t, Talk::LlmTrouble { message, .. } if message.contains("synthesiser") && message.contains("out of memory"))
        ));
        assert_eq!(c.phase(), TalkPhase::Listening);
        assert!(!c.busy());
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert!(l.requests.lock().unwrap().is_empty(), "no reply is written");
        assert_eq!(
            contents(&c.request(None)),
            ["hello"],
            "the words are kept, unanswered"
        );
        // Fixed: the next turn asks again, with both.
        *fault.lock().unwrap() = None;
        run(&mut c, LOUD, 3, &mut log);
        run_until(&mut c, &mut log, |c| c.phase() == TalkPhase::Speaking);
        assert_eq!(contents(&requests(&l, 1)[0]), ["hello again"]);
    }

    #[test]
    fn a_reply_that_cannot_be_spoken_stops_the_llm_writing_it() {
        let l = llm(Ok(&"on and on ".repeat(40)), 10);
        let tts = WordTts::default();
        let fault = tts.fault.clone();
        let mut c = cascade_with(vec![], vec![(1, "talk")], l.clone(), tts);
        let mut log = Vec::new();
        run(&mut c, LOUD, 3, &mut log);
        run_until(&mut c, &mut log, |c| c.phase() == TalkPhase::Speaking);
        *fault.lock().unwrap() = Some("step");
        let mut out = StepOutput::default();
        out.clear(FRAME_LEN);
        assert!(c.step(&[QUIET; FRAME_LEN], &mut out).is_err());
        assert_eq!(c.phase(), TalkPhase::Listening);
        let mut waiting = within_10_s();
        while waiting() {
            if *l.cancelled.lock().unwrap() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        panic!("the LLM went on writing a reply nobody will hear");
    }

    #[test]
    fn a_noise_with_no_words_asks_nothing() {
        let l = llm(Ok("never"), 0);
        let mut c = cascade(vec![], l.clone());
        let mut log = Vec::new();
        run(&mut c, LOUD, 4, &mut log);
        run(&mut c, QUIET, 30, &mut log);
        assert_eq!(c.phase(), TalkPhase::Listening);
        assert!(l.requests.lock().unwrap().is_empty());
        assert!(talk(&log).is_empty());
    }

    #[test]
    fn a_typed_turn_is_answered_and_stops_a_reply_under_way() {
        let l = llm(Ok("one two three four five six seven eight"), 0);
        let mut c = cascade(vec![], l.clone());
        assert!(c.takes_text());
        assert!(c.type_text("  ").is_err(), "nothing typed: nothing asked");
        c.type_text("what is the time").unwrap();
        let mut log = Vec::new();
        run_until(&mut c, &mut log, |c| c.phase() == TalkPhase::Speaking);
        assert!(talk(&log).contains(&Talk::Typed("what is the time".into())));
        assert_eq!(
            requests(&l, 1)[0].messages.last().unwrap().content,
            "what is the time"
        );
        // Typed over the reply: it stops, and what was played of it stays.
        c.type_text("stop, and say hello").unwrap();
        let mut log = Vec::new();
        run(&mut c, QUIET, 1, &mut log);
        let t = talk(&log);
        assert!(matches!(t[0], Talk::BargedIn { .. }), "{t:?}");
        assert!(
            t.contains(&Talk::Typed("stop, and say hello".into())),
            "{t:?}"
        );
        let r = requests(&l, 2);
        let roles: Vec<ChatRole> = r[1].messages.iter().map(|m| m.role).collect();
        assert_eq!(roles, [ChatRole::User, ChatRole::Assistant, ChatRole::User]);
        assert_eq!(r[1].messages[2].content, "stop, and say hello");
    }
}
