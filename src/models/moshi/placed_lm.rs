//! The Moshi LM split between the host and the compute device (see `placement`).
//!
//! The same computation as `moshi::lm::LmModel` (a test checks the tokens are identical)
//! assembled from the moshi crate's public parts: its `StreamingTransformer`, norms and
//! (quantized) linears run unchanged; only the embedding lookups and the optional leading
//! layers happen on the host, and one `d_model` row per step crosses to the device.

use super::placement::Placement;
use moshi::batched_transformer::StreamingTransformer as BatchedTransformer;
use moshi::candle::{DType, Device, IndexOp, Module, Result, Tensor};
use moshi::lm::Config;
use moshi::nn::{linear, MaybeQuantizedEmbedding, MaybeQuantizedLinear, MaybeQuantizedVarBuilder};
use moshi::streaming::StreamMask;
use moshi::transformer::{Norm, StreamingTransformer};
use moshi::StreamingModule;

/// Var builders for each part. `host` (f32 on the CPU) serves the embedding tables;
/// `device` the output norm, text head and depformer. The temporal transformer comes as
/// consecutive stacks, in order, each a builder whose layers are named from 0 and the
/// number of layers it holds: the host's leading layers, then the device's, in as many
/// stacks as the loader found convenient. Chained, they are the one transformer.
pub struct LmSources<'a> {
    pub host: MaybeQuantizedVarBuilder<'a>,
    pub device: MaybeQuantizedVarBuilder<'a>,
    pub stacks: Vec<(MaybeQuantizedVarBuilder<'a>, usize)>,
    pub placement: Placement,
}

#[derive(Clone)]
struct Slice {
    transformer: StreamingTransformer,
    emb: MaybeQuantizedEmbedding,
    low_rank: Option<MaybeQuantizedLinear>,
    linear_in: MaybeQuantizedLinear,
    linear_out: MaybeQuantizedLinear,
}

/// One step's LM inputs: the previous text token and a token per audio codebook.
pub type StepInput = (u32, Vec<Option<u32>>);

#[derive(Clone)]
pub struct PlacedLm {
    text_emb: MaybeQuantizedEmbedding,
    audio_embs: Vec<MaybeQuantizedEmbedding>,
    /// Consecutive layer stacks, each on its builder's device.
    stacks: Vec<(StreamingTransformer, Device)>,
    /// Instead of the stacks: the whole temporal transformer with a KV cache of one slot
    /// per conversation (`serve --batch`), on the device.
    batched: Option<BatchedTransformer>,
    out_norm: Norm,
    text_linear: MaybeQuantizedLinear,
    depformer: Vec<Slice>,
    device: Device,
    dtype: DType,
    d_model: usize,
    placement: Placement,
}

fn stack(
    cfg: &Config,
    layers: usize,
    vb: &MaybeQuantizedVarBuilder,
) -> Result<(StreamingTransformer, Device)> {
    let mut t = cfg.transformer.clone();
    t.num_layers = layers;
    Ok((
        StreamingTransformer::new(&t, vb.pp("transformer"))?,
        vb.device().clone(),
    ))
}

/// Why moshi's batched transformer cannot run this LM (`None`: it can). It supports
/// causal, pre-norm, RoPE transformers without grouped-query heads, cross-attention or
/// convolution blocks, on one device.
pub fn batch_unsupported(cfg: &Config, placement: Placement) -> Option<String> {
    let t = &cfg.transformer;
    let why = if t.kv_repeat != 1 {
        "its attention shares key/value heads (kv_repeat != 1)"
    } else if !t.causal || !t.norm_first {
        "its transformer is not causal and pre-norm"
    } else if t.cross_attention.is_some() {
        "it has cross-attention"
    } else if t.use_conv_block {
        "it has convolution blocks"
    } else if matches!(
        t.positional_embedding,
        moshi::transformer::PositionalEmbedding::Sin
    ) {
        "it uses sinusoidal positions"
    } else if placement.host_layers > 0 {
        "its layers are split between the host and the device (the memory plan did this: give the device more memory, or lower --context)"
    } else {
        return None;
    };
    Some(why.into())
}

impl PlacedLm {
    /// The LM with a batched temporal transformer of `slots` conversations.
    pub fn new_batched(cfg: &Config, src: LmSources, slots: usize) -> Result<Self> {
        if let Some(why) = batch_unsupported(cfg, src.placement) {
            moshi::candle::bail!("this model cannot be batched: {why}")
        }
        let vb = src
            .stacks
            .iter()
            .find(|(_, l)| *l > 0)
            .map(|(vb, _)| vb.clone())
            .ok_or_else(|| moshi::candle::Error::Msg("no transformer layers".into()))?;
        let batched =
            BatchedTransformer::new(slots.max(1), &cfg.transformer, vb.pp("transformer"))?;
        let mut lm = Self::build(cfg, src, false)?;
        lm.batched = Some(batched);
        Ok(lm)
    }

    pub fn new(cfg: &Config, src: LmSources) -> Result<Self> {
        Self::build(cfg, src, true)
    }

    fn build(cfg: &Config, src: LmSources, with_stacks: bool) -> Result<Self> {
        let d = cfg.transformer.d_model;
        let n = cfg.transformer.num_layers;
        let stacked: usize = src.stacks.iter().map(|(_, l)| l).sum();
        if stacked != n {
            moshi::candle::bail!("layer stacks hold {stacked} layers; the config has {n}")
        }
        let stacks: Vec<_> = src.stacks.iter().filter(|(_, l)| *l > 0).collect();
        // Shared cross-attention weights live in layer 0, which only the first stack has.
        if cfg.transformer.shared_cross_attn && stacks.len() > 1 {
            moshi::candle::bail!(
                "a model with shared cross-attention cannot be split across devices"
            )
        }
        let (host, dev) = (&src.host, &src.device);
        let text_emb =
            MaybeQuantizedEmbedding::new(cfg.text_in_vocab_size, d, host.pp("text_emb"))?;
        let audio_embs = (0..cfg.audio_codebooks)
            .map(|i| MaybeQuantizedEmbedding::new(cfg.audio_vocab_size, d, host.pp("emb").pp(i)))
            .collect::<Result<Vec<_>>>()?;
        let mut depformer = Vec::new();
        if let Some(dep) = &cfg.depformer {
            let dd = dep.transformer.d_model;
            for i in 0..dep.num_slices {
                let vb = dev.pp("depformer").pp(i);
                let in_vocab = if i == 0 {
                    cfg.text_in_vocab_size
                } else {
                    cfg.audio_vocab_size
                };
                let emb_dim = dep.low_rank_embeddings.unwrap_or(dd);
                depformer.push(Slice {
                    transformer: StreamingTransformer::new(&dep.transformer, vb.pp("transformer"))?,
                    emb: MaybeQuantizedEmbedding::new(
                        in_vocab,
                        emb_dim,
                        host.pp("depformer").pp(i).pp("emb"),
                    )?,
                    low_rank: dep
                        .low_rank_embeddings
                        .map(|r| linear(r, dd, false, vb.pp("emb").pp("low_rank")))
                        .transpose()?,
                    linear_in: linear(d, dd, false, vb.pp("linear_in"))?,
                    // The depformer never emits the audio padding token.
                    linear_out: linear(dd, cfg.audio_vocab_size - 1, false, vb.pp("linear_out"))?,
                });
            }
        }
        Ok(Self {
            text_emb,
            audio_embs,
            stacks: if with_stacks {
                stacks
                    .into_iter()
                    .map(|(vb, l)| stack(cfg, *l, vb))
                    .collect::<Result<_>>()?
            } else {
                Vec::new()
            },
            batched: None,
            out_norm: Norm::new(d, &cfg.transformer, dev.pp("out_norm"))?,
            text_linear: linear(d, cfg.text_out_vocab_size, false, dev.pp("text_linear"))?,
            depformer,
            device: dev.device().clone(),
            dtype: dev.dtype(),
            d_model: d,
            placement: src.placement,
        })
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    pub fn d_model(&self) -> usize {
        self.d_model
    }

    pub fn placement(&self) -> Placement {
        self.placement
    }

    pub fn reset_state(&mut self) {
        for (t, _) in self.stacks.iter_mut() {
            t.reset_state();
        }
        if let Some(b) = self.batched.as_mut() {
            b.reset_state();
        }
        // The depformer restarts every step; resetting it here too means a clone never
        // writes into its original's cache buffers.
        for s in self.depformer.iter_mut() {
            s.transformer.reset_state();
        }
    }

    /// One row of an embedding table, looked up on the host (callers move it on).
    fn lookup(&self, emb: &MaybeQuantizedEmbedding, id: u32) -> Result<Tensor> {
        emb.forward(&Tensor::new(&[[id]], &Device::Cpu)?)
    }

    /// One temporal step: the text logits and the hidden state the depformer reads.
    pub fn forward(
        &mut self,
        text: Option<u32>,
        audio: &[Option<u32>],
    ) -> Result<(Tensor, Tensor)> {
        let mut xs = match text {
            Some(t) => self.lookup(&self.text_emb, t)?,
            None => Tensor::zeros((1, 1, self.d_model), DType::F32, &Device::Cpu)?,
        };
        // Summed in the same order as moshi, so f32 results are bit-identical.
        for (emb, id) in self.audio_embs.iter().zip(audio) {
            if let Some(id) = id {
                xs = (xs + self.lookup(emb, *id)?)?;
            }
        }
        self.forward_embedded(xs)
    }

    /// One temporal step from its input embedding (`[1, 1, d_model]`), as PyTorch's
    /// `LMModel.forward_embeddings`: how NVIDIA's precomputed voices are replayed.
    pub fn forward_embedded(&mut self, mut xs: Tensor) -> Result<(Tensor, Tensor)> {
        if self.batched.is_some() {
            moshi::candle::bail!("internal error: a batched LM steps through forward_batch")
        }
        for (t, dev) in self.stacks.iter_mut() {
            // Host stacks compute in f32; the device's in its dtype. Moves only at a change.
            let dtype = if dev.is_cpu() { DType::F32 } else { self.dtype };
            xs = t.forward(&xs.to_device(dev)?.to_dtype(dtype)?)?;
        }
        let xs = xs.to_device(&self.device)?.to_dtype(self.dtype)?;
        let ys = xs.apply(&self.out_norm)?;
        let logits = ys.apply(&self.text_linear)?;
        Ok((logits, ys))
    }

    /// Slots of a batched LM (`None`: not batched).
    pub fn batch_size(&self) -> Option<usize> {
        self.batched.as_ref().map(|b| b.batch_size())
    }

    /// Forget one slot's conversation (its KV cache positions); the others go on.
    pub fn reset_slot(&mut self, slot: usize) -> Result<()> {
        match self.batched.as_mut() {
            Some(b) => b.reset_batch_idx(slot),
            None => moshi::candle::bail!("internal error: reset_slot on an unbatched LM"),
        }
    }

    /// One temporal step of every slot of a batched LM: `inputs[i]` is slot i's previous
    /// text token and audio tokens, `None` for a slot that does not step (masked: its
    /// cache does not move). Returns the text logits `[slots, 1, vocab]` and hidden
    /// states `[slots, 1, d_model]`; a masked slot's rows are meaningless.
    pub fn forward_batch(&mut self, inputs: &[Option<StepInput>]) -> Result<(Tensor, Tensor)> {
        let Some(n) = self.batch_size() else {
            moshi::candle::bail!("internal error: forward_batch on an unbatched LM")
        };
        if inputs.len() != n {
            moshi::candle::bail!("{} inputs for {n} slots", inputs.len())
        }
        let zeros = Tensor::zeros((1, 1, self.d_model), DType::F32, &Device::Cpu)?;
        let mut rows = Vec::with_capacity(n);
        for input in inputs {
            rows.push(match input {
                // Summed per slot in `forward`'s order, so each row is bit-identical.
                Some((text, audio)) => {
                    let mut xs = self.lookup(&self.text_emb, *text)?;
                    for (emb, id) in self.audio_embs.iter().zip(audio) {
                        if let Some(id) = id {
                            xs = (xs + self.lookup(emb, *id)?)?;
                        }
                    }
                    xs
                }
                None => zeros.clone(),
            });
        }
        let mask = StreamMask::new(inputs.iter().map(Option::is_some).collect(), &self.device)?;
        let xs = Tensor::cat(&rows, 0)?
            .to_device(&self.device)?
            .to_dtype(self.dtype)?;
        let batched = self
            .batched
            .as_mut()
            .ok_or_else(|| moshi::candle::Error::Msg("not batched".into()))?;
        let xs = batched.forward(&xs, &mask)?;
        let ys = xs.apply(&self.out_norm)?;
        let logits = ys.apply(&self.text_linear)?;
        Ok((logits, ys))
    }

    /// The audio tokens of this step, codebook by codebook, as moshi's `DepFormer::sample`.
    pub fn depformer_sample(
        &mut self,
        xs: &Tensor,
        text_token: Option<u32>,
        forced: &[Option<u32>],
        lp: &mut candle_transformers::generation::LogitsProcessor,
    ) -> Result<Option<Vec<u32>>> {
        if self.depformer.is_empty() {
            return Ok(None);
        }
        let mut tokens = Vec::with_capacity(self.depformer.len());
        let mut last = text_token;
        for i in 0..self.depformer.len() {
            if i == 0 {
                self.depformer[0].transformer.reset_state();
            } else {
                let (done, rest) = self.depformer.split_at_mut(i);
                rest[0].transformer.copy_state(&done[i - 1].transformer)?;
            }
            let slice = &self.depformer[i];
            let mut x = slice.linear_in.forward(xs)?;
            if let Some(tok) = last {
                let mut e = self
                    .lookup(&slice.emb, tok)?
                    .to_device(&self.device)?
                    .to_dtype(self.dtype)?;
                if let Some(lr) = &slice.low_rank {
                    e = e.apply(lr)?;
                }
                x = x.broadcast_add(&e)?;
            }
            let slice = &mut self.depformer[i];
            let logits = slice.transformer.forward(&x)?.apply(&slice.linear_out)?;
            let token = lp.sample(&logits.i((0, 0))?)?;
            tokens.push(token);
            last = Some(forced.get(i).copied().flatten().unwrap_or(token));
        }
        Ok(Some(tokens))
    }
}
