//! Qwen2 from a GGUF file, after candle-transformers' `quantized_qwen2` (same tensors,
//! same maths, its `RmsNorm`), with what a conversation needs:
//! - the KV cache can be cut back to a prefix, so a turn only reads the tokens that are
//!   new since the last one;
//! - it is preallocated and written in place, as candle-nn's `KvCache` is, rather than
//!   copied whole by `Tensor::cat` on every token (quadratic over a conversation), and
//!   read in place: the query heads that share a key head read it together, where
//!   `repeat_kv` copied it for each (7 times for Qwen2.5 0.5B);
//! - positions can be removed from the middle (`remove`), the later ones moved down
//!   with their keys turned back, as llama.cpp's context shift and cache reuse do: a
//!   history cut at its front reads on instead of reading the conversation again;
//! - the causal mask is built for the cached offset instead of being cached per prompt
//!   length (candle's keeps one t×t mask per distinct length, forever, and can only
//!   read a prompt at position 0).

use candle_transformers::quantized_nn::RmsNorm;
use moshi::candle::quantized::{gguf_file, QMatMul};
use moshi::candle::{DType, Device, IndexOp, Module, Result, Tensor};
use moshi::candle_nn::Embedding;

#[derive(Debug, Clone, PartialEq)]
pub struct Qwen2Config {
    pub n_head: usize,
    pub n_kv_head: usize,
    pub hidden: usize,
    pub n_layer: usize,
    pub ffn: usize,
    /// Positions the model was trained for.
    pub context: usize,
    pub eps: f64,
    pub rope_base: f32,
}

impl Qwen2Config {
    pub fn from_gguf(
        md: &std::collections::HashMap<String, gguf_file::Value>,
    ) -> std::result::Result<Self, String> {
        let arch = md
            .get("general.architecture")
            .and_then(|v| v.to_string().ok())
            .ok_or("no `general.architecture` in its metadata")?;
        if arch != "qwen2" {
            return Err(format!(
                "its architecture is `{arch}`; the in-process LLM runs Qwen2 models (Qwen2.5 instruct GGUFs)"
            ));
        }
        let u = |k: &str| -> std::result::Result<usize, String> {
            md.get(&format!("qwen2.{k}"))
                .and_then(|v| {
                    v.to_u32()
                        .ok()
                        .or_else(|| v.to_u64().ok().map(|x| x as u32))
                })
                .map(|v| v as usize)
                .ok_or_else(|| format!("no `qwen2.{k}` in its metadata"))
        };
        let cfg = Self {
            n_head: u("attention.head_count")?,
            n_kv_head: u("attention.head_count_kv")?,
            hidden: u("embedding_length")?,
            n_layer: u("block_count")?,
            ffn: u("feed_forward_length")?,
            context: u("context_length")?,
            eps: md
                .get("qwen2.attention.layer_norm_rms_epsilon")
                .and_then(|v| v.to_f32().ok())
                .ok_or("no `qwen2.attention.layer_norm_rms_epsilon` in its metadata")?
                as f64,
            rope_base: md
                .get("qwen2.rope.freq_base")
                .and_then(|v| v.to_f32().ok())
                .unwrap_or(10_000.0),
        };
        if cfg.n_head == 0
            || cfg.n_kv_head == 0
            || !cfg.hidden.is_multiple_of(cfg.n_head)
            || !cfg.n_head.is_multiple_of(cfg.n_kv_head)
        {
            return Err(format!("inconsistent attention sizes: {cfg:?}"));
        }
        Ok(cfg)
    }

    pub fn head_dim(&self) -> usize {
        self.hidden / self.n_head
    }

    /// Bytes of KV cache for `positions` tokens (f32 keys and values, every layer).
    pub fn kv_bytes(&self, positions: usize) -> u64 {
        (self.n_layer * 2 * self.n_kv_head * self.head_dim() * positions * 4) as u64
    }
}

struct Layer {
    wq: QMatMul,
    wk: QMatMul,
    wv: QMatMul,
    bq: Tensor,
    bk: Tensor,
    bv: Tensor,
    wo: QMatMul,
    attn_norm: RmsNorm,
    ffn_norm: RmsNorm,
    gate: QMatMul,
    down: QMatMul,
    up: QMatMul,
    k_cache: KvBuffer,
    v_cache: KvBuffer,
}

/// Positions added to a cache buffer at a time: growing copies it, so not per token.
const CACHE_GROW: usize = 512;

/// One layer's keys or values, (1, kv heads, positions, head dim): a buffer written in
/// place (`slice_set`) that grows in steps of `CACHE_GROW` up to `max` positions, and
/// the count of positions in use. Cutting back is only a smaller count.
struct KvBuffer {
    data: Option<Tensor>,
    len: usize,
    max: usize,
}

impl KvBuffer {
    fn new(max: usize) -> Self {
        Self {
            data: None,
            len: 0,
            max,
        }
    }

    fn truncate(&mut self, n: usize) {
        self.len = self.len.min(n);
        if self.len == 0 {
            // Nothing kept: let the memory go (a reset conversation starts small).
            self.data = None;
        }
    }

    /// Drop positions `at..at + n` and move the later ones down to `at`, passed through
    /// `turn` on the way (the keys' rotation back by `n` positions).
    fn remove(
        &mut self,
        at: usize,
        n: usize,
        turn: impl FnOnce(&Tensor) -> Result<Tensor>,
    ) -> Result<()> {
        let moved = self.len.saturating_sub(at + n);
        if let (Some(data), true) = (&self.data, moved > 0) {
            // A tensor of its own, not a view: it is written back over the storage it
            // was read from (`contiguous` would share a view that already is).
            let tail = turn(&data.narrow(2, at + n, moved)?.force_contiguous()?)?;
            data.slice_set(&tail, 2, at)?;
        }
        self.truncate(at + moved);
        Ok(())
    }

    /// Append `x` (1, heads, t, head dim) after the positions in use; all of them.
    fn append(&mut self, x: &Tensor) -> Result<Tensor> {
        let t = x.dim(2)?;
        let need = self.len + t;
        if need > self.max {
            moshi::candle::bail!("the KV cache holds {} positions, not {need}", self.max);
        }
        let have = self.data.as_ref().map_or(Ok(0), |d| d.dim(2))?;
        if need > have {
            let cap = need
                .div_ceil(CACHE_GROW)
                .saturating_mul(CACHE_GROW)
                .min(self.max);
            let (b, h, _, d) = x.dims4()?;
            let grown = Tensor::zeros((b, h, cap, d), x.dtype(), x.device())?;
            if let Some(old) = &self.data {
                if self.len > 0 {
                    grown.slice_set(&old.narrow(2, 0, self.len)?.contiguous()?, 2, 0)?;
                }
            }
            self.data = Some(grown);
        }
        let data = self.data.as_ref().expect("allocated above");
        data.slice_set(&x.contiguous()?, 2, self.len)?;
        self.len = need;
        data.narrow(2, 0, self.len)
    }
}

pub struct Qwen2 {
    embed: Embedding,
    layers: Vec<Layer>,
    norm: RmsNorm,
    output: QMatMul,
    cos: Tensor,
    sin: Tensor,
    /// RoPE's frequencies, one per pair of a head's dimensions.
    theta: Vec<f32>,
    cfg: Qwen2Config,
    cached: usize,
    device: Device,
}

impl Qwen2 {
    /// Load from an open GGUF; `max_positions` bounds the rotary tables (and so the
    /// context) below the model's own length.
    pub fn load<R: std::io::Read + std::io::Seek>(
        content: &gguf_file::Content,
        reader: &mut R,
        device: &Device,
        max_positions: usize,
    ) -> Result<Self> {
        let cfg = Qwen2Config::from_gguf(&content.metadata).map_err(moshi::candle::Error::msg)?;
        let mut t = |name: &str| content.tensor(reader, name, device);
        let embed_q = t("token_embd.weight")?;
        let embed = Embedding::new(embed_q.dequantize(device)?, cfg.hidden);
        let norm = RmsNorm::from_qtensor(t("output_norm.weight")?, cfg.eps)?;
        // Small Qwen2 models tie the output to the embedding.
        let output = match t("output.weight") {
            Ok(w) => QMatMul::from_qtensor(w)?,
            Err(_) => QMatMul::from_qtensor(embed_q)?,
        };
        let positions = cfg.context.min(max_positions).max(1);
        let mut layers = Vec::with_capacity(cfg.n_layer);
        for i in 0..cfg.n_layer {
            let mut w = |n: &str| t(&format!("blk.{i}.{n}"));
            layers.push(Layer {
                wq: QMatMul::from_qtensor(w("attn_q.weight")?)?,
                wk: QMatMul::from_qtensor(w("attn_k.weight")?)?,
                wv: QMatMul::from_qtensor(w("attn_v.weight")?)?,
                bq: w("attn_q.bias")?.dequantize(device)?,
                bk: w("attn_k.bias")?.dequantize(device)?,
                bv: w("attn_v.bias")?.dequantize(device)?,
                wo: QMatMul::from_qtensor(w("attn_output.weight")?)?,
                attn_norm: RmsNorm::from_qtensor(w("attn_norm.weight")?, cfg.eps)?,
                ffn_norm: RmsNorm::from_qtensor(w("ffn_norm.weight")?, cfg.eps)?,
                gate: QMatMul::from_qtensor(w("ffn_gate.weight")?)?,
                down: QMatMul::from_qtensor(w("ffn_down.weight")?)?,
                up: QMatMul::from_qtensor(w("ffn_up.weight")?)?,
                k_cache: KvBuffer::new(positions),
                v_cache: KvBuffer::new(positions),
            });
        }
        let hd = cfg.head_dim();
        let theta: Vec<f32> = (0..hd)
            .step_by(2)
            .map(|i| 1f32 / cfg.rope_base.powf(i as f32 / hd as f32))
            .collect();
        let freqs = theta.clone();
        let theta = Tensor::new(theta.as_slice(), device)?;
        let idx = Tensor::arange(0, positions as u32, device)?
            .to_dtype(DType::F32)?
            .reshape((positions, 1))?
            .matmul(&theta.reshape((1, hd / 2))?)?;
        Ok(Self {
            embed,
            layers,
            norm,
            output,
            cos: idx.cos()?,
            sin: idx.sin()?,
            theta: freqs,
            cfg,
            cached: 0,
            device: device.clone(),
        })
    }

    pub fn config(&self) -> &Qwen2Config {
        &self.cfg
    }

    /// Positions the rotary tables cover: the most tokens a conversation can hold.
    pub fn max_positions(&self) -> usize {
        self.cos.dim(0).unwrap_or(0)
    }

    /// Keep only the first `n` cached positions.
    pub fn truncate(&mut self, n: usize) -> Result<()> {
        if n >= self.cached {
            return Ok(());
        }
        for l in &mut self.layers {
            l.k_cache.truncate(n);
            l.v_cache.truncate(n);
        }
        self.cached = n;
        Ok(())
    }

    /// Positions cached (tokens read).
    pub fn cached(&self) -> usize {
        self.cached
    }

    /// Drop cached positions `at..at + n`; the later ones move down by `n`. Their keys
    /// are turned back by `n` positions (RoPE's rotations add: a key rotated for
    /// position p, rotated by -n, is the key for p - n), and values carry no position.
    /// Their deeper layers keep what they read of the dropped tokens, as after
    /// llama.cpp's context shift: with the system prompt kept at the front, a
    /// conversation reads on (StreamingLLM's finding) without being read again.
    pub fn remove(&mut self, at: usize, n: usize) -> Result<()> {
        let n = n.min(self.cached.saturating_sub(at));
        if n == 0 {
            return Ok(());
        }
        let moved = self.cached - at - n;
        // The angle in f64, for the tables' own precision at thousands of positions.
        let (cos, sin): (Vec<f32>, Vec<f32>) = self
            .theta
            .iter()
            .map(|&f| {
                let a = -(n as f64) * f as f64;
                (a.cos() as f32, a.sin() as f32)
            })
            .unzip();
        let half = self.theta.len();
        let row = |v: Vec<f32>| -> Result<Tensor> {
            Tensor::from_vec(v, (1, half), &self.device)?
                .broadcast_as((moved.max(1), half))?
                .contiguous()
        };
        let (cos, sin) = (row(cos)?, row(sin)?);
        for l in &mut self.layers {
            l.k_cache
                .remove(at, n, |k| moshi::candle_nn::rotary_emb::rope(k, &cos, &sin))?;
            l.v_cache.remove(at, n, |v| Ok(v.clone()))?;
        }
        self.cached -= n;
        Ok(())
    }

    /// Read `tokens` after the cached ones; the logits (f32, vocabulary-sized) for the
    /// token after the last.
    pub fn forward(&mut self, tokens: &[u32]) -> Result<Tensor> {
        let t = tokens.len();
        let pos = self.cached;
        if t == 0 {
            moshi::candle::bail!("no tokens to read");
        }
        if pos + t > self.max_positions() {
            moshi::candle::bail!(
                "the conversation needs {} positions, past the model's {}",
                pos + t,
                self.max_positions()
            );
        }
        let x = Tensor::new(tokens, &self.device)?.unsqueeze(0)?;
        let mask = if t > 1 {
            // Row i sees columns up to pos + i.
            let m: Vec<f32> = (0..t)
                .flat_map(|i| {
                    (0..pos + t).map(move |j| if j > pos + i { f32::NEG_INFINITY } else { 0. })
                })
                .collect();
            Some(Tensor::from_vec(m, (t, pos + t), &self.device)?)
        } else {
            None
        };
        let cos = self.cos.narrow(0, pos, t)?;
        let sin = self.sin.narrow(0, pos, t)?;
        let (nh, nkv, hd) = (self.cfg.n_head, self.cfg.n_kv_head, self.cfg.head_dim());
        let mut h = self.embed.forward(&x)?;
        for l in &mut self.layers {
            let residual = &h;
            let xs = l.attn_norm.forward(&h)?;
            let shape = |y: Tensor, heads: usize| -> Result<Tensor> {
                y.reshape((1, t, heads, hd))?.transpose(1, 2)?.contiguous()
            };
            let q = shape(l.wq.forward(&xs)?.broadcast_add(&l.bq)?, nh)?;
            let k = shape(l.wk.forward(&xs)?.broadcast_add(&l.bk)?, nkv)?;
            let v = shape(l.wv.forward(&xs)?.broadcast_add(&l.bv)?, nkv)?;
            let q = moshi::candle_nn::rotary_emb::rope(&q, &cos, &sin)?;
            let k = moshi::candle_nn::rotary_emb::rope(&k, &cos, &sin)?;
            // The cache's views, read in place: no copy of the conversation per token.
            let k = l.k_cache.append(&k)?;
            let v = l.v_cache.append(&v)?;
            // The query heads that share a key head read it as one matrix (head j uses
            // key head j / rep, as `repeat_kv` lays them out), rather than copying the
            // keys and values `rep` times over.
            let rep = nh / nkv;
            let len = pos + t;
            let q = q.reshape((1, nkv, rep * t, hd))?;
            let mut att = (q.matmul(&k.t()?)? / (hd as f64).sqrt())?;
            if let Some(m) = &mask {
                att = att
                    .reshape((1, nkv, rep, t, len))?
                    .broadcast_add(m)?
                    .reshape((1, nkv, rep * t, len))?;
            }
            let att = moshi::candle_nn::ops::softmax_last_dim(&att)?;
            let y = att
                .matmul(&v)?
                .reshape((1, nh, t, hd))?
                .transpose(1, 2)?
                .reshape((1, t, self.cfg.hidden))?;
            let h1 = (l.wo.forward(&y)? + residual)?;
            let xs = l.ffn_norm.forward(&h1)?;
            let gate = moshi::candle_nn::ops::silu(&l.gate.forward(&xs)?)?;
            let mlp = l.down.forward(&(gate * l.up.forward(&xs)?)?)?;
            h = (mlp + h1)?;
        }
        self.cached = pos + t;
        let last = self.norm.forward(&h)?.i((.., t - 1, ..))?;
        self.output.forward(&last)?.squeeze(0)?.to_dtype(DType::F32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::llm::synthetic::{write_tiny_qwen2, TinyQwen2};

    fn model(dir: &std::path::Path) -> Qwen2 {
        let p = dir.join("tiny.gguf");
        write_tiny_qwen2(&p, &TinyQwen2::default()).unwrap();
        let mut f = std::fs::File::open(&p).unwrap();
        let c = gguf_file::Content::read(&mut f).unwrap();
        Qwen2::load(&c, &mut f, &Device::Cpu, 1024).unwrap()
    }

    fn close(a: &Tensor, b: &Tensor) -> f32 {
        (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
    }

    /// What the cache replaced: the whole conversation copied by `Tensor::cat` on every
    /// append, cut back by `narrow`.
    struct CatCache(Option<Tensor>);

    impl CatCache {
        fn append(&mut self, x: &Tensor) -> Tensor {
            let all = match &self.0 {
                Some(old) => Tensor::cat(&[old, x], 2).unwrap(),
                None => x.clone(),
            };
            self.0 = Some(all.clone());
            all
        }

        fn truncate(&mut self, n: usize) {
            self.0 = match self.0.take() {
                Some(t) if n > 0 => Some(t.narrow(2, 0, n.min(t.dim(2).unwrap())).unwrap()),
                _ => None,
            };
        }
    }

    fn random(t: usize, seed: u64) -> Tensor {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let v: Vec<f32> = (0..2 * t * 8)
            .map(|_| rng.random_range(-1.0..1.0))
            .collect();
        Tensor::from_vec(v, (1, 2, t, 8), &Device::Cpu).unwrap()
    }

    #[test]
    fn the_cache_reads_back_what_cat_and_narrow_gave_over_turns_with_cuts() {
        // A conversation: a prompt, replies token by token, a user's words read ahead
        // and cut back to where they changed, past two growth steps.
        let mut buf = KvBuffer::new(2000);
        let mut cat = CatCache(None);
        let mut seed = 0;
        let mut step = |buf: &mut KvBuffer, cat: &mut CatCache, t: usize| {
            seed += 1;
            let x = random(t, seed);
            let (a, b) = (buf.append(&x).unwrap(), cat.append(&x));
            assert_eq!(a.dims(), b.dims());
            let (a, b) = (
                a.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                b.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            );
            assert!(a == b, "the cache differs after {} positions", buf.len);
        };
        for turn in 0..6 {
            step(&mut buf, &mut cat, 150 + turn * 7);
            for _ in 0..40 {
                step(&mut buf, &mut cat, 1);
            }
            let keep = buf.len - 23;
            buf.truncate(keep);
            cat.truncate(keep);
            step(&mut buf, &mut cat, 9);
        }
        assert!(buf.len > 2 * CACHE_GROW, "{}", buf.len);
        buf.truncate(0);
        cat.truncate(0);
        step(&mut buf, &mut cat, 5);
        // Full: an error, and what was there stays readable.
        assert!(buf.append(&random(1996, 99)).is_err());
        step(&mut buf, &mut cat, 1);
    }

    /// Figures, not assertions: one token's append to every layer's keys and values at
    /// Qwen2.5 0.5B's cache shape (24 layers, 2 KV heads of 64), at 100 and 3000
    /// positions, written in place and by `Tensor::cat` as before.
    /// `cargo test --release --lib qwen2::tests::figures -- --nocapture`
    #[test]
    fn figures_append_cost_at_100_and_3000_positions() {
        let (layers, heads, hd) = (24, 2, 64);
        let one = Tensor::ones((1, heads, 1, hd), DType::F32, &Device::Cpu).unwrap();
        for at in [100usize, 3000] {
            let fill = Tensor::zeros((1, heads, at, hd), DType::F32, &Device::Cpu).unwrap();
            let mut bufs: Vec<KvBuffer> = (0..2 * layers).map(|_| KvBuffer::new(4096)).collect();
            let mut cats: Vec<CatCache> = (0..2 * layers).map(|_| CatCache(None)).collect();
            for (b, c) in bufs.iter_mut().zip(&mut cats) {
                b.append(&fill).unwrap();
                c.append(&fill);
            }
            let tokens = 50;
            let t = std::time::Instant::now();
            for _ in 0..tokens {
                for b in &mut bufs {
                    b.append(&one).unwrap();
                }
            }
            let in_place = t.elapsed().as_secs_f64() * 1e6 / tokens as f64;
            let t = std::time::Instant::now();
            for _ in 0..tokens {
                for c in &mut cats {
                    c.append(&one);
                }
            }
            let by_cat = t.elapsed().as_secs_f64() * 1e6 / tokens as f64;
            eprintln!(
                "FIGURES KV cache append per token at {at} positions (0.5B shape, all layers): in place {in_place:.0} µs, Tensor::cat {by_cat:.0} µs; load average {}",
                std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim()
            );
        }
    }

    /// Figures, not assertions: one token through the tiny model (4 heads, 2 layers) at
    /// 100 and 3000 cached positions; what is left to grow is attention's own reading of
    /// the cache, not a copy of it.
    /// `cargo test --release --lib qwen2::tests::figures -- --nocapture`
    #[test]
    fn figures_token_time_at_100_and_3000_positions() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("tiny.gguf");
        let shape = TinyQwen2 {
            context: 4096,
            ..TinyQwen2::default()
        };
        write_tiny_qwen2(&p, &shape).unwrap();
        let mut f = std::fs::File::open(&p).unwrap();
        let c = gguf_file::Content::read(&mut f).unwrap();
        let mut m = Qwen2::load(&c, &mut f, &Device::Cpu, 4096).unwrap();
        let toks: Vec<u32> = (0..3000u32).map(|t| (t * 7 + 3) % 290).collect();
        for at in [100usize, 3000] {
            m.truncate(0).unwrap();
            m.forward(&toks[..at]).unwrap();
            let n = 30;
            let t = std::time::Instant::now();
            for &tok in &toks[..n] {
                m.forward(&[tok]).unwrap();
            }
            eprintln!(
                "FIGURES tiny Qwen2, one token at {at} positions: {:.0} µs; load average {}",
                t.elapsed().as_secs_f64() * 1e6 / n as f64,
                std::fs::read_to_string("/proc/loadavg")
                    .unwrap_or_default()
                    .trim()
            );
        }
    }

    fn load_shape(dir: &std::path::Path, shape: &TinyQwen2) -> Qwen2 {
        let p = dir.join(format!("tiny-{}-{}.gguf", shape.layers, shape.kv_heads));
        write_tiny_qwen2(&p, shape).unwrap();
        let mut f = std::fs::File::open(&p).unwrap();
        let c = gguf_file::Content::read(&mut f).unwrap();
        Qwen2::load(&c, &mut f, &Device::Cpu, 2048).unwrap()
    }

    #[test]
    fn removed_positions_leave_what_a_fresh_read_of_the_rest_gives_in_one_layer() {
        // In one layer, keys and values depend only on the token and its position, so
        // after the removal the next token's logits must be those of reading the
        // conversation without the dropped part. One key head is a contiguous view of
        // the cache, two are not.
        let tmp = tempfile::tempdir().unwrap();
        let toks: Vec<u32> = (0..760u32).map(|t| (t * 7 + 3) % 290).collect();
        // A system prompt, messages cut from the front, the rest (past a growth step
        // of the buffer), and the next turn.
        let (front, dropped, kept, next) =
            (&toks[..30], &toks[30..130], &toks[130..740], &toks[740..]);
        for kv_heads in [1, 2] {
            let shape = TinyQwen2 {
                layers: 1,
                kv_heads,
                ..TinyQwen2::default()
            };
            let mut m = load_shape(tmp.path(), &shape);
            m.forward(&[front, dropped, kept].concat()).unwrap();
            m.remove(30, dropped.len()).unwrap();
            assert_eq!(m.cached(), front.len() + kept.len());
            let shifted = m.forward(next).unwrap();
            let fresh = load_shape(tmp.path(), &shape)
                .forward(&[front, kept, next].concat())
                .unwrap();
            let unmoved = load_shape(tmp.path(), &shape)
                .forward(&[front, dropped, kept, next].concat())
                .unwrap();
            let (off, apart) = (close(&shifted, &fresh), close(&unmoved, &fresh));
            assert!(
                off < 1e-3 && apart > 100.0 * off,
                "{kv_heads} key heads: {off} from a fresh read, which is {apart} from the conversation with the dropped part"
            );
        }
    }

    #[test]
    fn removing_is_bounded_by_what_is_cached_and_reading_goes_on_after_it() {
        let tmp = tempfile::tempdir().unwrap();
        let toks: Vec<u32> = (0..100u32).map(|t| (t * 7 + 3) % 290).collect();
        let mut m = model(tmp.path());
        m.forward(&toks).unwrap();
        // Nothing, then past the end: as a cut back.
        m.remove(40, 0).unwrap();
        assert_eq!(m.cached(), 100);
        m.remove(90, 500).unwrap();
        assert_eq!(m.cached(), 90);
        m.remove(200, 5).unwrap();
        assert_eq!(m.cached(), 90);
        m.remove(10, 30).unwrap();
        assert_eq!(m.cached(), 60);
        m.forward(&toks[..5]).unwrap();
        assert_eq!(m.cached(), 65);
        m.remove(0, 65).unwrap();
        assert_eq!(m.cached(), 0);
        let again = m.forward(&toks).unwrap();
        let whole = model(tmp.path()).forward(&toks).unwrap();
        assert!(close(&whole, &again) < 1e-4);
    }

    #[test]
    fn the_cache_grows_past_its_step_and_cuts_back_as_one_pass_reads() {
        let tmp = tempfile::tempdir().unwrap();
        let toks: Vec<u32> = (0..CACHE_GROW as u32 + 100)
            .map(|t| (t * 7 + 3) % 290)
            .collect();
        let mut one = model(tmp.path());
        let whole = one.forward(&toks).unwrap();
        // In pieces, through a growth of the buffer, with a detour cut back.
        let mut m = model(tmp.path());
        m.forward(&toks[..300]).unwrap();
        m.forward(&[1, 2, 3, 4, 5]).unwrap();
        m.truncate(300).unwrap();
        for t in 300..310 {
            m.forward(&toks[t..t + 1]).unwrap();
        }
        let pieces = m.forward(&toks[310..]).unwrap();
        assert!(close(&whole, &pieces) < 1e-4, "{}", close(&whole, &pieces));
        assert_eq!(m.cached, toks.len());
        // Past the positions the model holds: an error, and the cache is as it was.
        assert!(m.forward(&vec![1; 1024 - toks.len() + 1]).is_err());
        m.truncate(0).unwrap();
        let again = m.forward(&toks).unwrap();
        assert!(close(&whole, &again) < 1e-4);
    }
}
