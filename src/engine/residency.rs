//! Model residency: whether the model is in memory, and the two policies that move it
//! (unload after a silence on both sides; reload, without losing audio, when the user
//! speaks). The engine thread drives it; the UI only sees `EngineEvent::Residency`.

use std::collections::VecDeque;

pub use crate::bus::Residency;

/// Below this RMS (about -50 dBFS) a frame counts as silence, from either side.
pub const SILENCE_RMS: f32 = 0.003;
/// How much audio waits for a reload: 10 s of 80 ms frames.
pub const MAX_BUFFERED_FRAMES: usize = 125;

/// Counts silent model time; says when it has lasted `limit_s`.
#[derive(Debug, Clone)]
pub struct IdleWatch {
    limit_s: f64,
    silent_s: f64,
}

impl IdleWatch {
    pub fn new(limit_s: f64) -> Self {
        Self {
            limit_s,
            silent_s: 0.0,
        }
    }

    /// One stepped frame: what the user said (after mute), what the model said. True
    /// when both sides have been silent for the whole limit.
    pub fn observe(&mut self, frame_s: f64, mic_rms: f32, out_rms: f32, text: bool) -> bool {
        if mic_rms < SILENCE_RMS && out_rms < SILENCE_RMS && !text {
            self.silent_s += frame_s;
        } else {
            self.silent_s = 0.0;
        }
        self.silent_s >= self.limit_s
    }

    pub fn reset(&mut self) {
        self.silent_s = 0.0;
    }
}

/// Model-rate frames heard while the model is not there, oldest first. Bounded: past
/// `MAX_BUFFERED_FRAMES` the oldest go, and are counted.
#[derive(Debug, Default)]
pub struct HeldAudio {
    frames: VecDeque<Vec<f32>>,
    pub dropped: u64,
    /// Frames ever held (for the feed and the stats).
    pub held: u64,
}

impl HeldAudio {
    pub fn push(&mut self, frame: &[f32]) {
        let mut f = if self.frames.len() >= MAX_BUFFERED_FRAMES {
            self.dropped += 1;
            self.frames.pop_front().unwrap_or_default()
        } else {
            Vec::with_capacity(frame.len())
        };
        f.clear();
        f.extend_from_slice(frame);
        self.frames.push_back(f);
        self.held += 1;
    }

    pub fn pop(&mut self) -> Option<Vec<f32>> {
        self.frames.pop_front()
    }

    pub fn len(&self) -> usize {
        self.frames.len()
    }

    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// Keep only the last `n` frames: the silence before speech is not worth replaying.
    pub fn keep_last(&mut self, n: usize) {
        while self.frames.len() > n {
            self.frames.pop_front();
        }
    }
}

/// Process resident memory, from sysinfo.
pub fn rss_bytes() -> Option<u64> {
    let pid = sysinfo::get_current_pid().ok()?;
    let mut sys = sysinfo::System::new();
    sys.refresh_processes(sysinfo::ProcessesToUpdate::Some(&[pid]), true);
    sys.process(pid).map(|p| p.memory())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_needs_silence_on_both_sides_for_the_whole_limit() {
        let mut w = IdleWatch::new(1.0);
        for _ in 0..12 {
            assert!(!w.observe(0.08, 0.0, 0.0, false));
        }
        assert!(w.observe(0.08, 0.0, 0.0, false), "13 x 80 ms > 1 s");
        w.reset();
        for _ in 0..20 {
            assert!(!w.observe(0.08, 0.0, 0.1, false), "the model is talking");
        }
        for _ in 0..20 {
            assert!(!w.observe(0.08, 0.0, 0.0, true), "the model is writing");
        }
        for _ in 0..20 {
            assert!(!w.observe(0.08, 0.2, 0.0, false), "the user is talking");
        }
    }

    #[test]
    fn held_audio_is_bounded_and_counts_what_it_drops() {
        let mut h = HeldAudio::default();
        for i in 0..(MAX_BUFFERED_FRAMES + 5) {
            h.push(&[i as f32; 4]);
        }
        assert_eq!(h.len(), MAX_BUFFERED_FRAMES);
        assert_eq!(h.dropped, 5);
        assert_eq!(h.pop().unwrap()[0], 5.0, "the oldest went first");
        h.keep_last(2);
        assert_eq!(h.pop().unwrap()[0], (MAX_BUFFERED_FRAMES + 3) as f32);
    }
}
