//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn shared_audio(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/audio")
        .join(name)
}

/// The `assistant` binary with logs kept out of the user's state directory.
pub fn assistant(tmp: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_assistant"));
    c.env("XDG_STATE_HOME", tmp.join("state"))
        .env("XDG_DATA_HOME", tmp.join("data"))
        .env("XDG_CONFIG_HOME", tmp.join("config"));
    c
}

pub fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("run assistant");
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Mono (down-mixed) f64 samples and the rate.
pub fn read_mono(path: &Path) -> (Vec<f64>, u32) {
    let a = assistant::audio::wav::read_wav(path).expect("read wav");
    let ch = a.channels as usize;
    let mono = a
        .samples
        .chunks_exact(ch)
        .map(|f| f.iter().map(|&s| s as f64).sum::<f64>() / ch as f64)
        .collect();
    (mono, a.sample_rate)
}

/// SNR in dB of `y` against reference `x` over the overlap.
pub fn snr_db(x: &[f64], y: &[f64]) -> f64 {
    let n = x.len().min(y.len());
    let sig: f64 = x[..n].iter().map(|v| v * v).sum();
    let err: f64 = x[..n]
        .iter()
        .zip(&y[..n])
        .map(|(a, b)| (a - b).powi(2))
        .sum();
    if err == 0.0 {
        return f64::INFINITY;
    }
    10.0 * (sig / err).log10()
}

pub fn stats(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("stats file")).expect("stats json")
}

/// A HOME whose ~/.asoundrc turns the default ALSA devices into files.
pub fn alsa_home(dir: &Path) -> std::path::PathBuf {
    let (speech, _) = read_mono(&shared_audio("hello_24k_mono.wav"));
    // Unpaced capture reads as fast as the CPU allows (and drops what the engine
    // cannot take): repeat the speech enough (about 7 minutes) that some is still
    // arriving for the whole of a test, however slow the engine is to start.
    let once: Vec<u8> = speech
        .iter()
        .flat_map(|s| ((s * 32767.0) as i16).to_le_bytes())
        .collect();
    let raw = once.repeat(200);
    std::fs::write(dir.join("in.raw"), raw).unwrap();
    let conf = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/alsa/asoundrc.file-devices"),
    )
    .unwrap();
    let conf = conf
        .replace("@IN_RAW@", &dir.join("in.raw").display().to_string())
        .replace("@OUT_WAV@", &dir.join("played.wav").display().to_string());
    std::fs::write(dir.join(".asoundrc"), conf).unwrap();
    dir.join("played.wav")
}

/// One HTTP request read off a stand-in server's socket: the head and the body, whole
/// (the body's length from Content-Length); what came if the peer closed early.
pub fn read_http_request(s: &mut std::net::TcpStream) -> String {
    use std::io::Read;
    let mut buf = Vec::new();
    let mut b = [0u8; 8192];
    loop {
        let n = s.read(&mut b).unwrap_or(0);
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&b[..n]);
        let text = String::from_utf8_lossy(&buf);
        if let Some(end) = text.find("\r\n\r\n") {
            let len = text[..end]
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                break;
            }
        }
    }
    String::from_utf8_lossy(&buf).into_owned()
}

/// The body of a request `read_http_request` read.
pub fn http_body(request: &str) -> &str {
    request.split_once("\r\n\r\n").map_or("", |(_, b)| b)
}
