//! Half-duplex fallback (`--half-duplex`): closes the microphone while the assistant
//! speaks, for rooms where cancellation is not enough.

/// Gates microphone blocks on far-end activity.
///
/// The gate stays closed for `hold` samples after the last loud far-end block, because the
/// speaker plays that block later (device buffers) and the room keeps ringing after it.
/// Opening and closing ramp over a few ms so gating makes no clicks.
#[derive(Debug, Clone)]
pub struct HalfDuplexGate {
    threshold: f32,
    hold: usize,
    ramp_step: f32,
    /// Samples of closed gate still owed to the most recent far-end activity.
    remaining: usize,
    gain: f32,
}

impl HalfDuplexGate {
    /// `threshold`: far-end RMS that counts as speech; `hold_ms`: playback delay plus echo
    /// tail to cover; `ramp_ms`: fade length.
    pub fn new(sample_rate: u32, threshold: f32, hold_ms: f32, ramp_ms: f32) -> Self {
        let per_ms = sample_rate as f32 / 1000.0;
        Self {
            threshold,
            hold: (hold_ms.max(0.0) * per_ms) as usize,
            ramp_step: 1.0 / (ramp_ms.max(0.1) * per_ms),
            remaining: 0,
            gain: 1.0,
        }
    }

    /// Defaults for 24 kHz: -40 dBFS threshold, 400 ms hold (300 ms device delay plus a
    /// short tail), 5 ms ramps.
    pub fn for_24k() -> Self {
        Self::new(24_000, 0.01, 400.0, 5.0)
    }

    /// Tells the gate what the speaker is about to play.
    pub fn push_far(&mut self, far: &[f32]) {
        if far.is_empty() {
            return;
        }
        let rms = (far.iter().map(|x| x * x).sum::<f32>() / far.len() as f32).sqrt();
        if rms >= self.threshold {
            self.remaining = self.hold + far.len();
        }
    }

    /// Whether the microphone is (being) closed now.
    pub fn closed(&self) -> bool {
        self.remaining > 0
    }

    /// Applies the gate to a microphone block in place.
    pub fn process_near(&mut self, mic: &mut [f32]) {
        for x in mic.iter_mut() {
            let target = if self.remaining > 0 { 0.0 } else { 1.0 };
            if self.gain < target {
                self.gain = (self.gain + self.ramp_step).min(1.0);
            } else if self.gain > target {
                self.gain = (self.gain - self.ramp_step).max(0.0);
            }
            *x *= self.gain;
            self.remaining = self.remaining.saturating_sub(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closes_while_far_speaks_and_reopens_after_hold() {
        // 1 kHz rate so 1 sample = 1 ms.
        let mut g = HalfDuplexGate::new(1000, 0.1, 50.0, 1.0);
        let mut mic = vec![1.0; 20];
        g.process_near(&mut mic);
        assert!(mic.iter().all(|&x| x == 1.0), "open with no far end");

        g.push_far(&[0.5; 20]);
        assert!(g.closed());
        let mut mic = vec![1.0; 60];
        g.process_near(&mut mic);
        assert!(
            mic[1..].iter().all(|&x| x == 0.0),
            "closed during far end and hold"
        );
        let mut mic = vec![1.0; 20];
        g.process_near(&mut mic);
        assert!(
            mic[10..].iter().all(|&x| x == 1.0),
            "open again after the hold: {mic:?}"
        );
    }

    #[test]
    fn quiet_far_end_does_not_close_it() {
        let mut g = HalfDuplexGate::for_24k();
        g.push_far(&[0.001; 1920]);
        assert!(!g.closed());
        let mut mic = vec![0.3; 1920];
        g.process_near(&mut mic);
        assert!(mic.iter().all(|&x| x == 0.3));
    }

    #[test]
    fn ramps_instead_of_jumping() {
        let mut g = HalfDuplexGate::new(24_000, 0.01, 10.0, 5.0);
        g.push_far(&[0.5; 240]);
        let mut mic = vec![1.0; 240];
        g.process_near(&mut mic);
        let max_step = mic
            .windows(2)
            .map(|w| (w[0] - w[1]).abs())
            .fold(0.0, f32::max);
        assert!(max_step < 0.01, "step {max_step}");
        assert!(mic[239] == 0.0);
    }
}
