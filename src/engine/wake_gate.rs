//! The wake gate on the microphone: while it is closed, the spotter hears each frame
//! (after the echo canceller, so the assistant's own voice does not wake it) and the
//! model hears silence. A wake phrase opens it for one exchange; quiet on both sides
//! for `quiet` closes it again.

use crate::audio::wake::{Detection, Spotter};
use crate::bus::Happening;

/// Above this level (RMS) the microphone counts as someone talking (about -40 dBFS).
const MIC_ACTIVE_RMS: f32 = 0.01;
/// Above this level the assistant counts as talking.
const OUT_ACTIVE_RMS: f32 = 0.001;

pub struct WakeOptions {
    pub spotter: Spotter,
    /// Start in wake mode (`--wake`); `w` toggles it.
    pub enabled: bool,
    /// Seconds of quiet on both sides that end an exchange.
    pub quiet_s: f64,
}

pub struct WakeGate {
    spotter: Spotter,
    enabled: bool,
    open: bool,
    quiet_frames: u32,
    quiet_left: u32,
    found: Vec<Detection>,
}

/// What a frame did to the gate, for the engine to tell the user.
#[derive(Debug, PartialEq)]
pub enum Change {
    None,
    Opened(Happening),
    Closed(Happening),
}

impl WakeGate {
    pub fn new(o: WakeOptions, frame_s: f64) -> Self {
        let quiet_frames = (o.quiet_s / frame_s).ceil().max(1.0) as u32;
        Self {
            spotter: o.spotter,
            enabled: o.enabled,
            open: false,
            quiet_frames,
            quiet_left: quiet_frames,
            found: Vec::new(),
        }
    }

    pub fn waiting(&self) -> Happening {
        Happening::WakeWaiting {
            phrases: self.spotter.names(),
        }
    }

    /// Switch wake mode; returns what to tell the user.
    pub fn set_enabled(&mut self, on: bool) -> Happening {
        self.enabled = on;
        self.open = false;
        self.spotter.reset();
        if on {
            self.waiting()
        } else {
            Happening::WakeOff
        }
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    pub fn is_open(&self) -> bool {
        self.open
    }

    /// One fresh microphone frame (24 kHz, after the echo canceller): silenced unless
    /// the gate is open. `busy`: the model is mid-exchange (thinking or speaking);
    /// `out_rms`: what the last step played.
    pub fn frame(&mut self, frame: &mut [f32], mic_rms: f32, out_rms: f32, busy: bool) -> Change {
        if !self.enabled {
            return Change::None;
        }
        if self.open {
            if mic_rms > MIC_ACTIVE_RMS || out_rms > OUT_ACTIVE_RMS || busy {
                self.quiet_left = self.quiet_frames;
            } else {
                self.quiet_left = self.quiet_left.saturating_sub(1);
            }
            if self.quiet_left > 0 {
                return Change::None;
            }
            self.open = false;
            self.spotter.reset();
            frame.fill(0.0);
            return Change::Closed(self.waiting());
        }
        self.found.clear();
        self.spotter.push(frame, &mut self.found);
        // Nothing heard before the phrase reaches the model (or the journal).
        frame.fill(0.0);
        match self.found.pop() {
            Some(d) => {
                self.open = true;
                self.quiet_left = self.quiet_frames;
                Change::Opened(Happening::WakeHeard {
                    phrase: d.name,
                    score: d.score,
                })
            }
            None => Change::None,
        }
    }
}
