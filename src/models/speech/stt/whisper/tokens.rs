//! Whisper's `tokenizer.json` (GPT-2 byte-level BPE, as Hugging Face's Whisper repos
//! ship it), read for decoding only: the recogniser never encodes text. Token strings
//! map back to bytes through GPT-2's byte-to-character table; special tokens are found
//! by name.

use std::collections::HashMap;

pub struct WhisperTokens {
    /// Bytes of every ordinary token, by id.
    pieces: Vec<Vec<u8>>,
    special: HashMap<String, u32>,
    pub eot: u32,
    pub sot: u32,
    pub no_timestamps: u32,
    /// `<|en|>` and `<|transcribe|>` for multilingual models; absent for `.en` models.
    pub english: Option<u32>,
    pub transcribe: Option<u32>,
    pub no_speech: Option<u32>,
}

/// GPT-2's `bytes_to_unicode`, reversed: the character each byte is written as.
fn char_to_byte() -> HashMap<char, u8> {
    let mut printable: Vec<u32> = (b'!' as u32..=b'~' as u32)
        .chain(0xA1..=0xAC)
        .chain(0xAE..=0xFF)
        .collect();
    let mut chars = printable.clone();
    let mut n = 0;
    for b in 0..256u32 {
        if !printable.contains(&b) {
            printable.push(b);
            chars.push(256 + n);
            n += 1;
        }
    }
    printable
        .into_iter()
        .zip(chars)
        .filter_map(|(b, c)| Some((char::from_u32(c)?, b as u8)))
        .collect()
}

impl WhisperTokens {
    pub fn from_json(text: &str) -> Result<Self, String> {
        let json: serde_json::Value =
            serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
        let vocab = json["model"]["vocab"]
            .as_object()
            .ok_or("no model.vocab table (not a Hugging Face tokenizer.json)")?;
        let table = char_to_byte();
        let mut pieces: Vec<Vec<u8>> = Vec::new();
        for (piece, id) in vocab {
            let id = id.as_u64().ok_or("a vocab id is not a number")? as usize;
            if id >= 1 << 20 {
                return Err(format!("vocab id {id} is out of range"));
            }
            if pieces.len() <= id {
                pieces.resize(id + 1, Vec::new());
            }
            // Characters outside the byte table (none in GPT-2's) are kept as UTF-8.
            pieces[id] = piece
                .chars()
                .flat_map(|c| match table.get(&c) {
                    Some(b) => vec![*b],
                    None => c.to_string().into_bytes(),
                })
                .collect();
        }
        let mut special = HashMap::new();
        for t in json["added_tokens"].as_array().into_iter().flatten() {
            if let (Some(c), Some(id)) = (t["content"].as_str(), t["id"].as_u64()) {
                special.insert(c.to_string(), id as u32);
            }
        }
        let need = |name: &str| {
            special
                .get(name)
                .copied()
                .ok_or_else(|| format!("no {name} token"))
        };
        Ok(Self {
            eot: need("<|endoftext|>")?,
            sot: need("<|startoftranscript|>")?,
            no_timestamps: need("<|notimestamps|>")?,
            english: special.get("<|en|>").copied(),
            transcribe: special.get("<|transcribe|>").copied(),
            no_speech: ["<|nospeech|>", "<|nocaptions|>"]
                .iter()
                .find_map(|n| special.get(*n).copied()),
            pieces,
            special,
        })
    }

    /// The prompt a transcription starts from: English, transcribe, no timestamps.
    pub fn prompt(&self) -> Vec<u32> {
        let mut p = vec![self.sot];
        p.extend(self.english);
        p.extend(self.transcribe);
        p.push(self.no_timestamps);
        p
    }

    /// Ordinary (text) tokens are below the first special one.
    pub fn is_text(&self, id: u32) -> bool {
        id < self.eot
    }

    pub fn special_count(&self) -> usize {
        self.special.len()
    }

    /// The text of `ids` (special tokens skipped; invalid UTF-8 replaced).
    pub fn decode(&self, ids: &[u32]) -> String {
        let bytes: Vec<u8> = ids
            .iter()
            .filter(|&&i| self.is_text(i))
            .filter_map(|&i| self.pieces.get(i as usize))
            .flatten()
            .copied()
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_level_pieces_decode_to_text_and_specials_are_found() {
        let json = r#"{"model": {"type": "BPE", "vocab": {"Hello": 0, "Ġworld": 1, "!": 2, "Ġcaf": 3, "Ã©": 4}},
          "added_tokens": [{"id": 5, "content": "<|endoftext|>"}, {"id": 6, "content": "<|startoftranscript|>"},
            {"id": 7, "content": "<|en|>"}, {"id": 8, "content": "<|transcribe|>"}, {"id": 9, "content": "<|notimestamps|>"}]}"#;
        let t = WhisperTokens::from_json(json).unwrap();
        assert_eq!(t.decode(&[6, 0, 1, 2, 3, 4, 5]), "Hello world! café");
        assert_eq!(t.prompt(), vec![6, 7, 8, 9]);
        assert!(t.is_text(4) && !t.is_text(5));
        let Err(e) = WhisperTokens::from_json(r#"{"model": {}}"#) else {
            panic!("a tokenizer without a vocab table was read")
        };
        assert!(e.contains("vocab"), "{e}");
    }
}
