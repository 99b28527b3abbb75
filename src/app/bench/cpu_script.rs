//! The scripted conversation of `assistant bench cascade --published`: a fixed list
//! of turns, played into the engine by a microphone that listens to the speaker.
//!
//! Which turns talk over a reply is fixed by the plan, not by the reply timing: a turn
//! that starts in quiet waits until the reply before it is over, and a barge-in turn
//! waits until the reply before it is playing. So every run has the same turns, the
//! same barge-ins, and each figure comes from its own turns (first audio from the
//! turns whose reply plays out, barge-in from the turns that talk over one); only the
//! moments the turns start differ.

use std::ops::Range;

pub const RATE: usize = 24_000;
/// One 10 ms block of the microphone.
pub const BLOCK: usize = RATE / 100;

/// The seed of the bench's plan.
pub const SEED: u64 = 20;

/// What the replies say: a first sentence and more, as an LLM writes it. (Random
/// weights write no words: the bench's LLM is made to write this text's tokens.)
pub const REPLY: &str = "Sure, I can help with that, and it should not take long. First, open the \
settings page and find the section called privacy. Then switch the option off, and restart \
the application so that the change takes effect.";

/// Questions the script asks (15 words or so, as people ask a voice assistant).
pub(crate) const QUESTIONS: &[&str] = &[
    "what is the weather going to be like tomorrow morning when I walk to the station",
    "can you remind me how long I should boil an egg so the yolk stays soft",
    "tell me something interesting about the history of the town where I grew up please",
    "how many minutes does it take to drive from here to the airport in the evening",
    "what would be a good name for a small grey cat that likes to sleep all day",
    "explain in simple words why the sky looks blue in the middle of a sunny day",
];

/// How a turn relates to the reply before it and the one after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Starts in quiet, and its reply plays out: measured for first audio.
    Answered,
    /// Starts in quiet; the next turn talks over its reply.
    TalkedOver,
    /// Starts while the reply before it plays: measured for barge-in.
    BargeIn,
}

/// The kinds in turn: four turns a cycle, so half the turns are measured for first
/// audio and a quarter for barge-in.
const CYCLE: [Kind; 4] = [
    Kind::Answered,
    Kind::Answered,
    Kind::TalkedOver,
    Kind::BargeIn,
];

/// One turn of the plan.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedTurn {
    pub words: Vec<&'static str>,
    /// The voice's pitch, Hz.
    pub f0: f64,
    pub kind: Kind,
    /// When the turn starts, in ms: for a barge-in, after the reply before it began to
    /// play; otherwise after that reply is over (plus the onset's place in a frame).
    pub gap_ms: u64,
}

impl PlannedTurn {
    /// Five words a second, as people talk.
    pub fn speech_samples(&self) -> usize {
        (self.words.len() as f64 * 0.2 * RATE as f64) as usize
    }

    pub fn speech(&self) -> Vec<f32> {
        super::cascade::voice(self.speech_samples() as f64 / RATE as f64, self.f0, 0.2)
    }
}

/// A splitmix64 step: the plan's only source of variety.
fn mix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// `turns` turns: the questions in a seeded order, the kinds in `CYCLE`, and seeded
/// gaps (barge-ins 0.4–1.2 s into the reply; quiet turns 0.6–1.5 s after it).
pub fn plan(turns: usize, seed: u64) -> Vec<PlannedTurn> {
    let mut s = seed;
    (0..turns)
        .map(|i| {
            let kind = CYCLE[i % CYCLE.len()];
            let q = QUESTIONS[(mix(&mut s) % QUESTIONS.len() as u64) as usize];
            let f0 = 105.0 + (mix(&mut s) % 60) as f64;
            let gap_ms = match kind {
                Kind::BargeIn => 400 + mix(&mut s) % 800,
                _ => 600 + mix(&mut s) % 900,
            };
            PlannedTurn {
                words: q.split(' ').collect(),
                f0,
                kind,
                gap_ms,
            }
        })
        .collect()
}

/// Turns for about `minutes` of conversation at the published shapes on two cores
/// (a turn and its reply take about 20 s: 3 s of question, 2–4 s to the first audio,
/// a reply of 40 tokens spoken in about 12 s, or one cut short), at least 4.
pub fn turns_for_minutes(minutes: f64) -> usize {
    ((minutes * 60.0 / 20.0).round() as usize).max(4)
}

/// A turn as it was spoken.
#[derive(Debug, Clone, PartialEq)]
pub struct Spoken {
    /// Its index in the plan.
    pub turn: usize,
    pub kind: Kind,
    pub words: Vec<&'static str>,
    /// Its speech, in samples of the microphone's stream.
    pub speech: Range<usize>,
    /// A reply was under way at its onset (playing, or paused for text).
    pub over_reply: bool,
    /// Its wait for the reply before it gave up (no reply began, or it never ended).
    pub timed_out: bool,
}

/// What the microphone hears of the engine in one block.
#[derive(Debug, Clone, Copy, Default)]
pub struct Heard {
    /// The speaker played sound in the last block.
    pub playing: bool,
    /// A reply is under way (the synthesiser started it and has not finished it).
    pub replying: bool,
}

/// Quiet after a reply's last sound before it counts as over (the synthesiser may
/// pause while it waits for text).
const OVER_QUIET_MS: u64 = 600;
/// The longest wait for a reply to begin or to end.
const MAX_WAIT_MS: u64 = 45_000;
/// Quiet before the first turn.
const LEAD_MS: u64 = 1_000;

enum State {
    Lead,
    Speaking {
        pcm: Vec<f32>,
        at: usize,
    },
    /// After a turn's speech (or the lead), waiting to start turn `next`.
    Waiting(Wait),
    Over,
}

#[derive(Default)]
struct Wait {
    /// Blocks since the wait began.
    blocks: u64,
    /// The output has been quiet at some point since (a reply talked over may take a
    /// moment to stop; its tail is not the next reply).
    quiet_seen: bool,
    /// The block at which the reply began to play.
    began: Option<u64>,
    /// The last block that played.
    last_sound: Option<u64>,
}

/// The microphone's side of the conversation: one 10 ms block at a time, given what
/// it heard in the last one.
pub struct Conversation {
    plan: Vec<PlannedTurn>,
    next: usize,
    state: State,
    /// Samples produced so far.
    pos: usize,
    spoken: Vec<Spoken>,
    /// Each turn's speech, made before the run: a microphone computes nothing, and
    /// making seconds of it at a turn's start held up the input (and so the speaker).
    speeches: Vec<Vec<f32>>,
}

impl Conversation {
    pub fn new(plan: Vec<PlannedTurn>) -> Self {
        let speeches = plan.iter().map(|t| t.speech()).collect();
        Self {
            plan,
            next: 0,
            state: State::Lead,
            pos: 0,
            spoken: Vec::new(),
            speeches,
        }
    }

    pub fn plan(&self) -> &[PlannedTurn] {
        &self.plan
    }

    /// The turns spoken so far.
    pub fn spoken(&self) -> &[Spoken] {
        &self.spoken
    }

    /// Every turn was spoken and the last reply is over.
    pub fn over(&self) -> bool {
        matches!(self.state, State::Over)
    }

    /// The next block into `out` (`BLOCK` samples); `heard` is what played during the
    /// block before.
    pub fn block(&mut self, heard: Heard, out: &mut [f32]) {
        out.fill(0.0);
        let mut filled = 0;
        while filled < out.len() {
            match &mut self.state {
                State::Over => return,
                State::Lead => {
                    if self.pos as u64 * 1000 >= LEAD_MS * RATE as u64 {
                        self.start_turn(false, heard);
                        continue;
                    }
                    filled = out.len();
                }
                State::Speaking { pcm, at } => {
                    let n = (out.len() - filled).min(pcm.len() - *at);
                    out[filled..filled + n].copy_from_slice(&pcm[*at..*at + n]);
                    *at += n;
                    filled += n;
                    if *at == pcm.len() {
                        self.state = State::Waiting(Wait::default());
                    }
                    // The rest of the block is quiet: the wait starts with the next one.
                    filled = out.len().max(filled);
                }
                State::Waiting(w) => {
                    w.blocks += 1;
                    if heard.playing {
                        if w.quiet_seen && w.began.is_none() {
                            w.began = Some(w.blocks);
                        }
                        w.last_sound = Some(w.blocks);
                    } else {
                        w.quiet_seen = true;
                    }
                    let ms = |b: u64| b * 10;
                    let barge = self.plan.get(self.next).map(|t| t.kind) == Some(Kind::BargeIn);
                    let gap = self.plan.get(self.next).map_or(0, |t| t.gap_ms);
                    let go = match (w.began, barge) {
                        // Over sound, not in a pause between the reply's chunks:
                        // a barge-in is timed from its onset to the silence after.
                        (Some(b), true) => ms(w.blocks - b) >= gap && heard.playing,
                        (Some(_), false) => {
                            let quiet = ms(w.blocks - w.last_sound.unwrap_or(0));
                            !heard.replying && !heard.playing && quiet >= OVER_QUIET_MS.max(gap)
                        }
                        (None, _) => false,
                    };
                    let timed_out = !go && ms(w.blocks) >= MAX_WAIT_MS;
                    if go || timed_out {
                        if self.next == self.plan.len() {
                            self.state = State::Over;
                            return;
                        }
                        self.start_turn(timed_out, heard);
                        continue;
                    }
                    filled = out.len();
                }
            }
        }
        self.pos += out.len();
    }

    fn start_turn(&mut self, timed_out: bool, heard: Heard) {
        let i = self.next;
        let t = &self.plan[i];
        let pcm = std::mem::take(&mut self.speeches[i]);
        self.spoken.push(Spoken {
            turn: i,
            kind: t.kind,
            words: t.words.clone(),
            speech: self.pos..self.pos + pcm.len(),
            over_reply: heard.playing || heard.replying,
            timed_out,
        });
        self.next += 1;
        self.state = State::Speaking { pcm, at: 0 };
    }
}

/// The plan laid out with `quiet_s` between turns and no replies: for tests that need
/// the script's audio without an engine.
pub fn rehearse(plan: &[PlannedTurn], quiet_s: f64) -> (Vec<f32>, Vec<Spoken>) {
    let mut pcm = vec![0.0f32; RATE];
    let mut spoken = Vec::new();
    for (i, t) in plan.iter().enumerate() {
        let v = t.speech();
        spoken.push(Spoken {
            turn: i,
            kind: t.kind,
            words: t.words.clone(),
            speech: pcm.len()..pcm.len() + v.len(),
            over_reply: false,
            timed_out: false,
        });
        pcm.extend(v);
        pcm.extend(std::iter::repeat_n(0.0, (quiet_s * RATE as f64) as usize));
    }
    (pcm, spoken)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stand-in engine: each turn's reply begins `first_ms` after its speech ends and
    /// plays for `reply_ms`, pausing for text at `pause` (start ms, length ms) into
    /// it; speech over a reply stops it `stop_ms` later.
    struct Replies {
        first_ms: usize,
        reply_ms: usize,
        pause: (usize, usize),
        stop_ms: usize,
    }

    /// Run a conversation of `plan` against `r`, to its end.
    fn converse(plan: Vec<PlannedTurn>, r: &Replies) -> Conversation {
        let mut c = Conversation::new(plan);
        let mut out = vec![0.0; BLOCK];
        let mut heard = Heard::default();
        // The reply under way: (its first block, the block it stops at).
        let mut reply: Option<(usize, usize)> = None;
        let mut speaking_until: Option<usize> = None;
        let block_ms = 10;
        for b in 0..200_000usize {
            c.block(heard, &mut out);
            if c.over() {
                return c;
            }
            let speech = out.iter().any(|x| *x != 0.0);
            let now = b * block_ms;
            if speech {
                speaking_until = Some(now);
                if let Some((s, e)) = reply.as_mut() {
                    if *s <= now && *e > now + r.stop_ms {
                        *e = now + r.stop_ms;
                    }
                }
            } else if speaking_until.is_some_and(|u| u + block_ms == now) {
                // The speech ended in the block before: the next reply is on its way.
                let s = now + r.first_ms;
                reply = Some((s, s + r.reply_ms));
            }
            let next = now + block_ms;
            heard = match reply {
                Some((s, e)) => {
                    let into = next.saturating_sub(s);
                    let paused = (r.pause.0..r.pause.0 + r.pause.1).contains(&into);
                    Heard {
                        playing: next >= s && next < e && !paused,
                        replying: next < e,
                    }
                }
                None => Heard::default(),
            };
        }
        panic!("the conversation never ended");
    }

    fn fast() -> Replies {
        Replies {
            first_ms: 400,
            reply_ms: 3_000,
            pause: (1_000, 300),
            stop_ms: 100,
        }
    }

    fn slow() -> Replies {
        Replies {
            first_ms: 2_900,
            reply_ms: 11_000,
            pause: (2_000, 450),
            stop_ms: 250,
        }
    }

    /// What must not depend on the reply timing: each turn's plan index, words, kind
    /// and whether it came over a reply.
    fn shape(c: &Conversation) -> Vec<(usize, Vec<&'static str>, Kind, bool, bool)> {
        c.spoken()
            .iter()
            .map(|s| (s.turn, s.words.clone(), s.kind, s.over_reply, s.timed_out))
            .collect()
    }

    #[test]
    fn the_plan_is_the_same_for_a_seed_and_differs_between_seeds() {
        assert_eq!(plan(12, 7), plan(12, 7));
        assert_ne!(plan(12, 7), plan(12, 8));
        let p = plan(40, SEED);
        let barge = p.iter().filter(|t| t.kind == Kind::BargeIn).count();
        let answered = p.iter().filter(|t| t.kind == Kind::Answered).count();
        assert_eq!((answered, barge), (20, 10));
        // A barge-in always follows a turn whose reply it talks over.
        for w in p.windows(2) {
            assert_eq!(w[1].kind == Kind::BargeIn, w[0].kind == Kind::TalkedOver);
        }
        assert!(turns_for_minutes(10.0) >= 20);
    }

    #[test]
    fn the_same_turns_are_talked_over_whatever_the_reply_timing() {
        let p = plan(12, SEED);
        let a = converse(p.clone(), &fast());
        let b = converse(p.clone(), &slow());
        assert_eq!(shape(&a), shape(&b));
        assert_eq!(a.spoken().len(), 12);
        for s in a.spoken() {
            // Barge-ins come over a playing reply, and no other turn does.
            assert_eq!(s.over_reply, s.kind == Kind::BargeIn, "{s:?}");
            assert!(!s.timed_out, "{s:?}");
        }
        // Only the moments differ: the slow replies make a longer conversation.
        assert!(b.spoken()[11].speech.start > a.spoken()[11].speech.start + 30 * RATE);
        // Each turn speaks its plan's words for their length.
        for (s, t) in a.spoken().iter().zip(&p) {
            assert_eq!(s.speech.len(), t.speech_samples());
            assert_eq!(s.words, t.words);
        }
    }

    #[test]
    fn a_barge_in_starts_its_gap_after_the_reply_began_and_a_quiet_turn_after_it_ended() {
        let p = plan(4, SEED);
        let r = slow();
        let c = converse(p.clone(), &r);
        let s = c.spoken();
        let ms = |samples: usize| samples * 1000 / RATE;
        // Turn 1 (answered) starts after turn 0's reply (and its pause) is over.
        let after0 = ms(s[1].speech.start - s[0].speech.end);
        // (A block's slack: the microphone hears each block of the speaker's after it.)
        let over = r.first_ms + r.reply_ms + p[1].gap_ms.max(OVER_QUIET_MS) as usize;
        assert!(
            (over - 10..over + 50).contains(&after0),
            "{after0} vs {over}"
        );
        // Turn 3 (barge-in) starts its gap after turn 2's reply began.
        let after2 = ms(s[3].speech.start - s[2].speech.end);
        let began = r.first_ms + p[3].gap_ms as usize;
        assert!((began..began + 50).contains(&after2), "{after2} vs {began}");
        // When its gap ends in a pause between the reply's chunks, it waits for the
        // sound to come back: a barge-in is timed from sound to silence.
        let gap = p[3].gap_ms as usize;
        let paused = Replies {
            pause: (gap - 100, 500),
            ..slow()
        };
        let c = converse(p.clone(), &paused);
        let s = c.spoken();
        let after2 = ms(s[3].speech.start - s[2].speech.end);
        let resumed = paused.first_ms + gap + 400;
        assert!(
            (resumed..resumed + 50).contains(&after2),
            "{after2} vs {resumed}"
        );
    }

    #[test]
    fn a_reply_that_never_comes_ends_the_wait_and_says_so() {
        let never = Replies {
            first_ms: 10_000_000,
            reply_ms: 1,
            pause: (0, 0),
            stop_ms: 0,
        };
        let c = converse(plan(2, SEED), &never);
        assert_eq!(c.spoken().len(), 2);
        assert!(c.spoken()[1].timed_out);
        let gap = c.spoken()[1].speech.start - c.spoken()[0].speech.end;
        assert!(gap as u64 * 1000 / RATE as u64 + 10 >= MAX_WAIT_MS);
    }
}
