//! Which LM tensors live on the compute device and which on the host, and what each costs.
//!
//! Embedding tables are lookups, one row per token per step, so they cost nothing on the
//! host; on the device they are 1.2 GiB of a 7B model because moshi dequantizes them to
//! f32. They always stay on the host. When the device is still short, the first
//! `host_layers` transformer layers run on the host too: slower, but the model starts.
//! The device's transformer then holds the remaining layers renumbered from 0, so moshi's
//! own `StreamingTransformer` builds each part unchanged.

use std::borrow::Cow;

const LAYERS: &str = "transformer.layers.";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Placement {
    /// Leading temporal-transformer layers kept on the host.
    pub host_layers: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Home {
    Host,
    Device,
}

/// An embedding table (`text_emb`, `emb.N`, `depformer.N.emb`), not its low-rank projection.
pub fn is_embedding(name: &str) -> bool {
    if name.starts_with("text_emb.") || name.starts_with("emb.") {
        return true;
    }
    let mut parts = name.split('.');
    parts.next() == Some("depformer")
        && parts.next().is_some_and(|i| i.parse::<usize>().is_ok())
        && parts.next() == Some("emb")
        && parts.next() == Some("weight")
}

/// The temporal-transformer layer a tensor belongs to, and the rest of its name.
pub fn layer_of(name: &str) -> Option<(usize, &str)> {
    let rest = name.strip_prefix(LAYERS)?;
    let (idx, tail) = rest.split_once('.')?;
    Some((idx.parse().ok()?, tail))
}

/// The name of a tensor of layer `i` (`tail` as `layer_of` returns it).
pub fn layer_name(i: usize, tail: &str) -> String {
    format!("{LAYERS}{i}.{tail}")
}

impl Placement {
    /// Where a tensor of the checkpoint goes, and its name in that part's var builder.
    pub fn home<'a>(&self, name: &'a str) -> (Home, Cow<'a, str>) {
        if is_embedding(name) {
            return (Home::Host, Cow::Borrowed(name));
        }
        match layer_of(name) {
            Some((i, _)) if i < self.host_layers => (Home::Host, Cow::Borrowed(name)),
            Some((i, tail)) if self.host_layers > 0 => (
                Home::Device,
                Cow::Owned(layer_name(i - self.host_layers, tail)),
            ),
            _ => (Home::Device, Cow::Borrowed(name)),
        }
    }

    /// The checkpoint name behind a device-side name (the inverse of `home`'s renaming).
    pub fn device_source<'a>(&self, name: &'a str) -> Cow<'a, str> {
        match layer_of(name) {
            Some((i, tail)) if self.host_layers > 0 => {
                Cow::Owned(layer_name(i + self.host_layers, tail))
            }
            _ => Cow::Borrowed(name),
        }
    }
}

/// How a tensor is stored in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    /// GGUF blocks of `block` values in `bytes` bytes (q8_0: 32 in 34), kept quantized
    /// where the tensor is used as a matrix.
    Blocks { block: u64, bytes: u64 },
    /// Plain values of this many bytes (f32, bf16, f16, ...).
    Plain(u64),
}

impl Stored {
    pub const Q8_0: Stored = Stored::Blocks {
        block: 32,
        bytes: 34,
    };

    /// From a header's dtype: a safetensors dtype, or a GGUF type as candle names it.
    pub fn from_header_dtype(dtype: &str) -> Option<Self> {
        use moshi::candle::quantized::GgmlDType as G;
        let plain = match dtype {
            "F64" | "I64" | "U64" => Some(8),
            "F32" | "I32" | "U32" => Some(4),
            "BF16" | "F16" | "I16" | "U16" => Some(2),
            "I8" | "U8" | "BOOL" => Some(1),
            _ => None,
        };
        if let Some(b) = plain {
            return Some(Stored::Plain(b));
        }
        let ggml = [
            G::Q4_0,
            G::Q4_1,
            G::Q5_0,
            G::Q5_1,
            G::Q8_0,
            G::Q8_1,
            G::Q2K,
            G::Q3K,
            G::Q4K,
            G::Q5K,
            G::Q6K,
            G::Q8K,
        ];
        ggml.into_iter()
            .find(|g| format!("{g:?}") == dtype)
            .map(|g| Stored::Blocks {
                block: g.block_size() as u64,
                bytes: g.type_size() as u64,
            })
    }

    pub fn bytes(&self, elems: u64) -> u64 {
        match self {
            Stored::Blocks { block, bytes } => elems / block * bytes,
            Stored::Plain(b) => elems * b,
        }
    }
}

/// Bytes a tensor occupies once loaded where `home` puts it. Embeddings are dequantized
/// (or converted) to f32 on the host; dense device tensors are converted to `compute_bytes`
/// per value; host-side layers compute in f32; quantized tensors stay as stored.
pub fn resident_bytes(
    name: &str,
    stored: Stored,
    elems: u64,
    home: Home,
    compute_bytes: u64,
) -> u64 {
    match (home, stored) {
        _ if is_embedding(name) => elems * 4,
        (_, Stored::Blocks { .. }) => stored.bytes(elems),
        (Home::Host, Stored::Plain(_)) => elems * 4,
        (Home::Device, Stored::Plain(_)) => elems * compute_bytes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embeddings_go_to_the_host_and_low_rank_projections_do_not() {
        let p = Placement::default();
        for n in [
            "text_emb.weight",
            "emb.0.weight",
            "emb.15.weight",
            "depformer.0.emb.weight",
            "depformer.7.emb.weight",
        ] {
            assert_eq!(p.home(n).0, Home::Host, "{n}");
        }
        for n in [
            "depformer.0.emb.low_rank.weight",
            "text_linear.weight",
            "out_norm.alpha",
            "depformer.3.linear_in.weight",
            "transformer.layers.0.gating.linear_in.weight",
        ] {
            assert_eq!(p.home(n).0, Home::Device, "{n}");
        }
    }

    #[test]
    fn host_layers_stay_named_and_device_layers_are_renumbered() {
        let p = Placement { host_layers: 2 };
        assert_eq!(
            p.home("transformer.layers.1.norm1.alpha"),
            (
                Home::Host,
                Cow::Borrowed("transformer.layers.1.norm1.alpha")
            )
        );
        let (home, name) = p.home("transformer.layers.2.self_attn.in_proj_weight");
        assert_eq!(
            (home, name.as_ref()),
            (
                Home::Device,
                "transformer.layers.0.self_attn.in_proj_weight"
            )
        );
        assert_eq!(
            p.device_source("transformer.layers.0.self_attn.in_proj_weight"),
            "transformer.layers.2.self_attn.in_proj_weight"
        );
        // The depformer's own layers are not the temporal transformer's.
        assert_eq!(
            p.home("depformer.1.transformer.layers.0.norm1.alpha").1,
            "depformer.1.transformer.layers.0.norm1.alpha"
        );
    }

    #[test]
    fn header_dtypes_size_as_stored() {
        assert_eq!(Stored::from_header_dtype("Q8_0"), Some(Stored::Q8_0));
        assert_eq!(
            Stored::from_header_dtype("Q4K").map(|s| s.bytes(256)),
            Some(144)
        );
        assert_eq!(Stored::from_header_dtype("BF16"), Some(Stored::Plain(2)));
        assert_eq!(Stored::from_header_dtype("I64"), Some(Stored::Plain(8)));
        assert_eq!(Stored::from_header_dtype("F8_E4M3"), None);
    }

    #[test]
    fn resident_sizes_follow_where_and_how_tensors_live() {
        assert_eq!(
            resident_bytes("text_emb.weight", Stored::Q8_0, 64, Home::Host, 2),
            256
        );
        assert_eq!(
            resident_bytes("text_linear.weight", Stored::Q8_0, 64, Home::Device, 4),
            68
        );
        assert_eq!(
            resident_bytes("out_norm.alpha", Stored::Plain(2), 10, Home::Device, 2),
            20
        );
        assert_eq!(
            resident_bytes(
                "transformer.layers.0.norm1.alpha",
                Stored::Plain(2),
                10,
                Home::Host,
                2
            ),
            40
        );
    }
}
