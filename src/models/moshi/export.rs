//! `assistant export-demo DIR [--q8|--bf16]`: the demo model in the official layout.

use super::config::{self, LM_CONFIG_FILE, MIMI_CONFIG_FILE};
use super::demo::{random_model, DEMO_TOKENIZER, DEMO_WEIGHT_SEED};
use super::files::{LM_GGUF, LM_SAFETENSORS, MIMI_FILE, TOKENIZER_FILE};
use super::random_init::TensorMap;
use anyhow::{Context, Result};
use moshi::candle::quantized::{gguf_file, GgmlDType, QTensor};
use moshi::candle::{DType, Device};
use std::collections::HashMap;
use std::path::Path;

/// Lm weight formats of the official candle checkpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LmFormat {
    F32,
    Bf16,
    Q8,
}

/// Write the demo model into `dir` in the official layout, its LM in `format`.
pub fn export_demo(dir: &Path, format: LmFormat) -> Result<()> {
    write_demo(dir, format)
}

pub fn write_demo(dir: &Path, format: LmFormat) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let cfg = config::demo();
    let m = random_model(&cfg, DEMO_WEIGHT_SEED, &Device::Cpu)?;
    save_safetensors(&m.mimi_tensors, DType::F32, &dir.join(MIMI_FILE))?;
    // One LM file per directory, so loading is never ambiguous.
    let (write, stale) = match format {
        LmFormat::Q8 => (LM_GGUF, LM_SAFETENSORS),
        _ => (LM_SAFETENSORS, LM_GGUF),
    };
    let _ = std::fs::remove_file(dir.join(stale));
    match format {
        LmFormat::F32 => save_safetensors(&m.lm_tensors, DType::F32, &dir.join(write))?,
        LmFormat::Bf16 => save_safetensors(&m.lm_tensors, DType::BF16, &dir.join(write))?,
        LmFormat::Q8 => save_q8_gguf(&m.lm_tensors, &dir.join(write))?,
    }
    std::fs::write(dir.join(TOKENIZER_FILE), DEMO_TOKENIZER)?;
    let lm_toml = config::lm_to_toml(&cfg.lm).map_err(anyhow::Error::msg)?;
    std::fs::write(dir.join(LM_CONFIG_FILE), lm_toml)?;
    let mimi_toml = toml::to_string(&config::demo_mimi())?;
    let header =
        "# The demo model's tiny Mimi; fields absent here are those of the published Mimi.\n";
    std::fs::write(dir.join(MIMI_CONFIG_FILE), format!("{header}{mimi_toml}"))?;
    Ok(())
}

fn save_safetensors(tensors: &TensorMap, dtype: DType, path: &Path) -> Result<()> {
    let converted = tensors
        .iter()
        .map(|(k, v)| Ok((k.clone(), v.to_dtype(dtype)?)))
        .collect::<Result<HashMap<String, _>>>()?;
    moshi::candle::safetensors::save(&converted, path)
        .with_context(|| format!("writing {}", path.display()))
}

/// Quantize as candle's `tensor-tools quantize` made the official `model.q8.gguf`:
/// 2-D tensors whose rows are whole Q8_0 blocks become Q8_0, everything else stays f32.
fn save_q8_gguf(tensors: &TensorMap, path: &Path) -> Result<()> {
    let mut f = std::io::BufWriter::new(
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
    );
    write_q8_gguf(tensors, &mut f).with_context(|| format!("writing {}", path.display()))?;
    use std::io::Write;
    f.flush()?;
    Ok(())
}

/// `save_q8_gguf` to any writer (the benchmark builds a GGUF in memory).
pub fn write_q8_gguf<W: std::io::Write + std::io::Seek>(
    tensors: &TensorMap,
    w: &mut W,
) -> Result<()> {
    let block = GgmlDType::Q8_0.block_size();
    let q = tensors
        .iter()
        .map(|(k, t)| {
            let dt = if t.rank() == 2 && t.dim(1)? % block == 0 {
                GgmlDType::Q8_0
            } else {
                GgmlDType::F32
            };
            Ok((k.as_str(), QTensor::quantize(t, dt)?))
        })
        .collect::<Result<Vec<_>>>()?;
    let refs: Vec<(&str, &QTensor)> = q.iter().map(|(k, t)| (*k, t)).collect();
    gguf_file::write(w, &[], &refs)?;
    Ok(())
}
