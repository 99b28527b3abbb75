//! Real sound devices through cpal. Callbacks only convert samples, move them
//! between the device buffer and an SPSC ring, and update atomics: no locks, no
//! allocation (checked with assert_no_alloc in debug builds), no logging.

use super::meters::{peak, Meters};
use cpal::traits::{DeviceTrait, HostTrait, StreamTrait};
use cpal::{FromSample, Sample, SampleFormat, SizedSample};
use ringbuf::traits::{Consumer, Producer, Split};
use ringbuf::{HeapCons, HeapProd, HeapRb};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;

/// Samples converted per stack chunk inside a callback.
const CHUNK: usize = 512;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AudioFormat {
    pub sample_rate: u32,
    pub channels: u16,
}

/// A device could not be opened; `available` lists what exists, for the message.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error("no {kind} device matches '{wanted}'. Available {kind} devices:\n{available}")]
    NotFound {
        kind: &'static str,
        wanted: String,
        available: String,
    },
    #[error("no default {kind} device ({reason})")]
    NoDefault { kind: &'static str, reason: String },
    #[error("{kind} device '{name}': {reason}")]
    Open {
        kind: &'static str,
        name: String,
        reason: String,
    },
}

fn device_name(d: &cpal::Device) -> String {
    d.description()
        .map(|d| d.name().to_string())
        .unwrap_or_else(|_| "(unnamed)".into())
}

fn list(devs: &[cpal::Device]) -> String {
    if devs.is_empty() {
        return "  (none: no sound hardware was found)".into();
    }
    devs.iter()
        .enumerate()
        .map(|(i, d)| format!("  {i}: {}", device_name(d)))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Call a function generic over the device's sample type; `None` for formats
/// cpal can name but we cannot convert (DSD).
macro_rules! with_sample_type {
    ($format:expr, $f:ident($($arg:expr),*)) => {
        match $format {
            SampleFormat::I8 => Some($f::<i8>($($arg),*)),
            SampleFormat::I16 => Some($f::<i16>($($arg),*)),
            SampleFormat::I24 => Some($f::<cpal::I24>($($arg),*)),
            SampleFormat::I32 => Some($f::<i32>($($arg),*)),
            SampleFormat::U8 => Some($f::<u8>($($arg),*)),
            SampleFormat::U16 => Some($f::<u16>($($arg),*)),
            SampleFormat::U32 => Some($f::<u32>($($arg),*)),
            SampleFormat::F32 => Some($f::<f32>($($arg),*)),
            SampleFormat::F64 => Some($f::<f64>($($arg),*)),
            _ => None,
        }
    };
}

/// Pick a device by index or case-insensitive name substring, or the default.
fn choose(input: bool, wanted: Option<&str>) -> Result<cpal::Device, DeviceError> {
    super::alsa_quiet::install();
    let kind = if input { "input" } else { "output" };
    let host = cpal::default_host();
    let Some(wanted) = wanted else {
        let d = if input {
            host.default_input_device()
        } else {
            host.default_output_device()
        };
        return d.ok_or_else(|| DeviceError::NoDefault {
            kind,
            reason: format!("host {} has none", host.id().name()),
        });
    };
    let devs: Vec<cpal::Device> = match if input {
        host.input_devices()
    } else {
        host.output_devices()
    } {
        Ok(it) => it.collect(),
        Err(_) => Vec::new(),
    };
    if let Ok(i) = wanted.parse::<usize>() {
        if let Some(d) = devs.get(i) {
            return Ok(d.clone());
        }
    }
    let needle = wanted.to_lowercase();
    devs.iter()
        .find(|d| device_name(d).to_lowercase() == needle)
        .or_else(|| {
            devs.iter()
                .find(|d| device_name(d).to_lowercase().contains(&needle))
        })
        .cloned()
        .ok_or_else(|| DeviceError::NotFound {
            kind,
            wanted: wanted.into(),
            available: list(&devs),
        })
}

/// An open capture stream feeding a ring; dropping it stops the stream.
pub struct InputStream {
    _stream: cpal::Stream,
    pub format: AudioFormat,
    pub name: String,
}

/// An open playback stream draining a ring.
pub struct OutputStream {
    _stream: cpal::Stream,
    pub format: AudioFormat,
    pub name: String,
}

/// Ring capacity: `seconds` of interleaved audio.
pub fn ring_for(format: AudioFormat, seconds: f32) -> (HeapProd<f32>, HeapCons<f32>) {
    let cap = (format.sample_rate as f32 * format.channels as f32 * seconds) as usize;
    HeapRb::<f32>::new(cap.max(CHUNK)).split()
}

/// Open the capture device and start pushing into a ring of `ring_seconds`.
pub fn open_input(
    wanted: Option<&str>,
    meters: Arc<Meters>,
    ring_seconds: f32,
) -> Result<(InputStream, HeapCons<f32>), DeviceError> {
    let device = choose(true, wanted)?;
    let name = device_name(&device);
    let open_err = |reason: String| DeviceError::Open {
        kind: "input",
        name: name.clone(),
        reason,
    };
    let supported = device
        .default_input_config()
        .map_err(|e| open_err(e.to_string()))?;
    let format = AudioFormat {
        sample_rate: supported.sample_rate(),
        channels: supported.channels(),
    };
    let (prod, cons) = ring_for(format, ring_seconds);
    let config: cpal::StreamConfig = supported.config();
    let stream = with_sample_type!(
        supported.sample_format(),
        build_input(&device, config, prod, meters)
    )
    .ok_or_else(|| {
        open_err(format!(
            "sample format {} is not supported",
            supported.sample_format()
        ))
    })?
    .map_err(|e| open_err(e.to_string()))?;
    stream.play().map_err(|e| open_err(e.to_string()))?;
    Ok((
        InputStream {
            _stream: stream,
            format,
            name,
        },
        cons,
    ))
}

fn build_input<T>(
    device: &cpal::Device,
    config: cpal::StreamConfig,
    mut prod: HeapProd<f32>,
    meters: Arc<Meters>,
) -> Result<cpal::Stream, cpal::Error>
where
    T: SizedSample,
    f32: FromSample<T>,
{
    let err_meters = meters.clone();
    device.build_input_stream::<T, _, _>(
        config,
        move |data: &[T], _| {
            assert_no_alloc::assert_no_alloc(|| capture_callback(data, &mut prod, &meters))
        },
        move |_err| {
            err_meters.stream_errors_in.fetch_add(1, Relaxed);
        },
        None,
    )
}

/// The body of a capture callback: convert, push, count. Public for the bench.
pub fn capture_callback<T>(data: &[T], prod: &mut HeapProd<f32>, meters: &Meters)
where
    T: Sample,
    f32: FromSample<T>,
{
    meters.callbacks_in.fetch_add(1, Relaxed);
    let mut buf = [0.0f32; CHUNK];
    let mut level = 0.0f32;
    let mut overrun = false;
    for chunk in data.chunks(CHUNK) {
        for (b, s) in buf.iter_mut().zip(chunk) {
            *b = f32::from_sample(*s);
        }
        let block = &buf[..chunk.len()];
        level = level.max(peak(block));
        if prod.push_slice(block) < block.len() {
            overrun = true;
        }
    }
    if overrun {
        meters.xruns_in.fetch_add(1, Relaxed);
    }
    meters.raise_mic(level);
}

/// Open the playback device and start draining a ring of `ring_seconds`.
pub fn open_output(
    wanted: Option<&str>,
    meters: Arc<Meters>,
    ring_seconds: f32,
) -> Result<(OutputStream, HeapProd<f32>), DeviceError> {
    let device = choose(false, wanted)?;
    let name = device_name(&device);
    let open_err = |reason: String| DeviceError::Open {
        kind: "output",
        name: name.clone(),
        reason,
    };
    let supported = device
        .default_output_config()
        .map_err(|e| open_err(e.to_string()))?;
    let format = AudioFormat {
        sample_rate: supported.sample_rate(),
        channels: supported.channels(),
    };
    let (prod, cons) = ring_for(format, ring_seconds);
    let config: cpal::StreamConfig = supported.config();
    let stream = with_sample_type!(
        supported.sample_format(),
        build_output(&device, config, cons, meters)
    )
    .ok_or_else(|| {
        open_err(format!(
            "sample format {} is not supported",
            supported.sample_format()
        ))
    })?
    .map_err(|e| open_err(e.to_string()))?;
    stream.play().map_err(|e| open_err(e.to_string()))?;
    Ok((
        OutputStream {
            _stream: stream,
            format,
            name,
        },
        prod,
    ))
}

fn build_output<T>(
    device: &cpal::Device,
    config: cpal::StreamConfig,
    mut cons: HeapCons<f32>,
    meters: Arc<Meters>,
) -> Result<cpal::Stream, cpal::Error>
where
    T: SizedSample + FromSample<f32>,
{
    let err_meters = meters.clone();
    let started = AtomicBool::new(false);
    device.build_output_stream::<T, _, _>(
        config,
        move |data: &mut [T], _| {
            assert_no_alloc::assert_no_alloc(|| {
                playback_callback(data, &mut cons, &meters, &started)
            })
        },
        move |_err| {
            err_meters.stream_errors_out.fetch_add(1, Relaxed);
        },
        None,
    )
}

/// The body of a playback callback: pop, convert, silence on underrun, count.
/// Underruns count only once audio has started flowing.
pub fn playback_callback<T>(
    data: &mut [T],
    cons: &mut HeapCons<f32>,
    meters: &Meters,
    started: &AtomicBool,
) where
    T: Sample + FromSample<f32>,
{
    meters.callbacks_out.fetch_add(1, Relaxed);
    let mut buf = [0.0f32; CHUNK];
    let mut level = 0.0f32;
    let mut short = false;
    for chunk in data.chunks_mut(CHUNK) {
        let n = cons.pop_slice(&mut buf[..chunk.len()]);
        if n < chunk.len() {
            buf[n..chunk.len()].fill(0.0);
            short = true;
        }
        if n > 0 {
            started.store(true, Relaxed);
        }
        level = level.max(peak(&buf[..chunk.len()]));
        for (d, s) in chunk.iter_mut().zip(&buf) {
            *d = T::from_sample(*s);
        }
    }
    if short && started.load(Relaxed) {
        meters.xruns_out.fetch_add(1, Relaxed);
    }
    meters.raise_out(level);
}

/// `assistant devices`: hosts, devices and default configs, as text.
pub fn describe_devices() -> String {
    let mut out = String::new();
    let mut any = false;
    super::alsa_quiet::install();
    for id in cpal::available_hosts() {
        out += &format!("host {}\n", id.name());
        let Ok(host) = cpal::host_from_id(id) else {
            out += "  (unavailable)\n";
            continue;
        };
        for (kind, devs) in [
            ("input", host.input_devices().map(|d| d.collect::<Vec<_>>())),
            (
                "output",
                host.output_devices().map(|d| d.collect::<Vec<_>>()),
            ),
        ] {
            let devs = devs.unwrap_or_default();
            out += &format!("  {kind} devices:\n");
            if devs.is_empty() {
                out += "    (none)\n";
            }
            for (i, d) in devs.iter().enumerate() {
                // ALSA's `null` PCM opens but is no sound card.
                any |= !device_name(d).starts_with("Discard all samples");
                let cfg = if kind == "input" {
                    d.default_input_config()
                } else {
                    d.default_output_config()
                };
                let cfg = match cfg {
                    Ok(c) => format!(
                        "{} Hz, {} ch, {}",
                        c.sample_rate(),
                        c.channels(),
                        c.sample_format()
                    ),
                    Err(e) => format!("no default config ({e})"),
                };
                out += &format!("    {i}: {}  [{cfg}]\n", device_name(d));
            }
        }
    }
    if !any {
        out += "\nNo sound hardware found on this machine (only virtual devices, if any). Use --input FILE.wav and --output FILE.wav,\nor an ALSA configuration such as shared/alsa/asoundrc.file-devices.\n";
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capture_counts_overruns_and_peaks() {
        let meters = Meters::default();
        let (mut prod, mut cons) = HeapRb::<f32>::new(1000).split();
        let data: Vec<i16> = vec![i16::MAX / 2; 800];
        capture_callback(&data, &mut prod, &meters);
        assert_eq!(meters.xruns_in(), 0);
        capture_callback(&data, &mut prod, &meters);
        assert_eq!(meters.xruns_in(), 1, "ring full: an overrun is counted");
        assert!((meters.take_mic_peak() - 0.5).abs() < 1e-3);
        let mut got = vec![0.0; 2000];
        assert_eq!(cons.pop_slice(&mut got), 1000);
    }

    #[test]
    fn playback_fills_silence_and_counts_underruns_after_start() {
        let meters = Meters::default();
        let started = AtomicBool::new(false);
        let (mut prod, mut cons) = HeapRb::<f32>::new(1000).split();
        let mut data = vec![7i16; 100];
        playback_callback(&mut data, &mut cons, &meters, &started);
        assert_eq!(
            meters.xruns_out(),
            0,
            "nothing has played yet: not an underrun"
        );
        assert!(data.iter().all(|&s| s == 0));
        prod.push_slice(&[0.5; 60]);
        playback_callback(&mut data, &mut cons, &meters, &started);
        assert_eq!(meters.xruns_out(), 1);
        assert!(data[..60].iter().all(|&s| s > 16_000) && data[60..].iter().all(|&s| s == 0));
    }
}
