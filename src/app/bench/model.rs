//! `assistant bench model`: per-step cost of Mimi encode, LM step and Mimi decode for the
//! demo model, the real Mimi, and ~300M / ~1B LMs (random weights), plus the overhead of
//! `MoshiModel::step` over a bare loop on the `moshi` crate the way Kyutai's `gen` runs.

use crate::bus::Sampling;
use crate::models::duplex::{DuplexModel, StepOutput};
use crate::models::moshi::config::{self, ModelConfig};
use crate::models::moshi::demo::{demo_model, random_model, reference_lm, DEMO_WEIGHT_SEED};
use crate::models::moshi::lm_sources::dense_sources;
use crate::models::moshi::placed_lm::PlacedLm;
use crate::models::moshi::placement::Placement;
use crate::models::moshi::random_init::FastRandomBackend;
use crate::models::moshi::sampling::Samplers;
use crate::models::moshi::stepper::Stepper;
use anyhow::Result;
use moshi::candle::{DType, Device, IndexOp, Tensor};
use moshi::mimi::Mimi;
use std::io::Write;
use std::time::Instant;

const FRAME_MS: f64 = 80.0;

/// A test signal: a chirp plus noise, so Mimi sees something speech-like in level.
fn frames(n: usize, len: usize) -> Vec<Vec<f32>> {
    let mut state = 12345u32;
    (0..n)
        .map(|f| {
            (0..len)
                .map(|i| {
                    let t = (f * len + i) as f32 / 24_000.0;
                    state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                    let noise = (state >> 9) as f32 / (1u32 << 23) as f32 - 0.5;
                    0.3 * (2.0 * std::f32::consts::PI * (200.0 + 300.0 * t) * t).sin()
                        + 0.02 * noise
                })
                .collect()
        })
        .collect()
}

#[derive(Default, Clone, Copy)]
struct Times {
    encode: f64,
    lm: f64,
    decode: f64,
    steps: usize,
}

impl Times {
    fn per_step(&self) -> (f64, f64, f64) {
        let n = self.steps.max(1) as f64;
        (self.encode / n, self.lm / n, self.decode / n)
    }
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

/// Time the three stages separately over `steps` frames after `warmup` frames.
fn time_stages(
    mimi: &mut Mimi,
    lm: Option<(&mut Stepper, &mut Samplers)>,
    decode: bool,
    dev: &Device,
    warmup: usize,
    steps: usize,
) -> Result<Times> {
    let len = 1920;
    let input = frames(warmup + steps, len);
    let mut times = Times::default();
    let mut lm = lm;
    for (i, f) in input.iter().enumerate() {
        let t0 = Instant::now();
        let pcm = Tensor::from_slice(f, (1, 1, len), dev)?;
        let codes = mimi.encode_step(&pcm.into(), &().into())?;
        let codes: Vec<u32> = match codes.as_option() {
            Some(c) => c.i((0, .., 0))?.to_vec1()?,
            None => continue,
        };
        let t_enc = ms(t0);
        let t1 = Instant::now();
        let out = match lm.as_mut() {
            Some((stepper, samplers)) => {
                stepper.step(&codes[..8], samplers)?;
                stepper.last_audio_tokens().map(|a| a.to_vec())
            }
            // Mimi alone: decode what it encoded.
            None => Some(codes[..8].to_vec()),
        };
        dev.synchronize()?;
        let t_lm = ms(t1);
        let t2 = Instant::now();
        if let Some(a) = out.filter(|_| decode) {
            let t = Tensor::from_slice(&a, (1, a.len(), 1), dev)?;
            let pcm = mimi.decode_step(&t.into(), &().into())?;
            if let Some(p) = pcm.as_option() {
                let _: Vec<f32> = p.flatten_all()?.to_vec1()?;
            }
        }
        let t_dec = ms(t2);
        if i >= warmup {
            times.encode += t_enc;
            times.lm += t_lm;
            times.decode += t_dec;
            times.steps += 1;
        }
    }
    Ok(times)
}

fn row(
    out: &mut dyn Write,
    what: &str,
    params: &str,
    t: Times,
    lm_only: bool,
    mimi_only: bool,
) -> Result<()> {
    let (e, l, d) = t.per_step();
    let fmt = |v: f64, skip: bool| {
        if skip {
            "-".to_string()
        } else {
            format!("{v:.2}")
        }
    };
    let total =
        e * (!lm_only as u8 as f64) + l * (!mimi_only as u8 as f64) + d * (!lm_only as u8 as f64);
    writeln!(
        out,
        "{what:<34} {params:>8} {:>9} {:>9} {:>9} {:>9.2} {:>6.2}",
        fmt(e, lm_only),
        fmt(l, mimi_only),
        fmt(d, lm_only),
        total,
        total / FRAME_MS
    )?;
    Ok(())
}

fn big_lm(cfg: &config::ModelConfig, dtype: DType, dev: &Device) -> Result<PlacedLm> {
    let vb = FastRandomBackend::var_builder(dtype, dev);
    Ok(PlacedLm::new(
        &cfg.lm,
        dense_sources(vb, Placement::default(), cfg.lm.transformer.num_layers),
    )?)
}

pub fn bench_model(out: &mut dyn Write) -> Result<()> {
    let (dev, dev_name) =
        crate::models::moshi::device::select(crate::models::moshi::device::DeviceChoice::Auto)?;
    let sampling = Sampling {
        temperature: 0.8,
        text_temperature: 0.7,
        top_k: 250,
        seed: 42,
    };
    writeln!(
        out,
        "bench model on {dev_name} (f32 unless noted; ms per 80 ms step; RTF = total / 80 ms)"
    )?;

    // Demo start-up: what `--demo` costs before the first step.
    let t = Instant::now();
    let mut model = demo_model(&sampling, &dev, &dev_name)?;
    let build_ms = ms(t);
    let input = frames(1, 1920);
    let mut o = StepOutput::default();
    o.clear(1920);
    let t = Instant::now();
    model.step(&input[0], &mut o)?;
    writeln!(
        out,
        "demo model: built in {build_ms:.1} ms, first step {:.1} ms",
        ms(t)
    )?;

    writeln!(
        out,
        "{:<34} {:>8} {:>9} {:>9} {:>9} {:>9} {:>6}",
        "config", "params", "encode", "lm step", "decode", "total", "RTF"
    )?;
    // 1. The demo model, stage by stage.
    let demo = config::demo();
    let m = random_model(&demo, DEMO_WEIGHT_SEED, &dev)?;
    let (mut mimi, lm) = (m.mimi, m.lm);
    let mut stepper = Stepper::new(lm, demo.gen.clone());
    let mut samplers = Samplers::new(&sampling);
    let t = time_stages(
        &mut mimi,
        Some((&mut stepper, &mut samplers)),
        true,
        &dev,
        5,
        100,
    )?;
    row(
        out,
        "demo (tiny Mimi + tiny LM)",
        &params(demo.lm_params()),
        t,
        false,
        false,
    )?;

    // ASSISTANT_BENCH_QUICK=1 skips the big configs (about two minutes here).
    let quick = std::env::var_os("ASSISTANT_BENCH_QUICK").is_some_and(|v| v != "0");
    let mut mimi_times = Times::default();
    if !quick {
        bench_big(out, &dev, &sampling, &mut mimi_times)?;
        bench_host_layer(out)?;
    }

    // 4. Our step against a bare loop over the moshi crate (Kyutai's `gen`), same weights.
    // The two run in lockstep on the same frames and the medians are compared, so load
    // from other processes hits both alike.
    let steps = 300;
    let input = frames(steps, 1920);
    let mut bare_mimi = mimi.clone();
    bare_mimi.reset_state();
    let lp = |seed, temperature| {
        candle_transformers::generation::LogitsProcessor::from_sampling(
            seed,
            candle_transformers::generation::Sampling::TopK {
                k: 250,
                temperature,
            },
        )
    };
    let mut state = moshi::lm_generate_multistream::State::new(
        reference_lm(&demo, DEMO_WEIGHT_SEED, &dev)?,
        steps + 10,
        lp(sampling.seed.wrapping_add(1), 0.8),
        lp(sampling.seed, 0.7),
        None,
        None,
        None,
        demo.gen.clone(),
    );
    let mut prev_text = demo.gen.text_start_token;
    let mut model = demo_model(&sampling, &dev, &dev_name)?;
    let mut o = StepOutput::default();
    let (mut bare, mut ours) = (Vec::with_capacity(steps), Vec::with_capacity(steps));
    for (i, f) in input.iter().enumerate() {
        // Alternate which goes first, so neither always runs on a warmer cache.
        for turn in [i % 2, 1 - i % 2] {
            let t = Instant::now();
            if turn == 0 {
                let pcm = Tensor::from_slice(f, (1, 1, 1920), &dev)?;
                let codes = bare_mimi.encode_step(&pcm.into(), &().into())?;
                if let Some(codes) = codes.as_option() {
                    let codes: Vec<u32> = codes.i((0, .., 0))?.to_vec1()?;
                    prev_text = state.step_(Some(prev_text), &codes[..8], None, None, None)?;
                    if let Some(audio) = state.last_audio_tokens() {
                        // `State` returns the user's codebooks too; Mimi decodes the model's 8.
                        let audio = &audio[..demo.gen.generated_audio_codebooks];
                        let t = Tensor::from_slice(audio, (1, audio.len(), 1), &dev)?;
                        let pcm = bare_mimi.decode_step(&t.into(), &().into())?;
                        if let Some(p) = pcm.as_option() {
                            let _: Vec<f32> = p.flatten_all()?.to_vec1()?;
                        }
                    }
                }
                bare.push(ms(t));
            } else {
                o.clear(1920);
                model.step(f, &mut o)?;
                ours.push(ms(t));
            }
        }
    }
    let (bare, ours) = (median(&mut bare), median(&mut ours));
    writeln!(out, "bare moshi loop (encode, State::step, decode) on demo weights: {bare:.3} ms/step (median of {steps})")?;
    writeln!(
        out,
        "MoshiModel::step on the same weights, in lockstep:            {ours:.3} ms/step ({:+.1}%)",
        (ours / bare - 1.0) * 100.0
    )?;
    Ok(())
}

/// The real Mimi and the ~300M / ~1B LMs (and 7B bf16 on a GPU).
fn bench_big(
    out: &mut dyn Write,
    dev: &Device,
    sampling: &Sampling,
    mimi_times: &mut Times,
) -> Result<()> {
    let dev = dev.clone();
    // 2. The published Mimi with random weights (encode + decode only).
    let real = ModelConfig::moshiko();
    let mut real_mimi = Mimi::new(
        real.mimi.clone(),
        FastRandomBackend::var_builder(DType::F32, &dev),
    )?;
    let t = time_stages(&mut real_mimi, None, true, &dev, 2, 15)?;
    row(out, "real Mimi (random weights)", "-", t, false, true)?;
    *mimi_times = t;

    // 3. Moshi-shaped LMs of ~300M and ~1B parameters, then the real Mimi around them.
    let sizes: Vec<(&str, config::ModelConfig, DType, usize)> = {
        let mut v = vec![
            (
                "LM ~300M (d1024 x16, dep d256 x1)",
                ModelConfig::from_parts(
                    config::lm_config(1024, 16, 16, 3000, 256, 8, 1, 32000, 2048),
                    real.mimi.clone(),
                ),
                DType::F32,
                10,
            ),
            (
                "LM ~1B (d2048 x16, dep d512 x2)",
                ModelConfig::from_parts(
                    config::lm_config(2048, 16, 16, 3000, 512, 8, 2, 32000, 2048),
                    real.mimi.clone(),
                ),
                DType::F32,
                5,
            ),
        ];
        if !dev.is_cpu() {
            v.push(("LM 7B moshiko shape, bf16", real.clone(), DType::BF16, 20));
        }
        v
    };
    for (name, cfg, dtype, steps) in sizes {
        let t_build = Instant::now();
        let lm = big_lm(&cfg, dtype, &dev)?;
        let build = ms(t_build);
        let mut stepper = Stepper::new(lm, cfg.gen.clone());
        let mut samplers = Samplers::new(sampling);
        let mut tiny_mimi = random_model(&config::demo(), 1, &dev)?.mimi;
        // Time the LM with the tiny Mimi feeding it (its codes are valid for any LM), then
        // add the real Mimi's encode and decode cost measured above.
        let t = time_stages(
            &mut tiny_mimi,
            Some((&mut stepper, &mut samplers)),
            false,
            &dev,
            2,
            steps,
        )?;
        let combined = Times {
            encode: mimi_times.encode / mimi_times.steps as f64 * t.steps as f64,
            lm: t.lm,
            decode: mimi_times.decode / mimi_times.steps as f64 * t.steps as f64,
            steps: t.steps,
        };
        row(out, name, &params(cfg.lm_params()), combined, false, false)?;
        writeln!(
            out,
            "{:<34} (random weights built in {:.1} s; encode/decode are the real Mimi's above)",
            "",
            build / 1e3
        )?;
    }

    Ok(())
}

/// One layer of moshiko's temporal transformer, q8 on the CPU: what each layer the memory
/// plan moves to the host costs a step, against the bandwidth the warning assumes.
fn bench_host_layer(out: &mut dyn Write) -> Result<()> {
    let mut cfg = moshi::lm::Config::v0_1_streaming(8).transformer;
    cfg.num_layers = 1;
    cfg.context = 250;
    let (vb, made) =
        crate::models::moshi::random_init::RandomBackend::var_builder(5, DType::F32, &Device::Cpu);
    moshi::transformer::StreamingTransformer::new(
        &cfg,
        moshi::nn::MaybeQuantizedVarBuilder::Real(vb.pp("transformer")),
    )?;
    let tensors = std::mem::take(&mut *made.lock().map_err(|_| anyhow::anyhow!("poisoned"))?);
    let mut buf = std::io::Cursor::new(Vec::new());
    crate::models::moshi::export::write_q8_gguf(&tensors, &mut buf)?;
    drop(tensors);
    let bytes = buf.get_ref().len() as f64;
    let qvb = candle_transformers::quantized_var_builder::VarBuilder::from_gguf_buffer(
        buf.get_ref(),
        &Device::Cpu,
    )?;
    let mut layer = moshi::transformer::StreamingTransformer::new(
        &cfg,
        moshi::nn::MaybeQuantizedVarBuilder::Quantized(qvb.pp("transformer")),
    )?;
    let xs = Tensor::randn(0f32, 1., (1, 1, cfg.d_model), &Device::Cpu)?;
    let mut times = Vec::new();
    for i in 0..23 {
        let t = Instant::now();
        let _ = layer.forward(&xs)?.sum_all()?.to_scalar::<f32>()?;
        if i >= 3 {
            times.push(ms(t));
        }
    }
    let m = median(&mut times);
    writeln!(out, "moshiko layer on the CPU (q8, {}): {m:.1} ms/step median of 20, {:.1} GB/s (the warning assumes {:.0} GB/s)", crate::bus::Bytes(bytes as u64), bytes / m / 1e6, crate::models::moshi::device::CPU_BANDWIDTH / 1e9)?;
    Ok(())
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn params(n: u64) -> String {
    if n >= 1_000_000_000 {
        format!("{:.2}B", n as f64 / 1e9)
    } else {
        format!("{:.1}M", n as f64 / 1e6)
    }
}
