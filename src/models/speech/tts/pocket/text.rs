//! Text preparation as `pocket_tts/models/text_chunking.py` does it: each chunk is
//! cleaned, capitalised and given sentence-final punctuation; a long text is split on
//! sentence ends (then commas) by tokens and regrouped into chunks of at most 50 tokens,
//! each spoken from the voice state afresh.

use super::config::PocketConfig;
use super::tokenizer::Tokenizer;

/// `MAX_TOKEN_PER_CHUNK` of the package.
pub const MAX_TOKENS_PER_CHUNK: usize = 50;

const TERMINAL: &str = ".!?\u{2026}";
const WEAK: &str = ",;:-\u{2013}\u{2014}";
const CLOSERS: &str = "\"'\u{201d}\u{2019})]\u{bb}";

/// The prompt for one chunk and the frames to generate after the end-of-speech signal
/// (the package's guess: 3 for up to four words, else 1; plus 2). `None` for no text.
pub fn prepare(text: &str, cfg: &PocketConfig) -> Option<(String, usize)> {
    let mut text = text.trim().to_string();
    if !cfg.replace_characters.is_empty() {
        let mapped: String = text
            .chars()
            .map(|c| {
                cfg.replace_characters
                    .get(&c.to_string())
                    .cloned()
                    .unwrap_or_else(|| c.to_string())
            })
            .collect();
        text = mapped.split_whitespace().collect::<Vec<_>>().join(" ");
        text = drop_mark_after_sentence_end(&text);
    }
    if text.is_empty() {
        return None;
    }
    text = text.replace(['\n', '\r'], " ").replace("  ", " ");
    if cfg.remove_semicolons {
        text = text.replace(';', ",");
    }
    let words = text.split_whitespace().count();
    let after_eos = if words <= 4 { 3 } else { 1 };
    if cfg.capitalize_first_letter {
        let mut chars = text.chars();
        if let Some(first) = chars.next() {
            if !first.is_uppercase() {
                text = first.to_uppercase().chain(chars).collect();
            }
        }
    }
    if cfg.append_terminal_punctuation {
        text = terminal_punctuation(&text);
    }
    if cfg.pad_with_spaces_for_short_inputs && text.split_whitespace().count() < 5 {
        text = format!("        {text}");
    }
    Some((text, after_eos + 2))
}

/// `re.sub(r"([.!?\u2026])\s*[,;:]", r"\1", text)`.
fn drop_mark_after_sentence_end(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        out.push(c);
        i += 1;
        if TERMINAL.contains(c) {
            let mut j = i;
            while j < chars.len() && chars[j].is_whitespace() {
                j += 1;
            }
            if j < chars.len() && ",;:".contains(chars[j]) {
                i = j + 1;
            }
        }
    }
    out
}

/// `_ensure_terminal_punctuation`.
fn terminal_punctuation(text: &str) -> String {
    let core = text.trim_end_matches(|c: char| CLOSERS.contains(c) || c == ' ');
    let closers = text[core.len()..].trim();
    match core.chars().last() {
        None => text.to_string(),
        Some(c) if TERMINAL.contains(c) => text.to_string(),
        Some(c) if WEAK.contains(c) => {
            let base = core.trim_end_matches(|c: char| WEAK.contains(c) || c == ' ');
            format!("{base}.{closers}")
        }
        Some(_) => format!("{text}."),
    }
}

/// The token positions that start a new segment after a run of boundary tokens.
fn boundaries(tokens: &[u32], marks: &[u32], tok: Option<&Tokenizer>) -> Vec<usize> {
    let mut idx = vec![0];
    let mut after_mark = false;
    for (i, t) in tokens.iter().enumerate() {
        if marks.contains(t) {
            after_mark = true;
            continue;
        }
        if after_mark {
            if let Some(tok) = tok {
                // A decimal point ("3.5") does not end a sentence.
                let prefix: Vec<char> = tok.decode(&tokens[..i]).chars().collect();
                let suffix = tok.decode(&tokens[i..]);
                let n = prefix.len();
                if n >= 2
                    && prefix[n - 1] == '.'
                    && prefix[n - 2].is_ascii_digit()
                    && suffix.chars().next().is_some_and(|c| c.is_ascii_digit())
                {
                    after_mark = false;
                    continue;
                }
            }
            idx.push(i);
        }
        after_mark = false;
    }
    idx.push(tokens.len());
    idx
}

fn segments(tokens: &[u32], idx: &[usize], tok: &Tokenizer) -> Vec<(usize, String)> {
    idx.windows(2)
        .map(|w| (w[1] - w[0], tok.decode(&tokens[w[0]..w[1]])))
        .collect()
}

/// `split_into_best_sentences`: the chunks of `text`, each at most `max_tokens` tokens
/// unless one sentence (without commas) is longer.
pub fn split_chunks(
    tok: &Tokenizer,
    text: &str,
    max_tokens: usize,
    cfg: &PocketConfig,
) -> Vec<String> {
    let Some((text, _)) = prepare(text, cfg) else {
        return Vec::new();
    };
    let text = text.trim();
    let tokens = tok.encode(text);
    let marks: Vec<u32> = tok.encode(".!...?").into_iter().skip(1).collect();
    let sentences = segments(&tokens, &boundaries(&tokens, &marks, Some(tok)), tok);
    let commas: Vec<u32> = tok.encode(",;:").into_iter().skip(1).collect();
    let mut refined = Vec::new();
    for (n, s) in sentences {
        if n <= max_tokens {
            refined.push((n, s));
            continue;
        }
        let sub = tok.encode(s.trim());
        let parts = segments(&sub, &boundaries(&sub, &commas, None), tok);
        if parts.len() > 1 {
            refined.extend(parts);
        } else {
            refined.push((n, s));
        }
    }
    let mut chunks = Vec::new();
    let (mut cur, mut count) = (String::new(), 0);
    for (n, s) in refined {
        if cur.is_empty() {
            (cur, count) = (s, n);
        } else if count + n > max_tokens {
            chunks.push(cur.trim().to_string());
            (cur, count) = (s, n);
        } else {
            cur = format!("{cur} {s}");
            count += n;
        }
    }
    if !cur.is_empty() {
        chunks.push(cur.trim().to_string());
    }
    chunks
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::speech::tts::pocket::config::{PocketConfig, ENGLISH_YAML};

    #[test]
    fn prompts_are_prepared_as_the_package_does() {
        let c = PocketConfig::parse(ENGLISH_YAML).unwrap();
        assert_eq!(prepare("hello world", &c), Some(("Hello world.".into(), 5)));
        assert_eq!(
            prepare("  one two three four five,  ", &c),
            Some(("One two three four five.".into(), 3))
        );
        assert_eq!(
            prepare("\"Hi?\", she said", &c).unwrap().0,
            "\"Hi?\", she said."
        );
        assert_eq!(prepare("it’s \"fine\"", &c).unwrap().0, "It's \"fine\".");
        assert_eq!(prepare("Done!", &c).unwrap().0, "Done!");
        assert_eq!(prepare("   ", &c), None);
        assert_eq!(prepare("ok —", &c).unwrap().0, "Ok.");
    }
}
