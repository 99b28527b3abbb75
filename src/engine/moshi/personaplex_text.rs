//! SentencePiece encoding for PersonaPlex's text prompt: the unigram model's Viterbi
//! segmentation over the piece scores, as `SentencePieceProcessor.encode` does for
//! plain text (no BOS/EOS).
//!
//! Normalisation covers what the role texts need: leading, trailing and repeated
//! whitespace removed when the model asks for it, spaces turned into "▁", and the
//! dummy prefix. NFKC is not applied, so compatibility characters (full-width forms,
//! ligatures) are encoded as written (byte fallback or the unknown piece).

use sentencepiece_model::{SentencePieceModel, Type};
use std::collections::HashMap;

const SPACE: char = '\u{2581}';

pub struct PieceEncoder {
    pieces: HashMap<String, (u32, f32)>,
    bytes: HashMap<u8, u32>,
    max_chars: usize,
    unk: u32,
    unk_score: f32,
    add_dummy_prefix: bool,
    remove_extra_whitespaces: bool,
}

impl PieceEncoder {
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, String> {
        let model = SentencePieceModel::from_slice(bytes)
            .map_err(|e| format!("not a SentencePiece model: {e}"))?;
        let mut pieces = HashMap::new();
        let mut byte_ids = HashMap::new();
        let (mut unk, mut min_score, mut max_chars) = (0, 0f32, 1);
        for (i, p) in model.pieces().iter().enumerate() {
            let text = p.piece.clone().unwrap_or_default();
            let score = p.score.unwrap_or(0.0);
            match p.r#type() {
                Type::Normal | Type::UserDefined => {
                    min_score = min_score.min(score);
                    max_chars = max_chars.max(text.chars().count());
                    pieces.insert(text, (i as u32, score));
                }
                Type::Byte => {
                    if let Some(b) = text
                        .strip_prefix("<0x")
                        .and_then(|h| h.strip_suffix('>'))
                        .and_then(|h| u8::from_str_radix(h, 16).ok())
                    {
                        byte_ids.insert(b, i as u32);
                    }
                }
                Type::Unknown => unk = i as u32,
                Type::Control | Type::Unused => {}
            }
        }
        if pieces.is_empty() {
            return Err("not a SentencePiece model: it has no pieces".into());
        }
        let norm = model.normalizer();
        Ok(Self {
            pieces,
            bytes: byte_ids,
            max_chars,
            unk,
            // SentencePiece scores an unknown piece 10 below the lowest piece.
            unk_score: min_score - 10.0,
            add_dummy_prefix: norm.and_then(|n| n.add_dummy_prefix).unwrap_or(true),
            remove_extra_whitespaces: norm
                .and_then(|n| n.remove_extra_whitespaces)
                .unwrap_or(true),
        })
    }

    fn normalise(&self, text: &str) -> Vec<char> {
        let text = if self.remove_extra_whitespaces {
            text.split_whitespace().collect::<Vec<_>>().join(" ")
        } else {
            text.to_string()
        };
        let mut out = Vec::with_capacity(text.len() + 1);
        if self.add_dummy_prefix && !text.is_empty() {
            out.push(SPACE);
        }
        out.extend(text.chars().map(|c| if c == ' ' { SPACE } else { c }));
        out
    }

    /// The token ids of `text`.
    pub fn encode(&self, text: &str) -> Vec<u32> {
        let chars = self.normalise(text);
        let n = chars.len();
        // best[i]: the best score of a segmentation of chars[..i] and its last piece.
        let mut best: Vec<Option<(f32, usize, Option<u32>)>> = vec![None; n + 1];
        best[0] = Some((0.0, 0, None));
        for start in 0..n {
            let Some((base, _, _)) = best[start] else {
                continue;
            };
            let mut matched = false;
            let mut s = String::new();
            for end in start + 1..=(start + self.max_chars).min(n) {
                s.push(chars[end - 1]);
                if let Some(&(id, score)) = self.pieces.get(&s) {
                    matched |= end == start + 1;
                    let cand = base + score;
                    if best[end].is_none_or(|(b, _, _)| cand > b) {
                        best[end] = Some((cand, start, Some(id)));
                    }
                }
            }
            if !matched {
                // One unknown character: byte pieces when the model has them.
                let cand = base + self.unk_score;
                if best[start + 1].is_none_or(|(b, _, _)| cand > b) {
                    best[start + 1] = Some((cand, start, None));
                }
            }
        }
        let mut out = Vec::new();
        let mut end = n;
        while end > 0 {
            let Some((_, start, id)) = best[end] else {
                break;
            };
            match id {
                Some(id) => out.push(id),
                None => {
                    let mut buf = [0u8; 4];
                    let enc = chars[start].encode_utf8(&mut buf).as_bytes();
                    let ids: Option<Vec<u32>> =
                        enc.iter().map(|b| self.bytes.get(b).copied()).collect();
                    match ids {
                        Some(ids) => out.extend(ids.into_iter().rev()),
                        None => out.push(self.unk),
                    }
                }
            }
            end = start;
        }
        out.reverse();
        out
    }
}
