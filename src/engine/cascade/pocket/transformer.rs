//! The streaming transformer of Pocket TTS (`pocket_tts/modules/transformer.py` and
//! `attention.py`): pre-norm layers, interleaved RoPE, a plain GELU feed-forward,
//! optional layer scales, and a key/value cache. The flow LM attends to everything
//! before (no context); the codec decoder's transformer to its last `context` steps.

use super::layers::{gelu_tanh, rope, rope_tables, LayerNorm, Linear};
use moshi::candle::{Result, Tensor};
use moshi::candle_nn::VarBuilder;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Shape {
    pub d_model: usize,
    pub num_heads: usize,
    pub kv_heads: usize,
    pub attn_dim: usize,
    pub feedforward: usize,
    pub layers: usize,
    pub max_period: f64,
    /// Steps each query may look back (`None`: all).
    pub context: Option<usize>,
    pub layer_scale: bool,
}

#[derive(Clone)]
struct Layer {
    in_proj: Linear,
    out_proj: Linear,
    norm1: LayerNorm,
    norm2: LayerNorm,
    linear1: Linear,
    linear2: Linear,
    scales: Option<(Tensor, Tensor)>,
}

/// One layer's cached keys and values: (1, kv heads, steps, head width) each, and the
/// position of their first step.
#[derive(Clone, Default)]
pub struct LayerCache {
    pub k: Option<Tensor>,
    pub v: Option<Tensor>,
    pub start: usize,
}

#[derive(Clone)]
pub struct Transformer {
    layers: Vec<Layer>,
    shape: Shape,
}

/// The transformer's streaming state: a cache per layer and the next position.
#[derive(Clone, Default)]
pub struct Cache {
    pub layers: Vec<LayerCache>,
    pub offset: usize,
}

impl Transformer {
    pub fn load(vb: &VarBuilder, s: Shape) -> Result<Self> {
        let hd = s.attn_dim / s.num_heads;
        let kv = hd * s.kv_heads;
        let mut layers = Vec::with_capacity(s.layers);
        for i in 0..s.layers {
            let vb = vb.pp(format!("layers.{i}"));
            let scales = if s.layer_scale {
                Some((
                    vb.pp("layer_scale_1").get(s.d_model, "scale")?,
                    vb.pp("layer_scale_2").get(s.d_model, "scale")?,
                ))
            } else {
                None
            };
            layers.push(Layer {
                in_proj: Linear::load(
                    &vb.pp("self_attn.in_proj"),
                    s.d_model,
                    s.attn_dim + 2 * kv,
                    false,
                )?,
                out_proj: Linear::load(&vb.pp("self_attn.out_proj"), s.attn_dim, s.d_model, false)?,
                norm1: LayerNorm::load(&vb.pp("norm1"), s.d_model, 1e-5)?,
                norm2: LayerNorm::load(&vb.pp("norm2"), s.d_model, 1e-5)?,
                linear1: Linear::load(&vb.pp("linear1"), s.d_model, s.feedforward, false)?,
                linear2: Linear::load(&vb.pp("linear2"), s.feedforward, s.d_model, false)?,
                scales,
            });
        }
        Ok(Self { layers, shape: s })
    }

    pub fn shape(&self) -> Shape {
        self.shape
    }

    /// The same transformer with its linear layers in q8_0.
    pub fn quantized(&self) -> Result<Self> {
        let mut t = self.clone();
        for l in &mut t.layers {
            l.in_proj = l.in_proj.quantized()?;
            l.out_proj = l.out_proj.quantized()?;
            l.linear1 = l.linear1.quantized()?;
            l.linear2 = l.linear2.quantized()?;
        }
        Ok(t)
    }

    pub fn empty_cache(&self) -> Cache {
        Cache {
            layers: vec![LayerCache::default(); self.layers.len()],
            offset: 0,
        }
    }

    /// Run `x` (1, time, d_model) at positions `cache.offset..`, extending the cache.
    pub fn forward(&self, x: &Tensor, cache: &mut Cache) -> Result<Tensor> {
        let mut x = x.clone();
        let t = x.dim(1)?;
        let s = &self.shape;
        let hd = s.attn_dim / s.num_heads;
        // What every layer shares: the RoPE tables, and the mask (all layers' caches
        // hold the same positions).
        let rope = rope_tables(t, hd, cache.offset, s.max_period, x.device())?;
        let (start, n) = match cache.layers.first().and_then(|c| c.k.as_ref()) {
            Some(k) => (cache.layers[0].start, k.dim(2)? + t),
            None => (cache.offset, t),
        };
        let mask = self.mask(t, n, cache.offset, start, x.device())?;
        for (layer, c) in self.layers.iter().zip(cache.layers.iter_mut()) {
            x = self.layer(layer, &x, c, cache.offset, &rope, mask.as_ref())?;
        }
        cache.offset += t;
        Ok(x)
    }

    /// The additive mask for `t` queries at `offset..` over `n` keys at `start..`, or
    /// `None` when every key is visible to every query.
    fn mask(
        &self,
        t: usize,
        n: usize,
        offset: usize,
        start: usize,
        device: &moshi::candle::Device,
    ) -> Result<Option<Tensor>> {
        let ctx = self.shape.context;
        let needs = t > 1 || ctx.is_some_and(|ctx| offset + t > start + ctx);
        if !needs {
            return Ok(None);
        }
        let mut m = vec![0f32; t * n];
        for i in 0..t {
            let pq = offset + i;
            for j in 0..n {
                let pk = start + j;
                if pk > pq || ctx.is_some_and(|ctx| pq - pk >= ctx) {
                    m[i * n + j] = f32::NEG_INFINITY;
                }
            }
        }
        Ok(Some(Tensor::from_vec(m, (1, 1, t, n), device)?))
    }

    fn layer(
        &self,
        l: &Layer,
        x: &Tensor,
        c: &mut LayerCache,
        offset: usize,
        (cos, sin): &(Tensor, Tensor),
        mask: Option<&Tensor>,
    ) -> Result<Tensor> {
        let s = &self.shape;
        let (b, t, _) = x.dims3()?;
        let hd = s.attn_dim / s.num_heads;
        let kvd = hd * s.kv_heads;
        let h = l.norm1.forward(x)?;
        let p = l.in_proj.forward(&h)?;
        let q = p
            .narrow(2, 0, s.attn_dim)?
            .reshape((b, t, s.num_heads, hd))?
            .transpose(1, 2)?;
        let k = p
            .narrow(2, s.attn_dim, kvd)?
            .reshape((b, t, s.kv_heads, hd))?
            .transpose(1, 2)?;
        let v = p
            .narrow(2, s.attn_dim + kvd, kvd)?
            .reshape((b, t, s.kv_heads, hd))?
            .transpose(1, 2)?
            .contiguous()?;
        let q = rope(&q, cos, sin)?;
        let k = rope(&k, cos, sin)?;
        let (k_all, v_all) = match (&c.k, &c.v) {
            (Some(ck), Some(cv)) => (Tensor::cat(&[ck, &k], 2)?, Tensor::cat(&[cv, &v], 2)?),
            _ => {
                c.start = offset;
                (k, v)
            }
        };
        let n = k_all.dim(2)?;
        let (k_att, v_att) = if s.kv_heads != s.num_heads {
            let r = s.num_heads / s.kv_heads;
            (repeat_heads(&k_all, r)?, repeat_heads(&v_all, r)?)
        } else {
            (k_all.clone(), v_all.clone())
        };
        let scale = 1.0 / (hd as f64).sqrt();
        let mut att = (q.matmul(&k_att.t()?)? * scale)?;
        if let Some(m) = mask {
            att = att.broadcast_add(m)?;
        }
        let att = moshi::candle_nn::ops::softmax_last_dim(&att)?;
        let y = att
            .matmul(&v_att)?
            .transpose(1, 2)?
            .reshape((b, t, s.attn_dim))?;
        let y = l.out_proj.forward(&y)?;
        let y = match &l.scales {
            Some((s1, _)) => y.broadcast_mul(s1)?,
            None => y,
        };
        let x = (x + y)?;
        let h = l.norm2.forward(&x)?;
        let f = l.linear2.forward(&gelu_tanh(&l.linear1.forward(&h)?)?)?;
        let f = match &l.scales {
            Some((_, s2)) => f.broadcast_mul(s2)?,
            None => f,
        };
        // Keep only what a later query can see.
        let (mut k_keep, mut v_keep, mut start) = (k_all, v_all, c.start);
        if let Some(ctx) = s.context {
            let next = offset + t;
            let first = (next + 1).saturating_sub(ctx);
            if first > start {
                let drop = (first - start).min(n);
                k_keep = k_keep.narrow(2, drop, n - drop)?.contiguous()?;
                v_keep = v_keep.narrow(2, drop, n - drop)?.contiguous()?;
                start += drop;
            }
        }
        c.k = Some(k_keep);
        c.v = Some(v_keep);
        c.start = start;
        x + f
    }
}

/// Grouped-query attention: each key/value head serves `r` query heads in a row.
fn repeat_heads(x: &Tensor, r: usize) -> Result<Tensor> {
    let (b, h, t, d) = x.dims4()?;
    x.unsqueeze(2)?
        .broadcast_as((b, h, r, t, d))?
        .reshape((b, h * r, t, d))
}

/// The last step of `x` (1, time, d): (1, d).
pub fn last_step(x: &Tensor) -> Result<Tensor> {
    let t = x.dim(1)?;
    x.narrow(1, t - 1, 1)?.squeeze(1)
}
