//! `assistant bench pocket`: Pocket TTS at a published size with random weights (the
//! flow LM in f32; in bf16, as Kyutai publishes the weights and as we keep them; then
//! in q8): the flow LM step and the decoder per 80 ms frame, the real-time factor over
//! `--seconds` of audio and the time to the first audio; the outputs' differences; and
//! the streaming trade-off of how much of the LLM's text to wait for before speaking.

use crate::cli::BenchArgs;
use crate::models::parts::{TextToSpeech, TtsStep};
use crate::models::speech::tts::pocket::flow_head::noise;
use crate::models::speech::tts::pocket::flow_lm::FlowLm;
use crate::models::speech::tts::pocket::{
    PocketConfig, PocketModel, PocketSampling, PocketTts, Voice,
};
use anyhow::{bail, Result};
use moshi::candle::{Device, Tensor};
use rand::SeedableRng;
use std::time::{Duration, Instant};

/// Frames of the random voice prompt (about what a predefined voice holds).
const VOICE_FRAMES: usize = 125;
use super::cpu_script::REPLY;

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

fn pctl(v: &[f64], q: f64) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s[((q * s.len() as f64).ceil() as usize).clamp(1, s.len()) - 1]
}

pub fn config_named(name: &str) -> Result<(PocketConfig, &'static str)> {
    let key = match name {
        "default" | "english" | "100m" => "english",
        "18m" | "english_18m_2026-10" => "english_18m_2026-10",
        other => bail!("unknown --config {other:?}: use default or 18m"),
    };
    let c = PocketConfig::built_in(key)
        .ok_or_else(|| anyhow::anyhow!("built-in config {key} does not parse"))?;
    Ok((c, key))
}

struct Run {
    audio: Vec<f32>,
    latents: Vec<Vec<f32>>,
    first_audio: Duration,
    total: Duration,
    lm_ms: Vec<f64>,
    dec_ms: Vec<f64>,
}

/// `frames` frames of one chunk of `tokens` tokens at temperature `temp`, timed.
fn synthesize(
    model: &PocketModel,
    lm: &FlowLm,
    voice: &Voice,
    tokens: usize,
    frames: usize,
    temp: f64,
) -> Result<Run> {
    let ids: Vec<u32> = (0..tokens).map(|i| 300 + (i as u32 * 37) % 3000).collect();
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let t0 = Instant::now();
    let mut cache = voice.cache.clone();
    lm.prompt(&lm.text_embeddings(&ids)?, &mut cache)?;
    let mut decoder = model.decoder.clone();
    decoder.reset();
    let mut prev: Option<Tensor> = None;
    let mut r = Run {
        audio: Vec::new(),
        latents: Vec::new(),
        first_audio: Duration::ZERO,
        total: Duration::ZERO,
        lm_ms: Vec::new(),
        dec_ms: Vec::new(),
    };
    for i in 0..frames {
        let t = Instant::now();
        let z = noise(&mut rng, lm.ldim, temp, None, &model.device)?;
        let out = lm.step(&mut cache, prev.as_ref(), &z, 1)?;
        r.lm_ms.push(t.elapsed().as_secs_f64() * 1e3);
        let t = Instant::now();
        let pcm = decoder.decode(&lm.denormalise(&out.latent)?)?;
        r.dec_ms.push(t.elapsed().as_secs_f64() * 1e3);
        if i == 0 {
            r.first_audio = t0.elapsed();
        }
        r.latents.push(out.latent.flatten_all()?.to_vec1::<f32>()?);
        r.audio.extend(pcm);
        prev = Some(out.latent);
    }
    r.total = t0.elapsed();
    Ok(r)
}

/// 10·log10(signal energy / difference energy).
pub fn snr_db(reference: &[f32], other: &[f32]) -> f64 {
    let n = reference.len().min(other.len());
    let (mut s, mut d) = (0f64, 0f64);
    for i in 0..n {
        s += (reference[i] as f64).powi(2);
        d += (reference[i] as f64 - other[i] as f64).powi(2);
    }
    if d == 0.0 {
        return f64::INFINITY;
    }
    10.0 * (s / d).log10()
}

/// The LLM's text arriving at `words_per_s`: time from its first word to the first
/// audio, and the chunks the reply was spoken in.
fn streaming(tts: &mut PocketTts, words_per_s: f64, eager: usize) -> Result<(f64, usize, f64)> {
    tts.set_eager_words(eager);
    let words: Vec<&str> = REPLY.split(' ').collect();
    let mut frame = vec![0f32; 1920];
    tts.start()?;
    let t0 = Instant::now();
    let (mut sent, mut first, mut frames) = (0, None, 0usize);
    loop {
        let due = ((t0.elapsed().as_secs_f64() * words_per_s) as usize + 1).min(words.len());
        while sent < due {
            tts.push_text(&format!("{} ", words[sent]));
            sent += 1;
        }
        if sent == words.len() {
            tts.finish();
        }
        match tts.step(&mut frame)? {
            TtsStep::Audio { .. } => {
                first.get_or_insert(t0.elapsed().as_secs_f64());
                frames += 1;
                // The first audio is what this measures; the rest only counts chunks.
                if frames >= 3 && sent == words.len() {
                    break;
                }
            }
            TtsStep::Waiting => std::thread::sleep(Duration::from_millis(5)),
            TtsStep::Done => break,
        }
    }
    let chunks = tts.chunks_started();
    // Chunks for the whole reply: sentence chunks plus an eager one at most.
    tts.cancel();
    Ok((first.unwrap_or(f64::NAN), chunks, sent as f64 / words_per_s))
}

pub fn run(b: &BenchArgs, out: &mut dyn std::io::Write) -> Result<()> {
    if b.threads > 0 {
        // candle's CPU kernels read this on each call.
        std::env::set_var("RAYON_NUM_THREADS", b.threads.to_string());
    }
    let (cfg, key) = config_named(&b.config)?;
    let dev = Device::Cpu;
    let t = Instant::now();
    let model = PocketModel::random(cfg, key, &dev)?;
    let load = t.elapsed().as_secs_f64();
    let frames = (b.seconds * model.cfg.mimi.frame_rate).round().max(1.0) as usize;
    let voice = Voice::random(&model.lm, VOICE_FRAMES, &dev)?;
    writeln!(
        out,
        "pocket-tts {key}: random weights at the published size (built in {load:.1} s), {} threads, \
         {frames} frames ({:.1} s of audio), a {VOICE_FRAMES}-frame voice, 40 text tokens",
        b.threads,
        frames as f64 / model.cfg.mimi.frame_rate
    )?;
    writeln!(out, "load average before: {}", load_average())?;
    let bf16 = model.lm.bf16()?;
    let q8 = bf16.quantized()?;
    let mut runs = Vec::new();
    for (name, lm) in [
        ("f32", &model.lm),
        ("bf16 (as published)", &bf16),
        ("q8", &q8),
    ] {
        // One short warm-up run, then the measured one at the package's temperature.
        synthesize(&model, lm, &voice, 40, 3, 0.3)?;
        let r = synthesize(&model, lm, &voice, 40, frames, 0.3)?;
        let secs = r.audio.len() as f64 / 24_000.0;
        writeln!(
            out,
            "{name}: {:.2}x real time ({:.2} s for {secs:.1} s); first audio {:.0} ms; per frame: \
             flow LM p50 {:.1} ms p95 {:.1} ms ({:.0} MB of weights), decoder p50 {:.1} ms p95 {:.1} ms; load {}",
            secs / r.total.as_secs_f64(),
            r.total.as_secs_f64(),
            r.first_audio.as_secs_f64() * 1e3,
            pctl(&r.lm_ms, 0.5),
            pctl(&r.lm_ms, 0.95),
            lm.step_weight_bytes() as f64 / 1e6,
            pctl(&r.dec_ms, 0.5),
            pctl(&r.dec_ms, 0.95),
            load_average()
        )?;
        runs.push(r);
    }
    // q8 against f32 at temperature 0: the first frame, and the whole run (the
    // autoregression carries any difference forward).
    let a = synthesize(&model, &model.lm, &voice, 40, frames.min(25), 0.0)?;
    let h = synthesize(&model, &bf16, &voice, 40, frames.min(25), 0.0)?;
    let q = synthesize(&model, &q8, &voice, 40, frames.min(25), 0.0)?;
    for (label, x, y) in [
        (
            "bf16 against f32 (random f32 weights rounded; published weights are bf16 already)",
            &a,
            &h,
        ),
        ("q8 against bf16", &h, &q),
    ] {
        writeln!(
            out,
            "{label} (temperature 0, {} frames): first latent SNR {:.1} dB, all latents {:.1} dB, audio {:.1} dB",
            x.latents.len(),
            snr_db(&x.latents[0], &y.latents[0]),
            snr_db(&x.latents.concat(), &y.latents.concat()),
            snr_db(&x.audio, &y.audio)
        )?;
    }
    drop((bf16, q8));
    // The streaming trade-off, with the flow LM in bf16 as a published checkpoint loads.
    let model = model.with_bf16_flow_lm()?;
    let mut tts = PocketTts::new(model, voice, false)?;
    tts.set_sampling(PocketSampling {
        temperature: Some(0.3),
        // Random weights never signal the end reliably: each chunk runs to its bound.
        eos_threshold: Some(f64::INFINITY),
        ..Default::default()
    });
    for wps in [4.0, 12.0] {
        for eager in [0, 4, 8] {
            let (first, chunks, _) = streaming(&mut tts, wps, eager)?;
            writeln!(
                out,
                "streaming, LLM at {wps} words/s, eager words {eager}: first audio {:.0} ms after the first word; \
                 {chunks} chunk(s) started by then",
                first * 1e3
            )?;
        }
    }
    writeln!(out, "load average after: {}", load_average())?;
    Ok(())
}
