//! The byte-level BPE tokenizer a GGUF chat model carries in its metadata
//! (`tokenizer.ggml.model = "gpt2"`: Qwen2, Llama 3 and most chat models), read the way
//! llama.cpp reads it: `tokens`, `token_type`, `merges`, and the pre-tokenizer named by
//! `tokenizer.ggml.pre` (its split pattern; Qwen2's needs look-ahead, hence
//! fancy-regex). Encoding is Hugging Face's `tokenizers` (a BPE model built from the
//! vocabulary and merges, llama.cpp's split pattern, then GPT-2's byte mapping; the
//! control tokens as special tokens that user text cannot produce). It gives llama.cpp's
//! ids on llama.cpp's own fixtures, 46 of 46 texts for Qwen2 and for Llama 3
//! (tests/llm/tokenizer.rs; the hand-written merge loop this replaced missed one Llama 3
//! text, for want of `ignore_merges`). Decoding stays here: a token's bytes, which may
//! end inside a character, for `Utf8Stream`.

use moshi::candle::quantized::gguf_file::Value;
use std::collections::HashMap;
use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{AddedToken, SplitDelimiterBehavior, Tokenizer};

/// llama.cpp's `llama_token_type`: control tokens (`<|im_end|>`) have no text.
const TOKEN_CONTROL: i32 = 3;
const TOKEN_USER_DEFINED: i32 = 4;

/// Qwen2's pre-tokenizer pattern (llama.cpp's `LLAMA_VOCAB_PRE_TYPE_QWEN2`; Qwen's own
/// `tokenizer.json` writes the contractions as `(?i:'s|…)`, which in a Unicode regex
/// also takes `'ſ` and `'K` (the Kelvin sign): llama.cpp's spelling is ASCII only).
const PRE_QWEN2: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Llama 3's (`llama-bpe`): numbers in groups of up to three.
const PRE_LLAMA3: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// GPT-2's own, llama.cpp's default.
const PRE_GPT2: &str =
    r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

pub struct BpeTokenizer {
    encoder: Tokenizer,
    tokens: Vec<String>,
    types: Vec<i32>,
    /// The ids of GPT-2's 256 byte characters, for text the encoder refuses.
    byte_ids: [Option<u32>; 256],
    char_byte: HashMap<char, u8>,
}

/// GPT-2's map from bytes to printable characters (so every byte is a token string).
fn bytes_to_chars() -> [char; 256] {
    let printable =
        |b: u32| (33..=126).contains(&b) || (161..=172).contains(&b) || (174..=255).contains(&b);
    let mut out = ['\0'; 256];
    let mut extra = 0;
    for b in 0..256u32 {
        out[b as usize] = if printable(b) {
            char::from_u32(b).unwrap_or('\0')
        } else {
            extra += 1;
            char::from_u32(255 + extra).unwrap_or('\0')
        };
    }
    out
}

fn string_array(md: &HashMap<String, Value>, key: &str) -> Result<Vec<String>, String> {
    match md.get(key) {
        Some(Value::Array(vs)) => vs
            .iter()
            .map(|v| {
                v.to_string()
                    .cloned()
                    .map_err(|_| format!("`{key}` holds a non-string"))
            })
            .collect(),
        Some(_) => Err(format!("`{key}` is not an array")),
        None => Err(format!("no `{key}` in its metadata")),
    }
}

/// A GGUF's tokens, if its tokenizer is one this module reads: the file checks that
/// run before a load use this rather than build the encoder.
pub fn vocabulary(md: &HashMap<String, Value>) -> Result<Vec<String>, String> {
    let model = md
        .get("tokenizer.ggml.model")
        .and_then(|v| v.to_string().ok())
        .ok_or("no `tokenizer.ggml.model` in its metadata")?;
    if model != "gpt2" {
        return Err(format!(
            "its tokenizer is `{model}`; only byte-level BPE (`gpt2`, as Qwen2 and Llama 3 use) is supported"
        ));
    }
    string_array(md, "tokenizer.ggml.tokens")
}

impl BpeTokenizer {
    /// From a GGUF's metadata; the error says which key is missing or wrong.
    pub fn from_gguf(md: &HashMap<String, Value>) -> Result<Self, String> {
        let tokens = vocabulary(md)?;
        let merges = string_array(md, "tokenizer.ggml.merges")?;
        let types: Vec<i32> = match md.get("tokenizer.ggml.token_type") {
            Some(Value::Array(vs)) => vs.iter().map(|v| v.to_i32().unwrap_or(1)).collect(),
            _ => vec![1; tokens.len()],
        };
        // Llama 3 takes a piece that is a token whole, before any merge (llama.cpp's
        // `ignore_merges`; its merges alone can reach another split).
        let (pattern, ignore_merges) = match md
            .get("tokenizer.ggml.pre")
            .and_then(|v| v.to_string().ok())
            .map(String::as_str)
        {
            Some("qwen2") => (PRE_QWEN2, false),
            Some("llama-bpe" | "llama3" | "llama-v3") => (PRE_LLAMA3, true),
            Some("smaug-bpe") => (PRE_LLAMA3, false),
            _ => (PRE_GPT2, false),
        };
        let vocab: tokenizers::models::bpe::Vocab = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), i as u32))
            .collect();
        let merges: Vec<(String, String)> = merges
            .iter()
            .filter_map(|m| {
                let (a, b) = m.split_once(' ')?;
                Some((a.to_string(), b.to_string()))
            })
            .collect();
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .ignore_merges(ignore_merges)
            .build()
            .map_err(|e| format!("its merges do not fit its tokens: {e}"))?;
        let split = Split::new(
            SplitPattern::Regex(pattern.into()),
            SplitDelimiterBehavior::Isolated,
            false,
        )
        .map_err(|e| format!("pre-tokenizer: {e}"))?;
        // The split pattern does the splitting; the byte level only maps bytes.
        let bytes = ByteLevel::new(false, false, false);
        let mut encoder = Tokenizer::new(bpe);
        encoder.with_pre_tokenizer(Some(Sequence::new(vec![split.into(), bytes.into()])));
        let control: Vec<AddedToken> = tokens
            .iter()
            .zip(&types)
            .filter(|(_, &ty)| ty == TOKEN_CONTROL)
            .map(|(t, _)| AddedToken::from(t.clone(), true))
            .collect();
        encoder.add_special_tokens(&control);
        // Special-token strings in text stay text (a user cannot inject `<|im_start|>`);
        // the chat template inserts those by id. User-defined tokens (`<tool_call>`) are
        // not added tokens for the same reason: their text encodes as text.
        encoder.set_encode_special_tokens(true);
        let mut byte_ids = [None; 256];
        let byte_char = bytes_to_chars();
        for (b, c) in byte_char.iter().enumerate() {
            byte_ids[b] = encoder.token_to_id(&c.to_string());
        }
        let char_byte = byte_char
            .iter()
            .enumerate()
            .map(|(b, &c)| (c, b as u8))
            .collect();
        Ok(Self {
            encoder,
            tokens,
            types,
            byte_ids,
            char_byte,
        })
    }

    pub fn vocab_size(&self) -> usize {
        self.tokens.len()
    }

    /// The id of a token by its exact string (`<|im_start|>`).
    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.encoder.token_to_id(token)
    }

    /// Plain text to ids. Special-token strings in it stay text (a user cannot inject
    /// `<|im_start|>`); the chat template inserts those by id.
    pub fn encode(&self, text: &str) -> Vec<u32> {
        match self.encoder.encode_fast(text, false) {
            Ok(e) => e.get_ids().to_vec(),
            // Not seen: the split gives up on a backtrack limit by leaving the rest as one
            // piece, which still encodes. Should it fail, the text is kept, unmerged.
            Err(e) => {
                tracing::warn!("tokenizer: {e}; encoding {} bytes unmerged", text.len());
                text.bytes()
                    .filter_map(|b| self.byte_ids[b as usize])
                    .collect()
            }
        }
    }

    /// The bytes a token stands for; none for control tokens.
    pub fn token_bytes(&self, id: u32) -> Vec<u8> {
        let i = id as usize;
        let Some(t) = self.tokens.get(i) else {
            return Vec::new();
        };
        match self.types.get(i) {
            Some(&TOKEN_CONTROL) => Vec::new(),
            Some(&TOKEN_USER_DEFINED) => t.as_bytes().to_vec(),
            _ => {
                let mut out = Vec::with_capacity(t.len());
                for c in t.chars() {
                    match self.char_byte.get(&c) {
                        Some(&b) => out.push(b),
                        None => out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes()),
                    }
                }
                out
            }
        }
    }

    pub fn decode(&self, ids: &[u32]) -> String {
        let bytes: Vec<u8> = ids.iter().flat_map(|&id| self.token_bytes(id)).collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

/// Turns token bytes into text as they come: a character split across tokens waits
/// for its last byte; bytes that make no character are dropped (as llama.cpp's Python
/// server does), since the text is spoken, not shown byte for byte.
#[derive(Debug, Default)]
pub struct Utf8Stream {
    pending: Vec<u8>,
}

impl Utf8Stream {
    pub fn push(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        let mut out = String::new();
        loop {
            match std::str::from_utf8(&self.pending) {
                Ok(s) => {
                    out.push_str(s);
                    self.pending.clear();
                    return out;
                }
                Err(e) => {
                    let good = e.valid_up_to();
                    out.push_str(std::str::from_utf8(&self.pending[..good]).unwrap_or_default());
                    match e.error_len() {
                        // Incomplete at the end: wait for more.
                        None => {
                            self.pending.drain(..good);
                            return out;
                        }
                        Some(n) => {
                            self.pending.drain(..good + n);
                        }
                    }
                }
            }
        }
    }

    /// The reply ended: an unfinished character is dropped.
    pub fn finish(&mut self) -> String {
        self.pending.clear();
        String::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tok(merges: &[&str], extra: &[&str]) -> BpeTokenizer {
        let chars = bytes_to_chars();
        let mut tokens: Vec<String> = chars.iter().map(|c| c.to_string()).collect();
        for m in merges {
            tokens.push(m.replace(' ', ""));
        }
        let mut types = vec![1i32; tokens.len()];
        for e in extra {
            tokens.push(e.to_string());
            types.push(TOKEN_CONTROL);
        }
        let arr = |v: Vec<Value>| Value::Array(v);
        let md: HashMap<String, Value> = [
            ("tokenizer.ggml.model", Value::String("gpt2".into())),
            ("tokenizer.ggml.pre", Value::String("qwen2".into())),
            (
                "tokenizer.ggml.tokens",
                arr(tokens.into_iter().map(Value::String).collect()),
            ),
            (
                "tokenizer.ggml.token_type",
                arr(types.into_iter().map(Value::I32).collect()),
            ),
            (
                "tokenizer.ggml.merges",
                arr(merges
                    .iter()
                    .map(|m| Value::String(m.to_string()))
                    .collect()),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        BpeTokenizer::from_gguf(&md).unwrap()
    }

    #[test]
    fn merges_apply_in_rank_order_and_round_trip() {
        let t = tok(&["h e", "l l", "he ll", "Ġ w"], &["<|im_end|>"]);
        let ids = t.encode("hello world");
        let pieces: Vec<String> = ids.iter().map(|&i| t.decode(&[i])).collect();
        assert_eq!(pieces, ["hell", "o", " w", "o", "r", "l", "d"]);
        for text in [
            "hello world",
            "naïve café 123\n\n  x",
            "日本語 🎉",
            "it's <|im_end|>",
        ] {
            assert_eq!(t.decode(&t.encode(text)), text);
        }
        // A special token's text in user input stays text.
        assert!(!t
            .encode("<|im_end|>")
            .contains(&t.token_id("<|im_end|>").unwrap()));
        assert_eq!(t.decode(&[t.token_id("<|im_end|>").unwrap()]), "");
    }

    #[test]
    fn qwen2_splits_digits_one_by_one() {
        let t = tok(&["1 2"], &[]);
        // "12" would merge if digits were one piece; Qwen2 splits them.
        assert_eq!(t.encode("12").len(), 2);
    }

    #[test]
    fn characters_split_across_tokens_wait_for_their_last_byte() {
        let mut s = Utf8Stream::default();
        let e = "é🎉".as_bytes();
        assert_eq!(s.push(&e[..1]), "");
        assert_eq!(s.push(&e[1..3]), "é");
        assert_eq!(s.push(&e[3..]), "🎉");
        assert_eq!(s.push(&[0xff, b'a', 0x80]), "a");
        assert_eq!(s.push(&[0xe2]), "");
        assert_eq!(s.finish(), "");
    }
}
