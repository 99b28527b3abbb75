//! What the engine does to the microphone on account of the speaker, in one place:
//! echo cancellation (on by default, toggled live with `e`), then the optional
//! half-duplex gate (`--half-duplex`). Push-to-talk is the engine's mute, not this.

use super::{AecError, AecSettings, AecStats, EchoCanceller, HalfDuplexGate};

/// What the engine is asked for (`--aec on|off`, `--half-duplex`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EchoOptions {
    pub aec: bool,
    pub half_duplex: bool,
}

#[derive(Debug)]
pub struct MicPath {
    aec: EchoCanceller,
    gate: Option<HalfDuplexGate>,
}

impl MicPath {
    /// `aec_on`: from `--aec on|off`; `half_duplex`: from `--half-duplex`.
    pub fn new(aec_on: bool, half_duplex: bool) -> Result<Self, AecError> {
        let mut aec = EchoCanceller::new(&AecSettings::default())?;
        aec.set_enabled(aec_on);
        Ok(Self {
            aec,
            gate: half_duplex.then(HalfDuplexGate::for_24k),
        })
    }

    /// Exactly what was pushed to the speaker ring (24 kHz mono), after pushing it.
    pub fn push_far(&mut self, far: &[f32]) {
        self.aec.push_far(far);
        if let Some(g) = self.gate.as_mut() {
            g.push_far(far);
        }
    }

    /// Each captured block (24 kHz mono), before the model hears it.
    pub fn process_near(&mut self, mic: &mut [f32]) {
        // The canceller sees the mic even while gated, so it stays adapted.
        self.aec.process_near(mic);
        if let Some(g) = self.gate.as_mut() {
            g.process_near(mic);
        }
    }

    /// Start the canceller afresh (another microphone or speaker: another echo path
    /// and delay), keeping whether it is on; its delay finder converges again.
    pub fn restart(&mut self) -> Result<(), AecError> {
        let on = self.aec.enabled();
        self.aec = EchoCanceller::new(&AecSettings::default())?;
        self.aec.set_enabled(on);
        Ok(())
    }

    pub fn set_aec(&mut self, on: bool) {
        self.aec.set_enabled(on);
    }

    pub fn aec_on(&self) -> bool {
        self.aec.enabled()
    }

    /// The gate on or off, live (a new gate starts open).
    pub fn set_half_duplex(&mut self, on: bool) {
        if on != self.gate.is_some() {
            self.gate = on.then(HalfDuplexGate::for_24k);
        }
    }

    pub fn half_duplex(&self) -> bool {
        self.gate.is_some()
    }

    /// True while the half-duplex gate holds the microphone closed.
    pub fn gate_closed(&self) -> bool {
        self.gate.as_ref().is_some_and(HalfDuplexGate::closed)
    }

    /// Samples of delay added to the microphone (see [`EchoCanceller::latency_samples`]).
    pub fn latency_samples(&self) -> usize {
        self.aec.latency_samples()
    }

    pub fn stats(&self) -> AecStats {
        self.aec.stats()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(n: usize, amp: f32) -> Vec<f32> {
        (0..n).map(|i| amp * (i as f32 * 0.07).sin()).collect()
    }

    #[test]
    fn half_duplex_silences_the_mic_while_the_far_end_talks() {
        let mut p = MicPath::new(true, true).unwrap();
        p.push_far(&tone(1920, 0.3));
        assert!(p.gate_closed());
        let mut mic = tone(1920, 0.2);
        p.process_near(&mut mic);
        assert!(mic[240..].iter().all(|&x| x == 0.0));
    }

    #[test]
    fn half_duplex_and_a_restart_change_live() {
        let mut p = MicPath::new(true, false).unwrap();
        p.push_far(&tone(1920, 0.3));
        assert!(!p.gate_closed(), "no gate yet");
        p.set_half_duplex(true);
        p.push_far(&tone(1920, 0.3));
        assert!(p.half_duplex() && p.gate_closed());
        p.set_half_duplex(false);
        assert!(!p.half_duplex() && !p.gate_closed());
        p.set_aec(false);
        p.restart().unwrap();
        assert!(!p.aec_on(), "a restart keeps cancellation off");
        assert_eq!(p.stats().frames, 0, "the canceller starts afresh");
    }

    #[test]
    fn with_aec_off_the_mic_passes_unchanged_but_delayed() {
        let mut p = MicPath::new(false, false).unwrap();
        assert!(!p.aec_on() && !p.half_duplex());
        let input = tone(4 * 1920, 0.2);
        let mut out = Vec::new();
        for block in input.chunks(1920) {
            let mut b = block.to_vec();
            p.push_far(&tone(1920, 0.3));
            p.process_near(&mut b);
            out.extend(b);
        }
        let d = p.latency_samples();
        for i in d..input.len() {
            assert!(
                (out[i] - input[i - d]).abs() < 1e-3,
                "sample {i}: {} vs {}",
                out[i],
                input[i - d]
            );
        }
    }
}
