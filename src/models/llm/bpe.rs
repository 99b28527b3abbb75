//! The byte-level BPE tokenizer a GGUF chat model carries in its metadata
//! (`tokenizer.ggml.model = "gpt2"`: Qwen2, Llama 3 and most chat models), read the way
//! llama.cpp reads it: `tokens`, `token_type`, `merges`, and the pre-tokenizer named by
//! `tokenizer.ggml.pre` (its split pattern; Qwen2's needs look-ahead, hence
//! fancy-regex). Text is split by that pattern, each piece's bytes mapped to GPT-2's
//! printable characters, then merged pair by pair in merge-rank order.

use moshi::candle::quantized::gguf_file::Value;
use std::collections::HashMap;

/// llama.cpp's `llama_token_type`: control tokens (`<|im_end|>`) have no text.
const TOKEN_CONTROL: i32 = 3;
const TOKEN_USER_DEFINED: i32 = 4;

/// Qwen2's pre-tokenizer pattern (llama.cpp's `LLAMA_VOCAB_PRE_TYPE_QWEN2`).
const PRE_QWEN2: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Llama 3's (`llama-bpe`): numbers in groups of up to three.
const PRE_LLAMA3: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// GPT-2's own, llama.cpp's default.
const PRE_GPT2: &str =
    r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

pub struct BpeTokenizer {
    tokens: Vec<String>,
    types: Vec<i32>,
    ids: HashMap<String, u32>,
    ranks: HashMap<(String, String), u32>,
    byte_char: [char; 256],
    char_byte: HashMap<char, u8>,
    split: fancy_regex::Regex,
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

impl BpeTokenizer {
    /// From a GGUF's metadata; the error says which key is missing or wrong.
    pub fn from_gguf(md: &HashMap<String, Value>) -> Result<Self, String> {
        let model = md
            .get("tokenizer.ggml.model")
            .and_then(|v| v.to_string().ok())
            .ok_or("no `tokenizer.ggml.model` in its metadata")?;
        if model != "gpt2" {
            return Err(format!(
                "its tokenizer is `{model}`; only byte-level BPE (`gpt2`, as Qwen2 and Llama 3 use) is supported"
            ));
        }
        let tokens = string_array(md, "tokenizer.ggml.tokens")?;
        let merges = string_array(md, "tokenizer.ggml.merges")?;
        let types = match md.get("tokenizer.ggml.token_type") {
            Some(Value::Array(vs)) => vs.iter().map(|v| v.to_i32().unwrap_or(1)).collect(),
            _ => vec![1; tokens.len()],
        };
        let pattern = match md
            .get("tokenizer.ggml.pre")
            .and_then(|v| v.to_string().ok())
            .map(String::as_str)
        {
            Some("qwen2") => PRE_QWEN2,
            Some("llama-bpe" | "llama3" | "smaug-bpe") => PRE_LLAMA3,
            _ => PRE_GPT2,
        };
        let split = fancy_regex::Regex::new(pattern).map_err(|e| format!("pre-tokenizer: {e}"))?;
        let ids = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), i as u32))
            .collect();
        let ranks = merges
            .iter()
            .enumerate()
            .filter_map(|(i, m)| {
                let (a, b) = m.split_once(' ')?;
                Some(((a.to_string(), b.to_string()), i as u32))
            })
            .collect();
        let byte_char = bytes_to_chars();
        let char_byte = byte_char
            .iter()
            .enumerate()
            .map(|(b, &c)| (c, b as u8))
            .collect();
        Ok(Self {
            tokens,
            types,
            ids,
            ranks,
            byte_char,
            char_byte,
            split,
        })
    }

    pub fn vocab_size(&self) -> usize {
        self.tokens.len()
    }

    /// The id of a token by its exact string (`<|im_start|>`).
    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.ids.get(token).copied()
    }

    /// Plain text to ids. Special-token strings in it stay text (a user cannot inject
    /// `<|im_start|>`); the chat template inserts those by id.
    pub fn encode(&self, text: &str) -> Vec<u32> {
        let mut out = Vec::new();
        for piece in self.split.find_iter(text) {
            // The patterns cannot fail on valid UTF-8 short of backtrack limits; a
            // piece that errs is skipped rather than stopping the reply.
            let Ok(piece) = piece else { continue };
            let mapped: Vec<String> = piece
                .as_str()
                .bytes()
                .map(|b| self.byte_char[b as usize].to_string())
                .collect();
            for sym in self.merge(mapped) {
                match self.ids.get(&sym) {
                    Some(&id) => out.push(id),
                    // A vocabulary without some merge result: its characters one by one.
                    None => out.extend(sym.chars().filter_map(|c| self.ids.get(&c.to_string()))),
                }
            }
        }
        out
    }

    /// GPT-2's merge loop: join the lowest-ranked adjacent pair everywhere, until no
    /// pair has a rank.
    fn merge(&self, mut word: Vec<String>) -> Vec<String> {
        while word.len() > 1 {
            let best = word
                .windows(2)
                .filter_map(|w| self.ranks.get(&(w[0].clone(), w[1].clone())))
                .min();
            let Some(&best) = best else { break };
            let mut next = Vec::with_capacity(word.len());
            let mut i = 0;
            while i < word.len() {
                if i + 1 < word.len()
                    && self.ranks.get(&(word[i].clone(), word[i + 1].clone())) == Some(&best)
                {
                    next.push(format!("{}{}", word[i], word[i + 1]));
                    i += 2;
                } else {
                    next.push(std::mem::take(&mut word[i]));
                    i += 1;
                }
            }
            word = next;
        }
        word
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
