//! Var builders for `PlacedLm` from the LM file: what goes to the host, what to the device.
//!
//! candle's quantized `VarBuilder` can only be built from a whole GGUF file or buffer, and
//! puts every tensor on one device. So for a split load each part gets an in-memory GGUF
//! holding only its tensors (layers renumbered), copied straight from the file: the
//! device never sees the embedding tables, not even for a moment, and the host never
//! holds more than one part's copy. The CPU loads the same way: the copy is the one read
//! of the file, so it counts the load's progress and can stop between tensors.

use super::error::{checkpoint_error, ModelLoadError};
use super::files::{Meter, REPORT_EVERY};
use super::gguf_write::{self, GgufEntry};
use super::placed_lm::LmSources;
use super::placement::{layer_name, layer_of, Home, Placement};
use crate::bus::{Cancel, LoadProgress};
use moshi::candle::quantized::gguf_file;
use moshi::candle::{DType, Device, Result, Shape, Tensor};
use moshi::candle_nn::var_builder::SimpleBackend;
use moshi::candle_nn::{Init, VarBuilder};
use moshi::nn::MaybeQuantizedVarBuilder;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::mpsc::RecvTimeoutError;

type QVarBuilder = candle_transformers::quantized_var_builder::VarBuilder;

/// A GGUF holding `tensors` (file name, name in the buffer), their data read from
/// `file`; the meter counts the data bytes copied and stops the copy when cancelled.
fn subset_gguf(
    file: &mut std::fs::File,
    content: &gguf_file::Content,
    tensors: &[(&str, String)],
    meter: &mut Meter,
) -> std::result::Result<Vec<u8>, Stop> {
    let infos: Vec<_> = tensors
        .iter()
        .map(|(src, _)| &content.tensor_infos[*src])
        .collect();
    let entries: Vec<_> = tensors
        .iter()
        .zip(&infos)
        .map(|((_, name), i)| GgufEntry {
            name,
            dims: i.shape.dims(),
            dtype: i.ggml_dtype,
        })
        .collect();
    let data_len: u64 = entries.iter().map(GgufEntry::padded_bytes).sum();
    let mut buf = gguf_write::header(&entries);
    buf.reserve_exact(data_len as usize);
    for (info, entry) in infos.iter().zip(&entries) {
        file.seek(SeekFrom::Start(content.tensor_data_offset + info.offset))?;
        let start = buf.len();
        buf.resize(start + entry.bytes() as usize, 0);
        file.read_exact(&mut buf[start..])?;
        meter.add(entry.bytes())?;
        gguf_write::pad(&mut buf);
    }
    Ok(buf)
}

/// Why building the sources stopped: cancelled, or a read failed.
enum Stop {
    Load(ModelLoadError),
    Io(std::io::Error),
}

impl From<ModelLoadError> for Stop {
    fn from(e: ModelLoadError) -> Self {
        Self::Load(e)
    }
}

impl From<std::io::Error> for Stop {
    fn from(e: std::io::Error) -> Self {
        Self::Io(e)
    }
}

/// The var builder of one part. candle copies a part's tensors out of the buffer in one
/// call that cannot stop: for a part of moshiko (0.9 GB) that took 2-8 s on a busy
/// 2-core CPU. Parts for the CPU are built on a helper thread while this one keeps
/// polling the cancel flag, so a cancel returns at once (the helper finishes and drops
/// its part). Parts for a GPU are built here: its context belongs to this thread.
fn build_part(
    buf: Vec<u8>,
    on: &Device,
    meter: &mut Meter,
) -> std::result::Result<Result<QVarBuilder>, ModelLoadError> {
    if !on.is_cpu() {
        let vb = QVarBuilder::from_gguf_buffer(&buf, on);
        meter.check()?;
        return Ok(vb);
    }
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("gguf-part".into())
        .spawn(move || {
            let _ = tx.send(QVarBuilder::from_gguf_buffer(&buf, &Device::Cpu));
        })
        .map_err(|e| checkpoint_error(format!("cannot start a loader thread: {e}")))?;
    loop {
        match rx.recv_timeout(REPORT_EVERY) {
            Ok(vb) => return Ok(vb),
            Err(RecvTimeoutError::Timeout) => meter.tick()?,
            Err(RecvTimeoutError::Disconnected) => {
                return Ok(Err(moshi::candle::Error::Msg(
                    "building the tensors stopped (see the log)".into(),
                )))
            }
        }
    }
}

/// Device layers per in-memory GGUF: about 0.9 GB of moshiko q8, which bounds the host
/// memory a load borrows (one whole-model buffer would be 7 GB).
pub const STACK_LAYERS: usize = 4;

/// The LM's var builders from a GGUF file: the tensors go out in GGUF buffers per part,
/// each read once from the file, with byte progress and the cancel flag polled per
/// tensor. A model whose layers share cross-attention weights keeps its layers in one
/// stack (only a split across devices needs more, and that is refused for it).
#[allow(clippy::too_many_arguments)]
pub fn gguf_sources(
    path: &Path,
    placement: Placement,
    cfg: &moshi::lm::Config,
    device: &Device,
    stage: &str,
    progress: &mut dyn FnMut(LoadProgress),
    cancel: &Cancel,
) -> std::result::Result<LmSources<'static>, ModelLoadError> {
    let layers = cfg.transformer.num_layers;
    let stack_layers = if cfg.transformer.shared_cross_attn {
        layers
    } else {
        STACK_LAYERS
    };
    split_gguf_sources(
        path,
        placement,
        layers,
        stack_layers,
        device,
        stage,
        progress,
        cancel,
    )
}

/// One buffer for the host (embeddings and host layers, names unchanged), one for the
/// device's other tensors, and one per `stack_layers` device layers (named from 0).
#[allow(clippy::too_many_arguments)]
pub fn split_gguf_sources(
    path: &Path,
    placement: Placement,
    layers: usize,
    stack_layers: usize,
    device: &Device,
    stage: &str,
    progress: &mut dyn FnMut(LoadProgress),
    cancel: &Cancel,
) -> std::result::Result<LmSources<'static>, ModelLoadError> {
    let name = path.display();
    let failed = |e: String| checkpoint_error(format!("{name}: {e}"));
    let mut file = std::fs::File::open(path).map_err(|e| failed(e.to_string()))?;
    let content = gguf_file::Content::read(&mut file).map_err(|e| failed(e.to_string()))?;
    let k = placement.host_layers.min(layers);
    let stack_layers = stack_layers.max(1);
    let device_stacks = (layers - k).div_ceil(stack_layers);
    // Which buffer each tensor goes to: 0 the host, 1 the device's others, 2.. the stacks.
    let mut parts: Vec<Vec<(&str, String)>> = vec![Vec::new(); 2 + device_stacks];
    for src in content.tensor_infos.keys() {
        match placement.home(src) {
            (Home::Host, n) => parts[0].push((src.as_str(), n.into_owned())),
            (Home::Device, n) => match layer_of(&n) {
                Some((j, tail)) => {
                    let part = parts.get_mut(2 + j / stack_layers).ok_or_else(|| {
                        failed(format!(
                            "tensor `{src}` is beyond the {layers} layers of the config"
                        ))
                    })?;
                    part.push((src.as_str(), layer_name(j % stack_layers, tail)));
                }
                None => parts[1].push((src.as_str(), n.into_owned())),
            },
        }
    }
    // Progress counts the tensor data copied, which is all of the file but its header.
    let total: u64 = content
        .tensor_infos
        .values()
        .map(|i| {
            GgufEntry {
                name: "",
                dims: i.shape.dims(),
                dtype: i.ggml_dtype,
            }
            .bytes()
        })
        .sum();
    let mut meter = Meter::new(stage, total, progress, cancel)?;
    let mut vbs = Vec::with_capacity(parts.len());
    for (i, tensors) in parts.iter().enumerate() {
        let on = if i == 0 { &Device::Cpu } else { device };
        // Each buffer lives only until its tensors are on their device.
        let buf = subset_gguf(&mut file, &content, tensors, &mut meter).map_err(|s| match s {
            Stop::Load(e) => e,
            Stop::Io(e) => failed(e.to_string()),
        })?;
        let vb = build_part(buf, on, &mut meter)?.map_err(|e| failed(e.to_string()))?;
        vbs.push(MaybeQuantizedVarBuilder::Quantized(vb));
    }
    let mut vbs = vbs.into_iter();
    let (Some(host), Some(others)) = (vbs.next(), vbs.next()) else {
        unreachable!("parts has the host's and the device's others")
    };
    let mut stacks = vec![(host.clone(), k)];
    for (i, vb) in vbs.enumerate() {
        stacks.push((vb, stack_layers.min(layers - k - i * stack_layers)));
    }
    Ok(LmSources {
        host,
        device: others,
        stacks,
        placement,
    })
}

/// Dense weights (safetensors, or the demo's random ones): the host reads f32 on the CPU,
/// the device reads its tensors renamed back to the file's names.
pub fn dense_sources(
    vb: VarBuilder<'static>,
    placement: Placement,
    layers: usize,
) -> LmSources<'static> {
    let k = placement.host_layers.min(layers);
    let host =
        MaybeQuantizedVarBuilder::Real(vb.clone().set_device(Device::Cpu).set_dtype(DType::F32));
    let device_layers = if k == 0 {
        vb.clone()
    } else {
        let (dtype, dev) = (vb.dtype(), vb.device().clone());
        VarBuilder::from_backend(
            Box::new(DeviceNames {
                inner: vb.clone(),
                placement,
            }),
            dtype,
            dev,
        )
    };
    let stacks = vec![
        (host.clone(), k),
        (MaybeQuantizedVarBuilder::Real(device_layers), layers - k),
    ];
    LmSources {
        host,
        device: MaybeQuantizedVarBuilder::Real(vb),
        stacks,
        placement,
    }
}

/// Serves the device's names (layers renumbered from 0) from the file's names.
struct DeviceNames {
    inner: VarBuilder<'static>,
    placement: Placement,
}

impl SimpleBackend for DeviceNames {
    fn get(&self, s: Shape, name: &str, init: Init, dtype: DType, dev: &Device) -> Result<Tensor> {
        self.inner
            .clone()
            .set_device(dev.clone())
            .get_with_hints_dtype(s, &self.placement.device_source(name), init, dtype)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> Result<Tensor> {
        self.inner
            .clone()
            .set_device(dev.clone())
            .get_unchecked_dtype(&self.placement.device_source(name), dtype)
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.inner
            .contains_tensor(&self.placement.device_source(name))
    }
}
