//! The codec's encoder side, for voice cloning (`MimiModel.encode_to_latent` and
//! `TTSModel.get_state_for_audio_prompt`): a voice recording, cut to end on a short
//! pause, through the SEANet encoder, its transformer and the downsampling conv to
//! 12.5 Hz latents, projected by the flow LM's speaker projection into a prompt.
//! Only the gated `kyutai/pocket-tts` checkpoints have these weights.

use super::config::MimiConfig;
use super::layers::{Linear, StreamConv};
use super::transformer::Transformer;
use moshi::candle::{Result, Tensor};
use moshi::candle_nn::VarBuilder;

#[derive(Clone)]
enum Block {
    Elu,
    Conv(StreamConv),
    Res { c1: StreamConv, c2: StreamConv },
}

#[derive(Clone)]
pub struct Encoder {
    seanet: Vec<Block>,
    input_proj: Option<Linear>,
    transformer: Transformer,
    output_proj: Option<Linear>,
    /// The downsampling conv (replicate padding, no bias): (inner, dimension, 2·stride).
    down: Option<(Tensor, usize)>,
    frame: usize,
}

impl Encoder {
    /// `vb` at `mimi`.
    pub fn load(vb: &VarBuilder, c: &MimiConfig) -> Result<Self> {
        let s = &c.seanet;
        let vbm = vb.pp("encoder.model");
        let mut mult = 1;
        let mut seanet = vec![Block::Conv(StreamConv::load(
            &vbm.pp(0),
            s.channels,
            s.n_filters,
            s.kernel_size,
            1,
            1,
            true,
        )?)];
        for &r in s.ratios.iter().rev() {
            let ch = mult * s.n_filters;
            for j in 0..s.n_residual_layers {
                let rb = vbm.pp(seanet.len()).pp("block");
                let hidden = ch / s.compress;
                let dil = s.dilation_base.pow(j as u32);
                let c1 =
                    StreamConv::load(&rb.pp(1), ch, hidden, s.residual_kernel_size, 1, dil, true)?;
                let c2 = StreamConv::load(&rb.pp(3), hidden, ch, 1, 1, 1, true)?;
                seanet.push(Block::Res { c1, c2 });
            }
            seanet.push(Block::Elu);
            let conv = StreamConv::load(&vbm.pp(seanet.len()), ch, ch * 2, 2 * r, r, 1, true)?;
            seanet.push(Block::Conv(conv));
            mult *= 2;
        }
        seanet.push(Block::Elu);
        let last = StreamConv::load(
            &vbm.pp(seanet.len()),
            mult * s.n_filters,
            s.dimension,
            s.last_kernel_size,
            1,
            1,
            true,
        )?;
        seanet.push(Block::Conv(last));
        let (input_proj, transformer, output_proj) =
            super::codec::load_codec_transformer(&vb.pp("encoder_transformer"), &c.transformer)?;
        let stride = c.steps_per_latent();
        let down = if stride > 1 {
            let inner = c.inner_dim.unwrap_or(s.dimension);
            let w = vb
                .pp("downsample.conv.conv")
                .get((inner, s.dimension, 2 * stride), "weight")?;
            Some((w, stride))
        } else {
            None
        };
        Ok(Self {
            seanet,
            input_proj,
            transformer,
            output_proj,
            down,
            frame: c.frame_size(),
        })
    }

    /// 24 kHz mono samples to latents (1, frames, inner).
    pub fn encode(&self, pcm: &[f32], device: &moshi::candle::Device) -> Result<Tensor> {
        // Padded at the end to whole latent frames (`pad_for_conv1d`).
        let n = pcm.len().div_ceil(self.frame).max(1) * self.frame;
        let mut v = pcm.to_vec();
        v.resize(n, 0.0);
        let mut x = Tensor::from_vec(v, (1, 1, n), device)?;
        let mut seanet = self.seanet.clone();
        for b in &mut seanet {
            x = match b {
                Block::Elu => x.elu(1.0)?,
                Block::Conv(c) => {
                    c.reset();
                    c.forward(&x)?
                }
                Block::Res { c1, c2 } => {
                    c1.reset();
                    c2.reset();
                    let v = c2.forward(&c1.forward(&x.elu(1.0)?)?.elu(1.0)?)?;
                    (&x + v)?
                }
            };
        }
        let mut h = x.transpose(1, 2)?;
        if let Some(p) = &self.input_proj {
            h = p.forward(&h)?;
        }
        let mut cache = self.transformer.empty_cache();
        h = self.transformer.forward(&h, &mut cache)?;
        if let Some(p) = &self.output_proj {
            h = p.forward(&h)?;
        }
        let mut x = h.transpose(1, 2)?.contiguous()?;
        if let Some((w, s)) = &self.down {
            // Replicate padding: the first sample repeated kernel - stride times.
            let k = w.dim(2)?;
            let (b, c, _) = x.dims3()?;
            let first = x
                .narrow(2, 0, 1)?
                .broadcast_as((b, c, k - s))?
                .contiguous()?;
            x = Tensor::cat(&[&first, &x], 2)?.conv1d(w, 0, *s, 1, 1)?;
        }
        x.transpose(1, 2)
    }
}

/// `end_on_pause`: cut the trailing silence (20 ms frames more than 35 dB under the
/// loudest), fade the last 20 ms out and end on 80 ms of zeros.
pub fn end_on_pause(wav: &[f32], sample_rate: usize) -> Vec<f32> {
    let frame = (sample_rate / 50).max(1);
    let n = wav.len() / frame;
    if n == 0 {
        return wav.to_vec();
    }
    let db: Vec<f32> = (0..n)
        .map(|i| {
            let f = &wav[i * frame..(i + 1) * frame];
            let rms = (f.iter().map(|x| x * x).sum::<f32>() / frame as f32).sqrt();
            20.0 * (rms + 1e-12).log10()
        })
        .collect();
    let max = db.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
    let last = db.iter().rposition(|&d| d > max - 35.0).unwrap_or(n - 1);
    let end = (last + 1) * frame;
    let mut out = wav[..end].to_vec();
    let fade = (sample_rate / 50).min(end);
    for i in 0..fade {
        // torch.linspace(1, 0, fade)
        let g = if fade > 1 {
            1.0 - i as f32 / (fade - 1) as f32
        } else {
            1.0
        };
        out[end - fade + i] *= g;
    }
    out.resize(end + sample_rate * 8 / 100, 0.0);
    out
}
