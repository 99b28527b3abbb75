//! Builds whole UI states from events, with a hand-set clock, for the UI tests.
#![allow(dead_code)]

pub mod live;

use assistant::audio::meters::Meters;
use assistant::bus::ModelInfo;
use assistant::bus::{Endpoint, EngineEvent, LoadProgress, ProgressUnit, StepStats};
use assistant::ui::{AppEvent, Clock, ManualClock, UiContext, UiState};
use ratatui::backend::TestBackend;
use ratatui::buffer::Buffer;
use ratatui::style::Color;
use ratatui::Terminal;
use std::sync::Arc;
use std::time::Duration;

pub const SIZES: [(u16, u16); 4] = [(40, 12), (80, 24), (120, 40), (200, 60)];
pub const MB: u64 = 1024 * 1024;
pub const LOG: &str = "/srv/state/assistant/assistant.log";

pub fn context(no_color: bool, persona_colour: Color) -> (UiContext, ManualClock) {
    let (clock, hand): (Clock, ManualClock) = Clock::manual();
    let mut personas = assistant::persona::Catalog::builtin().personas;
    personas[0].theme.primary = persona_colour;
    let ctx = UiContext {
        personas: Arc::new(personas),
        persona: 0,
        log_path: Some(LOG.into()),
        no_color,
        clock,
        ..UiContext::new(Arc::new(Meters::default()), None)
    };
    (ctx, hand)
}

/// A state being built: events go in, the clock moves by hand.
pub struct Scene {
    pub state: UiState,
    pub clock: ManualClock,
    frame: u64,
    tick: u64,
    turns: assistant::engine::turns::TurnTracker,
    /// The network path `talk` reports (a `--connect` session), if any.
    pub link: Option<assistant::bus::LinkStats>,
}

impl Scene {
    pub fn new() -> Self {
        Self::with(false, Color::Cyan)
    }

    pub fn with(no_color: bool, persona_colour: Color) -> Self {
        let (ctx, clock) = context(no_color, persona_colour);
        Self::from_context(ctx, clock)
    }

    /// The built-in persona `i` active from the start.
    pub fn as_persona(i: usize) -> Self {
        let (mut ctx, clock) = context(false, Color::Cyan);
        ctx.personas = Arc::new(assistant::persona::Catalog::builtin().personas);
        ctx.persona = i;
        Self::from_context(ctx, clock)
    }

    pub fn from_context(ctx: UiContext, clock: ManualClock) -> Self {
        Self {
            state: UiState::new(&ctx),
            clock,
            frame: 0,
            tick: 0,
            turns: Default::default(),
            link: None,
        }
    }

    pub fn at(&mut self, secs: f64) -> &mut Self {
        self.clock.set(Duration::from_secs_f64(secs));
        self
    }

    pub fn send(&mut self, e: EngineEvent) -> &mut Self {
        self.state.apply(AppEvent::Engine(e));
        self
    }

    pub fn app(&mut self, e: AppEvent) -> &mut Self {
        self.state.apply(e);
        self
    }

    pub fn endpoints(&mut self, input: Endpoint, output: Endpoint) -> &mut Self {
        self.send(EngineEvent::Endpoints { input, output })
    }

    pub fn wav_and_speaker(&mut self) -> &mut Self {
        self.endpoints(
            Endpoint::File("tests/fixtures/audio/hello_24k_mono.wav".into()),
            Endpoint::Device("Built-in Audio Analog Stereo".into()),
        )
    }

    pub fn ready(&mut self) -> &mut Self {
        self.send(EngineEvent::info(
            "weights found in ~/.cache/huggingface/hub/models--kyutai--moshiko-candle-q8",
        ));
        self.send(EngineEvent::ModelReady {
            info: ModelInfo {
                name: "moshiko-q8".into(),
                device: "cpu".into(),
                dtype: "q8".into(),
            },
            load_ms: 8_400.0,
        })
    }

    pub fn memory(&mut self) -> &mut Self {
        self.app(AppEvent::Memory(212 * MB + 400 * 1024))
    }

    /// `frames` 80 ms engine steps with these RMS levels, each followed by level
    /// samples as the 30 Hz tick would take them; `words` arrive one per step.
    pub fn talk(&mut self, frames: usize, mic_rms: f32, out_rms: f32, words: &[&str]) -> &mut Self {
        for i in 0..frames {
            self.frame += 1;
            self.clock.advance(Duration::from_millis(80));
            let wobble = |k: u64, amp: f32| amp * (0.55 + 0.45 * ((k as f32) * 0.7).sin().abs());
            let stats = StepStats {
                step_index: self.frame,
                step_ms: 42.3 + (self.frame % 5) as f64 * 0.4,
                overhead_ms: 0.6,
                rtf: 0.53 + (self.frame % 5) as f64 * 0.005,
                dropped_frames: 0,
                xruns_in: 0,
                xruns_out: 0,
                latency_ms: 160.0,
                mic_rms: wobble(self.frame, mic_rms),
                out_rms: wobble(self.frame + 3, out_rms),
                link: self.link,
            };
            self.send(EngineEvent::Step(stats));
            if let Some(w) = words.get(i) {
                self.send(EngineEvent::Text((*w).to_string()));
            }
            // The engine's own turn rule decides where the assistant's turns end.
            if self.turns.step(words.get(i).is_some()) {
                self.send(EngineEvent::TurnEnded);
            }
            // 30 Hz sampling against 12.5 Hz steps: 2 or 3 samples a step.
            for _ in 0..(2 + (self.frame % 2)) {
                self.tick += 1;
                let mic = wobble(self.tick * 3, mic_rms * 2.5).min(1.0);
                let out = wobble(self.tick * 5 + 1, out_rms * 2.5).min(1.0);
                self.app(AppEvent::Levels { mic, out });
            }
        }
        self
    }

    pub fn resize(&mut self, w: u16, h: u16) -> &mut Self {
        self.app(AppEvent::Resize(w, h))
    }
}

/// Renders the state at `w`x`h`, as the main loop would after a resize.
pub fn draw(state: &mut UiState, w: u16, h: u16) -> Terminal<TestBackend> {
    state.apply(AppEvent::Resize(w, h));
    let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
    t.draw(|f| assistant::ui::render(state, f)).unwrap();
    t
}

pub fn words(text: &str) -> Vec<String> {
    text.split(' ').map(|w| format!(" {w}")).collect()
}

pub fn loading(nc: bool) -> Scene {
    let mut s = Scene::with(nc, Color::Cyan);
    s.at(0.2).wav_and_speaker().memory();
    s.at(0.4).send(EngineEvent::info(
        "weights found in ~/.cache/huggingface/hub/models--kyutai--moshiko-candle-q8",
    ));
    s.at(1.1).send(EngineEvent::Loading(LoadProgress {
        stage: "tokenizer-e351c8d8-checkpoint125.safetensors".into(),
        done: 367 * MB,
        total: 367 * MB,
        unit: ProgressUnit::Bytes,
        elapsed_s: 0.7,
    }));
    s.at(8.3).send(EngineEvent::Loading(LoadProgress {
        stage: "model.q8.gguf".into(),
        done: 612 * MB,
        total: 1536 * MB,
        unit: ProgressUnit::Bytes,
        elapsed_s: 7.2,
    }));
    s
}

/// Listening to a model on a server (`--connect`): the status line shows the network.
pub fn connected(nc: bool, link: assistant::bus::LinkStats) -> Scene {
    let mut s = Scene::with(nc, Color::Cyan);
    s.link = Some(link);
    s.at(0.2).wav_and_speaker();
    s.at(0.9).send(EngineEvent::ModelReady {
        info: ModelInfo {
            name: "moshiko at ws://192.168.1.20:8998/api/chat".into(),
            device: "remote".into(),
            dtype: "opus".into(),
        },
        load_ms: 700.0,
    });
    s.talk(20, 0.002, 0.0, &[]);
    s
}

pub fn listening(nc: bool) -> Scene {
    listening_from(Scene::with(nc, Color::Cyan))
}

pub fn listening_from(mut s: Scene) -> Scene {
    s.at(0.2).wav_and_speaker().memory();
    s.at(8.6).ready();
    s.talk(20, 0.002, 0.0, &[]);
    s
}

const FIRST_REPLY: &str =
    "Hi! I'm Moshi, a voice assistant that runs right here on your computer. \
I can listen while I talk, so feel free to interrupt me whenever you like.";
const SECOND_REPLY: &str =
    "Sure. Tomorrow looks mild and dry in the morning, with some rain likely after four, \
so an umbrella for the walk home would be a good idea.";

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

pub fn speaking(nc: bool) -> Scene {
    speaking_from(Scene::with(nc, Color::Cyan))
}

/// The speaking scene as persona `i` of the built-ins.
pub fn speaking_as(i: usize) -> Scene {
    speaking_from(Scene::as_persona(i))
}

pub fn speaking_from(s: Scene) -> Scene {
    let mut s = listening_from(s);
    let first = words(FIRST_REPLY);
    let second = words(SECOND_REPLY);
    s.talk(16, 0.09, 0.0, &[]); // the user says hello
    s.talk(9, 0.002, 0.0, &[]);
    s.talk(first.len() + 6, 0.002, 0.12, &strs(&first));
    s.talk(12, 0.002, 0.0, &[]);
    s.talk(22, 0.08, 0.0, &[]); // the user asks about the weather
    s.talk(9, 0.002, 0.0, &[]);
    s.talk(
        second.len() - 4,
        0.002,
        0.14,
        &strs(&second)[..second.len() - 4],
    );
    s
}

pub fn both_talking(nc: bool) -> Scene {
    let mut s = speaking(nc);
    s.talk(4, 0.1, 0.14, &[" be", " a", " good"]);
    s
}

pub fn degraded(nc: bool) -> Scene {
    let mut s = Scene::with(nc, Color::Cyan);
    s.at(0.2).endpoints(
        Endpoint::Missing("no capture device (ALSA: Unknown PCM default)".into()),
        Endpoint::Device("Built-in Audio Analog Stereo".into()),
    );
    // As the app reports it (app::wire).
    s.send(EngineEvent::warning(
        "no microphone: no capture device (ALSA: Unknown PCM default)",
        Some("use --input FILE.wav to talk from a recording".into()),
    ));
    s.memory();
    s.at(8.6).ready();
    s.talk(30, 0.0, 0.0, &[]);
    s
}

pub fn error(nc: bool) -> Scene {
    let mut s = loading(nc);
    s.at(12.9).send(EngineEvent::ModelFailed {
        error: "weights failed to load: model.q8.gguf ends after 612.0 MB of 1.5 GB (truncated download)".into(),
        remedy: "delete ~/.cache/huggingface/hub/models--kyutai--moshiko-candle-q8 and run again to download it, \
                 or run with --demo for the built-in demo model"
            .into(),
    });
    s
}

pub fn help(nc: bool) -> Scene {
    let mut s = listening(nc);
    s.app(AppEvent::Key(ratatui::crossterm::event::KeyEvent::from(
        ratatui::crossterm::event::KeyCode::Char('?'),
    )));
    s
}

/// Every conversation state above, for tests that must hold in all of them.
pub const ALL_SCENES: [fn(bool) -> Scene; 7] = [
    loading,
    listening,
    speaking,
    both_talking,
    degraded,
    error,
    help,
];

/// Where `text` starts on screen, as (x, y).
pub fn find(buf: &Buffer, text: &str) -> Option<(u16, u16)> {
    let area = buf.area;
    for y in 0..area.height {
        let mut row = String::new();
        let mut xs = Vec::new();
        for x in 0..area.width {
            let sym = buf[(x, y)].symbol();
            for _ in sym.chars() {
                xs.push(x);
            }
            row.push_str(sym);
        }
        if let Some(i) = row.find(text) {
            let char_index = row[..i].chars().count();
            return Some((xs[char_index], y));
        }
    }
    None
}

/// The screen as plain rows.
pub fn rows(buf: &Buffer) -> Vec<String> {
    (0..buf.area.height)
        .map(|y| {
            (0..buf.area.width)
                .map(|x| buf[(x, y)].symbol())
                .collect::<String>()
        })
        .collect()
}

pub fn screen(buf: &Buffer) -> String {
    rows(buf).join("\n")
}

/// Cascade mode: the recogniser's words as the user's lines, a thinking pause, a reply
/// that the user interrupts, and an LLM server that went away.
pub fn cascade(nc: bool) -> Scene {
    use assistant::bus::{Talk, TalkPhase};
    let mut s = Scene::with(nc, Color::Cyan);
    s.at(0.2).wav_and_speaker().memory();
    s.at(3.1).send(EngineEvent::ModelReady {
        info: ModelInfo {
            name: "cascade: stt-1b-en_fr → qwen2.5-0.5b q4 (in-process) → tts-1.6b-en_fr".into(),
            device: "cpu".into(),
            dtype: "".into(),
        },
        load_ms: 2_900.0,
    });
    s.send(EngineEvent::Talk(Talk::Phase(TalkPhase::Listening)));
    s.talk(6, 0.002, 0.0, &[]);
    for w in ["What's", "the", "capital", "of", "France?"] {
        s.talk(3, 0.09, 0.0, &[]);
        s.send(EngineEvent::Talk(Talk::UserWords(format!(" {w}"))));
    }
    s.talk(8, 0.002, 0.0, &[]);
    s.send(EngineEvent::Talk(Talk::UserTurnEnded));
    s.send(EngineEvent::Talk(Talk::Phase(TalkPhase::Thinking)));
    s.talk(5, 0.002, 0.0, &[]);
    s.send(EngineEvent::Talk(Talk::Phase(TalkPhase::Speaking)));
    s.talk(4, 0.002, 0.12, &[" Paris", " is", " the", " capital"]);
    for w in ["And", "Spain?"] {
        s.talk(3, 0.09, 0.1, &[]);
        s.send(EngineEvent::Talk(Talk::UserWords(format!(" {w}"))));
    }
    s.send(EngineEvent::Talk(Talk::BargedIn { heard: 4, of: 9 }));
    s.send(EngineEvent::Talk(Talk::Phase(TalkPhase::Listening)));
    s.talk(8, 0.002, 0.0, &[]);
    s.send(EngineEvent::Talk(Talk::UserTurnEnded));
    s.send(EngineEvent::Talk(Talk::Phase(TalkPhase::Thinking)));
    s.talk(2, 0.002, 0.0, &[]);
    s.send(EngineEvent::Talk(Talk::LlmTrouble {
        message: "the LLM server at http://127.0.0.1:11434/v1 refused the connection".into(),
        remedy: "start it (ollama serve), or drop --llm-url to run the model in-process; your question is kept for the next turn".into(),
    }));
    s.send(EngineEvent::Talk(Talk::Phase(TalkPhase::Listening)));
    s.talk(3, 0.002, 0.0, &[]);
    s
}

/// The cascade scene while the LLM writes (header: thinking).
pub fn cascade_thinking(nc: bool) -> Scene {
    use assistant::bus::{Talk, TalkPhase};
    let mut s = cascade(nc);
    for w in ["What", "about", "Italy?"] {
        s.talk(3, 0.09, 0.0, &[]);
        s.send(EngineEvent::Talk(Talk::UserWords(format!(" {w}"))));
    }
    s.talk(8, 0.002, 0.0, &[]);
    s.send(EngineEvent::Talk(Talk::UserTurnEnded));
    s.send(EngineEvent::Talk(Talk::Phase(TalkPhase::Thinking)));
    s.talk(2, 0.002, 0.0, &[]);
    s
}
