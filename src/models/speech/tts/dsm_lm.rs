//! The LM of `kyutai/tts-1.6b-en_fr` as Kyutai's PyTorch `LMModel` runs it (PyPI `moshi`
//! 0.2.11, `models/lm.py`), on the `moshi` crate's transformer layers. The crate's
//! `LmModel` cannot hold three things of that checkpoint:
//!
//! - the text input muxes two streams into one token (`demux_second_stream`):
//!   `left = t % card`, `right = t / card - 1`, and the embedding is
//!   `out1(E[left]) + out2(E[right])` (no second term when `right` is -1), for the
//!   main text embedding and the depth transformer's;
//! - the depth transformer shares weights by schedule
//!   (`depformer_weights_per_step_schedule`: codebook k runs the attention, feed-forward
//!   and input projection of weight set `schedule[k]`; its output head and audio
//!   embedding are its own);
//! - the tensors have PyTorch names: per-step attention weights are stacked
//!   (`in_proj_weight` of `[sets * 3 * D, D]`, or already split as `in_projs.N.weight`),
//!   feed-forwards are `gating.N`.
//!
//! So the names are mapped here at load time, each main layer is a one-layer crate
//! transformer (each layer's cross-attention keys and values over the voice are then
//! computed once per utterance with its own weights), and the step (embeddings, main
//! transformer, text head, depth transformer with its schedule) is our own loop.

use crate::models::speech::config::TtsConfig;
use candle_transformers::generation::LogitsProcessor;
use moshi::candle::safetensors::MmapedSafetensors;
use moshi::candle::{DType, Device, Module, Tensor};
use moshi::candle_nn::{Linear, VarBuilder};
use moshi::nn::MaybeQuantizedVarBuilder;
use moshi::streaming::StreamingModule;
use moshi::transformer::{CaSrc, Norm, StreamingTransformer};
use std::collections::HashMap;
use std::path::Path;

type Result<T> = moshi::candle::Result<T>;

fn err(msg: String) -> moshi::candle::Error {
    moshi::candle::Error::Msg(msg)
}

/// Does this checkpoint's header use PyTorch's names for the depth transformer?
pub fn is_pytorch_layout<'a>(mut names: impl Iterator<Item = &'a String>) -> bool {
    names.any(|k| k.starts_with("depformer_in.") || k.starts_with("depformer.layers."))
}

/// The weight set each codebook uses: the schedule, else one set per codebook when
/// `depformer_weights_per_step`, else one set for all.
pub fn weight_sets(cfg: &TtsConfig) -> std::result::Result<Vec<usize>, String> {
    match &cfg.depformer_weights_per_step_schedule {
        Some(s) => {
            if s.len() != cfg.dep_q {
                return Err(format!(
                    "depformer_weights_per_step_schedule has {} entries; dep_q is {}",
                    s.len(),
                    cfg.dep_q
                ));
            }
            let n = s.iter().max().map_or(0, |m| m + 1);
            if let Some(gap) = (0..n).find(|i| !s.contains(i)) {
                return Err(format!(
                    "depformer_weights_per_step_schedule never uses weight set {gap} of 0..{n}"
                ));
            }
            Ok(s.clone())
        }
        None if cfg.depformer_weights_per_step => Ok((0..cfg.dep_q).collect()),
        None => Ok(vec![0; cfg.dep_q]),
    }
}

/// Tensors read from the file by PyTorch name, each once (shared weights stay shared).
struct Source {
    st: MmapedSafetensors,
    cache: HashMap<String, Tensor>,
    dtype: DType,
    device: Device,
}

impl Source {
    fn has(&self, name: &str) -> bool {
        self.cache.contains_key(name) || self.st.get(name).is_ok()
    }

    fn get(&mut self, name: &str) -> Result<Tensor> {
        if let Some(t) = self.cache.get(name) {
            return Ok(t.clone());
        }
        let t = self
            .st
            .load(name, &self.device)
            .map_err(|_| err(format!("tensor `{name}` is missing")))?
            .to_dtype(self.dtype)?;
        self.cache.insert(name.to_string(), t.clone());
        Ok(t)
    }

    fn get_f32(&mut self, name: &str) -> Result<Tensor> {
        self.get(name)?.to_dtype(DType::F32)
    }

    /// Attention projection `which` ("in" or "out") of weight set `index` of `sets`.
    fn proj(&mut self, prefix: &str, which: &str, index: usize, sets: usize) -> Result<Tensor> {
        let split = format!("{prefix}.{which}_projs.{index}.weight");
        if self.has(&split) {
            return self.get(&split);
        }
        let stacked = match which {
            "in" if self.has(&format!("{prefix}.in_proj_weight")) => {
                format!("{prefix}.in_proj_weight")
            }
            "in" => format!("{prefix}.in_proj.weight"),
            _ => format!("{prefix}.out_proj.weight"),
        };
        let t = self.get(&stacked)?;
        let rows = t.dim(0)?;
        if rows % sets != 0 {
            return Err(err(format!(
                "tensor `{stacked}` has {rows} rows, not a multiple of its {sets} weight sets"
            )));
        }
        t.narrow(0, index * (rows / sets), rows / sets)?
            .contiguous()
    }

    fn linear(&mut self, name: &str) -> Result<Linear> {
        Ok(Linear::new(self.get(&format!("{name}.weight"))?, None))
    }

    /// The names under `prefix.` (for copying a layer's norms and the like).
    fn names_under(&self, prefix: &str) -> Vec<String> {
        let mut v: Vec<String> = self
            .st
            .tensors()
            .into_iter()
            .map(|(n, _)| n)
            .filter(|n| n.starts_with(prefix))
            .collect();
        v.sort();
        v
    }
}

/// `ScaledEmbedding` of Kyutai's lm_utils: a table, optionally low-rank, optionally
/// demuxing a second stream.
#[derive(Debug, Clone)]
struct Embedding {
    table: Tensor,
    low_rank: Option<Linear>,
    demux: Option<(Linear, Linear)>,
}

impl Embedding {
    fn load(src: &mut Source, name: &str, demux: bool, low_rank: bool) -> Result<Self> {
        let table = src.get(&format!("{name}.weight"))?;
        let demux = if demux {
            Some((
                src.linear(&format!("{name}.out1"))?,
                src.linear(&format!("{name}.out2"))?,
            ))
        } else {
            None
        };
        let low_rank = if low_rank && demux.is_none() {
            Some(src.linear(&format!("{name}.low_rank"))?)
        } else {
            None
        };
        Ok(Self {
            table,
            low_rank,
            demux,
        })
    }

    fn row(&self, id: u32) -> Result<Tensor> {
        let n = self.table.dim(0)?;
        if id as usize >= n {
            return Err(err(format!("token {id} is outside an embedding of {n}")));
        }
        self.table.narrow(0, id as usize, 1)?.unsqueeze(0)
    }

    /// The embedding of one token, (1, 1, dim).
    fn forward(&self, id: u32) -> Result<Tensor> {
        match &self.demux {
            Some((out1, out2)) => {
                let card = self.table.dim(0)? as u32;
                let y = out1.forward(&self.row(id % card)?)?;
                match (id / card).checked_sub(1) {
                    Some(right) => y + out2.forward(&self.row(right)?)?,
                    None => Ok(y),
                }
            }
            None => {
                let y = self.row(id)?;
                match &self.low_rank {
                    Some(l) => l.forward(&y),
                    None => Ok(y),
                }
            }
        }
    }
}

/// The checkpoint's speaker conditioner: voice embedding → cross-attention source.
#[derive(Debug, Clone)]
pub struct Speaker {
    /// `output_proj.weight`: (model dim, embedding dim), f32.
    pub proj: Tensor,
    /// `learnt_padding`: (1, 1, model dim), f32, for the empty slots.
    pub padding: Tensor,
}

#[derive(Debug, Clone)]
pub struct DsmLm {
    text_emb: Embedding,
    audio_embs: Vec<Embedding>,
    /// One crate transformer per main layer.
    layers: Vec<StreamingTransformer>,
    out_norm: Norm,
    text_linear: Linear,
    /// The sum of the lookup-table conditions, added to every step's input.
    cond_sum: Option<Tensor>,
    dep_in: Vec<Linear>,
    dep_text_emb: Embedding,
    dep_embs: Vec<Embedding>,
    /// One crate transformer per weight set.
    dep: Vec<StreamingTransformer>,
    dep_linears: Vec<Linear>,
    schedule: Vec<usize>,
    multi_linear: bool,
    pub speaker: Option<Speaker>,
    dtype: DType,
    device: Device,
}

/// The lookup-table values Kyutai's TTS runs with: CFG 2.0 (the default `cfg_coef`
/// of `simple_generate`, for models distilled with it) and the "ok" control.
pub fn lut_value<'a>(name: &str, values: &'a [&'a str]) -> Option<&'a str> {
    let prefer: &[&str] = match name {
        "cfg" => &["2.0"],
        "control" => &["ok", "also_good"],
        _ => &[],
    };
    prefer
        .iter()
        .find_map(|p| values.iter().find(|v| *v == p))
        .or(values.first())
        .copied()
}

impl DsmLm {
    /// Load the published layout from `path` (PyTorch names). Errors name the tensor.
    pub fn load(cfg: &TtsConfig, path: &Path, dtype: DType, device: &Device) -> Result<Self> {
        // SAFETY: read-only memory map of a checkpoint file, as Kyutai's loaders do.
        let st = unsafe { MmapedSafetensors::new(path)? };
        let mut src = Source {
            st,
            cache: HashMap::new(),
            dtype,
            device: device.clone(),
        };
        let lm_cfg = cfg.lm().map_err(err)?;
        let schedule = weight_sets(cfg).map_err(err)?;
        let sets = schedule.iter().max().map_or(1, |m| m + 1);
        let demux = cfg.demux_second_stream;
        let low_rank = cfg.depformer_low_rank_embeddings.is_some();

        let text_emb = Embedding::load(&mut src, "text_emb", demux, false)?;
        let audio_embs = (0..cfg.n_q)
            .map(|k| Embedding::load(&mut src, &format!("emb.{k}"), false, false))
            .collect::<Result<Vec<_>>>()?;

        // Main layers: one single-layer crate transformer each.
        let mut one = lm_cfg.transformer.clone();
        one.num_layers = 1;
        let mut layers = Vec::with_capacity(cfg.num_layers);
        for l in 0..cfg.num_layers {
            let theirs = format!("transformer.layers.{l}.");
            let mut map = HashMap::new();
            for name in src.names_under(&theirs) {
                let rest = &name[theirs.len()..];
                if rest.contains("in_proj") || rest.contains("out_proj") {
                    continue;
                }
                map.insert(format!("layers.0.{rest}"), src.get(&name)?);
            }
            for part in ["self_attn", "cross_attention"] {
                if part == "cross_attention" && !cfg.cross_attention {
                    continue;
                }
                let p = format!("{theirs}{part}");
                map.insert(
                    format!("layers.0.{part}.in_proj_weight"),
                    src.proj(&p, "in", 0, 1)?,
                );
                map.insert(
                    format!("layers.0.{part}.out_proj.weight"),
                    src.proj(&p, "out", 0, 1)?,
                );
            }
            let vb = VarBuilder::from_tensors(map, dtype, device);
            layers.push(StreamingTransformer::new(
                &one,
                MaybeQuantizedVarBuilder::Real(vb),
            )?);
        }
        let norm_vb = VarBuilder::from_tensors(
            HashMap::from([("alpha".to_string(), src.get("out_norm.alpha")?)]),
            dtype,
            device,
        );
        let out_norm = Norm::new(cfg.dim, &one, MaybeQuantizedVarBuilder::Real(norm_vb))?;
        let text_linear = src.linear("text_linear")?;

        // Lookup-table conditions, summed (kept in f32 by Kyutai, cast at the input).
        let mut cond_sum: Option<Tensor> = None;
        for (name, c) in &cfg.conditioners {
            if c["type"].as_str() != Some("lut") {
                continue;
            }
            let values: Vec<&str> = c["lut"]["possible_values"]
                .as_array()
                .map(|v| v.iter().filter_map(|s| s.as_str()).collect())
                .unwrap_or_default();
            let Some(value) = lut_value(name, &values) else {
                continue;
            };
            let idx = values.iter().position(|v| *v == value).unwrap_or(0);
            let p = format!("condition_provider.conditioners.{name}");
            let e = src
                .get_f32(&format!("{p}.embed.weight"))?
                .narrow(0, idx, 1)?;
            let c = e
                .matmul(&src.get_f32(&format!("{p}.output_proj.weight"))?.t()?)?
                .unsqueeze(0)?;
            cond_sum = Some(match cond_sum {
                None => c,
                Some(s) => (s + c)?,
            });
        }
        let cond_sum = cond_sum.map(|c| c.to_dtype(dtype)).transpose()?;

        let speaker = match (cfg.cross_attention, cfg.speaker_dim()) {
            (true, Some(_)) => {
                let p = "condition_provider.conditioners.speaker_wavs";
                Some(Speaker {
                    proj: src.get_f32(&format!("{p}.output_proj.weight"))?,
                    padding: src.get_f32(&format!("{p}.learnt_padding"))?,
                })
            }
            _ => None,
        };

        // The depth transformer: one crate transformer per weight set.
        let dep_cfg = lm_cfg
            .depformer
            .as_ref()
            .ok_or_else(|| err("no depformer in the config".into()))?
            .transformer
            .clone();
        let per_step =
            cfg.depformer_weights_per_step || cfg.depformer_weights_per_step_schedule.is_some();
        let mut dep = Vec::with_capacity(sets);
        for w in 0..sets {
            let mut map = HashMap::new();
            for l in 0..cfg.depformer_num_layers {
                let theirs = format!("depformer.layers.{l}.");
                let ours = format!("layers.{l}.");
                for name in src.names_under(&theirs) {
                    let rest = &name[theirs.len()..];
                    if rest.contains("in_proj") || rest.contains("out_proj") {
                        continue;
                    }
                    let rest = match rest.strip_prefix("gating.") {
                        Some(g) if per_step => match g.split_once('.') {
                            Some((j, tail)) if j.parse::<usize>().ok() == Some(w) => {
                                format!("gating.{tail}")
                            }
                            _ => continue,
                        },
                        _ => rest.to_string(),
                    };
                    map.insert(format!("{ours}{rest}"), src.get(&name)?);
                }
                let p = format!("{theirs}self_attn");
                let n = if per_step { sets } else { 1 };
                let i = if per_step { w } else { 0 };
                map.insert(
                    format!("{ours}self_attn.in_proj_weight"),
                    src.proj(&p, "in", i, n)?,
                );
                map.insert(
                    format!("{ours}self_attn.out_proj.weight"),
                    src.proj(&p, "out", i, n)?,
                );
            }
            let vb = VarBuilder::from_tensors(map, dtype, device);
            dep.push(StreamingTransformer::new(
                &dep_cfg,
                MaybeQuantizedVarBuilder::Real(vb),
            )?);
        }
        let n_in = if cfg.depformer_multi_linear { sets } else { 1 };
        let dep_in = (0..n_in)
            .map(|i| src.linear(&format!("depformer_in.{i}")))
            .collect::<Result<Vec<_>>>()?;
        let dep_text_emb = Embedding::load(&mut src, "depformer_text_emb", demux, low_rank)?;
        let dep_embs = (0..cfg.dep_q.saturating_sub(1))
            .map(|k| Embedding::load(&mut src, &format!("depformer_emb.{k}"), false, low_rank))
            .collect::<Result<Vec<_>>>()?;
        let dep_linears = (0..cfg.dep_q)
            .map(|k| src.linear(&format!("linears.{k}")))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            text_emb,
            audio_embs,
            layers,
            out_norm,
            text_linear,
            cond_sum,
            dep_in,
            dep_text_emb,
            dep_embs,
            dep,
            dep_linears,
            schedule,
            multi_linear: cfg.depformer_multi_linear,
            speaker,
            dtype,
            device: device.clone(),
        })
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Forget every step (the voice's keys and values are kept by the caller).
    pub fn reset(&mut self) {
        for l in &mut self.layers {
            l.reset_state();
        }
    }

    /// Each main layer's cross-attention keys and values over `ca` (1, T, dim).
    pub fn voice_kv(&self, ca: &Tensor) -> Result<Vec<CaSrc>> {
        self.layers
            .iter()
            .map(|l| {
                l.maybe_precompute_ca_kv(Some(CaSrc::Tokens(ca.clone())))?
                    .ok_or_else(|| err("no cross-attention source".into()))
            })
            .collect()
    }

    /// One step of the main transformer. `text`: the text token fed (muxed);
    /// `audio[k]`: codebook k's token, `None` for an all-zero embedding. Returns the
    /// text logits (f32, 1-D) and the hidden state for the depth transformer.
    pub fn forward(
        &mut self,
        text: u32,
        audio: &[Option<u32>],
        ca: Option<&[CaSrc]>,
    ) -> Result<(Tensor, Tensor)> {
        let mut x = self.text_emb.forward(text)?;
        for (emb, id) in self.audio_embs.iter().zip(audio) {
            if let Some(id) = id {
                x = (x + emb.forward(*id)?)?;
            }
        }
        if let Some(c) = &self.cond_sum {
            x = x.broadcast_add(c)?;
        }
        for (i, l) in self.layers.iter_mut().enumerate() {
            x = l.forward_ca(&x, ca.map(|c| &c[i]))?;
        }
        let h = x.apply(&self.out_norm)?;
        let logits = h
            .apply(&self.text_linear)?
            .flatten_all()?
            .to_dtype(DType::F32)?;
        Ok((logits, h))
    }

    /// The depth transformer: every codebook's token for this step, each fed to the
    /// next, starting from the text token fed back (muxed).
    pub fn depformer(
        &mut self,
        hidden: &Tensor,
        text: u32,
        lp: &mut LogitsProcessor,
    ) -> Result<Vec<u32>> {
        let mut out = Vec::with_capacity(self.schedule.len());
        let mut prev = text;
        let mut last: Option<usize> = None;
        for (k, &w) in self.schedule.iter().enumerate() {
            let lin = &self.dep_in[if self.multi_linear { w } else { 0 }];
            let emb = if k == 0 {
                self.dep_text_emb.forward(prev)?
            } else {
                self.dep_embs[k - 1].forward(prev)?
            };
            let x = (lin.forward(hidden)? + emb)?;
            match last {
                None => self.dep[w].reset_state(),
                Some(p) if p == w => {}
                Some(p) => {
                    let (from, to) = if p < w {
                        let (a, b) = self.dep.split_at_mut(w);
                        (&a[p], &mut b[0])
                    } else {
                        let (a, b) = self.dep.split_at_mut(p);
                        (&b[0], &mut a[w])
                    };
                    to.copy_state(from)?;
                }
            }
            last = Some(w);
            let y = self.dep[w].forward(&x)?;
            let logits = self.dep_linears[k]
                .forward(&y)?
                .flatten_all()?
                .to_dtype(DType::F32)?;
            let tok = lp.sample(&logits)?;
            out.push(tok);
            prev = tok;
        }
        Ok(out)
    }

    pub fn device(&self) -> &Device {
        &self.device
    }
}
