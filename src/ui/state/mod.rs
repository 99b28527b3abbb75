//! `UiState`: everything the screen shows, changed only by `apply(event)`.
//! The renderer reads it and nothing else.

use super::chooser::{Chooser, ChooserKey, ChooserPick};
use super::clock::Clock;
use super::context::UiContext;
use super::event::AppEvent;
use super::feed::{EntryKind, Feed, FeedEntry};
use super::format;
use super::keymap::{self, Action, Scroll};
use super::layout;
use super::picker::{Picker, PickerKey};
use super::settings_view::{Row, SettingsKey, SettingsView};
use super::theme::Theme;
use super::typing::{Typing, TypingKey};
use super::vad::{Transition, Vad};
use crate::bus::ModelInfo;
use crate::bus::{Endpoint, EngineEvent, LoadProgress, Severity, StepStats, Talk, TalkPhase};
use crate::engine::Command;
use ratatui::layout::Rect;
use std::collections::VecDeque;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

mod persona;
mod tools;
use crate::engine::voice::VoiceLoader;
use crate::persona::{Persona, VisualizerStyle, Weights};
pub use persona::{PendingVoice, Switch};
pub use tools::ToolView;

/// A change in resident memory this large gets a feed line.
pub const MEMORY_REPORT_STEP: u64 = 100 * 1024 * 1024;

/// Level samples kept for the visualizer: one per tick, as wide as the widest screen.
pub const LEVEL_HISTORY: usize = 300;
/// Steps averaged for the step time and RTF shown.
const AVG_WINDOW: f64 = 16.0;
/// Steps before an average RTF above 1 counts as not keeping up.
const RTF_WARMUP_STEPS: u64 = 12;
/// Frame length of the engine's steps, for dating the end of speech.
const FRAME: Duration = Duration::from_millis(80);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Loading,
    Ready,
    Failed,
    Stopped,
}

/// The conversation state the header shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConvState {
    Loading,
    /// The model is being primed with a persona's prompts; the user's audio is held.
    Priming,
    /// A remote model's connection dropped and is being retried (`--connect`).
    Reconnecting,
    Listening,
    /// The user's turn ended and the LLM is writing (cascade mode).
    Thinking,
    /// A tool the LLM called is running (cascade mode).
    Acting,
    /// A tool waits for the user's yes or no.
    Asking,
    /// Unloaded after a silence; the user's voice reloads it.
    Idle,
    Speaking,
    Both,
    Muted,
    /// Wake mode: nothing reaches the model until the persona's name is said.
    Waiting,
    Degraded,
    Error,
    Stopped,
}

impl ConvState {
    pub fn label(self) -> &'static str {
        match self {
            Self::Loading => "loading",
            Self::Priming => "priming",
            Self::Reconnecting => "reconnecting",
            Self::Listening => "listening",
            Self::Thinking => "thinking",
            Self::Acting => "acting",
            Self::Asking => "asking y/n",
            Self::Idle => "idle",
            Self::Speaking => "speaking",
            Self::Both => "both talking",
            Self::Muted => "muted",
            Self::Waiting => "waiting",
            Self::Degraded => "degraded",
            Self::Error => "error",
            Self::Stopped => "stopped",
        }
    }
}

/// Wake mode, for the header and the `w` key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WakeView {
    /// Off (or no takes): the microphone always reaches the model.
    Off,
    /// Waiting for a wake phrase.
    Waiting,
    /// A phrase was heard: one exchange.
    Listening,
}

/// One visualizer sample: peak levels (0..=1) and whether each side counted as voice.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct LevelSample {
    pub mic: f32,
    pub out: f32,
    pub mic_voice: bool,
    pub out_voice: bool,
}

/// What the main loop must do after an event.
#[derive(Debug)]
pub enum Effect {
    Send(Command),
    /// Another persona: the main loop tells the engine and the journal, and
    /// starts loading its voice if it needs other weights.
    Persona(Switch),
    /// The first-start chooser's pick: the main loop hands it to the app.
    Choose(ChooserPick),
    /// The user's `y` or `n` to a tool's consent question.
    Consent(bool),
    /// The device picker opened: the main loop lists the devices (`AppEvent::Devices`).
    ListDevices,
    /// Switch one side to another device (a selector).
    SwitchDevice(crate::bus::DeviceSide, String),
    /// A setting changed: save the file's settings there, and send the command that
    /// applies it now (none: it applies from the next start).
    Settings {
        path: std::path::PathBuf,
        saved: crate::settings::Settings,
        apply: Option<Command>,
    },
    Quit,
}

#[derive(Debug, Default)]
pub struct Update {
    /// The screen would look different.
    pub redraw: bool,
    pub effect: Option<Effect>,
}

impl Update {
    fn redraw() -> Self {
        Self {
            redraw: true,
            effect: None,
        }
    }
    fn none() -> Self {
        Self::default()
    }
    fn with(effect: Effect, redraw: bool) -> Self {
        Self {
            redraw,
            effect: Some(effect),
        }
    }
}

/// Progress of the stage loading now.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadView {
    pub progress: LoadProgress,
}

impl LoadView {
    pub fn fraction(&self) -> Option<f64> {
        let p = &self.progress;
        (p.total > 0).then(|| (p.done as f64 / p.total as f64).clamp(0.0, 1.0))
    }
    /// Units per second so far.
    pub fn rate(&self) -> Option<f64> {
        let p = &self.progress;
        (p.elapsed_s > 0.05 && p.done > 0).then(|| p.done as f64 / p.elapsed_s)
    }
    /// Seconds left at the rate so far.
    pub fn eta_s(&self) -> Option<f64> {
        let p = &self.progress;
        let rate = self.rate()?;
        (p.total >= p.done && p.total > 0).then(|| (p.total - p.done) as f64 / rate)
    }
}

#[derive(Debug)]
pub struct UiState {
    clock: Clock,
    pub theme: Theme,
    pub persona: String,
    /// The log path as shown (home shortened to `~`).
    pub log_path: Option<String>,
    /// Terminal size in columns and rows.
    pub size: (u16, u16),
    pub phase: Phase,
    pub load: Option<LoadView>,
    /// Stages already reported as finished, so each gets one feed line.
    finished_stages: Vec<String>,
    pub model: Option<ModelInfo>,
    pub input: Option<Endpoint>,
    pub output: Option<Endpoint>,
    pub muted: bool,
    /// Push-to-talk mode: Space opens and closes the microphone.
    pub push_to_talk: bool,
    /// Echo cancellation on the microphone: `None` when the engine runs none (no speaker).
    pub echo_cancel: Option<bool>,
    /// Wake mode as the engine last reported it.
    pub wake: WakeView,
    mic_vad: Vad,
    out_vad: Vad,
    pub stats: Option<StepStats>,
    pub step_ms_avg: f64,
    pub rtf_avg: f64,
    pub memory: Option<u64>,
    pub feed: Feed,
    open_assistant: Option<usize>,
    open_user: Option<usize>,
    pub levels: VecDeque<LevelSample>,
    /// Loudest frame RMS from steps since the last level sample: the visualizer's
    /// fallback when no audio callback raises the meters (file input).
    pending_mic: f32,
    pending_out: f32,
    pub help: bool,
    /// The persona card is open.
    pub card: bool,
    /// Every persona, in cycling order, and the active one.
    pub personas: Arc<Vec<Persona>>,
    pub active: usize,
    pub visualizer: VisualizerStyle,
    no_color: bool,
    seed: u64,
    voices: Option<VoiceLoader>,
    /// The weights the engine runs (resolved), when voices can change.
    engine_weights: Option<Weights>,
    /// A persona voice loading in the background.
    pub pending_voice: Option<PendingVoice>,
    next_voice_id: u64,
    /// Resident memory at the last feed report.
    memory_reported: Option<u64>,
    /// Why the model runs somewhere worse than asked, e.g. "running on CPU (…)".
    model_degraded: Option<String>,
    /// A persona's prompts are being primed (between `Priming` and `Primed`/`PrimeFailed`).
    priming: bool,
    /// The model was unloaded after a silence; speaking brings it back.
    idle: bool,
    /// A turn-taking model's phase (cascade mode); `None` for a full-duplex model.
    talk: Option<TalkPhase>,
    /// The user's words being heard, as a feed entry (cascade mode).
    open_said: Option<usize>,
    /// The engine picked for this machine and why (header); `None` when the command
    /// line named it.
    pub engine: Option<String>,
    /// The first-start chooser, while it is open: it takes the screen and the keys.
    pub chooser: Option<Chooser>,
    /// Tool calls (cascade mode): acting, asking, the feed's folded results.
    pub tools: ToolView,
    /// The typed-turn editor (`/`): while open it takes the keys.
    pub typing: Typing,
    /// The device picker (`d`): while open it takes the keys.
    pub picker: Option<Picker>,
    /// What the settings overlay (`s`) shows and saves; `None`: not offered.
    pub settings: Option<super::context::SettingsContext>,
    /// The settings overlay, while open (it takes the keys).
    pub settings_view: Option<SettingsView>,
}

impl UiState {
    pub fn new(ctx: &UiContext) -> Self {
        let active = ctx.persona.min(ctx.personas.len().saturating_sub(1));
        let p = &ctx.personas[active];
        let mut s = Self {
            clock: ctx.clock.clone(),
            theme: Theme::from_persona(&p.theme, ctx.no_color),
            persona: p.name.clone(),
            log_path: ctx.log_path.as_deref().map(shorten_home),
            size: (80, 24),
            phase: Phase::Loading,
            load: None,
            finished_stages: Vec::new(),
            model: None,
            input: None,
            output: None,
            muted: ctx.push_to_talk,
            push_to_talk: ctx.push_to_talk,
            echo_cancel: None,
            wake: WakeView::Off,
            mic_vad: Vad::microphone(),
            out_vad: Vad::assistant(),
            stats: None,
            step_ms_avg: 0.0,
            rtf_avg: 0.0,
            memory: None,
            feed: Feed::default(),
            open_assistant: None,
            open_user: None,
            levels: VecDeque::with_capacity(LEVEL_HISTORY),
            pending_mic: 0.0,
            pending_out: 0.0,
            help: false,
            card: false,
            personas: ctx.personas.clone(),
            active,
            visualizer: p.visualizer,
            no_color: ctx.no_color,
            seed: ctx.seed,
            engine_weights: ctx.voices.as_ref().map(|v| v.resolve(&p.voice.weights)),
            voices: ctx.voices.clone(),
            pending_voice: None,
            next_voice_id: 1,
            memory_reported: None,
            model_degraded: None,
            priming: false,
            idle: false,
            talk: None,
            open_said: None,
            engine: ctx.engine.clone(),
            chooser: ctx.chooser.clone().map(Chooser::new),
            tools: ToolView::new(ctx.tools.as_ref().map(|t| t.toolbox.clone())),
            typing: Typing::default(),
            picker: None,
            settings: ctx.settings.clone(),
            settings_view: None,
        };
        if let Some(r) = &ctx.resume {
            s.show_resume(r);
        }
        s
    }

    pub fn now(&self) -> Duration {
        self.clock.elapsed()
    }

    pub fn user_speaking(&self) -> bool {
        self.mic_vad.is_active()
    }

    pub fn assistant_speaking(&self) -> bool {
        self.out_vad.is_active()
    }

    pub fn conv_state(&self) -> ConvState {
        match self.phase {
            Phase::Failed => return ConvState::Error,
            Phase::Loading => return ConvState::Loading,
            Phase::Stopped => return ConvState::Stopped,
            Phase::Ready => {}
        }
        if self.priming {
            return ConvState::Priming;
        }
        if self.idle {
            return ConvState::Idle;
        }
        if self
            .stats
            .and_then(|s| s.link)
            .is_some_and(|l| !l.connected)
        {
            return ConvState::Reconnecting;
        }
        if self.degraded_reason().is_some() {
            return ConvState::Degraded;
        }
        if self.muted {
            return ConvState::Muted;
        }
        if self.tools.asking.is_some() {
            return ConvState::Asking;
        }
        if self.tools.acting.is_some() {
            return ConvState::Acting;
        }
        if self.wake == WakeView::Waiting {
            return ConvState::Waiting;
        }
        match self.talk {
            Some(TalkPhase::Thinking) => return ConvState::Thinking,
            Some(TalkPhase::Speaking) => return ConvState::Speaking,
            Some(TalkPhase::Listening) => return ConvState::Listening,
            None => {}
        }
        match (self.user_speaking(), self.assistant_speaking()) {
            (true, true) => ConvState::Both,
            (false, true) => ConvState::Speaking,
            _ => ConvState::Listening,
        }
    }

    /// Why the conversation cannot go as it should, if it cannot.
    pub fn degraded_reason(&self) -> Option<String> {
        let mut why = Vec::new();
        if matches!(self.input, Some(Endpoint::Missing(_))) {
            why.push("no microphone");
        }
        if matches!(self.output, Some(Endpoint::Missing(_))) {
            why.push("no speaker");
        }
        if self.stats.is_some_and(|s| s.step_index >= RTF_WARMUP_STEPS) && self.rtf_avg > 1.0 {
            why.push("slower than real time");
        }
        if let Some(d) = &self.model_degraded {
            why.push(d.as_str());
        }
        (!why.is_empty()).then(|| why.join(", "))
    }

    /// Columns and rows of the feed at the current size (for paging).
    pub fn feed_size(&self) -> (u16, usize) {
        let area = Rect::new(0, 0, self.size.0, self.size.1);
        layout::areas(area, self.shows_progress()).map_or((self.size.0.max(1), 1), |a| {
            (a.feed.width, a.feed.height as usize)
        })
    }

    pub fn apply(&mut self, event: AppEvent) -> Update {
        match event {
            AppEvent::Engine(e) => self.apply_engine(e),
            AppEvent::Key(k) if self.chooser.is_some() => self.chooser_key(k),
            AppEvent::Mouse(_) if self.chooser.is_some() => Update::none(),
            AppEvent::Key(k) if self.typing.is_open() => self.typing_key(k),
            AppEvent::Key(k) if self.picker.is_some() => self.picker_key(k),
            AppEvent::Key(k) if self.settings_view.is_some() => self.settings_key(k),
            AppEvent::ProbeLevels(levels) => match self.picker.as_mut() {
                Some(p) => {
                    // Peaks fall back slowly, as a meter's needle does.
                    for (i, l) in levels {
                        match p.levels.iter_mut().find(|(j, _)| *j == i) {
                            Some((_, v)) => *v = l.max(*v * 0.7),
                            None => p.levels.push((i, l)),
                        }
                    }
                    Update::redraw()
                }
                None => Update::none(),
            },
            AppEvent::Devices(list) => match self.picker.as_mut() {
                Some(p) => {
                    p.cursor = p.cursor.min(list.len().saturating_sub(1));
                    p.devices = Some(list);
                    Update::redraw()
                }
                None => Update::none(),
            },
            AppEvent::Paste(text) => Update {
                redraw: self.typing.paste(&text) != TypingKey::Ignored,
                effect: None,
            },
            AppEvent::Key(k) => {
                keymap::action_for_key(k).map_or_else(Update::none, |a| self.act(a))
            }
            AppEvent::Mouse(m) => {
                keymap::action_for_mouse(m).map_or_else(Update::none, |a| self.act(a))
            }
            AppEvent::Resize(w, h) => {
                let changed = self.size != (w, h);
                self.size = (w, h);
                Update {
                    redraw: changed,
                    effect: None,
                }
            }
            AppEvent::Tick => Update::none(),
            AppEvent::Levels { mic, out } => self.push_levels(mic, out),
            AppEvent::Memory(bytes) => {
                // Redraw only when the shown figure changes.
                let mut changed = self.memory.map(format::bytes) != Some(format::bytes(bytes));
                self.memory = Some(bytes);
                match self.memory_reported {
                    None => self.memory_reported = Some(bytes),
                    Some(last) if bytes.abs_diff(last) > MEMORY_REPORT_STEP => {
                        let sign = if bytes > last { "+" } else { "−" };
                        let text = format!(
                            "memory: {} resident ({sign}{} since the last report)",
                            format::bytes(bytes),
                            format::bytes(bytes.abs_diff(last))
                        );
                        self.note(EntryKind::Notice(Severity::Info), text, None);
                        self.memory_reported = Some(bytes);
                        changed = true;
                    }
                    Some(_) => {}
                }
                Update {
                    redraw: changed,
                    effect: None,
                }
            }
        }
    }

    fn chooser_key(&mut self, key: ratatui::crossterm::event::KeyEvent) -> Update {
        let Some(c) = self.chooser.as_mut() else {
            return Update::none();
        };
        match c.key(key) {
            ChooserKey::Ignored => Update::none(),
            ChooserKey::Changed => Update::redraw(),
            ChooserKey::Quit => Update::with(Effect::Quit, false),
            ChooserKey::Picked(pick) => {
                let option = c.setup.options.get(pick.index).cloned();
                self.chooser = None;
                if let Some(o) = option {
                    self.engine = Some(format!("{} (your pick) · {}", o.title, o.speed));
                    let what = match &pick.url {
                        Some(url) => format!("{} at {url}", o.title),
                        None => o.title.clone(),
                    };
                    self.note(
                        EntryKind::Notice(Severity::Info),
                        format!("starting {what}: {}", o.download),
                        None,
                    );
                }
                Update::with(Effect::Choose(pick), true)
            }
        }
    }

    fn settings_key(&mut self, key: ratatui::crossterm::event::KeyEvent) -> Update {
        let (Some(view), Some(s)) = (self.settings_view.as_mut(), self.settings.as_mut()) else {
            return Update::none();
        };
        match view.key(key, &mut s.current, &mut s.saved) {
            SettingsKey::Ignored => Update::none(),
            SettingsKey::Moved => Update::redraw(),
            SettingsKey::Closed => {
                self.settings_view = None;
                Update::redraw()
            }
            SettingsKey::Changed(row) => {
                let c = s.current.clone();
                let (path, saved) = (s.path.clone(), s.saved.clone());
                let apply = match row {
                    Row::EchoCancel => Some(Command::SetEchoCancel(c.echo_cancel)),
                    Row::PushToTalk => {
                        self.push_to_talk = c.push_to_talk;
                        self.muted = c.push_to_talk;
                        Some(Command::SetMuted(self.muted))
                    }
                    Row::Temperature | Row::TextTemperature | Row::TopK => {
                        Some(Command::SetSampling(crate::bus::Sampling {
                            temperature: c.temperature,
                            text_temperature: c.text_temperature,
                            top_k: c.top_k,
                            seed: self.seed,
                        }))
                    }
                    Row::HalfDuplex => Some(Command::SetHalfDuplex(c.half_duplex)),
                    Row::Wake => Some(Command::SetWake(c.wake)),
                    Row::WakeThreshold => Some(Command::SetWakeThreshold(c.wake_threshold)),
                    Row::Engine => None,
                };
                Update::with(Effect::Settings { path, saved, apply }, true)
            }
        }
    }

    fn picker_key(&mut self, key: ratatui::crossterm::event::KeyEvent) -> Update {
        let Some(p) = self.picker.as_mut() else {
            return Update::none();
        };
        match p.key(key) {
            PickerKey::Ignored => Update::none(),
            PickerKey::Changed => Update::redraw(),
            PickerKey::Closed => {
                self.picker = None;
                Update::redraw()
            }
            // The feed says how it went when the supervisor answers (`Switched`).
            PickerKey::Pick(side, selector) => {
                self.picker = None;
                Update::with(Effect::SwitchDevice(side, selector), true)
            }
        }
    }

    fn typing_key(&mut self, key: ratatui::crossterm::event::KeyEvent) -> Update {
        // The editor's offer to an engine that hears only audio: Tab makes the cascade
        // the engine from the next start (saved like a settings change).
        if key.code == ratatui::crossterm::event::KeyCode::Tab && self.typing_refusal().is_some() {
            if let Some(s) = self.settings.as_mut() {
                s.current.engine = "cascade".into();
                s.saved.engine = Some("cascade".into());
                let (path, saved) = (s.path.clone(), s.saved.clone());
                self.note(
                    EntryKind::Notice(Severity::Info),
                    "the cascade is the engine from the next start (saved): it takes typed turns",
                    None,
                );
                return Update::with(
                    Effect::Settings {
                        path,
                        saved,
                        apply: None,
                    },
                    true,
                );
            }
        }
        match self.typing.key(key) {
            TypingKey::Ignored => Update::none(),
            TypingKey::Changed | TypingKey::Cancelled => Update::redraw(),
            TypingKey::Send(text) => match self.typing_refusal() {
                Some(why) => {
                    self.note(
                        EntryKind::Notice(Severity::Warning),
                        format!("not sent ({why}): {text}"),
                        Some(super::words::TYPE_WITH_CASCADE.into()),
                    );
                    Update::redraw()
                }
                // The feed shows the turn when the engine takes it (`Talk::Typed`).
                None => Update::with(Effect::Send(Command::Type(text)), true),
            },
        }
    }

    /// Why typed turns would go nowhere: a running model that has stepped and reported
    /// no turns (the cascade reports its phase from its first step). While loading
    /// they wait for the model; a model that refuses one anyway says so (`TypedRefused`).
    pub fn typing_refusal(&self) -> Option<String> {
        let model = self
            .model
            .as_ref()
            .filter(|_| self.phase == Phase::Ready && self.stats.is_some())?;
        self.talk.is_none().then(|| {
            let name = model.name.split(" (").next().unwrap_or("this engine");
            format!("{name} hears only audio")
        })
    }

    fn act(&mut self, action: Action) -> Update {
        let (width, height) = self.feed_size();
        let page = height.saturating_sub(1).max(1);
        let rows = |s: Scroll| match s {
            Scroll::Page => page,
            Scroll::Rows(n) => n as usize,
        };
        match action {
            Action::Quit => Update::with(Effect::Quit, false),
            Action::ToggleMute => {
                // Shown at once; the engine's `Muted` event confirms it.
                self.muted = !self.muted;
                Update::with(Effect::Send(Command::SetMuted(self.muted)), true)
            }
            Action::PushToTalk if self.push_to_talk => {
                self.muted = !self.muted;
                Update::with(Effect::Send(Command::SetMuted(self.muted)), true)
            }
            Action::PushToTalk => Update::none(),
            Action::Settings => {
                if self.settings.is_some() {
                    self.settings_view = Some(SettingsView { cursor: 0 });
                }
                Update::redraw()
            }
            Action::Devices => {
                self.picker = Some(Picker::default());
                Update::with(Effect::ListDevices, true)
            }
            Action::Type => {
                self.typing.open();
                Update::redraw()
            }
            Action::ToggleEcho => match self.echo_cancel {
                // The engine's `EchoCancel` event confirms it.
                Some(on) => Update::with(Effect::Send(Command::SetEchoCancel(!on)), false),
                None => Update::with(Effect::Send(Command::SetEchoCancel(true)), false),
            },
            Action::Reset => Update::with(Effect::Send(Command::Reset), false),
            Action::ToggleHelp => {
                self.help = !self.help;
                Update::redraw()
            }
            Action::TogglePersonaCard => {
                self.card = !self.card;
                Update::redraw()
            }
            Action::ToggleTools => {
                self.tools.overlay = !self.tools.overlay;
                Update::redraw()
            }
            Action::Consent(yes) if self.tools.asking.is_some() => {
                Update::with(Effect::Consent(yes), false)
            }
            Action::Consent(_) => Update::none(),
            Action::ToggleToolResults => {
                self.toggle_tool_results();
                Update::redraw()
            }
            Action::CloseOverlay => {
                let was = std::mem::replace(&mut self.help, false)
                    | std::mem::replace(&mut self.card, false)
                    | std::mem::replace(&mut self.tools.overlay, false)
                    | self.picker.take().is_some()
                    | self.settings_view.take().is_some();
                Update {
                    redraw: was,
                    effect: None,
                }
            }
            Action::ScrollUp(s) => self.scrolled(|f| f.scroll_up(rows(s), width, height)),
            Action::ScrollDown(s) => self.scrolled(|f| f.scroll_down(rows(s), width, height)),
            Action::ScrollTop => self.scrolled(|f| f.scroll_to_top(width, height)),
            Action::ScrollBottom => self.scrolled(Feed::follow),
            Action::Persona(key) => {
                match self.personas.iter().position(|p| p.hotkey == Some(key)) {
                    Some(i) => self.switch_to(i),
                    None => {
                        self.note(
                            EntryKind::Notice(Severity::Info),
                            format!("no persona on F{key}"),
                            Some("`assistant personas` lists them and their keys".into()),
                        );
                        Update::redraw()
                    }
                }
            }
            Action::ToggleWake => {
                let on = self.wake == WakeView::Off;
                Update::with(Effect::Send(Command::SetWake(on)), false)
            }
            Action::NextPersona => self.switch_to((self.active + 1) % self.personas.len().max(1)),
            Action::PrevPersona => {
                let n = self.personas.len().max(1);
                self.switch_to((self.active + n - 1) % n)
            }
        }
    }

    fn scrolled(&mut self, f: impl FnOnce(&mut Feed)) -> Update {
        let before = self.feed.view();
        f(&mut self.feed);
        Update {
            redraw: self.feed.view() != before,
            effect: None,
        }
    }

    fn push_levels(&mut self, mic: f32, out: f32) -> Update {
        let mic = mic
            .max(std::mem::take(&mut self.pending_mic))
            .clamp(0.0, 1.0);
        let out = out
            .max(std::mem::take(&mut self.pending_out))
            .clamp(0.0, 1.0);
        let sample = LevelSample {
            mic,
            out,
            mic_voice: self.mic_vad.is_active() || self.mic_vad.is_voice(mic),
            out_voice: self.out_vad.is_active() || self.out_vad.is_voice(out),
        };
        // Silence scrolling over silence looks the same: no redraw, so idle costs nothing.
        let silent = sample == LevelSample::default();
        let all_silent = self.levels.iter().all(|s| *s == LevelSample::default());
        if silent && all_silent {
            return Update::none();
        }
        if self.levels.len() == LEVEL_HISTORY {
            self.levels.pop_front();
        }
        self.levels.push_back(sample);
        Update::redraw()
    }

    fn note(&mut self, kind: EntryKind, text: impl Into<String>, remedy: Option<String>) {
        let mut e = FeedEntry::new(self.now(), kind, text);
        e.remedy = remedy;
        self.feed.push(e);
    }

    fn apply_engine(&mut self, event: EngineEvent) -> Update {
        match event {
            EngineEvent::Endpoints { input, output } => self.endpoints(input, output),
            EngineEvent::Loading(p) => self.loading(p),
            EngineEvent::ModelReady { info, load_ms } => {
                self.phase = Phase::Ready;
                self.load = None;
                let dtype = if info.dtype.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", info.dtype)
                };
                let text = format!(
                    "model ready: {} on {}{dtype} in {}",
                    info.name,
                    info.device,
                    format::duration(load_ms / 1000.0)
                );
                self.model = Some(info);
                self.note(EntryKind::Success, text, None);
                let effect = self.voice_ready();
                return Update {
                    redraw: true,
                    effect,
                };
            }
            EngineEvent::ModelFailed { error, remedy } => {
                self.phase = Phase::Failed;
                self.load = None;
                self.note(EntryKind::Notice(Severity::Error), error, Some(remedy));
            }
            EngineEvent::Text(piece) => self.text(&piece),
            EngineEvent::Talk(talk) => self.talk(talk),
            EngineEvent::TurnEnded => {
                self.open_assistant = None;
                return Update::none();
            }
            EngineEvent::Step(stats) => self.step(stats),
            EngineEvent::Notice {
                severity,
                message,
                remedy,
            } => self.note(EntryKind::Notice(severity), message, remedy),
            EngineEvent::Voice(w) => {
                if self.voices.is_some() {
                    self.engine_weights = Some(w);
                }
                return Update::none();
            }
            EngineEvent::Happened(h) => {
                use crate::bus::Happening;
                // The settings overlay shows what runs, however it was switched.
                if let Some(s) = self.settings.as_mut() {
                    match &h {
                        Happening::WakeWaiting { .. } => s.current.wake = true,
                        Happening::WakeOff | Happening::WakeUnavailable { .. } => {
                            s.current.wake = false
                        }
                        _ => {}
                    }
                }
                match &h {
                    Happening::WakeWaiting { .. } => self.wake = WakeView::Waiting,
                    Happening::WakeOff => self.wake = WakeView::Off,
                    Happening::WakeHeard { phrase, .. } => {
                        self.wake = WakeView::Listening;
                        // Another persona's name switches to it.
                        let said = crate::ui::words::happening(&h);
                        self.note(EntryKind::Notice(said.severity), said.message, said.remedy);
                        if let Some(i) = self.personas.iter().position(|p| p.wake.contains(phrase))
                        {
                            if i != self.active {
                                return self.switch_to(i);
                            }
                        }
                        return Update::redraw();
                    }
                    _ => {}
                }
                self.priming = matches!(h, Happening::Priming)
                    || (self.priming
                        && !matches!(h, Happening::Primed { .. } | Happening::PrimeFailed { .. }));
                let said = crate::ui::words::happening(&h);
                self.note(EntryKind::Notice(said.severity), said.message, said.remedy);
            }
            EngineEvent::Device(status) => {
                self.device_status(&status);
                let said = crate::ui::words::device_status(&status);
                self.note(EntryKind::Notice(said.severity), said.message, said.remedy);
            }
            // The UI noted the switch when it made it; this is the journal's copy.
            EngineEvent::PersonaSwitched { .. } => return Update::none(),
            EngineEvent::VoiceFailed {
                persona,
                error,
                remedy,
            } => return self.voice_failed(persona, error, remedy),
            EngineEvent::EchoCancel(on) => {
                if self.echo_cancel.is_some() {
                    let text = if on {
                        "echo cancellation on"
                    } else {
                        "echo cancellation off: the model may hear itself on speakers"
                    };
                    self.note(EntryKind::Notice(Severity::Info), text, None);
                }
                self.echo_cancel = Some(on);
            }
            EngineEvent::Muted(m) => {
                self.muted = m;
                let text = match (self.push_to_talk, m) {
                    (true, true) => "push-to-talk: microphone closed (Space to talk)",
                    (true, false) => "push-to-talk: microphone open (Space to close)",
                    (false, true) => "microphone muted: the model hears silence",
                    (false, false) => "microphone on",
                };
                self.note(EntryKind::Notice(Severity::Info), text, None);
            }
            EngineEvent::Reset => {
                self.close_turns();
                self.mic_vad.reset();
                self.out_vad.reset();
                self.note(
                    EntryKind::Notice(Severity::Info),
                    "conversation reset",
                    None,
                );
            }
            // The words come as notices; a model running somewhere worse than
            // asked (a CPU fallback) keeps the header degraded while it lasts.
            EngineEvent::Residency(r) => {
                use crate::bus::Residency;
                self.idle = r == Residency::Unloaded;
                match r {
                    Residency::Ready { degraded, .. } => self.model_degraded = degraded,
                    Residency::Failed(_) | Residency::Unloaded => self.model_degraded = None,
                    Residency::Loading | Residency::Unloading => {}
                }
            }
            EngineEvent::InputEnded => {
                self.note(EntryKind::Notice(Severity::Info), "input file ended", None);
            }
            EngineEvent::Stopped => {
                self.close_turns();
                self.mic_vad.reset();
                self.out_vad.reset();
                if self.phase != Phase::Failed {
                    self.phase = Phase::Stopped;
                }
                self.note(
                    EntryKind::Notice(Severity::Info),
                    "engine stopped; press q to quit",
                    None,
                );
            }
        }
        Update::redraw()
    }

    fn endpoints(&mut self, input: Endpoint, output: Endpoint) {
        let describe = |e: &Endpoint| match e {
            Endpoint::Device(d) => d.clone(),
            Endpoint::File(f) => format!("file {f}"),
            Endpoint::Missing(_) => "none".into(),
            Endpoint::Off => "off".into(),
        };
        let text = format!(
            "audio in: {} · out: {}",
            describe(&input),
            describe(&output)
        );
        // Why a device is missing, and what to do, arrives as a Notice from the app.
        self.note(EntryKind::Notice(Severity::Info), text, None);
        self.input = Some(input);
        self.output = Some(output);
    }

    fn loading(&mut self, p: LoadProgress) {
        let finished = p.total > 0 && p.done >= p.total;
        if finished && !self.finished_stages.contains(&p.stage) {
            let text = format!(
                "loaded {}: {} in {}",
                p.stage,
                format::amount(p.total, p.unit),
                format::duration(p.elapsed_s)
            );
            self.finished_stages.push(p.stage.clone());
            self.note(EntryKind::Success, text, None);
        }
        // A stage after start-up (another persona's model) shows progress while the
        // conversation goes on, and its panel goes once it is done.
        self.load = (self.phase == Phase::Loading || !finished).then_some(LoadView { progress: p });
    }

    /// Whether the load progress panel is on screen.
    pub fn shows_progress(&self) -> bool {
        self.phase == Phase::Loading || self.load.is_some()
    }

    fn text(&mut self, piece: &str) {
        let now = self.now();
        if let Some(entry) = self.open_assistant.and_then(|i| self.feed.get_mut(i)) {
            entry.text.push_str(piece);
            return;
        }
        self.feed
            .push(FeedEntry::new(now, EntryKind::Assistant, piece));
        self.open_assistant = Some(self.feed.len() - 1);
    }

    fn talk(&mut self, talk: Talk) {
        match talk {
            Talk::UserWords(w) => {
                let now = self.now();
                match self.open_said.and_then(|i| self.feed.get_mut(i)) {
                    Some(entry) => entry.text.push_str(&w),
                    None => {
                        self.feed.push(FeedEntry::new(now, EntryKind::Said, w));
                        self.open_said = Some(self.feed.len() - 1);
                    }
                }
            }
            Talk::UserTurnEnded => self.open_said = None,
            Talk::Typed(text) => {
                let now = self.now();
                self.open_said = None;
                self.open_assistant = None;
                self.feed.push(FeedEntry::new(now, EntryKind::Typed, text));
            }
            Talk::Phase(p) => {
                if self.talk.is_none() {
                    // Words from the recogniser replace the loudness-based user marks.
                    self.open_user = None;
                }
                if p == TalkPhase::Listening {
                    self.open_assistant = None;
                }
                self.talk = Some(p);
            }
            Talk::BargedIn { heard, of } => {
                self.open_assistant = None;
                let said = crate::ui::words::barged_in(heard, of);
                self.note(EntryKind::Notice(Severity::Info), said, None);
            }
            Talk::LlmTrouble { message, remedy } => {
                self.note(EntryKind::Notice(Severity::Warning), message, Some(remedy))
            }
            Talk::Tool(a) => self.tool_activity(a),
        }
    }

    fn step(&mut self, s: StepStats) {
        let first = self.stats.is_none();
        let a = if first { 1.0 } else { 1.0 / AVG_WINDOW };
        self.step_ms_avg += a * (s.step_ms - self.step_ms_avg);
        self.rtf_avg += a * (s.rtf - self.rtf_avg);
        self.stats = Some(s);
        self.pending_mic = self.pending_mic.max(s.mic_rms);
        self.pending_out = self.pending_out.max(s.out_rms);

        let now = self.now();
        match self.mic_vad.update(s.mic_rms) {
            // With a recogniser (cascade) the feed shows the user's words instead.
            Some(Transition::Started) if self.talk.is_some() => {}
            Some(Transition::Started) => {
                // Timestamps are frame ends: speech began `attack` frames ago.
                let started = now.saturating_sub(FRAME * Vad::MICROPHONE_ATTACK as u32);
                self.feed
                    .push(FeedEntry::new(started, EntryKind::User { ended: None }, ""));
                self.open_user = Some(self.feed.len() - 1);
            }
            Some(Transition::Ended) => {
                self.end_user_turn(now.saturating_sub(FRAME * self.mic_vad_hangover()))
            }
            None => {}
        }
        // The assistant's turns end on the engine's `TurnEnded` (the journal's rule too).
        self.out_vad.update(s.out_rms);
    }

    fn mic_vad_hangover(&self) -> u32 {
        Vad::MICROPHONE_HANGOVER as u32
    }

    fn end_user_turn(&mut self, at: Duration) {
        if let Some(entry) = self.open_user.take().and_then(|i| self.feed.get_mut(i)) {
            entry.kind = EntryKind::User {
                ended: Some(at.max(entry.at)),
            };
        }
    }

    fn close_turns(&mut self) {
        self.open_assistant = None;
        let now = self.now();
        self.end_user_turn(now);
    }
}

fn shorten_home(path: &Path) -> String {
    let home = std::env::var_os("HOME").map(std::path::PathBuf::from);
    match home.as_deref().and_then(|h| path.strip_prefix(h).ok()) {
        Some(rest) if !rest.as_os_str().is_empty() => format!("~/{}", rest.display()),
        _ => path.display().to_string(),
    }
}
