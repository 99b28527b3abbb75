//! The room stage alone over a scene: per half second, the echo it removes and the delay
//! it uses. usage: aec_room SCENE_DIR [span_ms] [step]
use assistant::audio::aec::room::{RoomFilter, RoomSettings};
use assistant::audio::aec::score;
use std::path::PathBuf;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let scene = score::load_scene(&PathBuf::from(&args[0]))?;
    let mut s = RoomSettings::default();
    if let Some(v) = args.get(1) {
        s.span_ms = v.parse()?;
    }
    if let Some(v) = args.get(2) {
        s.step = v.parse()?;
    }
    if let Some(v) = args.get(3) {
        s.constrain = v.parse()?;
    }
    let mut room = RoomFilter::new(&s, 24_000, 240);
    let mut out = vec![0.0f32; 240];
    let (mut e_in, mut e_out) = (0.0f64, 0.0f64);
    let mut all = vec![];
    let mut line = String::new();
    for f in 0..scene.mic.len() / 240 {
        let far: Vec<f32> = (0..240)
            .map(|i| *scene.far.get(f * 240 + i).unwrap_or(&0.0) as f32)
            .collect();
        let mic: Vec<f32> = scene.mic[f * 240..f * 240 + 240]
            .iter()
            .map(|&x| x as f32)
            .collect();
        room.push_far(&far);
        room.process(&mic, &mut out);
        all.extend_from_slice(&out);
        e_in += mic.iter().map(|&x| (x as f64).powi(2)).sum::<f64>();
        e_out += out.iter().map(|&x| (x as f64).powi(2)).sum::<f64>();
        if (f + 1) % 50 == 0 {
            let (c, d) = room.finder().last();
            line += &format!(
                "{:.1}[{c:.0}@{}] ",
                10.0 * (e_in / e_out.max(1e-12)).log10(),
                d / 24
            );
            (e_in, e_out) = (0.0, 0.0);
        }
    }
    println!("delay {:?}: {line}", room.delay());
    if let Some(p) = args.get(4) {
        assistant::audio::aec::wav::write_f32(std::path::Path::new(p), 24_000, &all)?;
    }
    Ok(())
}
