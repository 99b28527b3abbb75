//! Wake mode's second path, through the engine and the cascade's turn machine: while
//! the gate waits, the recogniser still hears the microphone, and a wake phrase in its
//! words opens the gate, as the spotter does. Until then its words open no turn, reach
//! no LLM and are not reported (so not journalled); the words said after the phrase
//! start the turn. The recogniser here is scripted (a real one's words need real
//! weights): it "hears" each burst of sound as a given sentence, a few frames late.

use assistant::audio::meters::Meters;
use assistant::audio::port::InputPort;
use assistant::audio::wake::Spotter;
use assistant::bus::{Cancel, Happening, Talk};
use assistant::engine::cascade::{Cascade, TurnSettings};
use assistant::engine::runner::{self, EngineSetup, Loaded};
use assistant::engine::wake_gate::WakeOptions;
use assistant::engine::{Command, EngineEvent};
use assistant::models::parts::{
    ChatRequest, Llm, LlmError, SpeechToText, SttStep, TextToSpeech, TtsStep,
};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

const RATE: usize = 24_000;
/// The recogniser's words come this many 80 ms frames after the burst ends.
const DELAY: usize = 3;

/// Hears each burst of sound (RMS over 0.05) as the next of `said`.
struct BurstStt {
    said: VecDeque<&'static str>,
    in_burst: bool,
    /// (steps left, words) queued for emission.
    queued: VecDeque<(usize, &'static str)>,
}

impl SpeechToText for BurstStt {
    fn name(&self) -> String {
        "burst-stt".into()
    }
    fn step(&mut self, pcm: &[f32]) -> anyhow::Result<SttStep> {
        let rms = (pcm.iter().map(|x| x * x).sum::<f32>() / pcm.len() as f32).sqrt();
        let loud = rms > 0.05;
        if self.in_burst && !loud {
            if let Some(s) = self.said.pop_front() {
                self.queued.push_back((DELAY, s));
            }
        }
        self.in_burst = loud;
        let mut words = Vec::new();
        let mut later = VecDeque::new();
        for (left, s) in self.queued.drain(..) {
            if left == 0 {
                words.extend(s.split_whitespace().map(|w| format!(" {w}")));
            } else {
                later.push_back((left - 1, s));
            }
        }
        self.queued = later;
        Ok(SttStep {
            words,
            end_of_speech: None,
        })
    }
    fn delay_frames(&self) -> usize {
        DELAY
    }
    fn reset(&mut self) {
        self.queued.clear();
        self.in_burst = false;
    }
    fn pending(&self) -> bool {
        !self.queued.is_empty()
    }
}

/// Makes no sound: the reply is done as soon as its text is.
#[derive(Default)]
struct Mute {
    finished: bool,
}

impl TextToSpeech for Mute {
    fn name(&self) -> String {
        "mute".into()
    }
    fn set_voice(&mut self, _: &str) -> anyhow::Result<()> {
        Ok(())
    }
    fn start(&mut self) -> anyhow::Result<()> {
        self.finished = false;
        Ok(())
    }
    fn push_text(&mut self, _: &str) {}
    fn finish(&mut self) {
        self.finished = true;
    }
    fn step(&mut self, _: &mut [f32]) -> anyhow::Result<TtsStep> {
        Ok(if self.finished {
            TtsStep::Done
        } else {
            TtsStep::Waiting
        })
    }
    fn cancel(&mut self) {
        self.finished = true;
    }
}

/// Answers "It is noon." and keeps every request it was sent.
struct Noon(Arc<Mutex<Vec<ChatRequest>>>);

impl Llm for Noon {
    fn name(&self) -> String {
        "noon".into()
    }
    fn stream(
        &self,
        request: &ChatRequest,
        _: &Cancel,
        on_piece: &mut dyn FnMut(&str),
    ) -> Result<(), LlmError> {
        self.0.lock().unwrap().push(request.clone());
        on_piece("It is noon.");
        Ok(())
    }
    fn count_tokens(&self, text: &str) -> usize {
        text.split_whitespace().count()
    }
    fn context_tokens(&self) -> usize {
        4096
    }
}

fn tone(secs: f64) -> Vec<f32> {
    (0..(secs * RATE as f64) as usize)
        .map(|i| 0.2 * (i as f32 * 220.0 * std::f32::consts::TAU / RATE as f32).sin())
        .collect()
}

fn gap(secs: f64) -> Vec<f32> {
    vec![0.0; (secs * RATE as f64) as usize]
}

#[test]
fn a_wake_phrase_in_the_recognisers_words_opens_the_gate_and_nothing_before_it_is_heard() {
    // Someone else talks; then "hey Jarvis" and the question, in one breath, so the
    // question's first words come with the name; then quiet.
    let said = VecDeque::from([
        "the train to the city leaves at seven",
        "Hey, Jarvis. What time",
        "is it",
    ]);
    let mut pcm = gap(0.5);
    for part in [
        tone(1.0),
        gap(1.0),
        tone(0.6),
        gap(0.3),
        tone(0.5),
        gap(4.0),
    ] {
        pcm.extend(part);
    }
    let requests = Arc::new(Mutex::new(Vec::new()));
    let llm = Arc::new(Noon(requests.clone()));
    let stt = BurstStt {
        said,
        in_burst: false,
        queued: VecDeque::new(),
    };
    let cascade = Mutex::new(Some(Cascade::new(
        Box::new(stt),
        Box::new(Mute::default()),
        llm,
        "cpu",
        TurnSettings::default(),
    )));
    let (ev_tx, events) = crossbeam_channel::unbounded();
    let (commands, cmd_rx) = crossbeam_channel::unbounded();
    // No takes: the recogniser's words are the only path.
    commands
        .send(Command::InstallWake(Box::new(WakeOptions {
            spotter: Spotter::new(Vec::new(), 0.77),
            phrases: vec!["jarvis".into(), "hey jarvis".into(), "friday".into()],
            enabled: true,
            quiet_s: 2.0,
        })))
        .unwrap();
    let audio = assistant::audio::wav::WavAudio {
        samples: pcm,
        sample_rate: RATE as u32,
        channels: 1,
    };
    let setup = EngineSetup::new(
        runner::loader(move |_| {
            let c = cascade.lock().unwrap().take().expect("loaded once");
            Ok(Loaded::plain(Box::new(c)))
        }),
        InputPort::Memory { audio, pos: 0 },
        Arc::new(Meters::default()),
        ev_tx,
        cmd_rx,
    );
    let engine = runner::spawn(setup);
    let mut seen = Vec::new();
    for ev in events.iter() {
        let stopped = ev == EngineEvent::Stopped;
        seen.push(ev);
        if stopped {
            break;
        }
    }
    drop(commands);
    engine.join().unwrap();

    let heard: Vec<&Happening> = seen
        .iter()
        .filter_map(|e| match e {
            EngineEvent::Happened(h @ Happening::WakeHeard { .. }) => Some(h),
            _ => None,
        })
        .collect();
    assert_eq!(
        heard,
        vec![&Happening::WakeHeard {
            phrase: "hey jarvis".into(),
            score: None
        }],
        "{seen:?}"
    );
    let user_words: String = seen
        .iter()
        .filter_map(|e| match e {
            EngineEvent::Talk(Talk::UserWords(w)) => Some(w.as_str()),
            _ => None,
        })
        .collect();
    assert!(
        !user_words.contains("train") && !user_words.contains("seven"),
        "words before the name were reported: {user_words:?}"
    );
    assert_eq!(user_words.trim(), "What time is it", "{seen:?}");
    let requests = requests.lock().unwrap();
    assert_eq!(requests.len(), 1, "{requests:?}");
    let asked: Vec<&str> = requests[0]
        .messages
        .iter()
        .map(|m| m.content.as_str())
        .collect();
    assert!(
        asked.iter().all(|m| !m.contains("train")),
        "the LLM got words from before the name: {asked:?}"
    );
    assert!(
        asked.last().is_some_and(|m| m.contains("What time is it")),
        "{asked:?}"
    );
}
