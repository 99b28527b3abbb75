//! The flow head (`SimpleMLPAdaLN` of `pocket_tts/modules/mlp.py`): an MLP of
//! adaptive-norm residual blocks, conditioned on the flow LM's output (and on one or
//! two times for the time-conditioned kinds), that turns Gaussian noise into the next
//! latent. The decoders of `flow_lm.py`: LSD (`decode_steps` steps from 0 to 1),
//! flow matching (Euler), drifting (one map), pointwise (noise plus one map).

use super::config::FlowKind;
use super::layers::{LayerNorm, Linear, VarNorm};
use moshi::candle::{DType, Result, Tensor, D};
use moshi::candle_nn::VarBuilder;
use std::sync::{Arc, Mutex};

const FREQ_DIM: usize = 256;

#[derive(Clone)]
struct TimeEmbed {
    freqs: Tensor,
    l0: Linear,
    l2: Linear,
    norm: VarNorm,
}

impl TimeEmbed {
    fn load(vb: &VarBuilder, dim: usize) -> Result<Self> {
        let half = FREQ_DIM / 2;
        // A buffer of the checkpoint; the same values computed when it is absent.
        let freqs = if vb.contains_tensor("freqs") {
            vb.get(half, "freqs")?
        } else {
            let step = -(10_000f64.ln()) as f32 / half as f32;
            let f: Vec<f32> = (0..half).map(|i| (i as f32 * step).exp()).collect();
            Tensor::from_vec(f, half, vb.device())?
        };
        Ok(Self {
            freqs,
            l0: Linear::load(&vb.pp("mlp.0"), FREQ_DIM, dim, true)?,
            l2: Linear::load(&vb.pp("mlp.2"), dim, dim, true)?,
            norm: VarNorm::load(&vb.pp("mlp.3"), dim)?,
        })
    }

    fn forward(&self, t: f32) -> Result<Tensor> {
        let args = (self.freqs.unsqueeze(0)? * t as f64)?;
        let e = Tensor::cat(&[args.cos()?, args.sin()?], D::Minus1)?;
        self.norm
            .forward(&self.l2.forward(&self.l0.forward(&e)?.silu()?)?)
    }
}

#[derive(Clone)]
struct ResBlock {
    in_ln: LayerNorm,
    mlp0: Linear,
    mlp2: Linear,
    ada: Linear,
}

fn modulate(x: &Tensor, shift: &Tensor, scale: &Tensor) -> Result<Tensor> {
    x.broadcast_mul(&(scale + 1.0)?)?.broadcast_add(shift)
}

impl ResBlock {
    fn forward(&self, x: &Tensor, y: &Tensor) -> Result<Tensor> {
        let d = x.dim(D::Minus1)?;
        let m = self.ada.forward(&y.silu()?)?;
        let (shift, scale, gate) = (
            m.narrow(1, 0, d)?,
            m.narrow(1, d, d)?,
            m.narrow(1, 2 * d, d)?,
        );
        let h = modulate(&self.in_ln.forward(x)?, &shift, &scale)?;
        let h = self.mlp2.forward(&self.mlp0.forward(&h)?.silu()?)?;
        x + gate.mul(&h)?
    }
}

/// A set of times (their bits) and their mean embedding.
type TimesEmbedding = (Vec<u32>, Tensor);

#[derive(Clone)]
pub struct FlowHead {
    kind: FlowKind,
    time_embed: Vec<TimeEmbed>,
    cond_embed: Linear,
    input_proj: Linear,
    blocks: Vec<ResBlock>,
    final_ada: Linear,
    final_linear: Linear,
    /// The mean time embedding of each set of times asked for so far: they depend on
    /// the step and the step count only, so each frame would compute the same.
    times_memo: Arc<Mutex<Vec<TimesEmbedding>>>,
}

impl FlowHead {
    /// `flow_net.*`: latents of `ldim`, conditioned on `cond`-wide vectors.
    pub fn load(
        vb: &VarBuilder,
        kind: FlowKind,
        dim: usize,
        depth: usize,
        ldim: usize,
        cond: usize,
    ) -> Result<Self> {
        let time_embed = (0..kind.time_conditions())
            .map(|i| TimeEmbed::load(&vb.pp(format!("time_embed.{i}")), dim))
            .collect::<Result<Vec<_>>>()?;
        let blocks = (0..depth)
            .map(|i| {
                let vb = vb.pp(format!("res_blocks.{i}"));
                Ok(ResBlock {
                    in_ln: LayerNorm::load(&vb.pp("in_ln"), dim, 1e-6)?,
                    mlp0: Linear::load(&vb.pp("mlp.0"), dim, dim, true)?,
                    mlp2: Linear::load(&vb.pp("mlp.2"), dim, dim, true)?,
                    ada: Linear::load(&vb.pp("adaLN_modulation.1"), dim, 3 * dim, true)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            kind,
            time_embed,
            cond_embed: Linear::load(&vb.pp("cond_embed"), cond, dim, true)?,
            input_proj: Linear::load(&vb.pp("input_proj"), ldim, dim, true)?,
            blocks,
            final_ada: Linear::load(&vb.pp("final_layer.adaLN_modulation.1"), dim, 2 * dim, true)?,
            final_linear: Linear::load(&vb.pp("final_layer.linear"), dim, ldim, true)?,
            times_memo: Default::default(),
        })
    }

    /// The same head with its linear layers in q8_0.
    pub fn quantized(&self) -> Result<Self> {
        self.map_linears(Linear::quantized)
    }

    /// The same head with its linear layers' weights in bf16.
    pub fn bf16(&self) -> Result<Self> {
        self.map_linears(Linear::bf16)
    }

    /// Bytes of linear weights one pass reads.
    pub fn weight_bytes(&self) -> usize {
        let mut n = 0;
        for e in &self.time_embed {
            n += e.l0.weight_bytes() + e.l2.weight_bytes();
        }
        for b in &self.blocks {
            n += b.mlp0.weight_bytes() + b.mlp2.weight_bytes() + b.ada.weight_bytes();
        }
        for l in [
            &self.cond_embed,
            &self.input_proj,
            &self.final_ada,
            &self.final_linear,
        ] {
            n += l.weight_bytes();
        }
        n
    }

    fn map_linears(&self, f: impl Fn(&Linear) -> Result<Linear>) -> Result<Self> {
        let mut q = self.clone();
        q.times_memo = Default::default();
        for e in &mut q.time_embed {
            e.l0 = f(&e.l0)?;
            e.l2 = f(&e.l2)?;
        }
        for b in &mut q.blocks {
            b.mlp0 = f(&b.mlp0)?;
            b.mlp2 = f(&b.mlp2)?;
            b.ada = f(&b.ada)?;
        }
        for l in [
            &mut q.cond_embed,
            &mut q.input_proj,
            &mut q.final_ada,
            &mut q.final_linear,
        ] {
            *l = f(l)?;
        }
        Ok(q)
    }

    /// The head's output for `x` (1, ldim) under the condition `y` (1, dim).
    fn net(&self, x: &Tensor, y: &Tensor) -> Result<Tensor> {
        let mut x = self.input_proj.forward(x)?;
        for b in &self.blocks {
            x = b.forward(&x, y)?;
        }
        let d = x.dim(D::Minus1)?;
        let m = self.final_ada.forward(&y.silu()?)?;
        let (shift, scale) = (m.narrow(1, 0, d)?, m.narrow(1, d, d)?);
        let x = modulate(&LayerNorm::plain(1e-6).forward(&x)?, &shift, &scale)?;
        self.final_linear.forward(&x)
    }

    /// The condition with the time embeddings of `times` added (their mean).
    fn with_times(&self, y0: &Tensor, times: &[f32]) -> Result<Tensor> {
        if self.time_embed.is_empty() {
            return Ok(y0.clone());
        }
        let key: Vec<u32> = times.iter().map(|t| t.to_bits()).collect();
        let memo = self
            .times_memo
            .lock()
            .ok()
            .and_then(|m| m.iter().find(|(k, _)| *k == key).map(|(_, v)| v.clone()));
        let mean = match memo {
            Some(m) => m,
            None => {
                let mut sum: Option<Tensor> = None;
                for (e, &t) in self.time_embed.iter().zip(times) {
                    let v = e.forward(t)?;
                    sum = Some(match sum {
                        None => v,
                        Some(s) => (s + v)?,
                    });
                }
                let Some(sum) = sum else {
                    return Ok(y0.clone());
                };
                let mean = (sum / self.time_embed.len() as f64)?;
                if let Ok(mut m) = self.times_memo.lock() {
                    m.push((key, mean.clone()));
                }
                mean
            }
        };
        y0 + mean
    }

    /// The next latent (1, ldim) from `noise` (1, ldim) and the LM's output `c` (1, cond).
    pub fn sample(&self, c: &Tensor, noise: &Tensor, steps: usize) -> Result<Tensor> {
        let y0 = self.cond_embed.forward(c)?;
        let n = steps.max(1);
        match self.kind {
            FlowKind::Lsd => {
                let mut cur = noise.clone();
                for i in 0..n {
                    let (s, t) = (
                        (i as f64 / n as f64) as f32,
                        ((i + 1) as f64 / n as f64) as f32,
                    );
                    let y = self.with_times(&y0, &[s, t])?;
                    cur = (&cur + (self.net(&cur, &y)? / n as f64)?)?;
                }
                Ok(cur)
            }
            FlowKind::FlowMatching => {
                let mut cur = noise.clone();
                for i in 0..n {
                    let t = (i as f64 / n as f64) as f32;
                    let y = self.with_times(&y0, &[t])?;
                    cur = (&cur + (self.net(&cur, &y)? / n as f64)?)?;
                }
                Ok(cur)
            }
            FlowKind::Drifting => self.net(noise, &y0),
            FlowKind::Pointwise => noise + self.net(noise, &y0)?,
        }
    }

    pub fn kind(&self) -> FlowKind {
        self.kind
    }
}

/// Gaussian noise of std sqrt(temperature), clamped to ±`clamp` by redrawing (torch's
/// `trunc_normal_`), from a seeded generator; zeros at temperature 0.
pub fn noise(
    rng: &mut rand::rngs::StdRng,
    n: usize,
    temperature: f64,
    clamp: Option<f64>,
    device: &moshi::candle::Device,
) -> Result<Tensor> {
    use rand::Rng;
    if temperature <= 0.0 {
        return Tensor::zeros((1, n), DType::F32, device);
    }
    let std = temperature.sqrt();
    let mut v = Vec::with_capacity(n);
    while v.len() < n {
        // Box-Muller.
        let u1: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
        let u2: f64 = rng.random::<f64>();
        let r = (-2.0 * u1.ln()).sqrt();
        for z in [
            r * (std::f64::consts::TAU * u2).cos(),
            r * (std::f64::consts::TAU * u2).sin(),
        ] {
            let x = z * std;
            if clamp.is_none_or(|c| x.abs() <= c) && v.len() < n {
                v.push(x as f32);
            }
        }
    }
    Tensor::from_vec(v, (1, n), device)
}
