//! Synthetic checkpoints in the official layout, at any size: random weights with the
//! scales `random_init` gives (matrices N(0, 1/fan_in), embeddings N(0, 1), norm scales
//! near 1), written a tensor at a time and generated on every core, so moshiko's 7B shape
//! (8.2 GB of q8, 15.4 GB of bf16) is written in seconds rather than the minutes candle's
//! `randn` and `quantize` take. `bench gpu` writes these on the GPU machine rather than
//! carrying them there.
//!
//! Matrix values are uniform with the wanted standard deviation (the loader and the
//! kernels do not care about the shape of the distribution); vectors (norms, biases,
//! layer scales) come from `FastRandomBackend`, which knows their roles.

use super::config::{self, MimiToml, ModelConfig, LM_CONFIG_FILE, MIMI_CONFIG_FILE};
use super::files::{LM_GGUF, LM_SAFETENSORS, MIMI_FILE, TOKENIZER_FILE};
use super::gguf_write::{self, GgufEntry};
use super::placement::Stored;
use super::random_init::{FastRandomBackend, RandomBackend};
use super::sizing::{census, TensorEntry};
use anyhow::{Context, Result};
use moshi::candle::quantized::GgmlDType;
use moshi::candle::{DType, Device};
use std::io::Write;
use std::path::Path;

/// The LM file of a checkpoint directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LmFile {
    /// `model.q8.gguf`: q8_0 matrices, f32 vectors, as Kyutai's candle q8 checkpoints.
    Q8,
    /// `model.safetensors` in bf16, as Kyutai's candle bf16 checkpoints.
    Bf16,
}

/// A model to write: its configs, and the Mimi config file to write beside it when the
/// Mimi is not the published one. With `lm_toml` false the directory has no
/// `lm_config.toml`, and loads as the official moshiko config.
pub struct Synthetic {
    pub config: ModelConfig,
    pub mimi_toml: Option<MimiToml>,
    pub lm_toml: bool,
}

/// Write a checkpoint directory; returns the LM file's size. `mimi_from` is a Mimi
/// file to link (or copy) instead of generating another.
pub fn write_checkpoint(
    dir: &Path,
    model: &Synthetic,
    lm: LmFile,
    seed: u64,
    mimi_from: Option<&Path>,
) -> Result<u64> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mimi = dir.join(MIMI_FILE);
    let _ = std::fs::remove_file(&mimi);
    match mimi_from {
        Some(src) => {
            if std::fs::hard_link(src, &mimi).is_err() {
                std::fs::copy(src, &mimi)
                    .with_context(|| format!("copying {} to {}", src.display(), mimi.display()))?;
            }
        }
        None => write_mimi(&mimi, &model.config.mimi, seed)?,
    }
    std::fs::write(
        dir.join(TOKENIZER_FILE),
        tokenizer_model(model.config.lm.text_out_vocab_size),
    )?;
    match &model.mimi_toml {
        Some(m) => std::fs::write(dir.join(MIMI_CONFIG_FILE), toml::to_string(m)?)?,
        None => remove_if_present(&dir.join(MIMI_CONFIG_FILE))?,
    }
    if model.lm_toml {
        std::fs::write(
            dir.join(LM_CONFIG_FILE),
            config::lm_to_toml(&model.config.lm).map_err(anyhow::Error::msg)?,
        )?;
    } else {
        remove_if_present(&dir.join(LM_CONFIG_FILE))?;
    }
    let (write, stale) = match lm {
        LmFile::Q8 => (LM_GGUF, LM_SAFETENSORS),
        LmFile::Bf16 => (LM_SAFETENSORS, LM_GGUF),
    };
    remove_if_present(&dir.join(stale))?;
    let path = dir.join(write);
    let file =
        std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
    let mut w = std::io::BufWriter::with_capacity(8 << 20, file);
    match lm {
        LmFile::Q8 => write_q8_gguf(&mut w, &model.config.lm, seed),
        LmFile::Bf16 => write_bf16_safetensors(&mut w, &model.config.lm, seed),
    }
    .with_context(|| format!("writing {}", path.display()))?;
    w.flush()?;
    Ok(std::fs::metadata(&path)?.len())
}

fn remove_if_present(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("removing {}", path.display()))
        }
        _ => Ok(()),
    }
}

/// A Mimi of `cfg` with seeded random weights, under the official tensor names.
pub fn write_mimi(path: &Path, cfg: &moshi::mimi::Config, seed: u64) -> Result<()> {
    let (vb, made) = RandomBackend::var_builder(seed, DType::F32, &Device::Cpu);
    moshi::mimi::Mimi::new(cfg.clone(), vb)?;
    let tensors: std::collections::HashMap<String, _> =
        std::mem::take(&mut *made.lock().map_err(|_| anyhow::anyhow!("poisoned"))?)
            .into_iter()
            .collect();
    moshi::candle::safetensors::save(&tensors, path)
        .with_context(|| format!("writing {}", path.display()))
}

/// A SentencePiece model with `pieces` pieces: `<unk>`, three control pieces, the 256
/// byte pieces, then words. Only the piece table matters to the decoder; its protobuf is
/// written by hand (ModelProto.pieces = 1; piece = 1, score = 2, type = 3).
pub fn tokenizer_model(pieces: usize) -> Vec<u8> {
    fn varint(out: &mut Vec<u8>, mut v: usize) {
        while v >= 0x80 {
            out.push((v as u8 & 0x7f) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }
    const NORMAL: u8 = 1;
    const UNKNOWN: u8 = 2;
    const CONTROL: u8 = 3;
    const BYTE: u8 = 6;
    let mut out = Vec::new();
    for i in 0..pieces {
        let (text, kind) = match i {
            0 => ("<unk>".to_string(), UNKNOWN),
            1 => ("<s>".into(), CONTROL),
            2 => ("</s>".into(), CONTROL),
            3 => ("<pad>".into(), CONTROL),
            i if i < 4 + 256 => (format!("<0x{:02X}>", i - 4), BYTE),
            i => (format!("\u{2581}w{i}"), NORMAL),
        };
        let mut p = vec![0x0a];
        varint(&mut p, text.len());
        p.extend_from_slice(text.as_bytes());
        p.push(0x15);
        p.extend_from_slice(&(-(i as f32)).to_le_bytes());
        p.extend_from_slice(&[0x18, kind]);
        out.push(0x0a);
        varint(&mut out, p.len());
        out.extend_from_slice(&p);
    }
    out
}

/// The standard deviation `random_init` gives a matrix: N(0, 1) for embedding tables,
/// 1/sqrt(fan_in) otherwise.
pub fn matrix_std(name: &str, dims: &[usize]) -> f32 {
    if name.contains("emb.") || name.starts_with("text_emb") {
        1.0
    } else {
        1.0 / (dims[1..].iter().product::<usize>().max(1) as f32).sqrt()
    }
}

/// A small, fast generator; each chunk of a tensor gets its own stream.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed ^ 0x9e37_79b9_7f4a_7c15)
    }
    /// SplitMix64.
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    })
}

/// Fill `buf`, a whole number of `unit`-byte units, on every core.
fn fill_parallel(
    buf: &mut [u8],
    unit: usize,
    seed: u64,
    fill: impl Fn(&mut [u8], &mut Rng) + Sync,
) {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let units = buf.len() / unit;
    let per = units.div_ceil(threads).max(1) * unit;
    let fill = &fill;
    std::thread::scope(|s| {
        for (i, chunk) in buf.chunks_mut(per).enumerate() {
            s.spawn(move || {
                fill(
                    chunk,
                    &mut Rng::new(
                        seed.wrapping_add((i as u64).wrapping_mul(0x2545_f491_4f6c_dd1d)),
                    ),
                )
            });
        }
    });
}

/// f32 to IEEE half bits (round to nearest; the scales written here are normal halves).
pub fn f16_bits(x: f32) -> u16 {
    let b = x.to_bits();
    let sign = ((b >> 16) & 0x8000) as u16;
    let exp = ((b >> 23) & 0xff) as i32 - 127 + 15;
    let man = b & 0x7f_ffff;
    if exp <= 0 {
        if exp < -10 {
            return sign;
        }
        let (full, shift) = (man | 0x80_0000, (14 - exp) as u32);
        return sign | ((full >> shift) + ((full >> (shift - 1)) & 1)) as u16;
    }
    if exp >= 31 {
        return sign | 0x7c00;
    }
    let h = ((exp as u32) << 10) | (man >> 13);
    // Round half up on the dropped bits; a carry into the exponent is still right.
    let h = h + ((man >> 12) & 1);
    sign | h.min(0x7bff) as u16
}

/// f32 to bfloat16 bits, rounding to nearest even.
pub fn bf16_bits(x: f32) -> u16 {
    let b = x.to_bits();
    ((b + 0x7fff + ((b >> 16) & 1)) >> 16) as u16
}

/// Uniform i8 codes in [-127, 127]: standard deviation 127/sqrt(3) in units of the scale.
const Q8_CODE_STD: f32 = 73.32;

/// q8_0 blocks (an f16 scale, then 32 signed bytes) whose values have deviation `std`.
fn q8_blocks(buf: &mut [u8], std: f32, seed: u64) {
    let scale = f16_bits(std / Q8_CODE_STD).to_le_bytes();
    fill_parallel(buf, 34, seed, |chunk, rng| {
        for block in chunk.chunks_exact_mut(34) {
            block[..2].copy_from_slice(&scale);
            for quad in block[2..].chunks_exact_mut(8) {
                let r = rng.next().to_le_bytes();
                for (q, v) in quad.iter_mut().zip(r) {
                    *q = (v as i8).max(-127) as u8;
                }
            }
        }
    });
}

/// bf16 values, uniform with deviation `std`.
fn bf16_values(buf: &mut [u8], std: f32, seed: u64) {
    let half_width = std * 3f32.sqrt();
    fill_parallel(buf, 2, seed, |chunk, rng| {
        for quad in chunk.chunks_mut(8) {
            let r = rng.next();
            for (i, v) in quad.chunks_exact_mut(2).enumerate() {
                let u = ((r >> (16 * i)) & 0xffff) as f32 / 65535.0;
                v.copy_from_slice(&bf16_bits(half_width * (2.0 * u - 1.0)).to_le_bytes());
            }
        }
    });
}

/// A vector (or any tensor not written as a matrix), with the value `random_init` gives
/// its role, as little-endian f32.
fn role_values(t: &TensorEntry) -> Result<Vec<f32>> {
    let vb = FastRandomBackend::var_builder(DType::F32, &Device::Cpu);
    Ok(vb.get(t.dims.clone(), &t.name)?.flatten_all()?.to_vec1()?)
}

fn is_matrix(t: &TensorEntry) -> bool {
    t.dims.len() == 2
}

/// The LM as candle's q8 checkpoints store it, a tensor at a time.
fn write_q8_gguf(w: &mut dyn Write, cfg: &moshi::lm::Config, seed: u64) -> Result<()> {
    let table = census(cfg, true, 4).map_err(anyhow::Error::msg)?;
    let dtype = |s: Stored| {
        if s == Stored::Q8_0 {
            GgmlDType::Q8_0
        } else {
            GgmlDType::F32
        }
    };
    let entries: Vec<_> = table
        .iter()
        .map(|t| GgufEntry {
            name: &t.name,
            dims: &t.dims,
            dtype: dtype(t.stored),
        })
        .collect();
    w.write_all(&gguf_write::header(&entries))?;
    for (t, e) in table.iter().zip(&entries) {
        let mut data = vec![0u8; e.bytes() as usize];
        if e.dtype == GgmlDType::Q8_0 {
            q8_blocks(
                &mut data,
                matrix_std(&t.name, &t.dims),
                seed ^ fnv1a(&t.name),
            );
        } else {
            for (d, v) in data.chunks_exact_mut(4).zip(role_values(t)?) {
                d.copy_from_slice(&v.to_le_bytes());
            }
        }
        gguf_write::pad(&mut data);
        w.write_all(&data)?;
    }
    Ok(())
}

/// The LM as a bf16 safetensors file, its header written first and its data streamed.
fn write_bf16_safetensors(w: &mut dyn Write, cfg: &moshi::lm::Config, seed: u64) -> Result<()> {
    let table = census(cfg, false, 2).map_err(anyhow::Error::msg)?;
    let mut header = serde_json::Map::new();
    let mut offset = 0u64;
    for t in &table {
        let end = offset + t.elems * 2;
        header.insert(
            t.name.clone(),
            serde_json::json!({ "dtype": "BF16", "shape": t.dims, "data_offsets": [offset, end] }),
        );
        offset = end;
    }
    let mut json = serde_json::to_vec(&serde_json::Value::Object(header))?;
    json.resize(json.len().div_ceil(8) * 8, b' ');
    w.write_all(&(json.len() as u64).to_le_bytes())?;
    w.write_all(&json)?;
    // serde_json's map is sorted by name, and so is the census: data follows in order.
    for t in &table {
        let mut data = vec![0u8; (t.elems * 2) as usize];
        if is_matrix(t) {
            bf16_values(
                &mut data,
                matrix_std(&t.name, &t.dims),
                seed ^ fnv1a(&t.name),
            );
        } else {
            for (d, v) in data.chunks_exact_mut(2).zip(role_values(t)?) {
                d.copy_from_slice(&bf16_bits(v).to_le_bytes());
            }
        }
        w.write_all(&data)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use moshi::candle::Tensor;

    #[test]
    fn halves_and_bfloats_match_candles_conversions() {
        for x in [
            1.0f32, -2.5, 0.013_64, 1.05e-4, 3.0e-5, 65504.0, 1e6, 0.0, 0.333_333,
        ] {
            let t = Tensor::new(&[x], &Device::Cpu).unwrap();
            let via = |dt: DType| {
                t.to_dtype(dt)
                    .unwrap()
                    .to_dtype(DType::F32)
                    .unwrap()
                    .to_vec1::<f32>()
                    .unwrap()[0]
            };
            let ours_h = {
                let bytes = f16_bits(x).to_le_bytes();
                Tensor::from_raw_buffer(&bytes, DType::F16, &[1], &Device::Cpu)
                    .unwrap()
                    .to_dtype(DType::F32)
                    .unwrap()
                    .to_vec1::<f32>()
                    .unwrap()[0]
            };
            let ours_b = {
                let bytes = bf16_bits(x).to_le_bytes();
                Tensor::from_raw_buffer(&bytes, DType::BF16, &[1], &Device::Cpu)
                    .unwrap()
                    .to_dtype(DType::F32)
                    .unwrap()
                    .to_vec1::<f32>()
                    .unwrap()[0]
            };
            assert_eq!(ours_b, via(DType::BF16), "bf16 of {x}");
            // Above the largest half, candle gives infinity; the scales here never get there.
            if x <= 65504.0 {
                assert_eq!(ours_h, via(DType::F16), "f16 of {x}");
            }
        }
    }

    #[test]
    fn the_tokenizer_has_the_pieces_asked_for() {
        for n in [300, 2000] {
            let v = super::super::text::Vocab::from_bytes(&tokenizer_model(n)).unwrap();
            assert_eq!(v.len(), n);
        }
    }

    /// What is written loads, with the shapes the config asks for and the deviation meant.
    #[test]
    fn written_weights_load_with_the_intended_scale() {
        let cfg = config::lm_config(64, 4, 2, 100, 32, 4, 1, 300, 64);
        let mut buf = Vec::new();
        write_q8_gguf(&mut buf, &cfg, 7).unwrap();
        let mut cursor = std::io::Cursor::new(&buf);
        let content = moshi::candle::quantized::gguf_file::Content::read(&mut cursor).unwrap();
        let name = "transformer.layers.1.gating.linear_in.weight";
        let q = content.tensor(&mut cursor, name, &Device::Cpu).unwrap();
        let v: Vec<f32> = q
            .dequantize(&Device::Cpu)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let std = (v.iter().map(|x| x * x).sum::<f32>() / v.len() as f32).sqrt();
        let want = matrix_std(name, q.shape().dims());
        assert!((std / want - 1.0).abs() < 0.05, "{std} vs {want}");

        let mut buf = Vec::new();
        write_bf16_safetensors(&mut buf, &cfg, 7).unwrap();
        let st = moshi::candle::safetensors::load_buffer(&buf, &Device::Cpu).unwrap();
        let t = &st["text_emb.weight"];
        assert_eq!(
            (t.dtype(), t.dims()),
            (DType::BF16, &[cfg.text_in_vocab_size, 64][..])
        );
        let std = t
            .to_dtype(DType::F32)
            .unwrap()
            .sqr()
            .unwrap()
            .mean_all()
            .unwrap()
            .sqrt()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!((std - 1.0).abs() < 0.05, "{std}");
        let alpha = st["out_norm.alpha"]
            .to_dtype(DType::F32)
            .unwrap()
            .mean_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!((alpha - 1.0).abs() < 0.05, "norm scales near 1: {alpha}");
    }
}
