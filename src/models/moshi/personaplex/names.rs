//! PersonaPlex checkpoints keep the depth transformer in PyTorch's layout: one
//! transformer whose attention weights are stacked per step along dim 0
//! (`depformer.layers.L.self_attn.in_proj_weight` is `[steps * 3 * D, D]`), with
//! per-step `depformer_in.K`, `linears.K`, `depformer_text_emb`, `depformer_emb.K-1` and
//! `depformer.layers.L.gating.K`. The `moshi` crate wants one slice per step
//! (`depformer.K.linear_in`, `.linear_out`, `.emb`, `.transformer.layers.L...`). This
//! module plans that renaming from the file's headers (so shapes and slice counts are
//! checked before any weight is read) and applies it to the tensors once read.
//!
//! A checkpoint with half the slices the config asks for (8 for PersonaPlex's 16) is
//! widened by reusing steps 0..8 for 8..16, as NVIDIA's loader does. The widened slices
//! predict the user's own codebooks, which PersonaPlex always forces, so they never
//! produce a kept token; slice 8's input embedding has no source in such a file (NVIDIA
//! leaves it uninitialised) and takes `depformer_emb.0`.

use crate::models::moshi::files::TensorHeader;
use moshi::candle::{Result, Tensor};
use std::collections::{BTreeMap, HashMap};

/// Where one tensor of the crate's layout comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    /// The same tensor under another name.
    Copy(String),
    /// Rows `[index * rows, (index + 1) * rows)` of a tensor stacked per step.
    Chunk {
        name: String,
        index: usize,
        rows: usize,
    },
}

/// The renaming plan: new name -> source.
pub type Plan = BTreeMap<String, Source>;

/// Does this file use PyTorch's depformer names?
pub fn is_pytorch_layout(headers: &BTreeMap<String, TensorHeader>) -> bool {
    headers
        .keys()
        .any(|k| k.starts_with("depformer_in.") || k.starts_with("depformer.layers."))
}

fn count(headers: &BTreeMap<String, TensorHeader>, prefix: &str) -> usize {
    headers
        .keys()
        .filter_map(|k| {
            k.strip_prefix(prefix)?
                .split('.')
                .next()?
                .parse::<usize>()
                .ok()
        })
        .max()
        .map_or(0, |m| m + 1)
}

/// Plan the renaming for a config of `slices` depformer steps, and give the headers the
/// file has once renamed. The error says what is wrong, without the file's name.
pub fn plan(
    headers: &BTreeMap<String, TensorHeader>,
    slices: usize,
) -> std::result::Result<(BTreeMap<String, TensorHeader>, Plan), String> {
    let found = count(headers, "depformer_in.");
    if found == 0 {
        return Err("PyTorch depformer names but no `depformer_in.N` tensors".into());
    }
    if found != slices && found * 2 != slices {
        return Err(format!(
            "has {found} depformer slices (depformer_in.N) but the config expects {slices} \
             (or {} to be widened as NVIDIA's loader does); set depformer.num_slices in lm_config.toml to match the checkpoint",
            slices / 2
        ));
    }
    let src_of = |k: usize| k % found;
    let mut out = BTreeMap::new();
    let mut plan = Plan::new();
    let mut add = |new: String, src: Source, h: TensorHeader| {
        out.insert(new.clone(), h);
        plan.insert(new, src);
    };
    let header = |name: &str| {
        headers
            .get(name)
            .cloned()
            .ok_or_else(|| format!("tensor `{name}` is missing"))
    };
    // Everything outside the depformer keeps its name.
    for (name, h) in headers {
        let dep = name.starts_with("depformer")
            || name.starts_with("linears.")
            || name.starts_with("depformer_in.");
        if !dep {
            add(name.clone(), Source::Copy(name.clone()), h.clone());
        }
    }
    let layers = count(headers, "depformer.layers.");
    for k in 0..slices {
        let s = src_of(k);
        let p = format!("depformer.{k}");
        for (ours, theirs) in [
            ("linear_in.weight", format!("depformer_in.{s}.weight")),
            ("linear_out.weight", format!("linears.{s}.weight")),
        ] {
            add(
                format!("{p}.{ours}"),
                Source::Copy(theirs.clone()),
                header(&theirs)?,
            );
        }
        let emb = match k {
            0 => "depformer_text_emb.weight".to_string(),
            _ if k < found => format!("depformer_emb.{}.weight", k - 1),
            _ => format!("depformer_emb.{}.weight", s.saturating_sub(1)),
        };
        add(
            format!("{p}.emb.weight"),
            Source::Copy(emb.clone()),
            header(&emb)?,
        );
        for l in 0..layers {
            let theirs = format!("depformer.layers.{l}.");
            let ours = format!("{p}.transformer.layers.{l}.");
            for (name, h) in headers.range(theirs.clone()..) {
                let Some(rest) = name.strip_prefix(&theirs) else {
                    break;
                };
                if let Some(g) = rest.strip_prefix("gating.") {
                    let (j, tail) = g.split_once('.').unwrap_or((g, ""));
                    if j.parse::<usize>().ok() == Some(s) {
                        add(
                            format!("{ours}gating.{tail}"),
                            Source::Copy(name.clone()),
                            h.clone(),
                        );
                    }
                } else if rest == "self_attn.in_proj_weight" || rest == "self_attn.out_proj.weight"
                {
                    let total = h.shape.first().copied().unwrap_or(0);
                    if total % found != 0 {
                        return Err(format!(
                            "tensor `{name}` has {total} rows, not a multiple of the {found} depformer slices"
                        ));
                    }
                    let rows = total / found;
                    let mut shape = h.shape.clone();
                    shape[0] = rows;
                    add(
                        format!("{ours}{rest}"),
                        Source::Chunk {
                            name: name.clone(),
                            index: s,
                            rows,
                        },
                        TensorHeader {
                            dtype: h.dtype.clone(),
                            shape,
                        },
                    );
                } else {
                    // Norms and the like are shared by every step.
                    add(
                        format!("{ours}{rest}"),
                        Source::Copy(name.clone()),
                        h.clone(),
                    );
                }
            }
        }
    }
    Ok((out, plan))
}

/// Apply a plan to the tensors read under their original names.
pub fn apply(plan: &Plan, mut tensors: HashMap<String, Tensor>) -> Result<HashMap<String, Tensor>> {
    let mut out = HashMap::with_capacity(plan.len());
    let get = |t: &HashMap<String, Tensor>, n: &str| {
        t.get(n)
            .cloned()
            .ok_or_else(|| moshi::candle::Error::Msg(format!("tensor `{n}` is missing")))
    };
    for (new, src) in plan {
        let t = match src {
            Source::Copy(n) => get(&tensors, n)?,
            Source::Chunk { name, index, rows } => get(&tensors, name)?
                .narrow(0, index * rows, *rows)?
                .contiguous()?,
        };
        out.insert(new.clone(), t);
    }
    tensors.clear();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(shape: &[usize]) -> TensorHeader {
        TensorHeader {
            dtype: "F32".into(),
            shape: shape.to_vec(),
        }
    }

    fn pytorch(slices: usize) -> BTreeMap<String, TensorHeader> {
        let mut m = BTreeMap::new();
        m.insert("text_emb.weight".into(), h(&[5, 4]));
        m.insert("depformer_text_emb.weight".into(), h(&[5, 2]));
        for k in 0..slices {
            m.insert(format!("depformer_in.{k}.weight"), h(&[2, 4]));
            m.insert(format!("linears.{k}.weight"), h(&[9, 2]));
            m.insert(
                format!("depformer.layers.0.gating.{k}.linear_in.weight"),
                h(&[6, 2]),
            );
            if k + 1 < slices {
                m.insert(format!("depformer_emb.{k}.weight"), h(&[10, 2]));
            }
        }
        m.insert(
            "depformer.layers.0.self_attn.in_proj_weight".into(),
            h(&[slices * 6, 2]),
        );
        m.insert("depformer.layers.0.norm1.alpha".into(), h(&[1, 1, 2]));
        m
    }

    #[test]
    fn sixteen_slices_map_one_to_one() {
        let (heads, plan) = plan(&pytorch(16), 16).unwrap();
        assert_eq!(heads["text_emb.weight"].shape, [5, 4]);
        assert_eq!(heads["depformer.0.emb.weight"].shape, [5, 2]);
        assert_eq!(heads["depformer.15.emb.weight"].shape, [10, 2]);
        assert_eq!(
            plan["depformer.15.emb.weight"],
            Source::Copy("depformer_emb.14.weight".into())
        );
        assert_eq!(
            plan["depformer.3.transformer.layers.0.self_attn.in_proj_weight"],
            Source::Chunk {
                name: "depformer.layers.0.self_attn.in_proj_weight".into(),
                index: 3,
                rows: 6
            }
        );
        assert_eq!(
            plan["depformer.3.transformer.layers.0.gating.linear_in.weight"],
            Source::Copy("depformer.layers.0.gating.3.linear_in.weight".into())
        );
        assert_eq!(
            plan["depformer.7.transformer.layers.0.norm1.alpha"],
            Source::Copy("depformer.layers.0.norm1.alpha".into())
        );
        assert!(!heads.keys().any(|k| k.starts_with("linears.")));
    }

    #[test]
    fn eight_slices_are_widened_and_seven_refused() {
        let (_, plan) = plan(&pytorch(8), 16).unwrap();
        assert_eq!(
            plan["depformer.12.linear_out.weight"],
            Source::Copy("linears.4.weight".into())
        );
        assert_eq!(
            plan["depformer.12.emb.weight"],
            Source::Copy("depformer_emb.3.weight".into())
        );
        assert_eq!(
            plan["depformer.8.emb.weight"],
            Source::Copy("depformer_emb.0.weight".into())
        );
        let e = super::plan(&pytorch(7), 16).unwrap_err();
        assert!(e.contains("has 7 depformer slices"), "{e}");
    }

    #[test]
    fn chunks_take_the_right_rows() {
        let (_, plan) = plan(&pytorch(2), 2).unwrap();
        let mut t = HashMap::new();
        for (n, hd) in pytorch(2) {
            let len: usize = hd.shape.iter().product();
            let v: Vec<f32> = (0..len).map(|i| i as f32).collect();
            t.insert(
                n,
                Tensor::from_vec(v, hd.shape, &moshi::candle::Device::Cpu).unwrap(),
            );
        }
        let out = apply(&plan, t).unwrap();
        let c = &out["depformer.1.transformer.layers.0.self_attn.in_proj_weight"];
        assert_eq!(c.dims(), [6, 2]);
        assert_eq!(c.flatten_all().unwrap().to_vec1::<f32>().unwrap()[0], 12.0);
    }
}
