//! `assistant convert SRC DST --q8`: a PersonaPlex checkpoint (PyTorch depformer names,
//! bf16, 16.7 GB) into our layout with its LM as q8 GGUF (8.9 GB), so it fits a 10-12 GB
//! card. The LM is written one tensor at a time (renamed, an 8-slice depformer widened,
//! quantized as candle's `tensor-tools quantize` made moshiko's `model.q8.gguf`), so the
//! conversion holds one tensor in memory, not the model. Mimi, the tokenizer, an
//! `lm_config.toml` (a q8 file has no PyTorch names to recognise PersonaPlex by) and the
//! `voices/` directory come along.

use crate::models::moshi::checkpoint::{inspect, lm_headers};
use crate::models::moshi::config::{self, LM_CONFIG_FILE, MIMI_CONFIG_FILE};
use crate::models::moshi::files::{LM_GGUF, MIMI_FILE, TOKENIZER_FILE};
use crate::models::moshi::gguf_write::{header, GgufEntry, ALIGN};
use crate::models::moshi::personaplex::names::{self as personaplex_names, Source};
use crate::models::moshi::personaplex::voices::VOICES_SUBDIR;
use anyhow::{bail, Context, Result};
use moshi::candle::quantized::{GgmlDType, QTensor};
use moshi::candle::{DType, Device};
use std::io::Write;
use std::path::Path;

/// What a conversion wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct Converted {
    pub tensors: usize,
    pub lm_bytes: u64,
    pub voices: usize,
}

/// q8_0 for matrices whose rows are whole blocks, f32 for the rest.
fn q8_dtype(dims: &[usize]) -> GgmlDType {
    if dims.len() == 2 && dims[1].is_multiple_of(GgmlDType::Q8_0.block_size()) {
        GgmlDType::Q8_0
    } else {
        GgmlDType::F32
    }
}

/// Convert the PersonaPlex checkpoint in `src` into `dst` with a q8 LM.
pub fn convert_personaplex_q8(
    src: &Path,
    dst: &Path,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Converted> {
    let ck = inspect(src).map_err(|e| anyhow::anyhow!("{} ({})", e.message, e.remedy))?;
    if !crate::models::moshi::personaplex::model::is_personaplex(&ck.config.lm) {
        bail!(
            "{}: not a PersonaPlex checkpoint (its depformer has {} slices for {} codebooks); convert takes nvidia/personaplex-7b-v1's files",
            src.display(),
            ck.config.lm.depformer.as_ref().map_or(0, |d| d.num_slices),
            ck.config.lm.audio_codebooks
        );
    }
    if ck.quantized {
        bail!(
            "{}: already q8 ({LM_GGUF}); nothing to convert",
            src.display()
        );
    }
    if dst.join(LM_GGUF).exists()
        || dst
            .join(crate::models::moshi::files::LM_SAFETENSORS)
            .exists()
    {
        bail!(
            "{}: already holds a model; give an empty or new directory",
            dst.display()
        );
    }
    let headers = lm_headers(&ck).map_err(|e| anyhow::anyhow!("{}", e.message))?;
    let slices = ck.config.lm.depformer.as_ref().map_or(0, |d| d.num_slices);
    let (renamed, plan) = if personaplex_names::is_pytorch_layout(&headers) {
        personaplex_names::plan(&headers, slices)
            .map_err(|e| anyhow::anyhow!("{}: {e}", ck.lm_file.display()))?
    } else {
        let plan = headers
            .keys()
            .map(|k| (k.clone(), Source::Copy(k.clone())))
            .collect();
        (headers.clone(), plan)
    };
    std::fs::create_dir_all(dst).with_context(|| format!("creating {}", dst.display()))?;

    // SAFETY: the checkpoint is read-only for the conversion's length, as for a load.
    let st = unsafe { moshi::candle::safetensors::MmapedSafetensors::new(&ck.lm_file)? };
    let dims: Vec<(String, Vec<usize>)> = renamed
        .iter()
        .map(|(k, h)| (k.clone(), h.shape.clone()))
        .collect();
    let entries: Vec<GgufEntry> = dims
        .iter()
        .map(|(name, d)| GgufEntry {
            name,
            dims: d,
            dtype: q8_dtype(d),
        })
        .collect();
    let out_path = dst.join(LM_GGUF);
    let partial = dst.join(format!("{LM_GGUF}.partial"));
    let mut w = std::io::BufWriter::new(
        std::fs::File::create(&partial)
            .with_context(|| format!("creating {}", partial.display()))?,
    );
    w.write_all(&header(&entries))?;
    for (i, e) in entries.iter().enumerate() {
        let t = match &plan[e.name] {
            Source::Copy(n) => st.load(n, &Device::Cpu)?,
            Source::Chunk { name, index, rows } => {
                st.load(name, &Device::Cpu)?
                    .narrow(0, index * rows, *rows)?
            }
        };
        let t = t.to_dtype(DType::F32)?.contiguous()?;
        if t.dims() != e.dims {
            bail!(
                "{}: `{}` is {:?} where {:?} was planned",
                ck.lm_file.display(),
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
        progress(i + 1, entries.len());
    }
    w.flush()?;
    drop(w);
    std::fs::rename(&partial, &out_path)?;

    for f in [MIMI_FILE, TOKENIZER_FILE, MIMI_CONFIG_FILE] {
        let from = src.join(f);
        if from.is_file() {
            std::fs::copy(&from, dst.join(f))
                .with_context(|| format!("copying {}", from.display()))?;
        }
    }
    let lm_toml = config::lm_to_toml(&ck.config.lm).map_err(anyhow::Error::msg)?;
    std::fs::write(
        dst.join(LM_CONFIG_FILE),
        format!(
            "# PersonaPlex ({} depformer slices), converted from {}.\n{lm_toml}",
            slices,
            src.display()
        ),
    )?;
    let mut voices = 0;
    let vsrc = src.join(VOICES_SUBDIR);
    if vsrc.is_dir() {
        let vdst = dst.join(VOICES_SUBDIR);
        std::fs::create_dir_all(&vdst)?;
        for e in std::fs::read_dir(&vsrc)?.flatten() {
            if e.path().is_file() {
                std::fs::copy(e.path(), vdst.join(e.file_name()))?;
                voices += 1;
            }
        }
    }
    Ok(Converted {
        tensors: entries.len(),
        lm_bytes: std::fs::metadata(&out_path)?.len(),
        voices,
    })
}
