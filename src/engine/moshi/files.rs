//! Checkpoint files: names in the official layout, integrity checks that name the file
//! and the tensor, and a read-through that reports real byte progress.

use crate::bus::{LoadProgress, ProgressUnit};
use moshi::candle::quantized::gguf_file;
use std::io::Read;
use std::path::Path;
use std::time::Instant;

pub const LM_SAFETENSORS: &str = "model.safetensors";
pub const LM_GGUF: &str = "model.q8.gguf";
pub const MIMI_FILE: &str = "tokenizer-e351c8d8-checkpoint125.safetensors";
pub const TOKENIZER_FILE: &str = "tokenizer_spm_32k_3.model";

/// Dtype and shape of one tensor as a file header states it.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorHeader {
    pub dtype: String,
    pub shape: Vec<usize>,
}

/// Parse a safetensors header and check the file holds all the data it announces.
pub fn check_safetensors(
    path: &Path,
) -> Result<std::collections::BTreeMap<String, TensorHeader>, String> {
    let name = path.display();
    let mut f = std::fs::File::open(path).map_err(|e| format!("{name}: cannot open: {e}"))?;
    let len = f.metadata().map_err(|e| format!("{name}: {e}"))?.len();
    let mut n = [0u8; 8];
    f.read_exact(&mut n)
        .map_err(|_| format!("{name}: truncated or empty ({len} bytes): no safetensors header"))?;
    let n = u64::from_le_bytes(n);
    if n > 100_000_000 || 8 + n > len {
        return Err(format!(
            "{name}: truncated or corrupt: the header claims {n} bytes but the file has {len} bytes"
        ));
    }
    let mut header = vec![0u8; n as usize];
    f.read_exact(&mut header)
        .map_err(|e| format!("{name}: {e}"))?;
    let json: serde_json::Value = serde_json::from_slice(&header)
        .map_err(|e| format!("{name}: corrupt safetensors header: {e}"))?;
    let obj = json
        .as_object()
        .ok_or_else(|| format!("{name}: corrupt safetensors header: not an object"))?;
    let mut out = std::collections::BTreeMap::new();
    let mut worst: Option<(u64, &str)> = None;
    for (tname, v) in obj {
        if tname == "__metadata__" {
            continue;
        }
        let bad = || format!("{name}: corrupt header entry for tensor `{tname}`");
        let dtype = v["dtype"].as_str().ok_or_else(bad)?.to_string();
        let shape = v["shape"]
            .as_array()
            .ok_or_else(bad)?
            .iter()
            .map(|d| d.as_u64().map(|d| d as usize))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(bad)?;
        let end = v["data_offsets"][1].as_u64().ok_or_else(bad)?;
        if worst.is_none_or(|(w, _)| end > w) {
            worst = Some((end, tname.as_str()));
        }
        out.insert(tname.clone(), TensorHeader { dtype, shape });
    }
    if let Some((end, tname)) = worst {
        let expected = 8 + n + end;
        if len < expected {
            return Err(format!(
                "{name}: truncated: the file has {len} bytes but its header expects {expected} \
                 (tensor `{tname}` and maybe others are cut off)"
            ));
        }
    }
    Ok(out)
}

/// Parse a GGUF header and check the file holds every tensor's data.
pub fn check_gguf(path: &Path) -> Result<std::collections::BTreeMap<String, TensorHeader>, String> {
    let name = path.display();
    let mut f = std::fs::File::open(path).map_err(|e| format!("{name}: cannot open: {e}"))?;
    let len = f.metadata().map_err(|e| format!("{name}: {e}"))?.len();
    let content = gguf_file::Content::read(&mut f)
        .map_err(|e| format!("{name}: not a readable GGUF file ({len} bytes): {e}"))?;
    let mut out = std::collections::BTreeMap::new();
    for (tname, info) in content.tensor_infos.iter() {
        let dt = info.ggml_dtype;
        let bytes = info.shape.elem_count() / dt.block_size() * dt.type_size();
        let end = content.tensor_data_offset + info.offset + bytes as u64;
        if end > len {
            return Err(format!(
                "{name}: truncated: tensor `{tname}` ends at byte {end} but the file has {len} bytes"
            ));
        }
        out.insert(
            tname.clone(),
            TensorHeader {
                dtype: format!("{dt:?}"),
                shape: info.shape.dims().to_vec(),
            },
        );
    }
    Ok(out)
}

/// Read a file end to end, reporting bytes: the progress is real, and the page cache is
/// warm for the loader that follows (mmap for safetensors, reads for GGUF).
pub fn read_through(
    path: &Path,
    stage: &str,
    progress: &mut dyn FnMut(LoadProgress),
) -> std::io::Result<()> {
    let mut f = std::fs::File::open(path)?;
    let total = f.metadata()?.len();
    let start = Instant::now();
    let mut buf = vec![0u8; 4 << 20];
    let mut done = 0u64;
    let mut report = |done: u64| {
        progress(LoadProgress {
            stage: stage.into(),
            done,
            total,
            unit: ProgressUnit::Bytes,
            elapsed_s: start.elapsed().as_secs_f64(),
        })
    };
    report(0);
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        done += n as u64;
        report(done);
    }
    Ok(())
}
