//! WAV files in and out: any rate, channel count, bit depth or float format in;
//! 24 kHz mono f32 out, written beside the target and renamed on success so a
//! failed run leaves no half-written file.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

/// A decoded WAV file: interleaved f32 samples in [-1, 1].
#[derive(Debug, Clone)]
pub struct WavAudio {
    pub samples: Vec<f32>,
    pub sample_rate: u32,
    pub channels: u16,
}

impl WavAudio {
    pub fn frames(&self) -> usize {
        self.samples.len() / self.channels.max(1) as usize
    }
    pub fn seconds(&self) -> f64 {
        self.frames() as f64 / self.sample_rate as f64
    }
}

/// A bad input file: the message names the file and the problem.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {problem}")]
pub struct WavError {
    pub path: PathBuf,
    pub problem: String,
}

fn wav_err(path: &Path, problem: impl Into<String>) -> WavError {
    WavError {
        path: path.to_path_buf(),
        problem: problem.into(),
    }
}

/// Read a whole WAV file. Errors name the file and say what is wrong with it.
pub fn read_wav(path: &Path) -> Result<WavAudio, WavError> {
    let file = File::open(path).map_err(|e| wav_err(path, format!("cannot open: {e}")))?;
    let reader = hound::WavReader::new(std::io::BufReader::new(file))
        .map_err(|e| wav_err(path, describe(e)))?;
    let spec = reader.spec();
    if spec.channels == 0 {
        return Err(wav_err(path, "the header declares zero channels"));
    }
    if spec.sample_rate == 0 {
        return Err(wav_err(path, "the header declares a sample rate of 0 Hz"));
    }
    let declared = reader.len() as usize;
    let samples: Result<Vec<f32>, hound::Error> = match spec.sample_format {
        hound::SampleFormat::Float => match spec.bits_per_sample {
            32 => reader.into_samples::<f32>().collect(),
            b => {
                return Err(wav_err(
                    path,
                    format!("{b}-bit float samples are not supported (32-bit float is)"),
                ))
            }
        },
        hound::SampleFormat::Int => {
            let scale = 1.0 / (1u64 << (spec.bits_per_sample.clamp(1, 32) - 1)) as f32;
            reader
                .into_samples::<i32>()
                .map(|s| s.map(|v| v as f32 * scale))
                .collect()
        }
    };
    let samples = samples.map_err(|e| wav_err(path, describe(e)))?;
    if samples.len() < declared {
        return Err(wav_err(
            path,
            format!(
                "truncated: the header declares {declared} samples but only {} are present",
                samples.len()
            ),
        ));
    }
    if samples.len() % spec.channels as usize != 0 {
        return Err(wav_err(path, "truncated: the last frame is incomplete"));
    }
    Ok(WavAudio {
        samples,
        sample_rate: spec.sample_rate,
        channels: spec.channels,
    })
}

fn describe(e: hound::Error) -> String {
    match e {
        hound::Error::FormatError(m) => format!("not a valid WAV file ({m})"),
        hound::Error::IoError(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            "truncated: the file ends in the middle of the audio data".into()
        }
        hound::Error::IoError(io) => format!("read error: {io}"),
        hound::Error::Unsupported => {
            "unsupported WAV encoding (use PCM integer or 32-bit float)".into()
        }
        hound::Error::TooWide => "sample width too large".into(),
        hound::Error::UnfinishedSample => {
            "truncated: the file ends in the middle of a sample".into()
        }
        hound::Error::InvalidSampleFormat => "invalid sample format in the header".into(),
    }
}

/// Writes mono f32 audio to `<dir>/.<name>.partial`, renamed to the target by
/// `finish`. Dropped without `finish`, it deletes the partial file.
pub struct WavSink {
    writer: Option<hound::WavWriter<BufWriter<File>>>,
    partial: PathBuf,
    target: PathBuf,
    written: u64,
}

impl WavSink {
    pub fn create(target: &Path, sample_rate: u32) -> anyhow::Result<Self> {
        let name = target
            .file_name()
            .ok_or_else(|| anyhow::anyhow!("{}: not a file path", target.display()))?;
        let partial = target.with_file_name(format!(".{}.partial", name.to_string_lossy()));
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate,
            bits_per_sample: 32,
            sample_format: hound::SampleFormat::Float,
        };
        let writer = hound::WavWriter::create(&partial, spec)
            .map_err(|e| anyhow::anyhow!("{}: cannot create output: {e}", target.display()))?;
        Ok(Self {
            writer: Some(writer),
            partial,
            target: target.to_path_buf(),
            written: 0,
        })
    }

    pub fn write(&mut self, samples: &[f32]) -> anyhow::Result<()> {
        if let Some(w) = self.writer.as_mut() {
            for &s in samples {
                w.write_sample(s)?;
            }
            self.written += samples.len() as u64;
        }
        Ok(())
    }

    pub fn samples_written(&self) -> u64 {
        self.written
    }

    /// Finalize the header and move the file into place.
    pub fn finish(mut self) -> anyhow::Result<PathBuf> {
        if let Some(w) = self.writer.take() {
            w.finalize()?;
            std::fs::rename(&self.partial, &self.target)?;
        }
        Ok(self.target.clone())
    }
}

impl Drop for WavSink {
    fn drop(&mut self) {
        if self.writer.take().is_some() {
            let _ = std::fs::remove_file(&self.partial);
        }
    }
}

/// Write mono f32 samples in one go (tests and tools).
pub fn write_wav_mono(path: &Path, sample_rate: u32, samples: &[f32]) -> anyhow::Result<()> {
    let mut sink = WavSink::create(path, sample_rate)?;
    sink.write(samples)?;
    sink.finish()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_int(path: &Path, bits: u16, channels: u16, frames: &[i32]) {
        let spec = hound::WavSpec {
            channels,
            sample_rate: 16_000,
            bits_per_sample: bits,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::create(path, spec).unwrap();
        for &f in frames {
            w.write_sample(f).unwrap();
        }
        w.finalize().unwrap();
    }

    #[test]
    fn reads_int_depths_to_unit_range() {
        let dir = tempfile::tempdir().unwrap();
        for (bits, full) in [(8u16, 127i32), (16, 32767), (24, 8_388_607), (32, i32::MAX)] {
            let p = dir.path().join(format!("b{bits}.wav"));
            write_int(&p, bits, 2, &[full, -full - 1]);
            let a = read_wav(&p).unwrap();
            assert_eq!((a.channels, a.sample_rate, a.frames()), (2, 16_000, 1));
            assert!(
                (a.samples[0] - 1.0).abs() < 0.01,
                "{bits}: {}",
                a.samples[0]
            );
            assert!(
                (a.samples[1] + 1.0).abs() < 1e-6,
                "{bits}: {}",
                a.samples[1]
            );
        }
    }

    #[test]
    fn sink_leaves_nothing_when_dropped_unfinished() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out.wav");
        let mut sink = WavSink::create(&target, 24_000).unwrap();
        sink.write(&[0.1; 100]).unwrap();
        drop(sink);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        write_wav_mono(&target, 24_000, &[0.25; 10]).unwrap();
        let a = read_wav(&target).unwrap();
        assert_eq!(a.samples, vec![0.25; 10]);
    }
}
