//! Var builders for `PlacedLm` from the LM file: what goes to the host, what to the device.
//!
//! candle's quantized `VarBuilder` can only be built from a whole GGUF file or buffer, and
//! puts every tensor on one device. So for a split load each home gets an in-memory GGUF
//! holding only its tensors (device layers renumbered), copied straight from the file:
//! the device never sees the embedding tables, not even for a moment.

use super::placed_lm::LmSources;
use super::placement::{Home, Placement};
use crate::engine::events::{LoadProgress, ProgressUnit};
use moshi::candle::quantized::{gguf_file, GgmlDType};
use moshi::candle::{DType, Device, Result, Shape, Tensor};
use moshi::candle_nn::var_builder::SimpleBackend;
use moshi::candle_nn::{Init, VarBuilder};
use moshi::nn::MaybeQuantizedVarBuilder;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::time::Instant;

type QVarBuilder = candle_transformers::quantized_var_builder::VarBuilder;

/// The type ids of the GGUF format (ggml's `ggml_type`).
fn ggml_type_id(dt: GgmlDType) -> u32 {
    match dt {
        GgmlDType::F32 => 0,
        GgmlDType::F16 => 1,
        GgmlDType::Q4_0 => 2,
        GgmlDType::Q4_1 => 3,
        GgmlDType::Q5_0 => 6,
        GgmlDType::Q5_1 => 7,
        GgmlDType::Q8_0 => 8,
        GgmlDType::Q8_1 => 9,
        GgmlDType::Q2K => 10,
        GgmlDType::Q3K => 11,
        GgmlDType::Q4K => 12,
        GgmlDType::Q5K => 13,
        GgmlDType::Q6K => 14,
        GgmlDType::Q8K => 15,
        GgmlDType::BF16 => 30,
    }
}

const ALIGN: usize = 32;

fn pad(buf: &mut Vec<u8>) {
    buf.resize(buf.len().div_ceil(ALIGN) * ALIGN, 0);
}

/// Bytes of a tensor's data in the file.
pub fn stored_bytes(info: &gguf_file::TensorInfo) -> usize {
    info.shape.elem_count() / info.ggml_dtype.block_size() * info.ggml_dtype.type_size()
}

/// A GGUF (version 2, as candle writes) holding `tensors` (file name, name in the buffer),
/// their data read from `file`. `read` counts the data bytes copied, for progress.
fn subset_gguf(file: &mut std::fs::File, content: &gguf_file::Content, tensors: &[(&str, String)], read: &mut dyn FnMut(u64)) -> std::io::Result<Vec<u8>> {
    let infos: Vec<_> = tensors.iter().map(|(src, _)| &content.tensor_infos[*src]).collect();
    let data_len: usize = infos.iter().map(|i| stored_bytes(i).div_ceil(ALIGN) * ALIGN).sum();
    let mut buf = Vec::with_capacity(data_len + 64 * 1024);
    buf.extend_from_slice(&0x4655_4747u32.to_le_bytes());
    buf.extend_from_slice(&2u32.to_le_bytes());
    buf.extend_from_slice(&(tensors.len() as u64).to_le_bytes());
    buf.extend_from_slice(&0u64.to_le_bytes());
    let mut offset = 0u64;
    for ((_, name), info) in tensors.iter().zip(&infos) {
        buf.extend_from_slice(&(name.len() as u64).to_le_bytes());
        buf.extend_from_slice(name.as_bytes());
        let dims = info.shape.dims();
        buf.extend_from_slice(&(dims.len() as u32).to_le_bytes());
        for &d in dims.iter().rev() {
            buf.extend_from_slice(&(d as u64).to_le_bytes());
        }
        buf.extend_from_slice(&ggml_type_id(info.ggml_dtype).to_le_bytes());
        buf.extend_from_slice(&offset.to_le_bytes());
        offset += (stored_bytes(info).div_ceil(ALIGN) * ALIGN) as u64;
    }
    pad(&mut buf);
    for info in infos {
        let n = stored_bytes(info);
        file.seek(SeekFrom::Start(content.tensor_data_offset + info.offset))?;
        let start = buf.len();
        buf.resize(start + n, 0);
        file.read_exact(&mut buf[start..])?;
        read(n as u64);
        pad(&mut buf);
    }
    Ok(buf)
}

/// The LM's var builders from a GGUF file. On the CPU with no split to make, candle reads
/// the file directly; otherwise each home gets its own buffer.
pub fn gguf_sources(path: &Path, placement: Placement, device: &Device, stage: &str, progress: &mut dyn FnMut(LoadProgress)) -> std::result::Result<LmSources<'static>, String> {
    let name = path.display();
    let start = Instant::now();
    if device.is_cpu() && placement.host_layers == 0 {
        super::files::read_through(path, stage, progress).map_err(|e| format!("{name}: {e}"))?;
        let vb = QVarBuilder::from_gguf(path, device).map_err(|e| format!("{name}: {e}"))?;
        let vb = MaybeQuantizedVarBuilder::Quantized(vb);
        return Ok(LmSources { host: vb.clone(), device: vb, placement });
    }
    let mut file = std::fs::File::open(path).map_err(|e| format!("{name}: {e}"))?;
    let content = gguf_file::Content::read(&mut file).map_err(|e| format!("{name}: {e}"))?;
    let (mut host, mut dev) = (Vec::new(), Vec::new());
    for src in content.tensor_infos.keys() {
        match placement.home(src) {
            (Home::Host, n) => host.push((src.as_str(), n.into_owned())),
            (Home::Device, n) => dev.push((src.as_str(), n.into_owned())),
        }
    }
    // Progress counts the tensor data copied, which is all of the file but its header.
    let total: u64 = content.tensor_infos.values().map(|i| stored_bytes(i) as u64).sum();
    let mut report = |done: u64| progress(LoadProgress { stage: stage.into(), done, total, unit: ProgressUnit::Bytes, elapsed_s: start.elapsed().as_secs_f64() });
    let mut done = 0u64;
    report(0);
    let mut count = |n: u64| {
        done += n;
        report(done);
    };
    let mut build = |tensors: &[(&str, String)], on: &Device| -> std::result::Result<QVarBuilder, String> {
        let buf = subset_gguf(&mut file, &content, tensors, &mut count).map_err(|e| format!("{name}: {e}"))?;
        QVarBuilder::from_gguf_buffer(&buf, on).map_err(|e| format!("{name}: {e}"))
    };
    let host = build(&host, &Device::Cpu)?;
    let dev = build(&dev, device)?;
    Ok(LmSources { host: MaybeQuantizedVarBuilder::Quantized(host), device: MaybeQuantizedVarBuilder::Quantized(dev), placement })
}

/// Dense weights (safetensors, or the demo's random ones): the host reads f32 on the CPU,
/// the device reads its tensors renamed back to the file's names.
pub fn dense_sources(vb: VarBuilder<'static>, placement: Placement) -> LmSources<'static> {
    let host = vb.clone().set_device(Device::Cpu).set_dtype(DType::F32);
    let device = if placement.host_layers == 0 {
        vb
    } else {
        let (dtype, dev) = (vb.dtype(), vb.device().clone());
        VarBuilder::from_backend(Box::new(DeviceNames { inner: vb, placement }), dtype, dev)
    };
    LmSources { host: MaybeQuantizedVarBuilder::Real(host), device: MaybeQuantizedVarBuilder::Real(device), placement }
}

/// Serves the device's names (layers renumbered from 0) from the file's names.
struct DeviceNames {
    inner: VarBuilder<'static>,
    placement: Placement,
}

impl SimpleBackend for DeviceNames {
    fn get(&self, s: Shape, name: &str, init: Init, dtype: DType, dev: &Device) -> Result<Tensor> {
        self.inner.clone().set_device(dev.clone()).get_with_hints_dtype(s, &self.placement.device_source(name), init, dtype)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> Result<Tensor> {
        self.inner.clone().set_device(dev.clone()).get_unchecked_dtype(&self.placement.device_source(name), dtype)
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.inner.contains_tensor(&self.placement.device_source(name))
    }
}
