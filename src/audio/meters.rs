//! Lock-free counters and levels shared between audio callbacks, the engine and the UI.
//! Callbacks only store into atomics here; readers swap peaks back to zero.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};

#[derive(Debug, Default)]
pub struct Meters {
    mic_peak: AtomicU32,
    out_peak: AtomicU32,
    pub xruns_in: AtomicU64,
    pub xruns_out: AtomicU64,
    /// Playback samples dropped because too much was queued (latency bound).
    pub dropped_out: AtomicU64,
    pub callbacks_in: AtomicU64,
    pub callbacks_out: AtomicU64,
    /// What the streams' error callbacks reported, by kind; the device supervisor
    /// acts on them. (Xruns reported there go to `xruns_in` / `xruns_out`.)
    pub errors_in: StreamErrors,
    pub errors_out: StreamErrors,
}

/// Stream errors of one side, by what they mean to us. Written by a cpal error
/// callback (atomics only), read by the device supervisor.
#[derive(Debug, Default)]
pub struct StreamErrors {
    /// The device went away or the stream was invalidated: reopen it.
    pub lost: AtomicU64,
    /// Any other error (busy, backend error, ...): tell the user; the stream stays.
    pub other: AtomicU64,
    /// The kind of the latest `lost` or `other` error ([`crate::audio::device::kind_code`]).
    pub last_kind: AtomicU32,
    /// The callback thread could not get real-time priority (audio still plays).
    pub realtime_denied: AtomicU64,
}

fn raise(slot: &AtomicU32, level: f32) {
    // f32 bit patterns of non-negative floats order like the integers.
    slot.fetch_max(level.abs().min(f32::MAX).to_bits(), Relaxed);
}

impl Meters {
    pub fn raise_mic(&self, peak: f32) {
        raise(&self.mic_peak, peak);
    }
    pub fn raise_out(&self, peak: f32) {
        raise(&self.out_peak, peak);
    }
    /// Peak since the last call, then reset (the UI calls this on its tick).
    pub fn take_mic_peak(&self) -> f32 {
        f32::from_bits(self.mic_peak.swap(0, Relaxed))
    }
    pub fn take_out_peak(&self) -> f32 {
        f32::from_bits(self.out_peak.swap(0, Relaxed))
    }
    pub fn xruns_in(&self) -> u64 {
        self.xruns_in.load(Relaxed)
    }
    pub fn xruns_out(&self) -> u64 {
        self.xruns_out.load(Relaxed)
    }
}

/// Peak absolute value of a block, without allocating.
pub fn peak(samples: &[f32]) -> f32 {
    samples.iter().fold(0.0f32, |m, s| m.max(s.abs()))
}

pub fn rms(samples: &[f32]) -> f32 {
    if samples.is_empty() {
        return 0.0;
    }
    (samples.iter().map(|s| s * s).sum::<f32>() / samples.len() as f32).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peaks_accumulate_and_reset() {
        let m = Meters::default();
        m.raise_mic(0.2);
        m.raise_mic(-0.7);
        m.raise_mic(0.1);
        assert_eq!(m.take_mic_peak(), 0.7);
        assert_eq!(m.take_mic_peak(), 0.0);
    }
}
