//! `assistant transcribe FILE.wav [--json]`: the cascade's recogniser on a recording, on
//! its own. The WAV is read as `--input` reads it (any rate, channels and depth),
//! resampled to 24 kHz and stepped a frame at a time with the transcriptions inline, so
//! the same file always gives the same words at the same times. Each word's time is
//! when the recogniser gave it out (the end of the 80 ms frame that produced it), not
//! when it was spoken: that is the latency the turn machine sees.

use crate::audio::resample::{downmix_into, StreamResampler};
use crate::audio::wav::read_wav;
use crate::cli::{RunArgs, TranscribeArgs};
use crate::engine::cascade::load;
use crate::models::moshi::{Discovery, ModelLoadError};
use crate::models::parts::SpeechToText;
use crate::models::speech::stt::recogniser;
use crate::models::speech::stt::whisper::Threading;
use serde::Serialize;

const RATE: u32 = 24_000;
const FRAME: usize = 1920;
/// Quiet fed after the file so the last utterance ends (1 s) on top of the model's delay.
const TAIL_FRAMES: usize = 13;
/// The end-of-speech probability the turn machine acts on.
const END_OF_SPEECH: f32 = 0.5;

#[derive(Debug, Serialize)]
struct Word {
    word: String,
    /// Seconds into the file when the recogniser gave the word out.
    emitted_s: f64,
}

#[derive(Debug, Serialize)]
struct EndOfSpeech {
    emitted_s: f64,
    probability: f32,
}

#[derive(Debug, Serialize)]
struct Transcript {
    file: String,
    recogniser: String,
    seconds: f64,
    /// What the times are.
    times: &'static str,
    words: Vec<Word>,
    /// Where the end-of-speech probability rose past 0.5 (the turn machine's threshold).
    ends_of_speech: Vec<EndOfSpeech>,
    text: String,
}

/// The file as 24 kHz mono.
fn read_24k(path: &std::path::Path) -> Result<Vec<f32>, String> {
    let wav = read_wav(path).map_err(|e| e.to_string())?;
    let mut mono = Vec::new();
    downmix_into(&wav.samples, wav.channels as usize, &mut mono);
    let chunk = (wav.sample_rate / 100).max(1) as usize;
    let mut r = StreamResampler::new(wav.sample_rate, RATE, chunk)
        .map_err(|e| format!("{}: {e:#}", path.display()))?;
    let mut out = Vec::new();
    let mut buf = Vec::new();
    let mut drain = |r: &mut StreamResampler, out: &mut Vec<f32>| {
        buf.resize(r.available(), 0.0);
        let n = r.pop(&mut buf);
        out.extend_from_slice(&buf[..n]);
    };
    for c in mono.chunks(chunk) {
        r.push(c);
        drain(&mut r, &mut out);
    }
    r.flush();
    drain(&mut r, &mut out);
    // The resampler's delay, so that times are the file's.
    out.drain(..r.delay_samples().min(out.len()));
    Ok(out)
}

fn load_recogniser(args: &RunArgs) -> Result<Box<dyn SpeechToText>, ModelLoadError> {
    let mut opts = args.cascade.options(&args.model);
    if opts.demo {
        opts = load::write_demo(&load::demo_dir(), &opts)?;
    }
    let (device, _) = crate::models::moshi::device::select(opts.device)?;
    let disc = Discovery::from_env();
    let mut progress = |p: crate::bus::LoadProgress| {
        tracing::info!("loading the recogniser: {p:?}");
    };
    let cancel = crate::bus::Cancel::new();
    recogniser::open(
        &opts.stt,
        &disc,
        &device,
        Threading::Inline,
        &mut progress,
        &cancel,
    )
}

fn transcribe(stt: &mut dyn SpeechToText, pcm: &[f32], file: String) -> anyhow::Result<Transcript> {
    let frames = pcm.len().div_ceil(FRAME) + stt.delay_frames() + TAIL_FRAMES;
    let mut t = Transcript {
        file,
        recogniser: stt.name(),
        seconds: pcm.len() as f64 / RATE as f64,
        times: "emitted: the end of the 80 ms frame after which the recogniser gave the word out",
        words: Vec::new(),
        ends_of_speech: Vec::new(),
        text: String::new(),
    };
    let mut frame = vec![0f32; FRAME];
    let mut was_end = true;
    for i in 0..frames {
        frame.fill(0.0);
        let from = (i * FRAME).min(pcm.len());
        let to = ((i + 1) * FRAME).min(pcm.len());
        frame[..to - from].copy_from_slice(&pcm[from..to]);
        let step = stt.step(&frame)?;
        let at = (i + 1) as f64 * FRAME as f64 / RATE as f64;
        for w in step.words {
            t.words.push(Word {
                word: w,
                emitted_s: at,
            });
        }
        let p = step.end_of_speech.unwrap_or(0.0);
        let is_end = p >= END_OF_SPEECH;
        if is_end && !was_end {
            t.ends_of_speech.push(EndOfSpeech {
                emitted_s: at,
                probability: p,
            });
        }
        was_end = is_end;
    }
    t.text = t
        .words
        .iter()
        .map(|w| w.word.as_str())
        .collect::<Vec<_>>()
        .join(" ");
    Ok(t)
}

/// Run the command; the exit code (2: a bad file or model directory).
pub fn run(args: &RunArgs, t: &TranscribeArgs) -> i32 {
    let pcm = match read_24k(&t.file) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            eprintln!("  give a readable WAV file (PCM or 32-bit float, any rate and channels)");
            return 2;
        }
    };
    let mut stt = match load_recogniser(args) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {}", e.message);
            eprintln!("  {}", e.remedy);
            return 2;
        }
    };
    let result = match transcribe(stt.as_mut(), &pcm, t.file.display().to_string()) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e:#}");
            return 1;
        }
    };
    if t.json {
        match serde_json::to_string_pretty(&result) {
            Ok(s) => println!("{s}"),
            Err(e) => {
                eprintln!("error: {e}");
                return 1;
            }
        }
    } else {
        println!(
            "# {} ({:.2} s) by {}; times are when each word was given out",
            result.file, result.seconds, result.recogniser
        );
        let mut ends = result.ends_of_speech.iter().peekable();
        for w in &result.words {
            while let Some(e) = ends.next_if(|e| e.emitted_s < w.emitted_s) {
                println!(
                    "{:8.2}  [end of speech, p={:.2}]",
                    e.emitted_s, e.probability
                );
            }
            println!("{:8.2}  {}", w.emitted_s, w.word);
        }
        for e in ends {
            println!(
                "{:8.2}  [end of speech, p={:.2}]",
                e.emitted_s, e.probability
            );
        }
    }
    0
}
