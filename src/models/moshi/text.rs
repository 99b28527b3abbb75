//! The text stream: SentencePiece pieces to words.
//!
//! Decoding only needs the piece table, so the `.model` protobuf is parsed in pure Rust
//! (`sentencepiece-model`) instead of binding the C++ library.

use sentencepiece_model::{SentencePieceModel, Type};

const WORD_START: char = '\u{2581}'; // "▁", SentencePiece's space marker
/// Pad steps after which a pending word is let out even though no next word has begun:
/// Moshi pads between words, so ~300 ms of padding means the word is done.
const FLUSH_AFTER_PADS: u32 = 4;

#[derive(Debug, Clone)]
enum Piece {
    Text(String),
    Byte(u8),
    /// Control and unknown pieces print nothing.
    Silent,
}

#[derive(Debug, Clone)]
pub struct Vocab {
    pieces: Vec<Piece>,
}

impl Vocab {
    /// Parse a SentencePiece `.model` file's bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, String> {
        let model = SentencePieceModel::from_slice(bytes)
            .map_err(|e| format!("not a SentencePiece model: {e}"))?;
        let pieces: Vec<Piece> = model
            .pieces()
            .iter()
            .map(|p| {
                let text = p.piece.clone().unwrap_or_default();
                match p.r#type() {
                    Type::Normal | Type::UserDefined => Piece::Text(text),
                    Type::Byte => parse_byte(&text).map_or(Piece::Silent, Piece::Byte),
                    Type::Unknown | Type::Control | Type::Unused => Piece::Silent,
                }
            })
            .collect();
        if pieces.is_empty() {
            return Err("not a SentencePiece model: it has no pieces".into());
        }
        Ok(Self { pieces })
    }

    pub fn len(&self) -> usize {
        self.pieces.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pieces.is_empty()
    }

    /// The text of a run of pieces, "▁" as spaces, byte pieces as UTF-8, control pieces
    /// and unknown ids dropped (for recognisers that emit whole words).
    pub fn decode(&self, ids: &[u32]) -> String {
        let mut bytes = Vec::new();
        for &id in ids {
            match self.pieces.get(id as usize) {
                Some(Piece::Text(t)) => {
                    bytes.extend_from_slice(t.replace(WORD_START, " ").as_bytes())
                }
                Some(Piece::Byte(b)) => bytes.push(*b),
                Some(Piece::Silent) | None => {}
            }
        }
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

fn parse_byte(piece: &str) -> Option<u8> {
    let hex = piece.strip_prefix("<0x")?.strip_suffix('>')?;
    u8::from_str_radix(hex, 16).ok()
}

/// Assembles streamed text tokens into words, each with its leading space.
#[derive(Debug, Clone)]
pub struct TextAssembler {
    vocab: Vocab,
    pad: u32,
    eop: u32,
    word: Vec<u8>,
    pads_since_piece: u32,
}

impl TextAssembler {
    pub fn new(vocab: Vocab, pad: u32, eop: u32) -> Self {
        Self {
            vocab,
            pad,
            eop,
            word: Vec::new(),
            pads_since_piece: 0,
        }
    }

    pub fn reset(&mut self) {
        self.word.clear();
        self.pads_since_piece = 0;
    }

    /// Feed one text token; returns a completed word (or more) when one is complete.
    pub fn push(&mut self, token: u32) -> Option<String> {
        if token == self.pad || token == self.eop {
            self.pads_since_piece += 1;
            return if self.pads_since_piece == FLUSH_AFTER_PADS {
                self.take()
            } else {
                None
            };
        }
        self.pads_since_piece = 0;
        let starts_word = matches!(self.vocab.pieces.get(token as usize), Some(Piece::Text(t)) if t.starts_with(WORD_START));
        let done = if starts_word { self.take() } else { None };
        match self.vocab.pieces.get(token as usize) {
            Some(Piece::Text(text)) => self
                .word
                .extend_from_slice(text.replace(WORD_START, " ").as_bytes()),
            Some(Piece::Byte(b)) => self.word.push(*b),
            Some(Piece::Silent) | None => {}
        }
        done
    }

    /// Whatever is pending, e.g. at the end of a file.
    pub fn take(&mut self) -> Option<String> {
        if self.word.is_empty() {
            return None;
        }
        let s = String::from_utf8_lossy(&self.word).into_owned();
        self.word.clear();
        Some(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn demo_vocab() -> Vocab {
        Vocab::from_bytes(super::super::demo::DEMO_TOKENIZER).unwrap()
    }

    fn id(v: &Vocab, s: &str) -> u32 {
        v.pieces
            .iter()
            .position(|p| matches!(p, Piece::Text(t) if t == s))
            .unwrap() as u32
    }

    #[test]
    fn pieces_become_words_and_pads_are_skipped() {
        let v = demo_vocab();
        assert_eq!(v.len(), 512);
        let (the, of, s) = (id(&v, "\u{2581}the"), id(&v, "\u{2581}of"), id(&v, "s"));
        let mut a = TextAssembler::new(v, 3, 0);
        let mut out = vec![];
        for t in [the, 3, s, 0, of, 3, 3, 3, 3, 3] {
            out.extend(a.push(t));
        }
        assert_eq!(out, vec![" thes".to_string(), " of".to_string()]);
        assert_eq!(a.take(), None);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(Vocab::from_bytes(b"\xff\xff\xff\xff not a model").is_err());
    }
}
