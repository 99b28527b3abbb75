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
/// position of their first step. Keys and values live in buffers with room to grow,
/// written in place; a copy of the cache (a voice's, for each chunk) shares them until
/// its first write, which moves it to buffers of its own, so a copy never writes
/// where another reads.
#[derive(Default)]
pub struct LayerCache {
    k: Option<Tensor>,
    v: Option<Tensor>,
    len: usize,
    pub start: usize,
    owned: bool,
}

impl Clone for LayerCache {
    fn clone(&self) -> Self {
        Self {
            k: self.k.clone(),
            v: self.v.clone(),
            len: self.len,
            start: self.start,
            owned: false,
        }
    }
}

/// Steps of room added when a cache grows.
const GROW: usize = 256;

impl LayerCache {
    /// A cache holding `k` and `v` (1, heads, steps, head width), from position 0.
    pub fn from_kv(k: Tensor, v: Tensor) -> Result<Self> {
        let len = k.dim(2)?;
        Ok(Self {
            k: Some(k),
            v: Some(v),
            len,
            start: 0,
            owned: false,
        })
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn keys(&self) -> Result<Option<Tensor>> {
        self.k
            .as_ref()
            .map(|k| k.narrow(2, 0, self.len))
            .transpose()
    }

    pub fn values(&self) -> Result<Option<Tensor>> {
        self.v
            .as_ref()
            .map(|v| v.narrow(2, 0, self.len))
            .transpose()
    }

    /// Add `k` and `v` (contiguous, same shape); the whole cache after.
    fn append(&mut self, k: &Tensor, v: &Tensor) -> Result<(Tensor, Tensor)> {
        let t = k.dim(2)?;
        let cap = self.k.as_ref().map_or(Ok(0), |k| k.dim(2))?;
        if !self.owned || self.len + t > cap {
            let (b, h, _, d) = k.dims4()?;
            let cap = self.len + t + GROW;
            let nk = Tensor::zeros((b, h, cap, d), k.dtype(), k.device())?;
            let nv = Tensor::zeros((b, h, cap, d), v.dtype(), v.device())?;
            if let (Some(ok), Some(ov)) = (self.keys()?, self.values()?) {
                nk.slice_set(&ok.contiguous()?, 2, 0)?;
                nv.slice_set(&ov.contiguous()?, 2, 0)?;
            }
            self.k = Some(nk);
            self.v = Some(nv);
            self.owned = true;
        }
        if let (Some(bk), Some(bv)) = (&self.k, &self.v) {
            bk.slice_set(k, 2, self.len)?;
            bv.slice_set(v, 2, self.len)?;
        }
        self.len += t;
        Ok((
            self.keys()?.unwrap_or_else(|| k.clone()),
            self.values()?.unwrap_or_else(|| v.clone()),
        ))
    }
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

    /// Bytes of linear weights one step reads.
    pub fn weight_bytes(&self) -> usize {
        self.layers
            .iter()
            .map(|l| {
                [&l.in_proj, &l.out_proj, &l.linear1, &l.linear2]
                    .iter()
                    .map(|x| x.weight_bytes())
                    .sum::<usize>()
            })
            .sum()
    }

    /// Its linear layers' weights are bf16.
    pub fn is_bf16(&self) -> bool {
        self.layers
            .first()
            .is_some_and(|l| matches!(l.in_proj, super::layers::Linear::Bf16 { .. }))
    }

    /// The same transformer with its linear layers' weights in bf16.
    pub fn bf16(&self) -> Result<Self> {
        let mut t = self.clone();
        for l in &mut t.layers {
            l.in_proj = l.in_proj.bf16()?;
            l.out_proj = l.out_proj.bf16()?;
            l.linear1 = l.linear1.bf16()?;
            l.linear2 = l.linear2.bf16()?;
        }
        Ok(t)
    }

    /// The same transformer with its linear layers packed for `kernels::gemm_shifted`
    /// (many rows a call, as in the codec).
    pub fn packed(&self) -> Result<Self> {
        let mut t = self.clone();
        for l in &mut t.layers {
            l.in_proj = l.in_proj.packed()?;
            l.out_proj = l.out_proj.packed()?;
            l.linear1 = l.linear1.packed()?;
            l.linear2 = l.linear2.packed()?;
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
        let (start, n) = match cache.layers.first().filter(|c| !c.is_empty()) {
            Some(c) => (c.start, c.len() + t),
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
        if c.is_empty() {
            c.start = offset;
        }
        let (k_all, v_all) = match s.context {
            // Unbounded context: written in place.
            None => c.append(&k, &v)?,
            Some(_) => match (c.keys()?, c.values()?) {
                (Some(ck), Some(cv)) => (Tensor::cat(&[&ck, &k], 2)?, Tensor::cat(&[&cv, &v], 2)?),
                _ => (k, v),
            },
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
        if let Some(ctx) = s.context {
            // Keep only what a later query can see.
            let (mut k_keep, mut v_keep, mut start) = (k_all, v_all, c.start);
            let first = (offset + t + 1).saturating_sub(ctx);
            if first > start {
                let drop = (first - start).min(n);
                k_keep = k_keep.narrow(2, drop, n - drop)?.contiguous()?;
                v_keep = v_keep.narrow(2, drop, n - drop)?.contiguous()?;
                start += drop;
            }
            let mut kept = LayerCache::from_kv(k_keep, v_keep)?;
            kept.start = start;
            *c = kept;
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use moshi::candle::Device;

    /// The keys of step `i`, all heads.
    fn step(c: &LayerCache, i: usize) -> Vec<f32> {
        let k = c.keys().unwrap().unwrap();
        k.narrow(2, i, 1)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap()
    }

    #[test]
    fn copies_of_a_cache_never_write_into_each_other() {
        let dev = Device::Cpu;
        let kv = |x: f32, n: usize| Tensor::full(x, (1, 2, n, 4), &dev).unwrap();
        let mut voice = LayerCache::from_kv(kv(1.0, 3), kv(1.0, 3)).unwrap();
        // The owner grows in place; a copy taken before keeps its view.
        voice.append(&kv(2.0, 1), &kv(2.0, 1)).unwrap();
        let before = voice.clone();
        voice.append(&kv(3.0, 1), &kv(3.0, 1)).unwrap();
        assert_eq!(before.len(), 4);
        assert_eq!(step(&before, 2), [1.0; 8]);
        assert_eq!(step(&before, 3), [2.0; 8]);
        assert_eq!(step(&voice, 4), [3.0; 8]);
        // Two copies write their own steps.
        let (mut a, mut b) = (before.clone(), before.clone());
        a.append(&kv(5.0, 2), &kv(5.0, 2)).unwrap();
        b.append(&kv(7.0, 2), &kv(7.0, 2)).unwrap();
        assert_eq!((a.len(), b.len()), (6, 6));
        assert_eq!(step(&a, 4), [5.0; 8]);
        assert_eq!(step(&b, 4), [7.0; 8]);
        assert_eq!(step(&voice, 4), [3.0; 8]);
        assert_eq!(step(&b, 3), [2.0; 8]);
    }
}
