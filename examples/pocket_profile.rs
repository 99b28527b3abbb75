//! One part of Pocket TTS for a number of frames, nothing else, so that an instruction
//! count (`valgrind --tool=callgrind`) or a `perf` profile sees only that part:
//!
//!   pocket_profile [default|18m] [lm|lm-q8|decoder] [frames]
//!
//! Random weights at the published size, temperature 0.3, the thread pool candle uses
//! (RAYON_NUM_THREADS). `assistant bench pocket` gives the timings.
use assistant::app::bench::pocket::config_named;
use assistant::models::speech::tts::pocket::flow_head::noise;
use assistant::models::speech::tts::pocket::{PocketModel, Voice};
use moshi::candle::{Device, Tensor};
use rand::SeedableRng;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let config = args.get(1).map_or("default", String::as_str);
    let part = args.get(2).map_or("decoder", String::as_str);
    let frames: usize = args.get(3).map_or(Ok(20), |s| s.parse())?;
    let (cfg, key) = config_named(config)?;
    let dev = Device::Cpu;
    let model = PocketModel::random(cfg, key, &dev)?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let t0 = std::time::Instant::now();
    match part {
        "lm" | "lm-q8" => {
            let lm = if part == "lm" {
                model.lm.clone()
            } else {
                model.lm.quantized()?
            };
            let voice = Voice::random(&lm, 125, &dev)?;
            let mut cache = voice.cache.clone();
            let ids: Vec<u32> = (0..40).map(|i| 300 + (i * 37) % 3000).collect();
            lm.prompt(&lm.text_embeddings(&ids)?, &mut cache)?;
            let t0 = std::time::Instant::now();
            let mut prev: Option<Tensor> = None;
            for _ in 0..frames {
                let z = noise(&mut rng, lm.ldim, 0.3, None, &dev)?;
                prev = Some(lm.step(&mut cache, prev.as_ref(), &z, 1)?.latent);
            }
            eprintln!(
                "{part}: {:.2} ms a frame",
                t0.elapsed().as_secs_f64() * 1e3 / frames as f64
            );
        }
        "decoder" => {
            let mut dec = model.decoder.clone();
            dec.reset();
            let mut n = 0;
            for _ in 0..frames {
                let z = noise(&mut rng, model.lm.ldim, 1.0, None, &dev)?;
                n += dec.decode(&z)?.len();
            }
            eprintln!(
                "decoder: {:.2} ms a frame ({n} samples)",
                t0.elapsed().as_secs_f64() * 1e3 / frames as f64
            );
        }
        other => anyhow::bail!("unknown part {other:?}: lm, lm-q8 or decoder"),
    }
    Ok(())
}
