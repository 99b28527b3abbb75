//! Kyutai's TTS state machine (`moshi.models.tts.StateMachine`, PyPI `moshi` 0.2.11),
//! ported as is: the model samples "new word" (0) or "pad" (3) on its text stream;
//! the machine turns that into the text token fed back at the next step, popping a
//! word when the model asks for one (or when it has padded `max_padding` times in a
//! row), feeding the word's tokens one per step, and forcing `padding` pads after it.
//!
//! With a second text stream (`second_stream_ahead` = N > 0, as in
//! `kyutai/tts-1.6b-en_fr`), popping a word also queues the tokens of the word N
//! places later on the second stream, and the "new word" token moves to that stream;
//! the two streams are muxed into one input token as `(second + 1) * card + first`.
//!
//! Streaming: the machine only pops when the model asks, so the driver runs a step
//! only once every word a pop could need (this one and the N after it) has arrived,
//! or the text is finished. The tokens are then exactly the ones of Kyutai's batch
//! `TTSModel.generate` on the whole text.

use std::collections::VecDeque;

/// The special text tokens (`moshi.models.tts.TokenIds`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenIds {
    /// Text cardinality including the initial token (text_card + 1): the mux base.
    pub card: u32,
    pub new_word: u32,
    pub pad: u32,
    /// The first word of the main speaker's turn starts with this token.
    pub main: u32,
}

impl TokenIds {
    pub fn new(text_card: usize, pad: u32) -> Self {
        Self {
            card: text_card as u32 + 1,
            new_word: 0,
            pad,
            main: 1,
        }
    }
}

/// One word to speak.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub tokens: Vec<u32>,
    /// Pads forced after the word starts (`padding_between + len(tokens) - 1`).
    pub padding: usize,
}

/// `padding_between` of Kyutai's `simple_generate`.
pub const PADDING_BETWEEN: usize = 1;

impl Entry {
    /// A word's entry as `script_to_entries` makes it: the speaker token before the
    /// first word of a turn, and the padding that makes the model articulate.
    pub fn word(mut tokens: Vec<u32>, first: bool, ids: &TokenIds) -> Self {
        if first {
            tokens.insert(0, ids.main);
        }
        let padding = (PADDING_BETWEEN + tokens.len()).saturating_sub(1);
        Self { tokens, padding }
    }
}

/// The words of a piece of text as `script_to_entries` splits them: `’` becomes `'`,
/// `:` separates words, parentheses go.
pub fn words(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| c.is_whitespace() || c == ':')
        .map(|w| w.replace('’', "'").replace(['(', ')'], ""))
        .filter(|w| !w.is_empty())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Machine {
    pub ids: TokenIds,
    pub second_stream_ahead: usize,
    /// Pads the model may sample in a row before a word is forced (`from_checkpoint_info`: 8).
    pub max_padding: usize,
    /// Pads forced at the start (2).
    pub initial_padding: usize,
}

#[derive(Debug, Clone, Default)]
pub struct MachineState {
    pub entries: VecDeque<Entry>,
    remaining_padding: usize,
    forced_padding: usize,
    queued: VecDeque<u32>,
    lookahead_queued: VecDeque<u32>,
    /// The step at which the model asked for a word past the last one.
    pub end_step: Option<usize>,
    /// The step at which each word was popped.
    pub consumption_times: Vec<usize>,
}

impl Machine {
    pub fn new_state(&self) -> MachineState {
        MachineState {
            remaining_padding: self.initial_padding,
            forced_padding: self.initial_padding,
            ..Default::default()
        }
    }

    /// Can the next step pop a word (if the model asks for one)?
    pub fn may_pop(&self, st: &MachineState) -> bool {
        st.queued.is_empty() && st.forced_padding == 0
    }

    /// Words a pop needs to have arrived (this one and the look-ahead ones) so that
    /// streaming gives the batch result.
    pub fn words_needed(&self) -> usize {
        1 + self.second_stream_ahead
    }

    fn tokens_ahead(&self, st: &MachineState) -> Vec<u32> {
        let mut n = self.second_stream_ahead;
        for e in &st.entries {
            if !e.tokens.is_empty() {
                n -= 1;
                if n == 0 {
                    return e.tokens.clone();
                }
            }
        }
        Vec::new()
    }

    /// Process the model's sampled text token at `step`: returns the text token to
    /// feed at the next step (both streams muxed when there are two).
    pub fn process(&self, step: usize, st: &mut MachineState, sampled: u32) -> u32 {
        let ids = &self.ids;
        let mut token = if sampled == ids.new_word || sampled == ids.pad {
            sampled
        } else {
            ids.pad
        };
        if !st.queued.is_empty() || st.forced_padding > 0 {
            token = ids.pad;
        } else if st.remaining_padding == 0 {
            token = ids.new_word;
        }
        if token == ids.new_word {
            if let Some(entry) = st.entries.pop_front() {
                st.consumption_times.push(step);
                if entry.tokens.is_empty() {
                    token = ids.pad;
                } else {
                    st.queued.extend(entry.tokens.iter().copied());
                    if self.second_stream_ahead > 0 {
                        let ahead = self.tokens_ahead(st);
                        st.lookahead_queued.extend(ahead);
                    }
                    st.remaining_padding = self.max_padding;
                }
                st.forced_padding = entry.padding;
            } else {
                token = ids.pad;
                if self.second_stream_ahead > 0 && st.end_step.is_none() {
                    token = ids.new_word;
                }
                st.end_step.get_or_insert(step);
            }
        }
        let mut output = if token == ids.pad {
            st.remaining_padding = st.remaining_padding.saturating_sub(1);
            st.forced_padding = st.forced_padding.saturating_sub(1);
            st.queued.pop_front().unwrap_or(ids.pad)
        } else {
            ids.new_word
        };
        if self.second_stream_ahead > 0 {
            // `second` is -1 (nothing) unless set; +1 so that -1 muxes to 0.
            let mut second_plus_one = 0;
            if output == ids.new_word {
                second_plus_one = ids.new_word + 1;
                output = st.queued.pop_front().unwrap_or(ids.pad);
            } else if let Some(t) = st.lookahead_queued.pop_front() {
                second_plus_one = t + 1;
            }
            output += second_plus_one * ids.card;
        }
        output
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn machine(ahead: usize) -> Machine {
        Machine {
            ids: TokenIds::new(300, 3),
            second_stream_ahead: ahead,
            max_padding: 8,
            initial_padding: 2,
        }
    }

    fn entries(ids: &TokenIds, words: &[&[u32]]) -> VecDeque<Entry> {
        words
            .iter()
            .enumerate()
            .map(|(i, w)| Entry::word(w.to_vec(), i == 0, ids))
            .collect()
    }

    #[test]
    fn words_split_as_kyutai_scripts_do() {
        let w: Vec<String> = words("Note: it’s (really) fine.").collect();
        assert_eq!(w, ["Note", "it's", "really", "fine."]);
        let ids = TokenIds::new(300, 3);
        assert_eq!(
            Entry::word(vec![7, 8], true, &ids),
            Entry {
                tokens: vec![1, 7, 8],
                padding: 3
            }
        );
        assert_eq!(Entry::word(vec![7], false, &ids).padding, 1);
    }

    #[test]
    fn one_stream_pops_on_new_word_and_feeds_the_tokens() {
        let m = machine(0);
        let mut st = m.new_state();
        st.entries = entries(&m.ids, &[&[10, 11], &[12]]);
        // Two forced pads first, whatever the model says.
        assert_eq!(m.process(0, &mut st, 0), 3);
        assert_eq!(m.process(1, &mut st, 0), 3);
        // The model asks for a word: "new word" goes in, then the tokens.
        assert_eq!(m.process(2, &mut st, 0), 0);
        assert_eq!(st.consumption_times, [2]);
        for (i, want) in [1, 10, 11].into_iter().enumerate() {
            assert_eq!(m.process(3 + i, &mut st, 0), want, "step {}", 3 + i);
        }
        // Forced padding (3 tokens: speaker + 2) is spent; a sampled pad stays a pad.
        assert_eq!(m.process(6, &mut st, 3), 3);
        assert_eq!(m.process(7, &mut st, 0), 0);
        assert_eq!(m.process(8, &mut st, 0), 12);
        // Past the last word: pads, and the end is marked once.
        assert_eq!(m.process(9, &mut st, 3), 3);
        assert_eq!(m.process(10, &mut st, 0), 3);
        assert_eq!(st.end_step, Some(10));
        assert_eq!(m.process(11, &mut st, 0), 3);
        assert_eq!(st.end_step, Some(10));
    }

    #[test]
    fn too_many_pads_force_a_word_and_other_tokens_count_as_pads() {
        let m = machine(0);
        let mut st = m.new_state();
        st.entries = entries(&m.ids, &[&[10]]);
        st.remaining_padding = 1;
        st.forced_padding = 0;
        assert_eq!(m.process(0, &mut st, 77), 3, "77 is read as a pad");
        assert_eq!(
            m.process(1, &mut st, 3),
            0,
            "no pads left: a word is forced"
        );
    }

    #[test]
    fn the_second_stream_carries_new_word_and_the_word_two_ahead() {
        let m = machine(2);
        let card = m.ids.card;
        let mut st = m.new_state();
        st.entries = entries(&m.ids, &[&[10], &[20], &[30, 31], &[40]]);
        assert_eq!(m.process(0, &mut st, 0), 3);
        assert_eq!(m.process(1, &mut st, 0), 3);
        // Pop word 0 ([1, 10]): "new word" on the second stream, its first token on
        // the main one; word 2's tokens are queued on the second stream.
        assert_eq!(m.process(2, &mut st, 0), card + 1);
        assert_eq!(m.process(3, &mut st, 3), (30 + 1) * card + 10);
        assert_eq!(m.process(4, &mut st, 3), (31 + 1) * card + 3);
        assert_eq!(m.process(5, &mut st, 0), card + 20);
        assert_eq!(st.consumption_times, [2, 5]);
        // Past the last word with two streams: one more "new word", then pads.
        let mut st = m.new_state();
        st.forced_padding = 0;
        assert_eq!(m.process(0, &mut st, 0), card + 3);
        assert_eq!(st.end_step, Some(0));
        assert_eq!(m.process(1, &mut st, 0), 3);
    }
}
