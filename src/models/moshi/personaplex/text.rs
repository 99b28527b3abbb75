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

/// What a piece of a unigram model is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PieceKind {
    Normal,
    /// `<0xNN>`: one byte of UTF-8, for characters no piece covers.
    Byte,
    Unknown,
    /// The unknown piece, whose text ("<unk>") is also matched as a piece (as the
    /// `tokenizers` Unigram model does).
    UnknownText,
    /// `<s>`, `</s>`, padding: never produced by encoding.
    Control,
}

pub struct PieceEncoder {
    pieces: HashMap<String, (u32, f32)>,
    /// Each id's text, for decoding ("" for control pieces; bytes as `<0xNN>`).
    texts: Vec<String>,
    bytes: HashMap<u8, u32>,
    max_chars: usize,
    unk: u32,
    unk_score: f32,
    /// How `decode` writes the unknown piece.
    unk_surface: String,
    add_dummy_prefix: bool,
    remove_extra_whitespaces: bool,
}

impl PieceEncoder {
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, String> {
        let model = SentencePieceModel::from_slice(bytes)
            .map_err(|e| format!("not a SentencePiece model: {e}"))?;
        let norm = model.normalizer();
        let pieces = model.pieces().iter().map(|p| {
            let kind = match p.r#type() {
                Type::Normal | Type::UserDefined => PieceKind::Normal,
                Type::Byte => PieceKind::Byte,
                Type::Unknown => PieceKind::Unknown,
                Type::Control | Type::Unused => PieceKind::Control,
            };
            (
                p.piece.clone().unwrap_or_default(),
                p.score.unwrap_or(0.0),
                kind,
            )
        });
        Self::from_pieces(
            pieces,
            norm.and_then(|n| n.add_dummy_prefix).unwrap_or(true),
            norm.and_then(|n| n.remove_extra_whitespaces)
                .unwrap_or(true),
        )
    }

    /// A unigram model from its piece table (text, score, kind) in id order.
    pub fn from_pieces(
        table: impl IntoIterator<Item = (String, f32, PieceKind)>,
        add_dummy_prefix: bool,
        remove_extra_whitespaces: bool,
    ) -> Result<Self, String> {
        let mut pieces = HashMap::new();
        let mut texts = Vec::new();
        let mut byte_ids = HashMap::new();
        let (mut unk, mut min_score, mut max_chars) = (0, 0f32, 1);
        for (i, (text, score, kind)) in table.into_iter().enumerate() {
            texts.push(if kind == PieceKind::Control {
                String::new()
            } else {
                text.clone()
            });
            match kind {
                PieceKind::Normal => {
                    min_score = min_score.min(score);
                    max_chars = max_chars.max(text.chars().count());
                    pieces.insert(text, (i as u32, score));
                }
                PieceKind::Byte => {
                    if let Some(b) = text
                        .strip_prefix("<0x")
                        .and_then(|h| h.strip_suffix('>'))
                        .and_then(|h| u8::from_str_radix(h, 16).ok())
                    {
                        byte_ids.insert(b, i as u32);
                    }
                }
                PieceKind::Unknown => unk = i as u32,
                PieceKind::UnknownText => {
                    unk = i as u32;
                    pieces.insert(text, (i as u32, score));
                }
                PieceKind::Control => {}
            }
        }
        if pieces.is_empty() {
            return Err("not a SentencePiece model: it has no pieces".into());
        }
        Ok(Self {
            pieces,
            texts,
            bytes: byte_ids,
            max_chars,
            unk,
            // SentencePiece scores an unknown piece 10 below the lowest piece.
            unk_score: min_score - 10.0,
            unk_surface: " \u{2047} ".into(),
            add_dummy_prefix,
            remove_extra_whitespaces,
        })
    }

    /// Decode the unknown piece as `s` (SentencePiece writes " ⁇ ").
    pub fn with_unk_surface(mut self, s: &str) -> Self {
        self.unk_surface = s.into();
        self
    }

    /// Pieces in the table (the vocabulary size).
    pub fn len(&self) -> usize {
        self.texts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.texts.is_empty()
    }

    /// The text of `ids`, as `SentencePieceProcessor.decode` gives it: "▁" as spaces,
    /// byte pieces joined into UTF-8, the unknown piece as " ⁇ ", no leading space.
    pub fn decode(&self, ids: &[u32]) -> String {
        let mut bytes = Vec::new();
        for &id in ids {
            let Some(t) = self.texts.get(id as usize) else {
                continue;
            };
            if id == self.unk {
                bytes.extend_from_slice(self.unk_surface.as_bytes());
                continue;
            }
            let byte = t
                .strip_prefix("<0x")
                .and_then(|h| h.strip_suffix('>'))
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            match byte {
                Some(b) if self.bytes.get(&b) == Some(&id) => bytes.push(b),
                _ => bytes.extend_from_slice(t.replace(SPACE, " ").as_bytes()),
            }
        }
        let s = String::from_utf8_lossy(&bytes).into_owned();
        match s.strip_prefix(' ') {
            Some(rest) if self.add_dummy_prefix => rest.to_string(),
            _ => s,
        }
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
        // SentencePiece (and `tokenizers`) fuse a run of unknown characters into one
        // unknown piece.
        let mut unk_run = false;
        while end > 0 {
            let Some((_, start, id)) = best[end] else {
                break;
            };
            match id {
                Some(id) => {
                    out.push(id);
                    unk_run = false;
                }
                None => {
                    let mut buf = [0u8; 4];
                    let enc = chars[start].encode_utf8(&mut buf).as_bytes();
                    let ids: Option<Vec<u32>> =
                        enc.iter().map(|b| self.bytes.get(b).copied()).collect();
                    match ids {
                        Some(ids) => {
                            out.extend(ids.into_iter().rev());
                            unk_run = false;
                        }
                        None => {
                            if !unk_run {
                                out.push(self.unk);
                            }
                            unk_run = true;
                        }
                    }
                }
            }
            end = start;
        }
        out.reverse();
        out
    }
}
