//! `assistant say "TEXT"`: the cascade's synthesiser on its own, through the same
//! streaming `TextToSpeech` the cascade drives: to `--output FILE.wav`, or played on
//! the output device at real time.

use crate::audio::device::open_output;
use crate::audio::meters::Meters;
use crate::audio::resample::StreamResampler;
use crate::bus::Cancel;
use crate::cli::{RunArgs, SayArgs, TtsKind};
use crate::models::moshi::{device, Discovery, ModelLoadError};
use crate::models::parts::{TextToSpeech, TtsStep};
use crate::models::speech::tts::kyutai::KyutaiTts;
use crate::models::speech::tts::pocket::PocketTts;
use anyhow::{bail, Result};
use ringbuf::traits::{Observer, Producer};
use std::sync::Arc;
use std::time::{Duration, Instant};

const RATE: u32 = 24_000;
const FRAME: usize = 1920;

pub fn run(run: &RunArgs, args: &SayArgs) -> i32 {
    match say(run, args) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e:#}");
            2
        }
    }
}

fn load_error(e: ModelLoadError) -> anyhow::Error {
    anyhow::anyhow!("{}\n  fix: {}", e.message, e.remedy)
}

/// The synthesiser the cascade flags choose.
pub fn open_tts(run: &RunArgs) -> Result<Box<dyn TextToSpeech>> {
    let disc = Discovery::from_env();
    let cancel = Cancel::new();
    let (dev, _) = device::select(run.model.device).map_err(load_error)?;
    let c = &run.cascade;
    let mut progress = |_| {};
    Ok(match c.tts {
        TtsKind::Pocket => {
            let seed = run.model.seed.unwrap_or(299_792_458);
            Box::new(
                PocketTts::open(&c.pocket_options(seed), &disc, &dev, &mut progress, &cancel)
                    .map_err(load_error)?,
            )
        }
        TtsKind::Kyutai => {
            let opts = c.options(&run.model).tts;
            Box::new(
                KyutaiTts::open(&opts, &disc, &dev, &mut progress, &cancel).map_err(load_error)?,
            )
        }
    })
}

/// Speak `text` whole (pushed at once, then finished), handing each 80 ms frame to
/// `sink`; returns the time to the first frame.
pub fn speak(
    tts: &mut dyn TextToSpeech,
    text: &str,
    sink: &mut dyn FnMut(&[f32]) -> Result<()>,
) -> Result<Option<Duration>> {
    let t0 = Instant::now();
    let mut first = None;
    tts.start()?;
    tts.push_text(text);
    tts.finish();
    let mut frame = vec![0f32; FRAME];
    let mut waits = 0;
    loop {
        frame.fill(0.0);
        match tts.step(&mut frame)? {
            TtsStep::Audio { .. } => {
                first.get_or_insert_with(|| t0.elapsed());
                sink(&frame)?;
            }
            TtsStep::Waiting => {
                waits += 1;
                if waits > 100 {
                    bail!("the synthesiser keeps waiting for text after the end of it");
                }
            }
            TtsStep::Done => return Ok(first),
        }
    }
}

fn say(run: &RunArgs, args: &SayArgs) -> Result<()> {
    if args.text.trim().is_empty() {
        bail!("nothing to say: give the text as the argument, e.g. assistant say \"Hello.\"");
    }
    let mut tts = open_tts(run)?;
    eprintln!("{}", tts.name());
    if let Some(path) = &run.output {
        let mut samples = Vec::new();
        let t = Instant::now();
        speak(tts.as_mut(), &args.text, &mut |f| {
            samples.extend_from_slice(f);
            Ok(())
        })?;
        let secs = samples.len() as f64 / RATE as f64;
        crate::audio::wav::write_wav_mono(path, RATE, &samples)?;
        eprintln!(
            "wrote {:.2} s of speech to {} in {:.2} s",
            secs,
            path.display(),
            t.elapsed().as_secs_f64()
        );
        return Ok(());
    }
    let meters = Arc::new(Meters::default());
    let (stream, mut prod) = open_output(run.output_device.as_deref(), meters, 2.0)
        .map_err(|e| anyhow::anyhow!("{e}\n  fix: choose a device (assistant devices) or write a file with --output FILE.wav"))?;
    let rate = stream.format.sample_rate;
    let channels = stream.format.channels as usize;
    let mut rs = StreamResampler::new(RATE, rate, FRAME)?;
    let mut buf = vec![0f32; rate as usize];
    let mut out = Vec::new();
    let per_frame = Duration::from_secs_f64(FRAME as f64 / RATE as f64);
    let mut push = |pcm: &[f32], rs: &mut StreamResampler| {
        rs.push(pcm);
        let n = rs.pop(&mut buf);
        out.clear();
        for s in &buf[..n] {
            out.extend(std::iter::repeat_n(*s, channels));
        }
        // Keep at most ~120 ms queued: the output ring drops older audio beyond 200 ms.
        while prod.occupied_len() > rate as usize * channels * 12 / 100 {
            std::thread::sleep(per_frame / 8);
        }
        prod.push_slice(&out);
    };
    speak(tts.as_mut(), &args.text, &mut |f| {
        push(f, &mut rs);
        Ok(())
    })?;
    rs.flush();
    push(&[], &mut rs);
    // Let the last of it play.
    std::thread::sleep(Duration::from_millis(300));
    Ok(())
}
