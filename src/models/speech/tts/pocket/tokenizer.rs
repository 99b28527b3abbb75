//! Pocket TTS's text tokenizer: a SentencePiece unigram model, given either as
//! `tokenizer.model` or converted to a Hugging Face `tokenizer.json` (the same pieces
//! and ids, which the released configs point at). Both run through our unigram
//! encoder; characters no piece covers become byte pieces or the unknown piece, so
//! any text encodes.

use crate::models::moshi::personaplex::text::{PieceEncoder, PieceKind};
use serde_json::Value;
use std::path::Path;

pub struct Tokenizer {
    enc: PieceEncoder,
}

impl Tokenizer {
    /// Read `path` (`.json`: a `tokenizer.json` of a Unigram model; else a SentencePiece
    /// model), checking its size against the lookup table's `n_bins`.
    pub fn load(path: &Path, n_bins: usize) -> Result<Self, String> {
        let bytes = std::fs::read(path).map_err(|e| format!("cannot read: {e}"))?;
        // What the package re-encodes after decoding a chunk: `tokenizers` writes the
        // unknown piece's text "<unk>" (a piece it matches again); SentencePiece writes
        // " ⁇ ", which its NFKC normalisation reads back as "??".
        let enc = if path.extension().is_some_and(|e| e == "json") {
            from_json(&bytes)?
        } else {
            PieceEncoder::from_bytes(&bytes)?.with_unk_surface(" ?? ")
        };
        if enc.len() != n_bins {
            return Err(format!(
                "the tokenizer has {} pieces; the model's lookup table has {n_bins}",
                enc.len()
            ));
        }
        Ok(Self { enc })
    }

    pub fn from_encoder(enc: PieceEncoder) -> Self {
        Self {
            enc: enc.with_unk_surface(" ?? "),
        }
    }

    pub fn encode(&self, text: &str) -> Vec<u32> {
        self.enc.encode(text)
    }

    pub fn decode(&self, ids: &[u32]) -> String {
        self.enc.decode(ids)
    }

    pub fn vocab_size(&self) -> usize {
        self.enc.len()
    }
}

/// A `tokenizer.json` holding a Unigram model (as `tokenizers` converts SentencePiece).
fn from_json(bytes: &[u8]) -> Result<PieceEncoder, String> {
    let v: Value = serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"))?;
    let model = &v["model"];
    if model["type"].as_str() != Some("Unigram") {
        return Err(format!(
            "a tokenizer.json of type {} (a Unigram model, converted from SentencePiece, is expected)",
            model["type"]
        ));
    }
    let vocab = model["vocab"]
        .as_array()
        .ok_or("model.vocab is not a list of [piece, score]")?;
    let unk = model["unk_id"].as_u64().map(|u| u as usize);
    let special: std::collections::HashSet<u64> = v["added_tokens"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|t| t["special"].as_bool() == Some(true))
                .filter_map(|t| t["id"].as_u64())
                .collect()
        })
        .unwrap_or_default();
    let byte_fallback = model["byte_fallback"].as_bool().unwrap_or(false);
    let mut table = Vec::with_capacity(vocab.len());
    for (i, e) in vocab.iter().enumerate() {
        let piece = e[0].as_str().ok_or("model.vocab: a piece is not text")?;
        let score = e[1].as_f64().unwrap_or(0.0) as f32;
        let is_byte = piece.len() == 6 && piece.starts_with("<0x") && piece.ends_with('>');
        let kind = if Some(i) == unk {
            PieceKind::UnknownText
        } else if special.contains(&(i as u64)) {
            PieceKind::Control
        } else if is_byte && byte_fallback {
            PieceKind::Byte
        } else {
            PieceKind::Normal
        };
        table.push((piece.to_string(), score, kind));
    }
    // Metaspace with prepend_scheme "never" is the only way a converted model drops the
    // dummy prefix.
    let prefix = !json_has(&v["pre_tokenizer"], "prepend_scheme", "never")
        && !json_has(&v["decoder"], "prepend_scheme", "never");
    // `decode` skips special tokens: an unknown piece that is one vanishes.
    let unk_special = unk.is_some_and(|u| special.contains(&(u as u64)));
    let surface = match unk.and_then(|u| table.get(u)) {
        Some((text, _, _)) if !unk_special => text.clone(),
        _ => String::new(),
    };
    Ok(PieceEncoder::from_pieces(table, prefix, true)?.with_unk_surface(&surface))
}

fn json_has(v: &Value, key: &str, value: &str) -> bool {
    match v {
        Value::Object(m) => {
            m.get(key).and_then(Value::as_str) == Some(value)
                || m.values().any(|x| json_has(x, key, value))
        }
        Value::Array(a) => a.iter().any(|x| json_has(x, key, value)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny_json() -> String {
        let mut vocab = vec![
            serde_json::json!(["<unk>", 0.0]),
            serde_json::json!(["<s>", 0.0]),
            serde_json::json!(["</s>", 0.0]),
        ];
        for b in 0..256 {
            vocab.push(serde_json::json!([format!("<0x{b:02X}>"), 0.0]));
        }
        for (i, p) in [
            "\u{2581}hello",
            "\u{2581}world",
            "\u{2581}",
            "h",
            "e",
            "l",
            "o",
            ".",
        ]
        .iter()
        .enumerate()
        {
            vocab.push(serde_json::json!([p, -(i as f64) - 1.0]));
        }
        serde_json::json!({
            "added_tokens": [
                {"id": 0, "content": "<unk>", "special": true},
                {"id": 1, "content": "<s>", "special": true},
                {"id": 2, "content": "</s>", "special": true}
            ],
            "pre_tokenizer": {"type": "Metaspace", "replacement": "\u{2581}", "prepend_scheme": "always"},
            "model": {"type": "Unigram", "unk_id": 0, "vocab": vocab, "byte_fallback": true}
        })
        .to_string()
    }

    #[test]
    fn json_tokenizer_encodes_and_decodes() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("tokenizer.json");
        std::fs::write(&p, tiny_json()).unwrap();
        let t = Tokenizer::load(&p, 267).unwrap();
        let ids = t.encode("hello world.");
        assert_eq!(ids, vec![259, 260, 266]);
        assert_eq!(t.decode(&ids), "hello world.");
        let e = Tokenizer::load(&p, 4000).err().unwrap();
        assert!(e.contains("4000"), "{e}");
    }

    #[test]
    fn emoji_and_other_scripts_encode_as_bytes_without_panic() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("tokenizer.json");
        std::fs::write(&p, tiny_json()).unwrap();
        let t = Tokenizer::load(&p, 267).unwrap();
        for text in ["hello 👋🏽 world", "日本語", "\u{0}", "", "   ", "é"] {
            let ids = t.encode(text);
            assert!(ids.iter().all(|&i| (i as usize) < t.vocab_size()));
            if text.trim().is_empty() {
                continue;
            }
            assert!(!ids.is_empty(), "{text:?}");
            assert_eq!(t.decode(&ids), text.trim(), "{text:?}");
        }
        // A SentencePiece model without byte pieces: the unknown piece instead.
        let sp = PieceEncoder::from_pieces(
            [
                ("<unk>".to_string(), 0.0, PieceKind::Unknown),
                ("\u{2581}hi".to_string(), -1.0, PieceKind::Normal),
                ("\u{2581}".to_string(), -2.0, PieceKind::Normal),
            ],
            true,
            true,
        )
        .unwrap();
        let t = Tokenizer::from_encoder(sp);
        let ids = t.encode("hi 🎉");
        assert_eq!(ids, vec![1, 2, 0]);
    }
}
