//! Checkpoint files: names in the official layout, integrity checks that name the file
//! and the tensor, and the meter that counts a load's real bytes and polls its cancel flag.

use super::error::ModelLoadError;
use crate::bus::{Cancel, LoadProgress, ProgressUnit};
use moshi::candle::quantized::gguf_file;
use std::io::Read;
use std::path::Path;
use std::time::{Duration, Instant};

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

/// Progress of one load stage, counted by the load as it goes (bytes of tensor data
/// read, or downloaded), and the cancel flag polled at every step. Reports go out at most
/// every `REPORT_EVERY`, and always at the start and when the stage completes.
pub struct Meter<'a> {
    progress: &'a mut dyn FnMut(LoadProgress),
    cancel: &'a Cancel,
    stage: String,
    total: u64,
    done: u64,
    start: Instant,
    last: Instant,
}

pub const REPORT_EVERY: Duration = Duration::from_millis(50);

impl<'a> Meter<'a> {
    /// A stage of `total` bytes; reports 0 at once (unless already cancelled).
    pub fn new(
        stage: impl Into<String>,
        total: u64,
        progress: &'a mut dyn FnMut(LoadProgress),
        cancel: &'a Cancel,
    ) -> Result<Self, ModelLoadError> {
        let now = Instant::now();
        let mut m = Self {
            progress,
            cancel,
            stage: stage.into(),
            total,
            done: 0,
            start: now,
            last: now,
        };
        m.check()?;
        m.report();
        Ok(m)
    }

    /// `n` more bytes are in; `Err` (cancelled) when the flag is set.
    pub fn add(&mut self, n: u64) -> Result<(), ModelLoadError> {
        self.done += n;
        self.check()?;
        if self.done >= self.total || self.last.elapsed() >= REPORT_EVERY {
            self.report();
        }
        Ok(())
    }

    /// While waiting on something long: stop if cancelled, else say we are still here
    /// (the engine handles its commands when progress comes).
    pub fn tick(&mut self) -> Result<(), ModelLoadError> {
        self.check()?;
        if self.last.elapsed() >= REPORT_EVERY {
            self.report();
        }
        Ok(())
    }

    /// Stop here if the load was cancelled.
    pub fn check(&self) -> Result<(), ModelLoadError> {
        if self.cancel.is_cancelled() {
            return Err(ModelLoadError::cancelled());
        }
        Ok(())
    }

    fn report(&mut self) {
        self.last = Instant::now();
        (self.progress)(LoadProgress {
            stage: self.stage.clone(),
            done: self.done,
            total: self.total.max(self.done),
            unit: ProgressUnit::Bytes,
            elapsed_s: self.start.elapsed().as_secs_f64(),
        });
    }
}

impl TensorHeader {
    /// Bytes of data the tensor takes in its file (0 for a dtype we do not know).
    pub fn bytes(&self) -> u64 {
        let elems: u64 = self.shape.iter().map(|&d| d as u64).product();
        super::placement::Stored::from_header_dtype(&self.dtype).map_or(0, |s| s.bytes(elems))
    }
}
