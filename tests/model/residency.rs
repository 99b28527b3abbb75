//! Residency: an idle unload frees the model's memory, speech reloads it without losing
//! what was said, and a load that fails on the preferred device falls back to the CPU
//! with a visible degraded state. (Its own binary, so RSS readings are this test's.)

use crate::common;
use assistant::audio::meters::Meters;
use assistant::audio::port::InputPort;
use assistant::audio::wav::{read_wav, WavSink};
use assistant::bus::{ModelInfo, Sampling};
use assistant::engine::load::{LoadFailure, Loader};
use assistant::engine::residency::Residency;
use assistant::engine::runner::{self, EngineSetup, Loaded};
use assistant::engine::EngineEvent;
use assistant::models::duplex::{DuplexModel, StepOutput};
use assistant::models::moshi::config::{lm_config, ModelConfig, DEMO_AUDIO_BINS, DEMO_TEXT_VOCAB};
use assistant::models::moshi::demo::{demo_model, random_moshi_model, DEMO_WEIGHT_SEED};
use assistant::models::moshi::{with_cpu_fallback, LoadedModel, ModelLoadError};
use moshi::candle::Device;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// hello + `gap_s` of digital silence + hello, 24 kHz mono.
fn speech_gap_speech(dir: &Path, gap_s: f64) -> std::path::PathBuf {
    let hello = read_wav(&common::shared_audio("hello_24k_mono.wav")).unwrap();
    assert_eq!((hello.sample_rate, hello.channels), (24_000, 1));
    let path = dir.join("speech_gap_speech.wav");
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 24_000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(&path, spec).unwrap();
    let gap = (gap_s * 24_000.0) as usize;
    for s in hello
        .samples
        .iter()
        .copied()
        .chain(std::iter::repeat_n(0.0, gap))
        .chain(hello.samples.iter().copied())
    {
        w.write_sample((s.clamp(-1.0, 1.0) * 32767.0) as i16)
            .unwrap();
    }
    w.finalize().unwrap();
    path
}

/// A random-weight model never falls silent; a trained one does when the user does.
/// This stand-in passes the model's words and audio through only while the user is
/// audible, so the idle policy sees what it would see with real weights. The wrapped
/// model still steps (and keeps its caches) every frame.
struct QuietWhenUserIs(Box<dyn DuplexModel>);

impl DuplexModel for QuietWhenUserIs {
    fn info(&self) -> ModelInfo {
        self.0.info()
    }
    fn sample_rate(&self) -> u32 {
        self.0.sample_rate()
    }
    fn frame_len(&self) -> usize {
        self.0.frame_len()
    }
    fn step(&mut self, pcm: &[f32], out: &mut StepOutput) -> anyhow::Result<()> {
        self.0.step(pcm, out)?;
        let level = (pcm.iter().map(|v| v * v).sum::<f32>() / pcm.len() as f32).sqrt();
        if level < 0.003 {
            out.pcm.fill(0.0);
            out.text = None;
        }
        Ok(())
    }
    fn reset(&mut self) {
        self.0.reset()
    }
}

/// A few hundred MB of real tensors: the demo architecture at d_model 1024, 8 layers.
fn big_config() -> ModelConfig {
    let lm = lm_config(
        1024,
        16,
        8,
        750,
        256,
        4,
        2,
        DEMO_TEXT_VOCAB,
        DEMO_AUDIO_BINS,
    );
    ModelConfig::from_parts(lm, assistant::models::moshi::config::demo_mimi().to_mimi())
}

fn run_engine(
    loader: Loader,
    input: &Path,
    output: &Path,
    idle: Option<f64>,
) -> (assistant::engine::stats::RunStats, Vec<EngineEvent>) {
    let audio = read_wav(input).unwrap();
    let (ev_tx, ev_rx) = crossbeam_channel::unbounded();
    let (_cmd_tx, cmd_rx) = crossbeam_channel::unbounded();
    let setup = EngineSetup {
        wav_out: Some(WavSink::create(output, 24_000).unwrap()),
        idle_unload: idle.map(Duration::from_secs_f64),
        ..EngineSetup::new(
            loader,
            InputPort::Memory { audio, pos: 0 },
            Arc::new(Meters::default()),
            ev_tx,
            cmd_rx,
        )
    };
    let stats = runner::spawn(setup).join().expect("engine thread");
    (stats, ev_rx.try_iter().collect())
}

#[test]
fn idle_unload_frees_the_model_and_the_speech_after_the_silence_is_processed() {
    let tmp = tempfile::tempdir().unwrap();
    let input = speech_gap_speech(tmp.path(), 20.0);
    let output = tmp.path().join("out.wav");
    let cfg = big_config();
    eprintln!(
        "model: {:.0} M parameters ({:.0} MB f32)",
        cfg.lm_params() as f64 / 1e6,
        cfg.lm_params() as f64 * 4.0 / 1e6
    );
    let s = Sampling {
        temperature: 0.8,
        text_temperature: 0.7,
        top_k: 50,
        seed: 5,
    };
    let loader: Loader = runner::loader(move |_| {
        let m =
            random_moshi_model(&cfg, DEMO_WEIGHT_SEED, &s, &Device::Cpu, "cpu").map_err(|e| {
                LoadFailure {
                    message: e.to_string(),
                    remedy: String::new(),
                }
            })?;
        Ok(Loaded {
            model: Box::new(QuietWhenUserIs(Box::new(m))),
            notices: vec![],
            degraded: None,
        })
    });
    let (stats, events) = run_engine(loader, &input, &output, Some(5.0));
    assert!(stats.error.is_none(), "{:?}", stats.error);

    let states: Vec<&Residency> = events
        .iter()
        .filter_map(|e| {
            if let EngineEvent::Residency(r) = e {
                Some(r)
            } else {
                None
            }
        })
        .collect();
    eprintln!("residency: {states:?}");
    let unload_at = states
        .iter()
        .position(|r| **r == Residency::Unloaded)
        .expect("the model unloads in the silence");
    assert!(matches!(states[unload_at - 1], Residency::Unloading));
    assert!(
        matches!(states[unload_at + 1], Residency::Loading),
        "speech reloads it"
    );
    assert!(matches!(
        states[unload_at + 2],
        Residency::Ready { degraded: None, .. }
    ));
    let r = &stats.residency;
    assert_eq!((r.unloads, r.reloads), (1, 1));

    // RSS before the unload, right after it, and after the reload.
    let notice = events.iter().find_map(|e| match e {
        EngineEvent::Notice { message, .. } if message.starts_with("model unloaded") => {
            Some(message.clone())
        }
        _ => None,
    });
    eprintln!("feed: {notice:?}");
    eprintln!("RSS (input s, MB): {:?}", r.rss_mb);
    let at = |t_min: f64, t_max: f64| {
        r.rss_mb
            .iter()
            .filter(|(t, _)| (t_min..t_max).contains(t))
            .map(|&(_, mb)| mb)
            .collect::<Vec<_>>()
    };
    // The unload pushes two samples (before, after) at the same input time.
    let i = r
        .rss_mb
        .windows(2)
        .position(|w| w[0].0 == w[1].0 && w[1].1 < w[0].1)
        .expect("an unload sample pair");
    let (before, during) = (r.rss_mb[i].1, r.rss_mb[i + 1].1);
    let after = r
        .rss_mb
        .iter()
        .skip(i + 2)
        .map(|&(_, mb)| mb)
        .fold(0.0, f64::max);
    eprintln!("RSS before {before} MB, unloaded {during} MB, after reload {after} MB; samples in the gap {:?}", at(12.0, 25.0));
    assert!(
        before - during > 150.0,
        "unloading must give memory back: {before} -> {during} MB"
    );
    assert!(
        after - during > 150.0,
        "the reload brings the model back: {during} -> {after} MB"
    );

    // The speech after the silence reached the model: words after the reload.
    let reload = events
        .iter()
        .position(|e| matches!(e, EngineEvent::Residency(Residency::Ready { .. })))
        .unwrap();
    let second = events
        .iter()
        .rposition(|e| matches!(e, EngineEvent::Residency(Residency::Ready { .. })))
        .unwrap();
    assert!(second > reload);
    let words_after: String = events[second..]
        .iter()
        .filter_map(|e| {
            if let EngineEvent::Text(t) = e {
                Some(t.as_str())
            } else {
                None
            }
        })
        .collect();
    assert!(!words_after.trim().is_empty(), "no words after the reload");
    // The output timeline matches the input: silence while unloaded, nothing lost.
    let (inp, _) = common::read_mono(&input);
    let (out, _) = common::read_mono(&output);
    assert!(
        (out.len() as i64 - inp.len() as i64).abs() <= 2 * 1920,
        "output {} vs input {} samples",
        out.len(),
        inp.len()
    );
    let hello = inp.len() - 6 * 24_000;
    let tail_energy: f64 = out[hello..].iter().map(|v| v * v).sum();
    assert!(tail_energy > 0.0, "the model spoke after the silence");
    assert_eq!(r.held_dropped, 0);
}

fn demo_loaded(on_cpu: bool, fail_gpu: &str) -> Result<LoadedModel, ModelLoadError> {
    if !on_cpu {
        return Err(ModelLoadError::new(fail_gpu, "free GPU memory"));
    }
    let m = demo_model(&Sampling::default(), &Device::Cpu, "cpu")
        .map_err(|e| ModelLoadError::new(e.to_string(), ""))?;
    Ok(LoadedModel {
        model: Box::new(m),
        notices: vec![],
        degraded: None,
        fell_back_to_demo: false,
    })
}

#[test]
fn a_load_that_fails_on_the_gpu_falls_back_to_the_cpu_and_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    let input = common::shared_audio("hello_24k_mono.wav");
    let output = tmp.path().join("out.wav");
    let attempts = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = attempts.clone();
    let loader: Loader = runner::loader(move |_| {
        let l = with_cpu_fallback("cuda:0", |on_cpu| {
            seen.lock().unwrap().push(on_cpu);
            demo_loaded(
                on_cpu,
                "CUDA_ERROR_OUT_OF_MEMORY: out of memory allocating 3145728000 bytes",
            )
        })
        .map_err(|e| LoadFailure {
            message: e.message,
            remedy: e.remedy,
        })?;
        Ok(Loaded {
            model: l.model,
            notices: vec![],
            degraded: l.degraded,
        })
    });
    let (stats, events) = run_engine(loader, &input, &output, None);
    assert_eq!(
        *attempts.lock().unwrap(),
        vec![false, true],
        "GPU first, then the CPU"
    );
    assert!(stats.error.is_none(), "{:?}", stats.error);
    let ready = events
        .iter()
        .find_map(|e| {
            if let EngineEvent::Residency(r @ Residency::Ready { .. }) = e {
                Some(r.clone())
            } else {
                None
            }
        })
        .unwrap();
    let Residency::Ready {
        device,
        degraded: Some(why),
    } = ready
    else {
        panic!("not degraded: {ready:?}")
    };
    assert_eq!(device, "cpu");
    assert!(
        why.starts_with("running on CPU (cuda:0 failed: CUDA_ERROR_OUT_OF_MEMORY"),
        "{why}"
    );
    let shown = events.iter().any(|e| matches!(e, EngineEvent::Happened(assistant::bus::Happening::Degraded(why)) if why.starts_with("running on CPU (")));
    assert!(shown, "the user is told");
    // Nothing lost: every input frame was stepped and written.
    assert_eq!(stats.frames_out, stats.frames_in);
    assert!(stats.frames_in >= 75);
    assert!(events.iter().any(|e| matches!(e, EngineEvent::Text(_))));
}

#[test]
fn when_the_cpu_fails_too_both_reasons_are_reported() {
    let e = with_cpu_fallback("cuda:0", |on_cpu| {
        if on_cpu {
            Err(ModelLoadError::new(
                "cpu: not enough memory",
                "close programs",
            ))
        } else {
            Err(ModelLoadError::new("gpu: driver error", "x"))
        }
    })
    .err()
    .unwrap();
    assert!(
        e.message.contains("gpu: driver error") && e.message.contains("cpu: not enough memory"),
        "{}",
        e.message
    );
    // On the CPU already there is nothing to fall back to.
    let mut tries = 0;
    let _ = with_cpu_fallback("cpu", |_| {
        tries += 1;
        demo_loaded(true, "")
    });
    assert_eq!(tries, 1);
}

/// With a live (paced) input, what the user says while the model reloads is held and
/// replayed: the reload takes 1.5 s, and all of the second hello still comes out.
#[test]
fn a_reload_keeps_what_the_user_says_while_it_loads() {
    use assistant::audio::port::FilePacer;
    use assistant::bus::{LoadProgress, ProgressUnit};
    use assistant::engine::loopback::Loopback;
    let tmp = tempfile::tempdir().unwrap();
    let input = speech_gap_speech(tmp.path(), 4.0);
    let output = tmp.path().join("out.wav");
    let audio = read_wav(&input).unwrap();
    let meters = Arc::new(Meters::default());
    let (pacer, port) = FilePacer::start(audio, meters.clone());
    let mut loads = 0;
    let loader: Loader = runner::loader(move |req| {
        loads += 1;
        if loads > 1 {
            for i in 0..15 {
                std::thread::sleep(Duration::from_millis(100));
                (req.progress)(LoadProgress {
                    stage: "slow reload".into(),
                    done: i + 1,
                    total: 15,
                    unit: ProgressUnit::Tensors,
                    elapsed_s: 0.1 * (i + 1) as f64,
                });
            }
        }
        Ok(Loaded {
            model: Box::new(Loopback::new(24_000, 1920)),
            notices: vec![],
            degraded: None,
        })
    });
    let (ev_tx, ev_rx) = crossbeam_channel::unbounded();
    let (_cmd_tx, cmd_rx) = crossbeam_channel::unbounded();
    let setup = EngineSetup {
        wav_out: Some(WavSink::create(&output, 24_000).unwrap()),
        idle_unload: Some(Duration::from_secs_f64(1.5)),
        ..EngineSetup::new(loader, port, meters.clone(), ev_tx, cmd_rx)
    };
    let stats = runner::spawn(setup).join().unwrap();
    drop(pacer);
    let events: Vec<EngineEvent> = ev_rx.try_iter().collect();
    assert!(stats.error.is_none(), "{:?}", stats.error);
    let r = &stats.residency;
    eprintln!(
        "residency stats: {r:?}; dropped frames {}; xruns in {}",
        stats.dropped_frames, stats.xruns_in
    );
    assert_eq!((r.unloads, r.reloads), (1, 1));
    assert!(
        r.held_frames >= 15,
        "1.5 s of loading is at least 18 frames held, got {}",
        r.held_frames
    );
    assert_eq!(r.held_dropped, 0);
    assert_eq!(stats.xruns_in, 0, "the capture ring never overflowed");
    assert!(events
        .iter()
        .any(|e| matches!(e, EngineEvent::Loading(p) if p.stage == "slow reload")));
    // The second hello's energy all came out.
    let (inp, _) = common::read_mono(&input);
    let (out, _) = common::read_mono(&output);
    let energy = |x: &[f64]| x.iter().map(|v| v * v).sum::<f64>();
    let hello_len = (inp.len() - 4 * 24_000) / 2;
    let second_in = energy(&inp[inp.len() - hello_len..]);
    let tail = out.len().saturating_sub(hello_len + 10 * 1920);
    let second_out = energy(&out[tail..]);
    eprintln!(
        "second hello energy: in {second_in:.2}, out {second_out:.2}; samples in {} out {}",
        inp.len(),
        out.len()
    );
    assert!(
        second_out > 0.97 * second_in,
        "speech was lost during the reload"
    );
    assert!(
        (out.len() as i64 - inp.len() as i64).abs() <= 4 * 1920,
        "output {} vs input {}",
        out.len(),
        inp.len()
    );
}
