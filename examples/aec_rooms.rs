//! Tuning harness for the random rooms (audio::aec::rooms): our canceller with settings
//! overrides on some seeds, per room and the mean. `assistant bench echo` is the report.
//! usage: aec_rooms tune|held-out|SEED,SEED.. [key=value...] [trace=1]
use assistant::audio::aec::room::RoomFilter;
use assistant::audio::aec::rooms::{RoomDraw, Voices, HELD_OUT_SEEDS, TUNING_SEEDS};
use assistant::audio::aec::{command::process_offline, score, AecSettings};
use std::path::Path;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let seeds: Vec<u64> = match args[0].as_str() {
        "tune" => TUNING_SEEDS.to_vec(),
        "held-out" => HELD_OUT_SEEDS.to_vec(),
        list => list.split(',').map(|s| s.parse().unwrap()).collect(),
    };
    let mut s = AecSettings::default();
    let mut trace = false;
    let mut dump: Option<std::path::PathBuf> = None;
    for a in &args[1..] {
        let (k, v) = a.split_once('=').expect("key=value");
        let f: f32 = v.parse().unwrap_or(0.0);
        let room = || s.room.clone().unwrap_or_default();
        let mut r = room();
        match k {
            "trace" => trace = v == "1",
            "dump" => dump = Some(v.into()),
            "room" if v == "0" => s.room = None,
            "filter_ms" => s.filter_ms = f,
            "span_ms" => r.span_ms = f,
            "lead_ms" => r.lead_ms = f,
            "step" => r.step = f,
            "dt_ratio" => r.dt_ratio = f,
            "copy_ratio" => r.copy_ratio = f,
            "max_hz" => r.max_hz = f,
            "fast_start" => r.fast_start = v == "1",
            "headroom" => s.config.delay.delay_headroom_samples = f as usize,
            "pre_echo" => s.config.delay.detect_pre_echo = v == "1",
            "initial_s" => s.config.filter.initial_state_seconds = f,
            "conservative" => s.config.filter.conservative_initial_phase = v == "1",
            "erle_max_l" => s.config.erle.max_l = f,
            "erle_max_h" => s.config.erle.max_h = f,
            "default_len" => s.config.ep_strength.default_len = f,
            _ => panic!("unknown key {k}"),
        }
        if s.room.is_some()
            && matches!(
                k,
                "span_ms"
                    | "lead_ms"
                    | "step"
                    | "dt_ratio"
                    | "copy_ratio"
                    | "max_hz"
                    | "fast_start"
            )
        {
            s.room = Some(r);
        }
    }
    let mut voices =
        Voices::new(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/audio"));
    let mut sum = [0.0; 3];
    for &seed in &seeds {
        let d = RoomDraw::from_seed(seed);
        let scene = voices.scene(&d)?;
        let f = |x: &[f64]| x.iter().map(|&v| v as f32).collect::<Vec<_>>();
        let (far, mic) = (f(&scene.far), f(&scene.mic));
        let run = process_offline(&s, &far, &mic, 1920)?;
        if let Some(dir) = &dump {
            let d = dir.join(seed.to_string());
            std::fs::create_dir_all(&d)?;
            let w = |name: &str, x: &[f32]| {
                assistant::audio::aec::wav::write_f32(&d.join(name), 24_000, x)
            };
            w("far.wav", &far)?;
            w("mic.wav", &mic)?;
            w("ours.wav", &run.output)?;
            w("near.wav", &f(&scene.near))?;
        }
        let sc = score::score(&scene, &run.output);
        println!(
            "{seed:4} {:5.1} / {:5.1} / {:.3}  room {:?} ms  [{d}]",
            sc.erle_db,
            sc.near_ssnr_db.unwrap_or(0.0),
            sc.double_talk_corr.unwrap_or(0.0),
            run.room_delay_ms
        );
        sum[0] += sc.erle_db;
        sum[1] += sc.near_ssnr_db.unwrap_or(0.0);
        sum[2] += sc.double_talk_corr.unwrap_or(0.0);
        if trace {
            // Per half second: echo removed by the room stage alone and by the chain.
            let mut room = RoomFilter::new(&s.room.clone().unwrap_or_default(), 24_000, 240);
            let mut out = vec![0.0f32; 240];
            let lat = run.latency_samples;
            let mut line = String::new();
            let (mut ei, mut er, mut ec) = (0.0f64, 0.0f64, 0.0f64);
            let end = (scene.far_only.1 * 24_000.0) as usize;
            for fr in 0..end / 240 {
                let x = &far[fr * 240..fr * 240 + 240];
                let y = &mic[fr * 240..fr * 240 + 240];
                room.push_far(x);
                room.process(y, &mut out);
                ei += y.iter().map(|&v| (v as f64).powi(2)).sum::<f64>();
                er += out.iter().map(|&v| (v as f64).powi(2)).sum::<f64>();
                ec += (0..240)
                    .map(|i| (*run.output.get(fr * 240 + i + lat).unwrap_or(&0.0) as f64).powi(2))
                    .sum::<f64>();
                if (fr + 1) % 50 == 0 {
                    let db = |e: f64| 10.0 * (ei / e.max(1e-12)).log10();
                    line += &format!("{:.1}/{:.1} ", db(er), db(ec));
                    (ei, er, ec) = (0.0, 0.0, 0.0);
                }
            }
            println!("     room/chain per 0.5 s: {line} delay {:?}", room.delay());
            let mut aec = assistant::audio::aec::EchoCanceller::new(&s)?;
            let mut st = String::new();
            for (i, (x, y)) in far.chunks(1920).zip(mic.chunks(1920)).enumerate() {
                let mut y = y.to_vec();
                aec.push_far(x);
                aec.process_near(&mut y);
                if i % 6 == 5 && i < 60 {
                    let m = aec.stats();
                    st += &format!("{}ms/{:.1}/{:.1} ", m.delay_ms, m.erle_db, m.erl_db);
                }
            }
            println!("     aec3 delay/erle/erl per 0.48 s: {st}");
        }
    }
    let n = seeds.len() as f64;
    println!(
        "mean {:.2} / {:.2} / {:.4}",
        sum[0] / n,
        sum[1] / n,
        sum[2] / n
    );
    Ok(())
}
