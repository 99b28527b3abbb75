//! `assistant bench echo`: the echo canceller against WebRTC AEC3 on random hard rooms
//! (audio::aec::rooms), run side by side on the same scenes and scored with the same
//! three figures (audio::aec::score): the per-room table, the distribution of each
//! figure, and the canceller's CPU per 10 ms frame.

use crate::audio::aec::command::process_offline;
use crate::audio::aec::rooms::{self, RoomDraw, Voices, HELD_OUT_SEEDS, TUNING_SEEDS};
use crate::audio::aec::score::{self, Scene, Score};
use crate::audio::aec::{AecSettings, FRAME, SAMPLE_RATE};
use anyhow::{bail, Context, Result};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Where `tools/aec_reference/build_webrtc.sh` puts the reference by default.
pub const DEFAULT_WEBRTC: &str = "target/aec_reference/webrtc_aec3";

/// One room's figures, ours and the reference's.
#[derive(Debug, Clone)]
pub struct RoomResult {
    pub draw: RoomDraw,
    pub ours: Score,
    pub webrtc: Option<Score>,
    /// Our CPU time and the 10 ms frames it processed.
    pub cpu_s: f64,
    pub frames: usize,
    /// The reference's own CPU report, ms per second of audio.
    pub webrtc_cpu_ms_per_s: Option<f64>,
}

/// Which seeds `--rooms` names.
pub fn seeds(which: &str) -> Result<Vec<(&'static str, Vec<u64>)>> {
    Ok(match which {
        "tune" => vec![("tuning", TUNING_SEEDS.to_vec())],
        "held-out" => vec![("held-out", HELD_OUT_SEEDS.to_vec())],
        "all" => vec![
            ("tuning", TUNING_SEEDS.to_vec()),
            ("held-out", HELD_OUT_SEEDS.to_vec()),
        ],
        other => bail!("--rooms {other}: choose tune, held-out or all"),
    })
}

/// Runs our canceller with `settings` (and the reference, if given) on each seed's room.
pub fn run_rooms(
    seeds: &[u64],
    settings: &AecSettings,
    webrtc: Option<&Path>,
    voices: &mut Voices,
    mut progress: impl FnMut(&RoomResult),
) -> Result<Vec<RoomResult>> {
    let mut out = vec![];
    for &seed in seeds {
        let draw = RoomDraw::from_seed(seed);
        let scene = voices
            .scene(&draw)
            .with_context(|| format!("room {seed}"))?;
        let r = run_ours(&scene, settings)?;
        let (webrtc, webrtc_cpu) = match webrtc {
            Some(bin) => {
                let (s, cpu) =
                    run_webrtc(bin, &scene).with_context(|| format!("WebRTC on room {seed}"))?;
                (Some(s), cpu)
            }
            None => (None, None),
        };
        let res = RoomResult {
            draw,
            ours: r.0,
            webrtc,
            cpu_s: r.1,
            frames: scene.mic.len() / FRAME,
            webrtc_cpu_ms_per_s: webrtc_cpu,
        };
        progress(&res);
        out.push(res);
    }
    Ok(out)
}

fn run_ours(scene: &Scene, settings: &AecSettings) -> Result<(Score, f64)> {
    let f = |x: &[f64]| x.iter().map(|&v| v as f32).collect::<Vec<_>>();
    let run = process_offline(settings, &f(&scene.far), &f(&scene.mic), 1920)?;
    Ok((score::score(scene, &run.output), run.cpu.as_secs_f64()))
}

/// The reference over the scene's 16-bit files, as tools/aec_reference runs it.
fn run_webrtc(bin: &Path, scene: &Scene) -> Result<(Score, Option<f64>)> {
    let dir = std::env::temp_dir().join(format!("assistant-bench-echo-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let (far, mic, out) = (
        dir.join("far.wav"),
        dir.join("mic.wav"),
        dir.join("out.wav"),
    );
    write_i16(&far, &rooms::to_i16(&scene.far))?;
    write_i16(&mic, &rooms::to_i16(&scene.mic))?;
    let o = std::process::Command::new(bin)
        .arg(&far)
        .arg(&mic)
        .arg(&out)
        .output()
        .with_context(|| format!("{}: cannot run", bin.display()))?;
    if !o.status.success() {
        bail!(
            "{} failed: {}",
            bin.display(),
            String::from_utf8_lossy(&o.stderr).trim()
        );
    }
    let (_, y) = score::load_mono_f64(&out)?;
    let _ = std::fs::remove_dir_all(&dir);
    let y: Vec<f32> = y.iter().map(|&v| v as f32).collect();
    let cpu = serde_json::from_slice::<serde_json::Value>(&o.stdout)
        .ok()
        .and_then(|v| v["cpu_ms_per_s"].as_f64());
    Ok((score::score(scene, &y), cpu))
}

fn write_i16(path: &Path, x: &[i16]) -> Result<()> {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: SAMPLE_RATE,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec)?;
    for &v in x {
        w.write_sample(v)?;
    }
    w.finalize()?;
    Ok(())
}

/// The three figures of a score, in the table's order.
fn figures(s: &Score) -> [f64; 3] {
    [
        s.erle_db,
        s.near_ssnr_db.unwrap_or(f64::NAN),
        s.double_talk_corr.unwrap_or(f64::NAN),
    ]
}

const NAMES: [&str; 3] = ["ERLE dB", "near-end dB", "double-talk corr"];
/// How far behind the reference counts as "not behind": the 1 dB and 0.05.
const TOLERANCE: [f64; 3] = [1.0, 1.0, 0.05];

/// Linear-interpolated percentile (numpy's default) of sorted values.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let x = p * (sorted.len() - 1) as f64;
    let (i, f) = (x.floor() as usize, x - x.floor());
    let j = (i + 1).min(sorted.len() - 1);
    sorted[i] + f * (sorted[j] - sorted[i])
}

fn fmt_fig(i: usize, v: f64) -> String {
    if i == 2 {
        format!("{v:.3}")
    } else {
        format!("{v:.1}")
    }
}

/// The per-room table and the distributions, as Markdown.
pub fn report(title: &str, results: &[RoomResult], w: &mut impl Write) -> Result<()> {
    let with_ref = results.iter().all(|r| r.webrtc.is_some());
    writeln!(w, "\n### {title} rooms (seeds {})\n", seed_list(results))?;
    writeln!(
        w,
        "erle dB / near-end dB / double-talk correlation; ✗: more than 1 dB (0.05) behind WebRTC on that figure.\n"
    )?;
    if with_ref {
        writeln!(w, "| seed | room | ours | WebRTC AEC3 | ours − WebRTC |")?;
        writeln!(w, "|---|---|---|---|---|")?;
    } else {
        writeln!(w, "| seed | room | ours |")?;
        writeln!(w, "|---|---|---|")?;
    }
    for r in results {
        let o = figures(&r.ours);
        let ours = (0..3)
            .map(|i| fmt_fig(i, o[i]))
            .collect::<Vec<_>>()
            .join(" / ");
        match &r.webrtc {
            Some(s) if with_ref => {
                let t = figures(s);
                let theirs = (0..3)
                    .map(|i| fmt_fig(i, t[i]))
                    .collect::<Vec<_>>()
                    .join(" / ");
                let diff = (0..3)
                    .map(|i| {
                        let d = o[i] - t[i];
                        let mark = if d < -TOLERANCE[i] { " ✗" } else { "" };
                        format!("{}{mark}", signed(i, d))
                    })
                    .collect::<Vec<_>>()
                    .join(" / ");
                writeln!(
                    w,
                    "| {} | {} | {ours} | {theirs} | {diff} |",
                    r.draw.seed, r.draw
                )?;
            }
            _ => writeln!(w, "| {} | {} | {ours} |", r.draw.seed, r.draw)?,
        }
    }
    writeln!(w, "\n| figure | who | min | p25 | median | p75 | max |")?;
    writeln!(w, "|---|---|---|---|---|---|---|")?;
    for (i, name) in NAMES.iter().enumerate() {
        let mut rows: Vec<(&str, Vec<f64>)> = vec![(
            "ours",
            results.iter().map(|r| figures(&r.ours)[i]).collect(),
        )];
        if with_ref {
            rows.push((
                "WebRTC",
                results
                    .iter()
                    .filter_map(|r| r.webrtc.as_ref().map(|s| figures(s)[i]))
                    .collect(),
            ));
            rows.push((
                "ours − WebRTC",
                results
                    .iter()
                    .filter_map(|r| {
                        r.webrtc
                            .as_ref()
                            .map(|s| figures(&r.ours)[i] - figures(s)[i])
                    })
                    .collect(),
            ));
        }
        for (who, mut v) in rows {
            v.retain(|x| x.is_finite());
            v.sort_by(f64::total_cmp);
            let q = [0.0, 0.25, 0.5, 0.75, 1.0].map(|p| {
                let x = percentile(&v, p);
                if who.contains('−') {
                    signed(i, x)
                } else {
                    fmt_fig(i, x)
                }
            });
            writeln!(w, "| {name} | {who} | {} |", q.join(" | "))?;
        }
    }
    if with_ref {
        let mut behind = [0usize; 3];
        let mut over = [0usize; 3];
        for r in results {
            let (o, t) = (
                figures(&r.ours),
                figures(r.webrtc.as_ref().expect("with_ref")),
            );
            for i in 0..3 {
                behind[i] += usize::from(o[i] < t[i]);
                over[i] += usize::from(o[i] - t[i] < -TOLERANCE[i]);
            }
        }
        writeln!(
            w,
            "\nBehind WebRTC (any amount / beyond 1 dB or 0.05), of {} rooms: ERLE {} / {}, near-end {} / {}, double talk {} / {}.",
            results.len(),
            behind[0],
            over[0],
            behind[1],
            over[1],
            behind[2],
            over[2]
        )?;
    }
    Ok(())
}

fn signed(i: usize, d: f64) -> String {
    if i == 2 {
        format!("{d:+.3}")
    } else {
        format!("{d:+.1}")
    }
}

fn seed_list(results: &[RoomResult]) -> String {
    let s: Vec<u64> = results.iter().map(|r| r.draw.seed).collect();
    match (s.first(), s.last()) {
        (Some(a), Some(b)) if s.len() as u64 == b - a + 1 => format!("{a}-{b}"),
        _ => s.iter().map(u64::to_string).collect::<Vec<_>>().join(", "),
    }
}

/// The CPU line: ours per 10 ms frame over every room, and the reference's.
pub fn cpu_report(results: &[RoomResult], w: &mut impl Write) -> Result<()> {
    let cpu: f64 = results.iter().map(|r| r.cpu_s).sum();
    let frames: usize = results.iter().map(|r| r.frames).sum();
    let per_frame = cpu * 1000.0 / frames.max(1) as f64;
    write!(
        w,
        "\nCPU per 10 ms frame (thread CPU time, {} frames{}): ours {per_frame:.3} ms ({:.1} % of real time)",
        frames,
        if cfg!(debug_assertions) {
            ", unoptimised build: use --release"
        } else {
            ""
        },
        per_frame * 10.0
    )?;
    let theirs: Vec<f64> = results
        .iter()
        .filter_map(|r| r.webrtc_cpu_ms_per_s)
        .collect();
    if !theirs.is_empty() {
        let mean = theirs.iter().sum::<f64>() / theirs.len() as f64;
        write!(w, "; WebRTC AEC3 {:.3} ms", mean / 100.0)?;
    }
    writeln!(w, "; load average {}.", load_average())?;
    Ok(())
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "unknown".into())
}

/// `assistant bench echo [--rooms tune|held-out|all] [--webrtc PATH]`.
pub fn run(rooms: &str, webrtc: Option<&Path>, w: &mut impl Write) -> Result<()> {
    let sets = seeds(rooms)?;
    let webrtc: Option<PathBuf> = match webrtc {
        Some(p) if !p.exists() => bail!(
            "{}: no such file; build WebRTC AEC3 with tools/aec_reference/build_webrtc.sh",
            p.display()
        ),
        Some(p) => Some(p.to_path_buf()),
        None => Some(PathBuf::from(DEFAULT_WEBRTC)).filter(|p| p.exists()),
    };
    if webrtc.is_none() {
        writeln!(
            w,
            "WebRTC AEC3 not found at {DEFAULT_WEBRTC}: ours alone (tools/aec_reference/build_webrtc.sh builds it; or --webrtc PATH)."
        )?;
    }
    if !Voices::have_espeak() {
        bail!("espeak-ng is needed for the rooms' voices: apt-get install espeak-ng");
    }
    let clips = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/audio");
    let mut voices = Voices::new(&clips);
    let settings = AecSettings::default();
    let mut all = vec![];
    for (title, seeds) in sets {
        eprintln!("{title} rooms: {} …", seeds.len());
        let res = run_rooms(&seeds, &settings, webrtc.as_deref(), &mut voices, |r| {
            eprintln!("  room {}: ours {}", r.draw.seed, r.ours);
        })?;
        report(title, &res, w)?;
        all.extend(res);
    }
    cpu_report(&all, w)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_interpolate_as_numpy() {
        let v = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(percentile(&v, 0.0), 1.0);
        assert_eq!(percentile(&v, 0.5), 2.5);
        assert_eq!(percentile(&v, 0.25), 1.75);
        assert_eq!(percentile(&v, 1.0), 4.0);
    }
}
