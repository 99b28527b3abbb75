//! Real sound devices through cpal. Callbacks only convert samples, move them
//! between the device buffer and an SPSC ring, and update atomics: no locks, no
//! allocation (checked with assert_no_alloc in debug builds), no logging.

use super::hosts;
use super::meters::{peak, Meters};
use cpal::traits::{DeviceTrait, HostTrait, StreamTrait};
use cpal::{
    BufferSize, ErrorKind, FromSample, HostId, Sample, SampleFormat, SizedSample,
    SupportedBufferSize,
};
use ringbuf::traits::{Consumer, Observer, Producer, Split};
use ringbuf::{HeapCons, HeapProd, HeapRb};
use std::sync::atomic::{
    AtomicBool, AtomicUsize,
    Ordering::{Acquire, Relaxed, Release},
};
use std::sync::Arc;

/// Samples converted per stack chunk inside a callback.
const CHUNK: usize = 512;
/// Callback period asked of hosts that otherwise buffer a lot (PulseAudio).
const BUFFER_MS: u32 = 20;
/// Most playback queued in the speaker ring: an 80 ms model frame, the 40 ms
/// prefill and scheduling jitter. Beyond it the oldest is dropped.
const MAX_QUEUED_MS: f64 = 200.0;

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
    #[error("audio host {host} is not available ({reason})")]
    HostUnavailable { host: String, reason: String },
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

/// The device's identifier within its host (`nullsink`, `default`, `hw:CARD=PCH,DEV=0`).
fn device_id(d: &cpal::Device) -> String {
    d.id().map(|i| i.id().to_string()).unwrap_or_default()
}

/// How the user names this device on the command line, on any host: `HOST:ID`.
fn selector(host: HostId, d: &cpal::Device) -> String {
    format!("{host}:{}", device_id(d))
}

/// One host's devices for an error message, under the host's name.
fn list(host: HostId, devs: &[cpal::Device]) -> String {
    if devs.is_empty() {
        return format!("  host {}: none", host.name());
    }
    let mut out = format!("  host {}:", host.name());
    for (i, d) in devs.iter().enumerate() {
        out += &format!("\n    {i}: {}  ({})", device_name(d), selector(host, d));
    }
    out
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

/// A device as `--input-device` / `--output-device` name it: `HOST:DEVICE` picks
/// from one cpal host (`alsa`, `pulseaudio`: the hosts this build has), where
/// DEVICE is an id, a name, an index in that host's list, or `default` (also an
/// empty DEVICE); anything else is a name or an index on the default host (a name
/// is also looked for on the other hosts).
pub fn parse_selection(wanted: &str) -> (Option<HostId>, &str) {
    if let Some((host, device)) = wanted.split_once(':') {
        if let Ok(id) = host.parse::<HostId>() {
            return (Some(id), device);
        }
    }
    (None, wanted)
}

/// The device in `devs` that `wanted` names: an index, then an exact id or name,
/// then a case-insensitive substring of the name or the id.
fn find(devs: &[cpal::Device], wanted: &str) -> Option<cpal::Device> {
    if let Ok(i) = wanted.parse::<usize>() {
        if let Some(d) = devs.get(i) {
            return Some(d.clone());
        }
    }
    let needle = wanted.to_lowercase();
    let named = |d: &cpal::Device| (device_id(d).to_lowercase(), device_name(d).to_lowercase());
    let pick =
        |ok: &dyn Fn(&(String, String)) -> bool| devs.iter().find(|d| ok(&named(d))).cloned();
    pick(&|(id, _)| *id == needle)
        .or_else(|| pick(&|(_, name)| *name == needle))
        .or_else(|| pick(&|(_, name)| name.contains(&needle)))
        .or_else(|| pick(&|(id, _)| id.contains(&needle)))
}

fn default_of(host: HostId, input: bool) -> Option<cpal::Device> {
    hosts::with_host(host, |h| {
        if input {
            h.default_input_device()
        } else {
            h.default_output_device()
        }
    })
    .ok()
    .flatten()
}

/// Pick a device (see [`parse_selection`]), or the default host's default.
fn choose(input: bool, wanted: Option<&str>) -> Result<cpal::Device, DeviceError> {
    super::alsa_quiet::install();
    let kind = if input { "input" } else { "output" };
    let (host_id, device) = match wanted.map(parse_selection) {
        Some((Some(id), device)) => (Some(id), Some(device)),
        Some((None, device)) => (None, Some(device)),
        None => (None, None),
    };
    let host = match host_id {
        Some(id) => {
            hosts::with_host(id, |_| ()).map_err(|e| DeviceError::HostUnavailable {
                host: id.to_string(),
                reason: e.to_string(),
            })?;
            id
        }
        None => hosts::default_host_id(),
    };
    let device = device
        .filter(|d| !(host_id.is_some() && (d.is_empty() || d.eq_ignore_ascii_case("default"))));
    let Some(wanted) = device else {
        return default_of(host, input).ok_or_else(|| DeviceError::NoDefault {
            kind,
            reason: format!("host {host} has none"),
        });
    };
    let devs = hosts::devices(host, input);
    if let Some(d) = find(&devs, wanted) {
        return Ok(d);
    }
    let mut available = list(host, &devs);
    // A plain name may be on any other host (PulseAudio's sink beside ALSA's cards,
    // or the sound server's devices when it did not answer in time to be the
    // default): look on each, and list each in the error, unavailable ones with why.
    if host_id.is_none() {
        for id in cpal::ALL_HOSTS.iter().copied().filter(|id| *id != host) {
            // A host with no server to reach is not tried (a connection is retried
            // for seconds).
            if !cpal::available_hosts().contains(&id) {
                available = format!("{available}\n  host {}: not running", id.name());
                continue;
            }
            if let Err(e) = hosts::with_host(id, |_| ()) {
                available = format!("{available}\n  host {}: unavailable ({e})", id.name());
                continue;
            }
            let devs = hosts::devices(id, input);
            if wanted.parse::<usize>().is_err() {
                if let Some(d) = find(&devs, wanted) {
                    return Ok(d);
                }
            }
            available = format!("{available}\n{}", list(id, &devs));
        }
    }
    Err(DeviceError::NotFound {
        kind,
        wanted: wanted.into(),
        available,
    })
}

/// Ask hosts that buffer seconds by default for a small fixed buffer: PulseAudio's
/// monitor sources otherwise deliver about 2 s at a time.
fn buffer_size(device: &cpal::Device, supported: &cpal::SupportedStreamConfig) -> BufferSize {
    // By name: the PulseAudio host exists on Linux and the BSDs only.
    let pulse = device.id().is_ok_and(|i| i.host().name() == "PulseAudio");
    match supported.buffer_size() {
        SupportedBufferSize::Range { min, max } if pulse => {
            BufferSize::Fixed((supported.sample_rate() / 1000 * BUFFER_MS).clamp(*min, *max))
        }
        _ => BufferSize::Default,
    }
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
    /// Cuts the engine asks of this stream's callback.
    pub cut: Cut,
}

/// The engine's request to a speaker to drop what it has queued (a barge-in): the
/// producer asks, the consumer (the playback callback) drops that many samples from
/// the front of its ring before it plays on. Cheap to clone; lock-free.
#[derive(Debug, Clone, Default)]
pub struct Cut(Arc<AtomicUsize>);

impl Cut {
    /// Drop the next `samples` (interleaved) queued samples; a later request replaces
    /// an earlier one not yet taken.
    pub fn request(&self, samples: usize) {
        // Release: what the producer queued before asking is seen by the callback.
        self.0.store(samples, Release);
    }

    /// The consumer's side: drop what was asked (never more than is queued, whole
    /// frames of `channels`); the count dropped.
    pub fn apply(&self, cons: &mut HeapCons<f32>, channels: usize) -> usize {
        let asked = self.0.swap(0, Acquire);
        if asked == 0 {
            return 0;
        }
        let n = asked.min(cons.occupied_len()) / channels.max(1) * channels.max(1);
        cons.skip(n)
    }
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
    let mut config: cpal::StreamConfig = supported.config();
    config.buffer_size = buffer_size(&device, &supported);
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
        move |err: cpal::Error| {
            let kind = err.kind();
            // `err` (cpal's, maybe with a message) is dropped outside the check.
            assert_no_alloc::assert_no_alloc(|| stream_error(&err_meters, true, kind))
        },
        None,
    )
}

/// What an error from a running stream means to us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// An underrun or overrun; cpal has already recovered the stream.
    Xrun,
    /// The device is gone or the stream must be rebuilt.
    Lost,
    /// Real-time priority was refused; audio still plays.
    RealtimeDenied,
    /// Anything else: worth a notice, the stream stays.
    Other,
}

pub fn classify(kind: ErrorKind) -> ErrorClass {
    match kind {
        ErrorKind::Xrun => ErrorClass::Xrun,
        ErrorKind::DeviceNotAvailable | ErrorKind::StreamInvalidated => ErrorClass::Lost,
        ErrorKind::RealtimeDenied => ErrorClass::RealtimeDenied,
        _ => ErrorClass::Other,
    }
}

/// cpal's error kinds, numbered from 1 so that a callback can store one in an atomic
/// (0: none yet, or a kind newer than this list).
const KINDS: [ErrorKind; 14] = [
    ErrorKind::DeviceBusy,
    ErrorKind::DeviceChanged,
    ErrorKind::DeviceNotAvailable,
    ErrorKind::HostUnavailable,
    ErrorKind::InvalidInput,
    ErrorKind::PermissionDenied,
    ErrorKind::RealtimeDenied,
    ErrorKind::ResourceExhausted,
    ErrorKind::StreamInvalidated,
    ErrorKind::UnsupportedConfig,
    ErrorKind::UnsupportedOperation,
    ErrorKind::Xrun,
    ErrorKind::BackendError,
    ErrorKind::Other,
];

pub fn kind_code(kind: ErrorKind) -> u32 {
    KINDS
        .iter()
        .position(|k| *k == kind)
        .map_or(0, |i| i as u32 + 1)
}

pub fn kind_from_code(code: u32) -> Option<ErrorKind> {
    KINDS.get((code as usize).checked_sub(1)?).copied()
}

/// The body of a stream's error callback: count the error by kind (atomics only).
/// Xruns go to the side's xrun counter, like the ring's own under- and overruns.
pub fn stream_error(meters: &Meters, input: bool, kind: ErrorKind) {
    let (xruns, errors) = if input {
        (&meters.xruns_in, &meters.errors_in)
    } else {
        (&meters.xruns_out, &meters.errors_out)
    };
    let counter = match classify(kind) {
        ErrorClass::Xrun => {
            xruns.fetch_add(1, Relaxed);
            return;
        }
        ErrorClass::RealtimeDenied => {
            errors.realtime_denied.fetch_add(1, Relaxed);
            return;
        }
        ErrorClass::Lost => &errors.lost,
        ErrorClass::Other => &errors.other,
    };
    errors.last_kind.store(kind_code(kind), Relaxed);
    // Release: whoever sees the count also sees the kind stored before it.
    counter.fetch_add(1, Release);
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
    let mut config: cpal::StreamConfig = supported.config();
    config.buffer_size = buffer_size(&device, &supported);
    let cut = Cut::default();
    let stream = with_sample_type!(
        supported.sample_format(),
        build_output(&device, config, cons, meters, cut.clone())
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
            cut,
        },
        prod,
    ))
}

fn build_output<T>(
    device: &cpal::Device,
    config: cpal::StreamConfig,
    mut cons: HeapCons<f32>,
    meters: Arc<Meters>,
    cut: Cut,
) -> Result<cpal::Stream, cpal::Error>
where
    T: SizedSample + FromSample<f32>,
{
    let err_meters = meters.clone();
    let started = AtomicBool::new(false);
    let channels = config.channels.max(1) as usize;
    let most = (config.sample_rate as f64 * MAX_QUEUED_MS / 1000.0) as usize * channels;
    device.build_output_stream::<T, _, _>(
        config,
        move |data: &mut [T], _| {
            assert_no_alloc::assert_no_alloc(|| {
                cut.apply(&mut cons, channels);
                // Two callbacks' worth at least, whatever the device's period.
                bound_queue(&mut cons, most.max(2 * data.len()), channels, &meters);
                playback_callback(data, &mut cons, &meters, &started)
            })
        },
        move |err: cpal::Error| {
            let kind = err.kind();
            assert_no_alloc::assert_no_alloc(|| stream_error(&err_meters, false, kind))
        },
        None,
    )
}

/// Drop the oldest queued playback beyond `most` interleaved samples (whole
/// frames), counted in `meters.dropped_out`. Latency must not grow: a device that
/// starts pulling late (PulseAudio's null sink waits up to a second before its
/// first request) would otherwise leave everything played that much late, and
/// hide any later stall from the underrun count.
pub fn bound_queue(cons: &mut HeapCons<f32>, most: usize, channels: usize, meters: &Meters) {
    let queued = cons.occupied_len();
    if queued > most {
        let excess = (queued - most).div_ceil(channels) * channels;
        let dropped = cons.skip(excess.min(queued));
        meters.dropped_out.fetch_add(dropped as u64, Relaxed);
    }
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

/// Every device of every host that answers, inputs first, for the device picker.
pub fn list_devices() -> Vec<crate::bus::DeviceEntry> {
    use crate::bus::{DeviceEntry, DeviceSide};
    super::alsa_quiet::install();
    let mut out = Vec::new();
    for input in [true, false] {
        for id in cpal::ALL_HOSTS.iter().copied() {
            if !cpal::available_hosts().contains(&id) || hosts::with_host(id, |_| ()).is_err() {
                continue;
            }
            for d in hosts::devices(id, input) {
                let cfg = if input {
                    d.default_input_config()
                } else {
                    d.default_output_config()
                };
                let config = match cfg {
                    Ok(c) => format!(
                        "{} Hz, {} ch, {}",
                        c.sample_rate(),
                        c.channels(),
                        c.sample_format()
                    ),
                    Err(e) => format!("no default config ({e})"),
                };
                out.push(DeviceEntry {
                    side: if input {
                        DeviceSide::Microphone
                    } else {
                        DeviceSide::Speaker
                    },
                    host: id.name().to_string(),
                    selector: selector(id, &d),
                    name: device_name(&d),
                    config,
                });
            }
        }
    }
    out
}

/// `assistant devices`: every host cpal offers here, its devices and their default
/// configs, with the selector that picks each one, as text.
pub fn describe_devices() -> String {
    let mut out = String::new();
    let mut any = false;
    super::alsa_quiet::install();
    let default = hosts::default_host_id();
    for id in cpal::ALL_HOSTS.iter().copied() {
        let mark = if id == default { " (default)" } else { "" };
        out += &format!("host {}{mark}\n", id.name());
        if let Err(e) = hosts::with_host(id, |_| ()) {
            out += &format!("  (unavailable: {e})\n");
            continue;
        }
        for input in [true, false] {
            let kind = if input { "input" } else { "output" };
            let devs = hosts::devices(id, input);
            out += &format!("  {kind} devices:\n");
            if devs.is_empty() {
                out += "    (none)\n";
            }
            for (i, d) in devs.iter().enumerate() {
                // ALSA's `null` PCM opens but is no sound card.
                any |= !device_name(d).starts_with("Discard all samples");
                let cfg = if input {
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
                out += &format!(
                    "    {i}: {}  [{}]  {cfg}\n",
                    device_name(d),
                    selector(id, d)
                );
            }
        }
    }
    out += "\nPick with --input-device / --output-device: HOST:DEVICE as in brackets (any host),\nor an index or a name on the default host.\n";
    if !any {
        out += "\nNo sound hardware found on this machine (only virtual devices, if any). Talk through files with\n--input FILE.wav and --output FILE.wav, or start a sound server (PulseAudio or PipeWire) and pick its devices\nwith --input-device/--output-device HOST:DEVICE.\n";
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
    fn the_playback_queue_is_bounded_in_whole_frames() {
        let meters = Meters::default();
        let (mut prod, mut cons) = HeapRb::<f32>::new(1000).split();
        let frames: Vec<f32> = (0..300).map(|i| (i / 2) as f32).collect();
        prod.push_slice(&frames);
        bound_queue(&mut cons, 400, 2, &meters);
        assert_eq!(meters.dropped_out.load(Relaxed), 0, "within the bound");
        bound_queue(&mut cons, 101, 2, &meters);
        assert_eq!(cons.occupied_len(), 100, "whole stereo frames dropped");
        assert_eq!(meters.dropped_out.load(Relaxed), 200);
        let mut next = [0.0; 2];
        cons.pop_slice(&mut next);
        assert_eq!(next, [100.0, 100.0], "the oldest went, frames stay aligned");
    }

    #[test]
    fn stream_errors_are_counted_by_kind() {
        let m = Meters::default();
        stream_error(&m, false, ErrorKind::Xrun);
        assert_eq!((m.xruns_out(), m.errors_out.lost.load(Relaxed)), (1, 0));
        stream_error(&m, false, ErrorKind::StreamInvalidated);
        stream_error(&m, true, ErrorKind::DeviceBusy);
        assert_eq!(m.errors_out.lost.load(Relaxed), 1);
        assert_eq!(
            kind_from_code(m.errors_out.last_kind.load(Relaxed)),
            Some(ErrorKind::StreamInvalidated)
        );
        assert_eq!(m.errors_in.other.load(Relaxed), 1);
        assert_eq!(m.xruns_in(), 0);
        for k in KINDS {
            assert_eq!(kind_from_code(kind_code(k)), Some(k));
        }
        assert_eq!(kind_from_code(0), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn selections_name_a_host_or_not() {
        assert_eq!(
            parse_selection("pulseaudio:nullsink.monitor"),
            (Some(HostId::PulseAudio), "nullsink.monitor")
        );
        assert_eq!(
            parse_selection("ALSA:default"),
            (Some(HostId::Alsa), "default")
        );
        // ALSA's own names keep their colons; plain names and indexes stay plain.
        assert_eq!(
            parse_selection("hw:CARD=PCH,DEV=0"),
            (None, "hw:CARD=PCH,DEV=0")
        );
        assert_eq!(parse_selection("2"), (None, "2"));
        assert_eq!(parse_selection("USB Headset"), (None, "USB Headset"));
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
