//! WAV in and out for the `aec` command: any rate, channel count or sample format in,
//! down-mixed and resampled to 24 kHz mono; 32-bit float out so no figure is lost to
//! quantisation.

use anyhow::{bail, Context, Result};
use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Resampler};
use std::path::Path;

/// Reads a WAV file as 24 kHz mono; also returns the file's own rate and channel count.
pub fn read_mono_24k(path: &Path) -> Result<(Vec<f32>, u32, u16)> {
    let reader = hound::WavReader::open(path).map_err(|e| match e {
        hound::Error::IoError(io) => anyhow::anyhow!("{}: cannot open: {io}", path.display()),
        other => anyhow::anyhow!("{}: not a readable WAV file ({other})", path.display()),
    })?;
    let spec = reader.spec();
    if spec.channels == 0 || spec.sample_rate == 0 {
        bail!(
            "{}: the header declares {} channels at {} Hz",
            path.display(),
            spec.channels,
            spec.sample_rate
        );
    }
    let samples: Vec<f32> = match spec.sample_format {
        hound::SampleFormat::Float => reader.into_samples::<f32>().collect::<Result<_, _>>(),
        hound::SampleFormat::Int => {
            let scale = 1.0 / (1u64 << (spec.bits_per_sample.clamp(1, 32) - 1)) as f32;
            reader
                .into_samples::<i32>()
                .map(|s| s.map(|v| v as f32 * scale))
                .collect()
        }
    }
    .with_context(|| format!("{}: truncated or corrupt audio data", path.display()))?;
    let ch = spec.channels as usize;
    let mono: Vec<f32> = samples
        .chunks_exact(ch)
        .map(|f| f.iter().sum::<f32>() / ch as f32)
        .collect();
    if mono.is_empty() {
        bail!("{}: contains no audio", path.display());
    }
    let mono = resample(&mono, spec.sample_rate, super::SAMPLE_RATE).with_context(|| {
        format!(
            "{}: cannot resample {} Hz to 24 kHz",
            path.display(),
            spec.sample_rate
        )
    })?;
    Ok((mono, spec.sample_rate, spec.channels))
}

/// Whole-signal resampling with the resampler's own delay trimmed, so files stay aligned.
fn resample(x: &[f32], from: u32, to: u32) -> Result<Vec<f32>> {
    if from == to {
        return Ok(x.to_vec());
    }
    let mut r = Fft::<f32>::new(from as usize, to as usize, 1024, 1, FixedSync::Both)?;
    let needed = r.process_all_needed_output_len(x.len());
    let mut out = vec![0.0; needed];
    let input = InterleavedSlice::new(x, 1, x.len())?;
    let mut output = InterleavedSlice::new_mut(&mut out[..], 1, needed)?;
    let (_, produced) = r.process_all_into_buffer(&input, &mut output, x.len(), None)?;
    out.truncate(produced);
    Ok(out)
}

pub fn write_f32(path: &Path, rate: u32, samples: &[f32]) -> Result<()> {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: rate,
        bits_per_sample: 32,
        sample_format: hound::SampleFormat::Float,
    };
    let mut w = hound::WavWriter::create(path, spec)
        .with_context(|| format!("{}: cannot create", path.display()))?;
    for &s in samples {
        w.write_sample(s)?;
    }
    w.finalize()
        .with_context(|| format!("{}: cannot finish writing", path.display()))?;
    Ok(())
}
