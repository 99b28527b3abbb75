//! Time since the session started, from the system or set by hand (tests and
//! snapshots need timestamps that do not move).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct Clock(Source);

#[derive(Debug, Clone)]
enum Source {
    System(Instant),
    Manual(Arc<AtomicU64>),
}

/// The hand of a manual clock: set or advance it, and every clone of the
/// [`Clock`] sees the new time.
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<AtomicU64>);

impl Clock {
    /// Counts from now.
    pub fn system() -> Self {
        Self(Source::System(Instant::now()))
    }

    /// Starts at zero and moves only when told to.
    pub fn manual() -> (Self, ManualClock) {
        let micros = Arc::new(AtomicU64::new(0));
        (Self(Source::Manual(micros.clone())), ManualClock(micros))
    }

    /// Time since the session started.
    pub fn elapsed(&self) -> Duration {
        match &self.0 {
            Source::System(start) => start.elapsed(),
            Source::Manual(micros) => Duration::from_micros(micros.load(Relaxed)),
        }
    }
}

impl ManualClock {
    pub fn set(&self, t: Duration) {
        self.0.store(t.as_micros() as u64, Relaxed);
    }
    pub fn advance(&self, by: Duration) {
        self.0.fetch_add(by.as_micros() as u64, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told() {
        let (clock, hand) = Clock::manual();
        assert_eq!(clock.elapsed(), Duration::ZERO);
        hand.advance(Duration::from_millis(1500));
        let copy = clock.clone();
        assert_eq!(copy.elapsed(), Duration::from_millis(1500));
        hand.set(Duration::from_secs(61));
        assert_eq!(clock.elapsed(), Duration::from_secs(61));
    }
}
