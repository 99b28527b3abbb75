//! Kyutai's STT with quantized weights: `assistant convert SRC DST --q8|--q4` writes an
//! STT checkpoint's LM as GGUF (the names unchanged, as candle's `tensor-tools quantize`
//! made moshiko's `model.q8.gguf`), and the loader reads it through the `moshi` crate's
//! quantized LM path. The Mimi stays f32 safetensors.

use crate::models::moshi::config::MIMI_CONFIG_FILE;
use crate::models::moshi::files::TensorHeader;
use crate::models::moshi::gguf_write::{header, GgufEntry, ALIGN};
use crate::models::moshi::ModelLoadError;
use crate::models::speech::config::SttConfig;
use crate::models::speech::files::{self as files, CONFIG_FILE, STT_REPO};
use anyhow::{bail, Context, Result};
use moshi::candle::quantized::{gguf_file, GgmlDType, QTensor};
use moshi::candle::{DType, Device, Shape, Tensor};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

/// The quantized LM formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SttFormat {
    /// q8_0 for every matrix.
    Q8,
    /// q4_K for the transformer's and the text head's matrices (q4_0 where rows are not
    /// whole 256-blocks); q8_0 for the embedding tables, which the crate dequantizes to
    /// f32 at load anyway, so 4 bits would cost accuracy and save no memory.
    Q4,
}

impl SttFormat {
    /// The LM file a conversion writes, named in the `config.json` it writes.
    pub fn file_name(self) -> &'static str {
        match self {
            Self::Q8 => "model.q8.gguf",
            Self::Q4 => "model.q4.gguf",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Self::Q8 => "q8",
            Self::Q4 => "q4",
        }
    }

    /// The GGML type of one tensor; f32 for vectors and rows that are not whole blocks.
    pub fn dtype(self, name: &str, dims: &[usize]) -> GgmlDType {
        let row = match dims {
            [_, r] => *r,
            _ => return GgmlDType::F32,
        };
        let embedding = name.starts_with("emb.") || name.starts_with("text_emb");
        let fits = |t: GgmlDType| row.is_multiple_of(t.block_size());
        let wanted: &[GgmlDType] = match (self, embedding) {
            (Self::Q4, false) => &[GgmlDType::Q4K, GgmlDType::Q4_0],
            _ => &[GgmlDType::Q8_0],
        };
        wanted
            .iter()
            .copied()
            .find(|t| fits(*t))
            .unwrap_or(GgmlDType::F32)
    }
}

/// Write a GGUF of `tensors` (name, shape), fetching each one's f32 values in turn so
/// that one tensor at a time is in memory. Returns the bytes written.
pub fn write_gguf(
    tensors: &[(String, Vec<usize>)],
    format: SttFormat,
    mut load: impl FnMut(&str, &[usize]) -> Result<Tensor>,
    w: &mut dyn Write,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<u64> {
    let entries: Vec<GgufEntry> = tensors
        .iter()
        .map(|(name, dims)| GgufEntry {
            name,
            dims,
            dtype: format.dtype(name, dims),
        })
        .collect();
    let head = header(&entries);
    w.write_all(&head)?;
    let mut written = head.len() as u64;
    for (i, e) in entries.iter().enumerate() {
        let t = load(e.name, e.dims)?.to_dtype(DType::F32)?.contiguous()?;
        if t.dims() != e.dims {
            bail!(
                "`{}` is {:?} where {:?} was planned",
                e.name,
                t.dims(),
                e.dims
            );
        }
        let q = QTensor::quantize(&t, e.dtype)?;
        let data = q.data()?;
        w.write_all(&data)?;
        let pad = (data.len() as u64).div_ceil(ALIGN) * ALIGN - data.len() as u64;
        w.write_all(&vec![0u8; pad as usize])?;
        written += data.len() as u64 + pad;
        progress(i + 1, entries.len());
    }
    Ok(written)
}

/// What a conversion wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct SttConverted {
    pub file: &'static str,
    pub tensors: usize,
    pub lm_bytes: u64,
}

/// Whether `dir` holds a Kyutai STT checkpoint (its config.json has the STT's keys).
pub fn is_stt_checkpoint(dir: &Path) -> bool {
    files::stt_config(dir).is_ok()
}

/// Convert the STT checkpoint in `src` (safetensors LM, any float dtype) into `dst`
/// with its LM as `format` GGUF; the Mimi, the tokenizer and a `config.json` naming
/// the new LM file come along.
pub fn convert_stt(
    src: &Path,
    dst: &Path,
    format: SttFormat,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<SttConverted> {
    let cfg =
        files::stt_config(src).map_err(|e| anyhow::anyhow!("{} ({})", e.message, e.remedy))?;
    let lm_path = src.join(cfg.lm_file());
    if cfg.lm_file().ends_with(".gguf") {
        bail!(
            "{}: already quantized; convert the safetensors checkpoint of {STT_REPO}",
            lm_path.display()
        );
    }
    let headers = files::check_weights(src, cfg.lm_file(), STT_REPO)
        .map_err(|e| anyhow::anyhow!("{} ({})", e.message, e.remedy))?;
    if dst.join(CONFIG_FILE).exists() {
        bail!(
            "{}: already holds a checkpoint; give an empty or new directory",
            dst.display()
        );
    }
    std::fs::create_dir_all(dst).with_context(|| format!("creating {}", dst.display()))?;
    let tensors: Vec<(String, Vec<usize>)> = headers
        .iter()
        .map(|(k, h)| (k.clone(), h.shape.clone()))
        .collect();
    // SAFETY: the checkpoint is read-only for the conversion's length, as for a load.
    let st = unsafe { moshi::candle::safetensors::MmapedSafetensors::new(&lm_path)? };
    let out = dst.join(format.file_name());
    let partial = dst.join(format!("{}.partial", format.file_name()));
    let mut w = std::io::BufWriter::new(
        std::fs::File::create(&partial)
            .with_context(|| format!("creating {}", partial.display()))?,
    );
    let lm_bytes = write_gguf(
        &tensors,
        format,
        |name, _| Ok(st.load(name, &Device::Cpu)?),
        &mut w,
        progress,
    )
    .with_context(|| format!("converting {}", lm_path.display()))?;
    w.flush()?;
    drop(w);
    std::fs::rename(&partial, &out)?;
    for f in [
        cfg.mimi_name.as_str(),
        cfg.tokenizer_name.as_str(),
        MIMI_CONFIG_FILE,
    ] {
        let from = src.join(f);
        if from.is_file() {
            std::fs::copy(&from, dst.join(f))
                .with_context(|| format!("copying {}", from.display()))?;
        }
    }
    // The source's config.json with its LM file renamed; other keys kept as they are.
    let text = std::fs::read_to_string(src.join(CONFIG_FILE))?;
    let mut json: serde_json::Value = serde_json::from_str(&text)?;
    json["moshi_name"] = format.file_name().into();
    std::fs::write(dst.join(CONFIG_FILE), serde_json::to_string_pretty(&json)?)?;
    Ok(SttConverted {
        file: format.file_name(),
        tensors: tensors.len(),
        lm_bytes,
    })
}

/// The tensor table of a GGUF LM, as the layout checks read a safetensors header.
pub fn gguf_headers(path: &Path) -> Result<BTreeMap<String, TensorHeader>, ModelLoadError> {
    let bad = |e: String| {
        ModelLoadError::new(
            format!("{}: not a readable GGUF file: {e}", path.display()),
            format!(
                "convert the checkpoint again (`assistant convert SRC DST --q8`) from {STT_REPO}"
            ),
        )
    };
    let mut f = std::fs::File::open(path).map_err(|e| bad(e.to_string()))?;
    let content = gguf_file::Content::read(&mut f).map_err(|e| bad(e.to_string()))?;
    let len = f.metadata().map_err(|e| bad(e.to_string()))?.len();
    let mut out = BTreeMap::new();
    for (name, info) in &content.tensor_infos {
        let dims = info.shape.dims().to_vec();
        let n: usize = dims.iter().product();
        let end = content.tensor_data_offset
            + info.offset
            + (n / info.ggml_dtype.block_size() * info.ggml_dtype.type_size()) as u64;
        if end > len {
            return Err(bad(format!(
                "`{name}` ends at byte {end} but the file has {len} (a cut download or copy)"
            )));
        }
        out.insert(
            name.clone(),
            TensorHeader {
                dtype: format!("{:?}", info.ggml_dtype),
                shape: dims,
            },
        );
    }
    Ok(out)
}

/// Load a GGUF LM onto `device` as the crate's quantized var builder.
pub fn gguf_var_builder(
    path: &Path,
    device: &Device,
) -> moshi::candle::Result<candle_transformers::quantized_var_builder::VarBuilder> {
    candle_transformers::quantized_var_builder::VarBuilder::from_gguf(path, device)
}

/// Records the name and shape of every tensor a model asks for; returns a zero scalar
/// broadcast to the shape (no memory), so building a 1B model costs nothing.
type Shapes = std::sync::Arc<std::sync::Mutex<Vec<(String, Vec<usize>)>>>;
struct ShapeRecorder(Shapes);

impl moshi::candle_nn::var_builder::SimpleBackend for ShapeRecorder {
    fn get(
        &self,
        s: Shape,
        name: &str,
        _: moshi::candle_nn::Init,
        dtype: DType,
        dev: &Device,
    ) -> moshi::candle::Result<Tensor> {
        if let Ok(mut v) = self.0.lock() {
            if !v.iter().any(|(n, _)| n == name) {
                v.push((name.to_string(), s.dims().to_vec()));
            }
        }
        Tensor::zeros((), dtype, dev)?.broadcast_as(s)
    }
    fn get_unchecked(&self, name: &str, _: DType, _: &Device) -> moshi::candle::Result<Tensor> {
        moshi::candle::bail!("a shape is needed for {name}")
    }
    fn contains_tensor(&self, name: &str) -> bool {
        name.ends_with("weight")
    }
}

/// The names and shapes of an STT LM's tensors.
pub fn lm_tensors(cfg: &moshi::lm::Config) -> Result<Vec<(String, Vec<usize>)>> {
    let made = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let vb = moshi::candle_nn::VarBuilder::from_backend(
        Box::new(ShapeRecorder(made.clone())),
        DType::F32,
        Device::Cpu,
    );
    moshi::lm::LmModel::new(cfg, moshi::nn::MaybeQuantizedVarBuilder::Real(vb))?;
    let v = std::mem::take(&mut *made.lock().map_err(|_| anyhow::anyhow!("poisoned"))?);
    Ok(v)
}

/// An STT LM of `cfg`'s size with random weights quantized as `format`, built a tensor
/// at a time (the f32 model is never whole in memory), for timing a step.
pub fn random_quantized_lm(
    cfg: &SttConfig,
    heads: moshi::lm::ExtraHeadsConfig,
    format: SttFormat,
) -> Result<moshi::lm::LmModel> {
    let lm_cfg = cfg.lm(Some(heads));
    let tensors = lm_tensors(&lm_cfg)?;
    let mut buf = Vec::new();
    write_gguf(
        &tensors,
        format,
        |name, dims| {
            let std = if name.contains("norm") {
                return Ok(Tensor::ones(dims, DType::F32, &Device::Cpu)?);
            } else if name.starts_with("emb.") || name.starts_with("text_emb") {
                1.0
            } else {
                1.0 / (dims.last().copied().unwrap_or(1) as f32).sqrt()
            };
            Ok(Tensor::randn(0f32, std, dims, &Device::Cpu)?)
        },
        &mut buf,
        &mut |_, _| {},
    )?;
    let vb = candle_transformers::quantized_var_builder::VarBuilder::from_gguf_buffer(
        &buf,
        &Device::Cpu,
    )?;
    drop(buf);
    Ok(moshi::lm::LmModel::new(
        &lm_cfg,
        moshi::nn::MaybeQuantizedVarBuilder::Quantized(vb),
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matrices_are_quantized_and_vectors_stay_f32() {
        use GgmlDType::*;
        assert_eq!(
            SttFormat::Q8.dtype("transformer.x.weight", &[2048, 2048]),
            Q8_0
        );
        assert_eq!(
            SttFormat::Q4.dtype("transformer.x.weight", &[2048, 2048]),
            Q4K
        );
        assert_eq!(SttFormat::Q4.dtype("transformer.x.weight", &[64, 64]), Q4_0);
        assert_eq!(SttFormat::Q4.dtype("emb.3.weight", &[2049, 2048]), Q8_0);
        assert_eq!(SttFormat::Q4.dtype("out_norm.alpha", &[1, 1, 2048]), F32);
        assert_eq!(SttFormat::Q8.dtype("x.weight", &[2048]), F32);
        assert_eq!(SttFormat::Q8.dtype("x.weight", &[6, 20]), F32);
    }
}
