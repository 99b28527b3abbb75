//! Pocket TTS's codec decoder (`pocket_tts/models/mimi.py`, decoder side): a latent
//! frame through the dummy quantizer's projection, a depthwise transposed-conv
//! upsampling to the encoder rate (200 Hz), a small transformer with a sliding
//! context, and a SEANet decoder to 24 kHz, all streaming: one latent in, one frame
//! of audio out.

use super::config::{MimiConfig, MimiTransformerConfig, SeanetConfig};
use super::conv::{DirectConv, DirectConvTr};
use super::layers::{Linear, StreamConvTr};
use super::transformer::{Cache, Shape, Transformer};
use moshi::candle::{Result, Tensor};
use moshi::candle_nn::VarBuilder;

/// A SEANet stage on plain buffers; each ELU of the package's list is fused into the
/// convolution after it.
#[derive(Clone)]
enum Block {
    Conv(DirectConv),
    ConvTr(DirectConvTr),
    Res { c1: DirectConv, c2: DirectConv },
}

#[derive(Clone)]
pub struct Decoder {
    /// The quantizer's 1x1 output projection: (outer, inner).
    quant_proj: Tensor,
    upsample: Option<StreamConvTr>,
    input_proj: Option<Linear>,
    transformer: Transformer,
    output_proj: Option<Linear>,
    cache: Cache,
    seanet: Vec<Block>,
    /// Buffers the SEANet stages write, reused from frame to frame.
    bufs: [Vec<f32>; 3],
    /// Samples of the 5 ms fade-in still to apply (the package fades each chunk in).
    fade_done: bool,
}

fn seanet(vb: &VarBuilder, c: &SeanetConfig) -> Result<Vec<Block>> {
    // The package's `model` list names each module by its index, ELUs included.
    let vb = vb.pp("model");
    let mut mult = 1usize << c.ratios.len();
    let mut blocks = vec![Block::Conv(DirectConv::load(
        &vb.pp(0),
        (c.dimension, mult * c.n_filters, c.kernel_size),
        1,
        false,
    )?)];
    let mut index = 1;
    for &r in &c.ratios {
        // An ELU, then the transposed conv.
        let ch = mult * c.n_filters;
        let tr = DirectConvTr::load(&vb.pp(index + 1), (ch, ch / 2, 2 * r), r, true)?;
        blocks.push(Block::ConvTr(tr));
        index += 2;
        for j in 0..c.n_residual_layers {
            let (dim, rb) = (ch / 2, vb.pp(index).pp("block"));
            let hidden = dim / c.compress;
            let dil = c.dilation_base.pow(j as u32);
            // block: ELU, conv, ELU, 1x1 conv.
            let c1 = DirectConv::load(&rb.pp(1), (dim, hidden, c.residual_kernel_size), dil, true)?;
            let c2 = DirectConv::load(&rb.pp(3), (hidden, dim, 1), 1, true)?;
            blocks.push(Block::Res { c1, c2 });
            index += 1;
        }
        mult /= 2;
    }
    // An ELU, then the last conv.
    let last = DirectConv::load(
        &vb.pp(index + 1),
        (c.n_filters, c.channels, c.last_kernel_size),
        1,
        true,
    )?;
    blocks.push(Block::Conv(last));
    Ok(blocks)
}

impl Decoder {
    /// `vb` at `mimi`.
    pub fn load(vb: &VarBuilder, c: &MimiConfig) -> Result<Self> {
        let inner = c.quantizer.dimension;
        let outer = c.quantizer.output_dimension;
        let quant_proj = vb
            .pp("quantizer.output_proj")
            .get((outer, inner, 1), "weight")?
            .squeeze(2)?;
        let s = c.decoder_seanet();
        let stride = c.steps_per_latent();
        let upsample = if stride > 1 {
            let in_dim = c.outer_dim.unwrap_or(s.dimension);
            if in_dim != s.dimension {
                moshi::candle::bail!(
                    "mimi.outer_dim {in_dim} differs from the decoder's dimension {}: not supported",
                    s.dimension
                );
            }
            Some(StreamConvTr::load(
                &vb.pp("upsample.convtr"),
                in_dim,
                s.dimension,
                2 * stride,
                stride,
                true,
                false,
            )?)
        } else {
            None
        };
        let (input_proj, transformer, output_proj) =
            load_codec_transformer(&vb.pp("decoder_transformer"), c.decoder_transformer())?;
        // 16 steps a frame: the packed kernel instead of candle's matmul.
        let transformer = transformer.packed()?;
        let input_proj = input_proj.map(|p| p.packed()).transpose()?;
        let output_proj = output_proj.map(|p| p.packed()).transpose()?;
        let cache = transformer.empty_cache();
        Ok(Self {
            quant_proj,
            upsample,
            input_proj,
            transformer,
            output_proj,
            cache,
            seanet: seanet(&vb.pp("decoder"), s)?,
            bufs: Default::default(),
            fade_done: false,
        })
    }

    /// Forget the stream: the next frame starts a new chunk of speech.
    pub fn reset(&mut self) {
        self.cache = self.transformer.empty_cache();
        if let Some(u) = &mut self.upsample {
            u.reset();
        }
        for b in &mut self.seanet {
            match b {
                Block::Conv(c) => c.reset(),
                Block::ConvTr(c) => c.reset(),
                Block::Res { c1, c2 } => {
                    c1.reset();
                    c2.reset();
                }
            }
        }
        self.fade_done = false;
    }

    /// One latent frame (1, inner), in the codec's scale, to audio samples.
    pub fn decode(&mut self, latent: &Tensor) -> Result<Vec<f32>> {
        // (1, outer, 1)
        let x = self.quant_proj.matmul(&latent.t()?)?.unsqueeze(0)?;
        let x = match &mut self.upsample {
            Some(u) => u.forward(&x)?,
            None => x,
        };
        let mut h = x.transpose(1, 2)?;
        if let Some(p) = &self.input_proj {
            h = p.forward(&h)?;
        }
        h = self.transformer.forward(&h, &mut self.cache)?;
        if let Some(p) = &self.output_proj {
            h = p.forward(&h)?;
        }
        // (channels, time) from here on.
        let (_, t, _) = h.dims3()?;
        let [x, y, z] = &mut self.bufs;
        x.clear();
        x.extend(h.squeeze(0)?.t()?.flatten_all()?.to_vec1::<f32>()?);
        let mut t = t;
        for b in &mut self.seanet {
            match b {
                Block::Conv(c) => {
                    c.forward(x, t, y, false);
                    std::mem::swap(x, y);
                }
                Block::ConvTr(c) => {
                    c.forward(x, t, y);
                    t = y.len() / c.out_channels();
                    std::mem::swap(x, y);
                }
                Block::Res { c1, c2 } => {
                    c1.forward(x, t, z, false);
                    c2.forward(z, t, x, true);
                }
            }
        }
        let mut pcm = x.clone();
        if !self.fade_done {
            // A fresh decoder state starts with a small step: the package fades in 5 ms.
            let n = 24_000 / 200;
            for (i, s) in pcm.iter_mut().take(n).enumerate() {
                *s *= i as f32 / (n - 1) as f32;
            }
            self.fade_done = true;
        }
        Ok(pcm)
    }
}

/// The codec's transformer, as the encoder and the decoder each have one: its input
/// and output projections (only where the widths differ) around the layers.
pub(super) fn load_codec_transformer(
    vb: &VarBuilder,
    t: &MimiTransformerConfig,
) -> Result<(Option<Linear>, Transformer, Option<Linear>)> {
    let project = |name: &str, from: usize, to: usize| -> Result<Option<Linear>> {
        if from == to {
            return Ok(None);
        }
        Linear::load(&vb.pp(name), from, to, false).map(Some)
    };
    let input_proj = project("input_proj", t.input_dimension, t.d_model)?;
    let output_proj = project("output_projs.0", t.d_model, t.output_dimensions[0])?;
    let transformer = Transformer::load(
        &vb.pp("transformer"),
        Shape {
            d_model: t.d_model,
            num_heads: t.num_heads,
            kv_heads: t.num_heads,
            attn_dim: t.d_model,
            feedforward: t.dim_feedforward,
            layers: t.num_layers,
            max_period: t.max_period,
            context: Some(t.context),
            layer_scale: true,
        },
    )?;
    Ok((input_proj, transformer, output_proj))
}
