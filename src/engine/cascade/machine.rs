//! The cascade's turn machine: one `DuplexModel` made of a streaming recogniser, an
//! LLM on a thread of its own and a streaming synthesiser. Listening → (the user's
//! turn ends) → Thinking → (the first audio) → Speaking → (the reply played) →
//! Listening; the user's voice during Thinking or Speaking stops the reply at once.

use super::history::History;
use super::onset::Onset;
use super::parts::{ChatRequest, ChatRole, Llm, LlmError, SpeechToText, TextToSpeech, TtsStep};
use crate::bus::{Cancel, Talk, TalkPhase};
use crate::engine::model::{DuplexModel, ModelInfo, Primed, Prompt, Sampling, StepOutput};
use anyhow::Result;
use crossbeam_channel::{Receiver, TryRecvError};
use std::sync::Arc;
use std::time::Instant;

pub const SAMPLE_RATE: u32 = 24_000;
pub const FRAME_LEN: usize = 1920;

/// Quiet frames after speech before the user's turn may end when the recogniser
/// predicts the end of speech (320 ms), and after which it ends regardless (800 ms).
const MIN_QUIET_FRAMES: u32 = 4;
const MAX_QUIET_FRAMES: u32 = 10;
/// The recogniser's end-of-speech probability that ends a turn early.
const END_OF_SPEECH: f32 = 0.5;
/// Frames of speech (by loudness) that make an utterance rather than a noise.
const MIN_SPEECH_FRAMES: u32 = 2;

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
    pub max_tokens: u32,
    /// Tokens of history sent with each request (oldest turns go first).
    pub history_tokens: usize,
}

impl Default for TurnSettings {
    fn default() -> Self {
        Self {
            system_prompt: DEFAULT_SYSTEM_PROMPT.into(),
            temperature: 0.7,
            llm_model: None,
            max_tokens: 300,
            history_tokens: 3000,
        }
    }
}

enum Piece {
    Text(String),
    Done,
    Failed(LlmError),
}

/// The reply being written and played.
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
}

pub struct Cascade {
    stt: Box<dyn SpeechToText>,
    tts: Box<dyn TextToSpeech>,
    llm: Arc<dyn Llm>,
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
    /// The LLM reading the history ahead while the user speaks (its cancel flag).
    reading_ahead: Option<Cancel>,
    /// The first step says "listening", so front-ends know turns come from here (and
    /// show the recogniser's words rather than their own voice detection).
    announced: bool,
    silence: Vec<f32>,
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
            announced: false,
            silence: vec![0.0; FRAME_LEN],
        }
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

    fn heard_words(&mut self, words: Vec<String>, out: &mut StepOutput) {
        for w in words {
            let w = w.trim();
            if w.is_empty() {
                continue;
            }
            self.user.words.push(' ');
            self.user.words.push_str(w);
            out.talk.push(Talk::UserWords(format!(" {w}")));
        }
    }

    fn user_turn_over(&self) -> bool {
        let u = &self.user;
        u.speech_frames >= MIN_SPEECH_FRAMES
            && u.quiet_frames >= MIN_QUIET_FRAMES
            && (u.quiet_frames >= MAX_QUIET_FRAMES
                || u.end_of_speech.is_some_and(|p| p >= END_OF_SPEECH))
    }

    /// The user stopped: flush the recogniser's delay with silence (faster than real
    /// time) so their last words are in, then ask the LLM.
    fn end_user_turn(&mut self, out: &mut StepOutput) -> Result<()> {
        for _ in 0..self.stt.delay_frames() {
            let step = self.stt.step(&self.silence)?;
            self.heard_words(step.words, out);
        }
        let said = std::mem::take(&mut self.user.words);
        self.user = UserTurn::default();
        if said.trim().is_empty() {
            // A noise, or speech the recogniser made nothing of: nothing to answer.
            return Ok(());
        }
        out.talk.push(Talk::UserTurnEnded);
        self.history.push(ChatRole::User, &said);
        self.ask(out);
        Ok(())
    }

    fn request(&mut self) -> ChatRequest {
        let llm = self.llm.clone();
        self.history
            .bound(self.settings.history_tokens, &|s| llm.count_tokens(s));
        ChatRequest {
            system: self.settings.system_prompt.clone(),
            messages: self.history.messages().to_vec(),
            temperature: self.settings.temperature,
            max_tokens: self.settings.max_tokens,
            model: self.settings.llm_model.clone(),
        }
    }

    /// The user started a turn: let the LLM read the conversation so far now, so the
    /// reply reads only their new words. Its lock makes the reply wait for it.
    fn read_ahead(&mut self) {
        if self.reading_ahead.is_some() {
            return;
        }
        let request = self.request();
        let (llm, cancel) = (self.llm.clone(), Cancel::new());
        let flag = cancel.clone();
        let spawned = std::thread::Builder::new()
            .name("cascade-llm-read-ahead".into())
            .spawn(move || {
                if let Err(e) = llm.prepare(&request, &flag) {
                    tracing::debug!("cascade: reading ahead failed: {}", e.message);
                }
            });
        if spawned.is_ok() {
            self.reading_ahead = Some(cancel);
        }
    }

    fn ask(&mut self, out: &mut StepOutput) {
        self.reading_ahead = None;
        let llm = self.llm.clone();
        let request = self.request();
        let cancel = Cancel::new();
        let (tx, rx) = crossbeam_channel::unbounded();
        let thread_cancel = cancel.clone();
        let spawned = std::thread::Builder::new()
            .name("cascade-llm".into())
            .spawn(move || {
                let mut send = |p: &str| {
                    let _ = tx.send(Piece::Text(p.to_string()));
                };
                let end = match llm.stream(&request, &thread_cancel, &mut send) {
                    Ok(()) => Piece::Done,
                    Err(e) => Piece::Failed(e),
                };
                let _ = tx.send(end);
            });
        if let Err(e) = spawned {
            out.talk.push(Talk::LlmTrouble {
                message: format!("could not start the LLM thread: {e}"),
                remedy: "free some memory or threads and speak again".into(),
            });
            return;
        }
        self.tts.start();
        self.reply = Some(Reply {
            pieces: rx,
            cancel,
            text: String::new(),
            written: false,
            finished: false,
            started: 0,
            fed: 0,
        });
        self.set_phase(TalkPhase::Thinking, out);
    }

    /// The user spoke over the reply: silence from this frame on, cancel the writing,
    /// keep in the history only what was played.
    fn barge_in(&mut self, out: &mut StepOutput) {
        let Some(reply) = self.reply.take() else {
            return;
        };
        reply.cancel.cancel();
        self.tts.cancel();
        if self.phase == TalkPhase::Speaking {
            self.history.push(ChatRole::Assistant, &reply.heard_text());
            out.talk.push(Talk::BargedIn {
                heard: reply.started,
                of: reply.word_count(),
            });
        } else if let Some(said) = self.history.take_last_user() {
            // Nothing played yet: the user is still talking. Their words rejoin the turn.
            self.user.words = format!(" {said}{}", self.user.words);
        }
        self.set_phase(TalkPhase::Listening, out);
        self.take_next_settings();
    }

    fn take_next_settings(&mut self) {
        if let Some(next) = self.next.take() {
            self.settings = next;
        }
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
                        self.reply = None;
                        self.set_phase(TalkPhase::Listening, out);
                        self.take_next_settings();
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
        let step = self.tts.step(&mut out.pcm)?;
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
                self.reply = None;
                self.set_phase(TalkPhase::Listening, out);
                self.take_next_settings();
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
        if !std::mem::replace(&mut self.announced, true) {
            out.talk.push(Talk::Phase(self.phase));
        }
        let heard = self.onset.frame(pcm_in);
        let stt = self.stt.step(pcm_in)?;
        // While a reply is on its way the recogniser hears our own voice (what the echo
        // canceller left) and the tail of the turn already sent: not the user's words.
        // A barge-in returns to Listening first, and the user's words come after it.
        if self.phase == TalkPhase::Listening {
            self.heard_words(stt.words, out);
        }
        if stt.end_of_speech.is_some() {
            self.user.end_of_speech = stt.end_of_speech;
        }
        if heard.speech {
            self.user.speech_frames += 1;
            self.user.quiet_frames = 0;
        } else {
            self.user.quiet_frames = self.user.quiet_frames.saturating_add(1);
        }
        match self.phase {
            TalkPhase::Listening if self.user_turn_over() => {
                // The reply starts next frame at the earliest (no LLM answers in
                // microseconds), so the thinking phase always shows.
                return self.end_user_turn(out);
            }
            TalkPhase::Listening if heard.onset => self.read_ahead(),
            TalkPhase::Thinking | TalkPhase::Speaking if heard.onset => self.barge_in(out),
            _ => {}
        }
        self.speak(out)
    }

    fn reset(&mut self) {
        if let Some(r) = self.reply.take() {
            r.cancel.cancel();
        }
        if let Some(c) = self.reading_ahead.take() {
            c.cancel();
        }
        self.tts.cancel();
        self.stt.reset();
        self.history.clear();
        self.onset.reset();
        self.user = UserTurn::default();
        self.phase = TalkPhase::Listening;
        self.take_next_settings();
    }

    fn set_sampling(&mut self, sampling: &Sampling) {
        let mut s = self.next.clone().unwrap_or_else(|| self.settings.clone());
        s.temperature = sampling.text_temperature as f32;
        self.schedule(s);
    }

    fn takes_prompt(&self) -> bool {
        true
    }

    fn busy(&self) -> bool {
        self.reply.is_some() || self.user.speech_frames > 0
    }

    /// A persona's prompt becomes the system prompt and its voice the TTS voice, from
    /// the next turn on; the conversation is kept.
    fn prime(&mut self, prompt: &Prompt) -> Result<Primed> {
        let t = Instant::now();
        if let Some(voice) = prompt.speaker.as_ref().filter(|_| !self.fixed_voice) {
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
        if let Some(r) = self.reply.take() {
            r.cancel.cancel();
        }
        if let Some(c) = self.reading_ahead.take() {
            c.cancel();
        }
    }
}

#[cfg(test)]
mod tests {
    //! The turn machine with scripted parts: words on cue, two frames of audio per
    //! word, an LLM that writes what it is told. The real parts have their own tests.
    use super::*;
    use crate::engine::cascade::parts::{ChatMessage, SttStep};
    use std::collections::VecDeque;
    use std::sync::Mutex;

    struct ScriptStt {
        /// Words to report on the given step numbers.
        words: Vec<(usize, &'static str)>,
        step: usize,
    }
    impl SpeechToText for ScriptStt {
        fn name(&self) -> String {
            "script-stt".into()
        }
        fn step(&mut self, _pcm: &[f32]) -> Result<SttStep> {
            let words = self
                .words
                .iter()
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
            2
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
    }
    impl TextToSpeech for WordTts {
        fn name(&self) -> String {
            "word-tts".into()
        }
        fn set_voice(&mut self, voice: &str) -> Result<()> {
            anyhow::ensure!(voice != "missing", "no voice called {voice}");
            self.voice = voice.into();
            Ok(())
        }
        fn start(&mut self) {
            *self = Self {
                voice: std::mem::take(&mut self.voice),
                ..Default::default()
            };
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
            pace: std::time::Duration::from_millis(pace_ms),
        })
    }

    /// A cascade that has heard two quiet frames (a room before anyone speaks); the
    /// recogniser's steps count from 0 including them.
    fn cascade(words: Vec<(usize, &'static str)>, llm: Arc<ScriptLlm>) -> Cascade {
        let mut c = Cascade::new(
            Box::new(ScriptStt { words, step: 0 }),
            Box::new(WordTts::default()),
            llm,
            "cpu",
            TurnSettings::default(),
        );
        run(&mut c, QUIET, 2, &mut Vec::new());
        c
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

    /// The requests, once `n` have reached the LLM (its thread starts them).
    fn requests(l: &ScriptLlm, n: usize) -> Vec<ChatRequest> {
        for _ in 0..500 {
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
        let mut c = cascade(vec![(1, "hello")], l.clone());
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
    fn talking_on_while_it_thinks_cancels_the_request_and_joins_the_turn() {
        let l = llm(Ok("a long considered answer"), 50);
        let mut c = cascade(vec![(1, "tell"), (22, "more")], l.clone());
        let mut log = Vec::new();
        run(&mut c, LOUD, 3, &mut log);
        run_until(&mut c, &mut log, |c| c.phase() == TalkPhase::Thinking);
        run(&mut c, LOUD, 3, &mut log);
        assert_eq!(c.phase(), TalkPhase::Listening);
        run_until(&mut c, &mut log, |c| c.phase() == TalkPhase::Thinking);
        let reqs = requests(&l, 2);
        assert_eq!(reqs[1].messages.len(), 1, "one user turn, not two");
        assert_eq!(reqs[1].messages[0].content, "tell more");
        std::thread::sleep(std::time::Duration::from_millis(120));
        assert!(
            *l.cancelled.lock().unwrap(),
            "the first request was cancelled"
        );
    }

    #[test]
    fn an_llm_failure_is_reported_and_the_next_turn_asks_again() {
        let err = LlmError {
            message: "the LLM server at http://127.0.0.1:9 refused the connection".into(),
            remedy: "start it".into(),
            transient: true,
        };
        let l = llm(Err(err.clone()), 0);
        let mut c = cascade(vec![(1, "hello"), (20, "again")], l.clone());
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
        let mut c = cascade(vec![(1, "hi"), (40, "bye")], l.clone());
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

    #[test]
    fn the_llm_reads_the_conversation_ahead_when_the_user_starts_a_turn() {
        let l = llm(Ok("noon"), 0);
        let mut c = cascade(vec![(1, "time?"), (30, "thanks")], l.clone());
        let mut log = Vec::new();
        run(&mut c, LOUD, 3, &mut log);
        run_until(&mut c, &mut log, |c| c.phase() == TalkPhase::Thinking);
        run_until(&mut c, &mut log, |c| c.phase() == TalkPhase::Listening);
        run(&mut c, LOUD, 3, &mut log);
        let mut prepared = Vec::new();
        for _ in 0..500 {
            prepared = l.prepared.lock().unwrap().clone();
            if prepared.len() >= 2 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        assert_eq!(prepared.len(), 2, "once per turn, at its onset");
        assert!(prepared[0].messages.is_empty());
        // The second turn's read-ahead holds the first exchange, not the new words.
        let contents: Vec<_> = prepared[1]
            .messages
            .iter()
            .map(|m| m.content.as_str())
            .collect();
        assert_eq!(contents, ["time?", "noon"]);
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
}
