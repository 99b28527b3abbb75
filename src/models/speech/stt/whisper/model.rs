//! Whisper's encoder and decoder (OpenAI's `whisper/model.py`, in the Hugging Face tensor
//! names), written here rather than taken from candle-transformers because its decoder
//! keeps no cache of its own self-attention: every token re-reads the whole sequence,
//! which made a 40-token transcript cost 20 times the work of one with a cache.

use candle_transformers::models::whisper::Config;
use moshi::candle::quantized::{GgmlDType, QMatMul, QTensor};
use moshi::candle::{DType, Device, Module, Result, Tensor, D};
use moshi::candle_nn::{
    self as nn, Conv1d, Conv1dConfig, Embedding, LayerNorm, Linear, VarBuilder,
};

/// A linear layer, f32 or (the decoder's) q8: decoding reads every weight once a token,
/// so its speed is memory's; q8 reads a quarter of the bytes.
enum Lin {
    F32(Linear),
    Q8(QMatMul, Option<Tensor>),
}

impl Lin {
    fn load(i: usize, o: usize, bias: bool, q8: bool, vb: VarBuilder) -> Result<Self> {
        let w = vb.get((o, i), "weight")?;
        let b = if bias { Some(vb.get(o, "bias")?) } else { None };
        if q8 && i.is_multiple_of(GgmlDType::Q8_0.block_size()) {
            let q = QTensor::quantize(&w, GgmlDType::Q8_0)?;
            Ok(Self::Q8(QMatMul::from_qtensor(q)?, b))
        } else {
            Ok(Self::F32(Linear::new(w, b)))
        }
    }
}

impl Module for Lin {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            Self::F32(l) => l.forward(x),
            Self::Q8(q, b) => {
                let y = q.forward(x)?;
                match b {
                    Some(b) => y.broadcast_add(b),
                    None => Ok(y),
                }
            }
        }
    }
}

fn layer_norm(d: usize, vb: VarBuilder) -> Result<LayerNorm> {
    Ok(LayerNorm::new(
        vb.get(d, "weight")?,
        vb.get(d, "bias")?,
        1e-5,
    ))
}

struct Attention {
    q: Lin,
    k: Lin,
    v: Lin,
    out: Lin,
    heads: usize,
    /// Keys and values so far: the decoder's own tokens, or the audio (cross-attention).
    cache: Option<(Tensor, Tensor)>,
}

impl Attention {
    fn load(d: usize, heads: usize, q8: bool, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            q: Lin::load(d, d, true, q8, vb.pp("q_proj"))?,
            k: Lin::load(d, d, false, q8, vb.pp("k_proj"))?,
            v: Lin::load(d, d, true, q8, vb.pp("v_proj"))?,
            out: Lin::load(d, d, true, q8, vb.pp("out_proj"))?,
            heads,
            cache: None,
        })
    }

    /// [b, t, d] -> [b, heads, t, d / heads]
    fn split(&self, x: &Tensor) -> Result<Tensor> {
        let (b, t, d) = x.dims3()?;
        x.reshape((b, t, self.heads, d / self.heads))?
            .transpose(1, 2)?
            .contiguous()
    }

    fn kv(&self, x: &Tensor) -> Result<(Tensor, Tensor)> {
        Ok((
            self.split(&self.k.forward(x)?)?,
            self.split(&self.v.forward(x)?)?,
        ))
    }

    fn attend(&self, x: &Tensor, k: &Tensor, v: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
        let q = self.split(&self.q.forward(x)?)?;
        let dh = q.dim(D::Minus1)?;
        let mut w = (q.matmul(&k.t()?)? / (dh as f64).sqrt())?;
        if let Some(m) = mask {
            w = w.broadcast_add(m)?;
        }
        let w = nn::ops::softmax_last_dim(&w)?;
        let (b, _, t, _) = q.dims4()?;
        let y = w.matmul(v)?.transpose(1, 2)?.reshape((b, t, ()))?;
        self.out.forward(&y)
    }

    /// Self-attention over everything so far (the cache grows by `x`'s tokens).
    fn forward_cached(&mut self, x: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
        let (k, v) = self.kv(x)?;
        let (k, v) = match &self.cache {
            Some((pk, pv)) => (Tensor::cat(&[pk, &k], 2)?, Tensor::cat(&[pv, &v], 2)?),
            None => (k, v),
        };
        let y = self.attend(x, &k, &v, mask)?;
        self.cache = Some((k, v));
        Ok(y)
    }
}

struct Mlp {
    fc1: Lin,
    fc2: Lin,
}

impl Mlp {
    fn load(d: usize, q8: bool, vb: &VarBuilder) -> Result<Self> {
        Ok(Self {
            fc1: Lin::load(d, 4 * d, true, q8, vb.pp("fc1"))?,
            fc2: Lin::load(4 * d, d, true, q8, vb.pp("fc2"))?,
        })
    }
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.fc2.forward(&self.fc1.forward(x)?.gelu_erf()?)
    }
}

struct Block {
    attn: Attention,
    attn_ln: LayerNorm,
    cross: Option<(Attention, LayerNorm)>,
    mlp: Mlp,
    mlp_ln: LayerNorm,
}

impl Block {
    /// Decoder blocks (with cross-attention) are q8; encoder blocks f32.
    fn load(d: usize, heads: usize, cross: bool, vb: VarBuilder) -> Result<Self> {
        let q8 = cross;
        Ok(Self {
            attn: Attention::load(d, heads, q8, vb.pp("self_attn"))?,
            attn_ln: layer_norm(d, vb.pp("self_attn_layer_norm"))?,
            cross: if cross {
                Some((
                    Attention::load(d, heads, q8, vb.pp("encoder_attn"))?,
                    layer_norm(d, vb.pp("encoder_attn_layer_norm"))?,
                ))
            } else {
                None
            },
            mlp: Mlp::load(d, q8, &vb)?,
            mlp_ln: layer_norm(d, vb.pp("final_layer_norm"))?,
        })
    }
}

pub struct Encoder {
    conv1: Conv1d,
    conv2: Conv1d,
    positions: Tensor,
    blocks: Vec<Block>,
    ln: LayerNorm,
}

/// Whisper's sinusoidal audio positions (when the checkpoint does not hold them).
fn sinusoids(length: usize, channels: usize, device: &Device) -> Result<Tensor> {
    let step = 10_000f32.ln() / (channels / 2 - 1) as f32;
    let inv: Vec<f32> = (0..channels / 2)
        .map(|i| (-step * i as f32).exp())
        .collect();
    let inv = Tensor::new(inv.as_slice(), device)?.unsqueeze(0)?;
    let t = Tensor::arange(0u32, length as u32, device)?
        .to_dtype(DType::F32)?
        .unsqueeze(1)?;
    let s = t.broadcast_mul(&inv)?;
    Tensor::cat(&[s.sin()?, s.cos()?], 1)
}

impl Encoder {
    fn load(cfg: &Config, vb: VarBuilder) -> Result<Self> {
        let d = cfg.d_model;
        let conv = |cin: usize, stride: usize, vb: VarBuilder| -> Result<Conv1d> {
            Ok(Conv1d::new(
                vb.get((d, cin, 3), "weight")?,
                Some(vb.get(d, "bias")?),
                Conv1dConfig {
                    padding: 1,
                    stride,
                    dilation: 1,
                    groups: 1,
                    cudnn_fwd_algo: None,
                },
            ))
        };
        let n = cfg.max_source_positions;
        let positions = if vb.contains_tensor("embed_positions.weight") {
            vb.get((n, d), "embed_positions.weight")?
        } else {
            sinusoids(n, d, vb.device())?
        };
        Ok(Self {
            conv1: conv(cfg.num_mel_bins, 1, vb.pp("conv1"))?,
            conv2: conv(d, 2, vb.pp("conv2"))?,
            positions,
            blocks: (0..cfg.encoder_layers)
                .map(|i| {
                    Block::load(
                        d,
                        cfg.encoder_attention_heads,
                        false,
                        vb.pp(format!("layers.{i}")),
                    )
                })
                .collect::<Result<_>>()?,
            ln: layer_norm(d, vb.pp("layer_norm"))?,
        })
    }

    /// Mel [1, n_mels, frames] -> audio features [1, frames / 2, d].
    /// `None` if `stop` said so between two layers.
    pub fn forward(&mut self, mel: &Tensor, stop: &dyn Fn() -> bool) -> Result<Option<Tensor>> {
        let x = self.conv1.forward(mel)?.gelu_erf()?;
        let x = self.conv2.forward(&x)?.gelu_erf()?.transpose(1, 2)?;
        let t = x.dim(1)?;
        let mut x = x.broadcast_add(&self.positions.narrow(0, 0, t)?)?;
        for b in &mut self.blocks {
            if stop() {
                return Ok(None);
            }
            let h = b.attn_ln.forward(&x)?;
            let (k, v) = b.attn.kv(&h)?;
            x = (&x + b.attn.attend(&h, &k, &v, None)?)?;
            x = (&x + b.mlp.forward(&b.mlp_ln.forward(&x)?)?)?;
        }
        self.ln.forward(&x).map(Some)
    }
}

pub struct Decoder {
    tokens: Embedding,
    /// The output projection (the token embedding, tied), q8.
    output: QMatMul,
    positions: Tensor,
    blocks: Vec<Block>,
    ln: LayerNorm,
    /// Tokens read since `start`.
    offset: usize,
}

impl Decoder {
    fn load(cfg: &Config, vb: VarBuilder) -> Result<Self> {
        let d = cfg.d_model;
        let tokens = nn::embedding(cfg.vocab_size, d, vb.pp("embed_tokens"))?;
        let output = if d.is_multiple_of(GgmlDType::Q8_0.block_size()) {
            QMatMul::from_qtensor(QTensor::quantize(tokens.embeddings(), GgmlDType::Q8_0)?)?
        } else {
            QMatMul::Tensor(tokens.embeddings().clone())
        };
        Ok(Self {
            output,
            tokens,
            positions: vb.get((cfg.max_target_positions, d), "embed_positions.weight")?,
            blocks: (0..cfg.decoder_layers)
                .map(|i| {
                    Block::load(
                        d,
                        cfg.decoder_attention_heads,
                        true,
                        vb.pp(format!("layers.{i}")),
                    )
                })
                .collect::<Result<_>>()?,
            ln: layer_norm(d, vb.pp("layer_norm"))?,
            offset: 0,
        })
    }

    /// Begin a transcript of `audio`: its keys and values for every layer, once.
    pub fn start(&mut self, audio: &Tensor) -> Result<()> {
        self.offset = 0;
        for b in &mut self.blocks {
            b.attn.cache = None;
            if let Some((c, _)) = &mut b.cross {
                c.cache = Some(c.kv(audio)?);
            }
        }
        Ok(())
    }

    /// Read `ids` after those already read; their hidden states [1, n, d].
    pub fn forward(&mut self, ids: &[u32]) -> Result<Tensor> {
        let dev = self.positions.device().clone();
        let n = ids.len();
        let x = self
            .tokens
            .forward(&Tensor::new(ids, &dev)?.unsqueeze(0)?)?;
        let mut x = x.broadcast_add(&self.positions.narrow(0, self.offset, n)?)?;
        // Several tokens at once (the prompt) see only those before them.
        let mask = if n > 1 {
            let off = self.offset;
            let m: Vec<f32> = (0..n)
                .flat_map(|i| {
                    (0..off + n).map(move |j| if j > off + i { f32::NEG_INFINITY } else { 0.0 })
                })
                .collect();
            Some(Tensor::from_vec(m, (n, off + n), &dev)?)
        } else {
            None
        };
        for b in &mut self.blocks {
            let h = b.attn_ln.forward(&x)?;
            x = (&x + b.attn.forward_cached(&h, mask.as_ref())?)?;
            if let Some((c, ln)) = &b.cross {
                let h = ln.forward(&x)?;
                let (k, v) = c
                    .cache
                    .as_ref()
                    .ok_or_else(|| moshi::candle::Error::Msg("decoder not started".into()))?;
                x = (&x + c.attend(&h, k, v, None)?)?;
            }
            x = (&x + b.mlp.forward(&b.mlp_ln.forward(&x)?)?)?;
        }
        self.offset += n;
        self.ln.forward(&x)
    }

    /// Logits [vocab] of one hidden state [d] (the token embedding, tied).
    pub fn logits(&self, h: &Tensor) -> Result<Tensor> {
        self.output.forward(&h.unsqueeze(0)?)?.squeeze(0)
    }

    pub fn max_positions(&self) -> usize {
        self.positions.dim(0).unwrap_or(0)
    }
}

pub struct Whisper {
    pub encoder: Encoder,
    pub decoder: Decoder,
    pub config: Config,
}

impl Whisper {
    pub fn load(vb: &VarBuilder, config: Config) -> Result<Self> {
        Ok(Self {
            encoder: Encoder::load(&config, vb.pp("model.encoder"))?,
            decoder: Decoder::load(&config, vb.pp("model.decoder"))?,
            config,
        })
    }
}
