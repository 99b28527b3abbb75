//! Random hard rooms (issue 23): echo scenes drawn from a seed across the hard-room ranges
//! (delay 40-250 ms, RT60 0.2-0.8 s, echo -12 to -3 dB, half of them through a clipping
//! loudspeaker, background noise -65 to -45 dBFS), each with a different voice and text
//! at the two ends and a stretch of double talk. The recipe is `echo_make_scene.py`'s
//! (tools/aec_reference): a random response decaying by 60 dB in RT60 behind a strong
//! direct path, the far end through `tanh` when clipping, both ends at fixed peaks, the
//! files quantised to 16 bits; the segments are the ones the scorer reads ([`Scene`]).
//!
//! The seeds are kept here: [`TUNING_SEEDS`] are the rooms the canceller may be looked
//! at on, [`HELD_OUT_SEEDS`] the ones that check a change generalises. The voices are
//! espeak-ng's (`./dev test` installs it) or the repository's clips.

use super::score::Scene;
use super::synth::{fft_convolve, Lcg};
use super::SAMPLE_RATE;
use anyhow::{bail, Context, Result};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The rooms the canceller is tuned and reported on.
pub const TUNING_SEEDS: [u64; 24] = [
    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24,
];
/// Rooms never looked at while changing the canceller: they check that a change holds.
pub const HELD_OUT_SEEDS: [u64; 24] = [
    101, 102, 103, 104, 105, 106, 107, 108, 109, 110, 111, 112, 113, 114, 115, 116, 117, 118, 119,
    120, 121, 122, 123, 124,
];

/// What the assistant says (the far end): long enough for a far-only start and double
/// talk after it.
const FAR_TEXTS: [&str; 4] = [
    "The weather today will be mostly sunny, with a light breeze from the west and temperatures rising to about twenty degrees in the afternoon.",
    "I have found three restaurants near you. The first one is an Italian place with excellent reviews, and it is open until eleven tonight.",
    "Your next meeting starts at half past two in the large conference room on the fourth floor. Shall I send a reminder to everyone?",
    "The train to the city leaves at seven fifteen from the second platform, and the next one is forty minutes later, so you should leave soon.",
];
/// What the user says over it.
const NEAR_TEXTS: [&str; 4] = [
    "Wait, can you tell me more about the second one? And please book a table for four people at eight.",
    "No, no, stop. I meant the other calendar. Move it to tomorrow morning instead please.",
    "Actually, could you also check whether it rains on Saturday, because we planned a picnic.",
    "Hold on, what about the bus? I would rather not walk to the station in this weather.",
];
const FAR_VOICES: [&str; 4] = ["en-us+m3", "en+f2", "en-gb+m1", "en-us+f4"];
const NEAR_VOICES: [&str; 5] = [
    "en+f3",
    "en-us+m7",
    "en-gb-scotland+m2",
    "en-029+f1",
    "en+m4",
];
/// The repository's recordings (tests/fixtures/audio), used as either end now and then.
const CLIPS: [&str; 3] = [
    "hello_24k_mono.wav",
    "count_16k_mono.wav",
    "two_sentences_16k_mono.wav",
];

/// Where a talker's speech comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum Talker {
    Espeak {
        voice: &'static str,
        speed: u32,
        text: &'static str,
    },
    Clip(&'static str),
}

impl Talker {
    fn key(&self) -> String {
        match self {
            Talker::Espeak { voice, speed, text } => format!("{voice}@{speed}:{text}"),
            Talker::Clip(name) => (*name).to_string(),
        }
    }

    /// A short label for tables: the voice or the clip.
    pub fn label(&self) -> String {
        match self {
            Talker::Espeak { voice, .. } => (*voice).to_string(),
            Talker::Clip(name) => name.split('_').next().unwrap_or(name).to_string(),
        }
    }
}

/// One room drawn from a seed.
#[derive(Debug, Clone, PartialEq)]
pub struct RoomDraw {
    pub seed: u64,
    pub delay_ms: f64,
    pub rt60_s: f64,
    pub echo_db: f64,
    pub clip: bool,
    pub noise_dbfs: f64,
    /// When the user starts talking (the far end plays from 0), seconds.
    pub near_start_s: f64,
    pub far: Talker,
    pub near: Talker,
}

impl std::fmt::Display for RoomDraw {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:.0} ms, RT60 {:.2} s, {:.1} dB{}, noise {:.0} dBFS, {} / {}",
            self.delay_ms,
            self.rt60_s,
            self.echo_db,
            if self.clip { ", clip" } else { "" },
            self.noise_dbfs,
            self.far.label(),
            self.near.label()
        )
    }
}

impl RoomDraw {
    /// The room of `seed`: every quantity uniform over its range.
    pub fn from_seed(seed: u64) -> Self {
        // Mixed so that neighbouring seeds start far apart in the generator.
        let mut rng = Lcg(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xA5A5_5A5A_1234_5678);
        for _ in 0..4 {
            rng.uniform();
        }
        let mut u = |lo: f64, hi: f64| lo + (hi - lo) * rng.uniform();
        let delay_ms = u(40.0, 250.0);
        let rt60_s = u(0.2, 0.8);
        let echo_db = u(-12.0, -3.0);
        let clip = u(0.0, 1.0) < 0.5;
        let noise_dbfs = u(-65.0, -45.0);
        let near_start_s = u(3.5, 5.0);
        let pick = |x: f64, n: usize| ((x * n as f64) as usize).min(n - 1);
        let [a, b, c, d, e, g, h, k] = [(); 8].map(|()| u(0.0, 1.0));
        let far_voice = FAR_VOICES[pick(a, FAR_VOICES.len())];
        let near_voice = NEAR_VOICES[pick(b, NEAR_VOICES.len())];
        // One end in six is a recording rather than espeak-ng.
        let far = if c < 1.0 / 6.0 {
            Talker::Clip(CLIPS[pick(c * 6.0, CLIPS.len())])
        } else {
            Talker::Espeak {
                voice: far_voice,
                speed: 150 + (d * 30.0) as u32,
                text: FAR_TEXTS[pick(e, FAR_TEXTS.len())],
            }
        };
        let near = if g < 1.0 / 6.0 {
            // A different clip from the far end's.
            let mut i = pick(g * 6.0, CLIPS.len());
            if far == Talker::Clip(CLIPS[i]) {
                i = (i + 1) % CLIPS.len();
            }
            Talker::Clip(CLIPS[i])
        } else {
            Talker::Espeak {
                voice: near_voice,
                speed: 155 + (h * 30.0) as u32,
                text: NEAR_TEXTS[pick(k, NEAR_TEXTS.len())],
            }
        };
        Self {
            seed,
            delay_ms,
            rt60_s,
            echo_db,
            clip,
            noise_dbfs,
            near_start_s,
            far,
            near,
        }
    }
}

/// Speech for the talkers, made once per process (espeak-ng) or read from the clips.
pub struct Voices {
    clips: PathBuf,
    cache: HashMap<String, Vec<f64>>,
    tmp: PathBuf,
}

impl Voices {
    /// `clips`: the directory with the repository's recordings (tests/fixtures/audio).
    pub fn new(clips: &Path) -> Self {
        Self {
            clips: clips.to_path_buf(),
            cache: HashMap::new(),
            tmp: std::env::temp_dir().join(format!("assistant-rooms-{}", std::process::id())),
        }
    }

    /// Whether espeak-ng runs here.
    pub fn have_espeak() -> bool {
        std::process::Command::new("espeak-ng")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    }

    fn speech(&mut self, t: &Talker) -> Result<Vec<f64>> {
        let key = t.key();
        if let Some(x) = self.cache.get(&key) {
            return Ok(x.clone());
        }
        let x = match t {
            Talker::Clip(name) => read_24k(&self.clips.join(name))?,
            Talker::Espeak { voice, speed, text } => {
                std::fs::create_dir_all(&self.tmp)
                    .with_context(|| format!("{}: cannot create", self.tmp.display()))?;
                let path = self.tmp.join(format!("{}.wav", self.cache.len()));
                let out = std::process::Command::new("espeak-ng")
                    .args(["-v", voice, "-s", &speed.to_string(), "-w"])
                    .arg(&path)
                    .arg(text)
                    .output()
                    .context("espeak-ng is needed for the random rooms' voices (apt-get install espeak-ng; ./dev test installs it)")?;
                if !out.status.success() {
                    bail!(
                        "espeak-ng -v {voice} failed: {}",
                        String::from_utf8_lossy(&out.stderr).trim()
                    );
                }
                let x = read_24k(&path);
                let _ = std::fs::remove_file(&path);
                x?
            }
        };
        self.cache.insert(key, x.clone());
        Ok(x)
    }

    /// The scene of one drawn room, as `echo_make_scene.py` would write and the scorer
    /// would read it (16-bit samples over 32767).
    pub fn scene(&mut self, d: &RoomDraw) -> Result<Scene> {
        let mut far = self.speech(&d.far)?;
        let mut near = self.speech(&d.near)?;
        normalise_peak(&mut far, 0.5);
        normalise_peak(&mut near, 0.4);
        let r = SAMPLE_RATE as usize;
        let ns = (d.near_start_s * r as f64) as usize;
        let n = far.len().max(ns + near.len()) + r;
        let mut far_full = far.clone();
        far_full.resize(n, 0.0);
        let mut near_full = vec![0.0; n];
        near_full[ns..ns + near.len()].copy_from_slice(&near);

        let mut rng = Lcg(d.seed ^ 0x5DEE_CE66_D1CE_4E5B);
        let len = ((d.rt60_s * r as f64) as usize).max(1);
        let mut ir: Vec<f64> = (0..len)
            .map(|i| rng.gauss() * (-6.9 * i as f64 / (d.rt60_s * r as f64)).exp())
            .collect();
        ir[0] = 3.0;
        let gain = 10f64.powf(d.echo_db / 20.0) / ir.iter().map(|x| x * x).sum::<f64>().sqrt();
        let mut full = vec![0.0; (d.delay_ms * r as f64 / 1000.0) as usize];
        full.extend(ir.iter().map(|h| h * gain));
        let spk: Vec<f64> = if d.clip {
            far_full.iter().map(|x| (2.0 * x).tanh() / 2.0).collect()
        } else {
            far_full.clone()
        };
        let echo = fft_convolve(&spk, &full);
        let noise_amp = 10f64.powf(d.noise_dbfs / 20.0);
        let mut mic: Vec<f64> = (0..n)
            .map(|i| near_full[i] + echo[i] + noise_amp * rng.gauss())
            .collect();
        let peak = mic.iter().fold(0.0f64, |m, x| m.max(x.abs()));
        if peak > 0.99 {
            let k = 0.99 / peak;
            mic.iter_mut().for_each(|x| *x *= k);
            near_full.iter_mut().for_each(|x| *x *= k);
        }
        let far_end = far.len() as f64 / r as f64;
        let near_end = (ns + near.len()) as f64 / r as f64;
        Ok(Scene {
            rate: SAMPLE_RATE,
            far: quantise(&far_full),
            near: quantise(&near_full),
            mic: quantise(&mic),
            far_only: (0.0, d.near_start_s.min(far_end)),
            double_talk: (far_end > d.near_start_s).then_some((d.near_start_s, far_end)),
            near_only: (near_end > far_end).then_some((far_end, near_end)),
            delay_ms: Some(d.delay_ms),
        })
    }
}

impl Drop for Voices {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.tmp);
    }
}

fn read_24k(path: &Path) -> Result<Vec<f64>> {
    let x = crate::audio::wake::takes::read_mono_24k(path)
        .with_context(|| format!("{}: cannot read speech", path.display()))?;
    if x.is_empty() {
        bail!("{}: no audio", path.display());
    }
    Ok(x.iter().map(|&v| v as f64).collect())
}

fn normalise_peak(x: &mut [f64], to: f64) {
    let peak = x.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    if peak > 0.0 {
        x.iter_mut().for_each(|v| *v *= to / peak);
    }
}

/// As the script writes WAV (clip, scale by 32767, truncate) and the scorer reads it.
fn quantise(x: &[f64]) -> Vec<f64> {
    x.iter()
        .map(|v| (v.clamp(-1.0, 1.0) * 32767.0).trunc() / 32767.0)
        .collect()
}

/// The 16-bit samples of a quantised signal, for the WAV a reference canceller reads.
pub fn to_i16(x: &[f64]) -> Vec<i16> {
    x.iter().map(|v| (v * 32767.0).round() as i16).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_cover_the_hard_room_ranges_and_repeat() {
        let all: Vec<RoomDraw> = TUNING_SEEDS
            .iter()
            .map(|&s| RoomDraw::from_seed(s))
            .collect();
        assert_eq!(RoomDraw::from_seed(3), all[2]);
        for d in &all {
            assert!((40.0..=250.0).contains(&d.delay_ms), "{d}");
            assert!((0.2..=0.8).contains(&d.rt60_s), "{d}");
            assert!((-12.0..=-3.0).contains(&d.echo_db), "{d}");
            assert_ne!(d.far, d.near, "{d}");
        }
        let clipped = all.iter().filter(|d| d.clip).count();
        assert!((6..=18).contains(&clipped), "{clipped} of 24 clip");
        let long = all.iter().filter(|d| d.rt60_s > 0.6).count();
        assert!(long >= 3, "{long} rooms with RT60 over 0.6 s");
    }
}
