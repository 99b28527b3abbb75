//! The flow LM (`pocket_tts/models/flow_lm.py`): a causal transformer over the voice
//! prompt, the text's lookup-table embeddings, then the latents it generates one at a
//! time; after each step an end-of-speech logit and the flow head's next latent.

use super::config::PocketConfig;
use super::flow_head::FlowHead;
use super::layers::{LayerNorm, Linear};
use super::transformer::{last_step, Cache, Shape, Transformer};
use moshi::candle::{Result, Tensor};
use moshi::candle_nn::VarBuilder;

#[derive(Clone)]
pub struct FlowLm {
    embed: Tensor,
    embed_proj: Option<Linear>,
    pub emb_std: Tensor,
    pub emb_mean: Tensor,
    bos_emb: Tensor,
    /// Put before the voice prompt (`insert_bos_before_voice`): (1, 1, d_model).
    pub bos_before_voice: Option<Tensor>,
    /// Voice cloning's projection of codec latents (d_model, codec width), when the
    /// checkpoint has it.
    pub speaker_proj: Option<Tensor>,
    input_linear: Linear,
    pub transformer: Transformer,
    out_norm: LayerNorm,
    z_proj: Option<Linear>,
    out_eos: Linear,
    pub head: FlowHead,
    pub ldim: usize,
}

/// One generation step's result.
pub struct StepOut {
    /// The next latent, normalised (what the LM reads back): (1, ldim).
    pub latent: Tensor,
    /// The end-of-speech logit.
    pub eos_logit: f32,
}

impl FlowLm {
    /// `vb` at `flow_lm`.
    pub fn load(vb: &VarBuilder, cfg: &PocketConfig) -> Result<Self> {
        let f = &cfg.flow_lm;
        let t = &f.transformer;
        let d = t.d_model;
        let ldim = cfg.latent_dim();
        let lut = &f.lookup_table;
        let embed = vb
            .pp("conditioner.embed")
            .get((lut.n_bins + 1, lut.rank.unwrap_or(lut.dim)), "weight")?;
        let embed_proj = match lut.rank {
            Some(r) => Some(Linear::load(&vb.pp("conditioner.proj"), r, lut.dim, false)?),
            None => None,
        };
        let bos_before_voice = if f.insert_bos_before_voice {
            Some(vb.get((1, 1, d), "bos_before_voice")?)
        } else {
            None
        };
        let codec_dim = cfg.mimi.inner_dim.unwrap_or(cfg.mimi.seanet.dimension);
        let speaker_proj = if vb.contains_tensor("speaker_proj_weight") {
            Some(vb.get((d, codec_dim), "speaker_proj_weight")?)
        } else {
            None
        };
        let shape = Shape {
            d_model: d,
            num_heads: t.num_heads,
            kv_heads: t.kv_heads(),
            attn_dim: t.attn_dim(),
            feedforward: t.feedforward(),
            layers: t.num_layers,
            max_period: t.max_period,
            context: None,
            layer_scale: false,
        };
        let out_dim = f.z_dim.unwrap_or(d);
        Ok(Self {
            embed,
            embed_proj,
            emb_std: vb.get(ldim, "emb_std")?,
            emb_mean: vb.get(ldim, "emb_mean")?,
            bos_emb: vb.get(ldim, "bos_emb")?,
            bos_before_voice,
            speaker_proj,
            input_linear: Linear::load(&vb.pp("input_linear"), ldim, d, false)?,
            transformer: Transformer::load(&vb.pp("transformer"), shape)?,
            out_norm: LayerNorm::load(&vb.pp("out_norm"), d, 1e-5)?,
            z_proj: match f.z_dim {
                Some(z) => Some(Linear::load(&vb.pp("z_proj"), d, z, false)?),
                None => None,
            },
            out_eos: Linear::load(&vb.pp("out_eos"), out_dim, 1, true)?,
            head: FlowHead::load(
                &vb.pp("flow_net"),
                f.flow.kind,
                f.flow.dim,
                f.flow.depth,
                ldim,
                out_dim,
            )?,
            ldim,
        })
    }

    /// The same LM with its transformer's and its flow head's linear layers in q8_0.
    pub fn quantized(&self) -> Result<Self> {
        let mut q = self.clone();
        q.transformer = self.transformer.quantized()?;
        q.head = self.head.quantized()?;
        Ok(q)
    }

    /// The same LM with its transformer's and its flow head's linear weights in bf16
    /// (computed in f32): what a checkpoint stored in bf16 holds, in half the bytes.
    pub fn bf16(&self) -> Result<Self> {
        let mut q = self.clone();
        q.transformer = self.transformer.bf16()?;
        q.head = self.head.bf16()?;
        Ok(q)
    }

    /// Bytes of the transformer's and the flow head's linear weights: what one step
    /// reads (with one decode step).
    pub fn step_weight_bytes(&self) -> usize {
        self.transformer.weight_bytes() + self.head.weight_bytes()
    }

    /// The weights of the transformer's linear layers are bf16.
    pub fn is_bf16(&self) -> bool {
        self.transformer.is_bf16()
    }

    /// The lookup-table embeddings of `tokens`: (1, n, d_model).
    pub fn text_embeddings(&self, tokens: &[u32]) -> Result<Tensor> {
        let ids = Tensor::from_vec(tokens.to_vec(), tokens.len(), self.embed.device())?;
        let e = self.embed.index_select(&ids, 0)?.unsqueeze(0)?;
        match &self.embed_proj {
            Some(p) => p.forward(&e),
            None => Ok(e),
        }
    }

    /// Read a prompt (text embeddings or a voice) into the cache; its outputs are not
    /// used (the package samples a latent from them and drops it).
    pub fn prompt(&self, x: &Tensor, cache: &mut Cache) -> Result<()> {
        if x.dim(1)? > 0 {
            self.transformer.forward(x, cache)?;
        }
        Ok(())
    }

    /// One step: the previous latent (`None`: the start of speech) in, the next out.
    pub fn step(
        &self,
        cache: &mut Cache,
        previous: Option<&Tensor>,
        noise: &Tensor,
        decode_steps: usize,
    ) -> Result<StepOut> {
        let input = match previous {
            Some(l) => l.reshape((1, 1, self.ldim))?,
            None => self.bos_emb.reshape((1, 1, self.ldim))?,
        };
        let x = self.input_linear.forward(&input)?;
        let h = self.transformer.forward(&x, cache)?;
        let h = self
            .out_norm
            .forward(&last_step(&h)?.unsqueeze(1)?)?
            .squeeze(1)?;
        let h = match &self.z_proj {
            Some(z) => z.forward(&h)?,
            None => h,
        };
        let eos_logit = self.out_eos.forward(&h)?.flatten_all()?.to_vec1::<f32>()?[0];
        let latent = self.head.sample(&h, noise, decode_steps)?;
        Ok(StepOut { latent, eos_logit })
    }

    /// A normalised latent (1, ldim) in the codec's scale.
    pub fn denormalise(&self, latent: &Tensor) -> Result<Tensor> {
        latent
            .broadcast_mul(&self.emb_std)?
            .broadcast_add(&self.emb_mean)
    }
}
