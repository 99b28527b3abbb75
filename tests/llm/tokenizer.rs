//! The in-process LLM's tokenizer against llama.cpp's own fixtures: test-tokenizer-0's
//! texts and the ids llama.cpp must give for them, for Qwen2's vocabulary and Llama 3's
//! (`tests/fixtures/llama_vocab/`, reduced from llama.cpp's `models/ggml-vocab-*.gguf`
//! by `tools/llama_vocab_fixture/make.py` to the tokens and merges the texts touch;
//! the ids between are placeholders).

use assistant::models::llm::bpe::BpeTokenizer;
use moshi::candle::quantized::gguf_file::Value;
use std::collections::HashMap;
use std::time::Instant;

struct Case {
    text: String,
    ids: Vec<u32>,
}

fn fixture(name: &str) -> (BpeTokenizer, Vec<Case>) {
    let path = format!(
        "{}/tests/fixtures/llama_vocab/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let j: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let n = j["vocab_size"].as_u64().unwrap() as usize;
    let mut tokens: Vec<String> = (0..n).map(|i| format!("<placeholder {i}>")).collect();
    for (id, t) in j["tokens"].as_object().unwrap() {
        tokens[id.parse::<usize>().unwrap()] = t.as_str().unwrap().to_string();
    }
    let mut types = vec![1i32; n];
    for (id, t) in j["types"].as_object().unwrap() {
        types[id.parse::<usize>().unwrap()] = t.as_i64().unwrap() as i32;
    }
    let strings = |v: Vec<String>| Value::Array(v.into_iter().map(Value::String).collect());
    let merges = j["merges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap().to_string())
        .collect();
    let md: HashMap<String, Value> = [
        ("tokenizer.ggml.model", Value::String("gpt2".into())),
        (
            "tokenizer.ggml.pre",
            Value::String(j["pre"].as_str().unwrap().into()),
        ),
        ("tokenizer.ggml.tokens", strings(tokens)),
        (
            "tokenizer.ggml.token_type",
            Value::Array(types.into_iter().map(Value::I32).collect()),
        ),
        ("tokenizer.ggml.merges", strings(merges)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let cases = j["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| Case {
            text: c["text"].as_str().unwrap().to_string(),
            ids: c["ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i.as_u64().unwrap() as u32)
                .collect(),
        })
        .collect();
    (BpeTokenizer::from_gguf(&md).unwrap(), cases)
}

fn same_ids_as_llama_cpp(name: &str) {
    let (tok, cases) = fixture(name);
    let mut wrong = Vec::new();
    for c in &cases {
        let ours = tok.encode(&c.text);
        if ours != c.ids {
            wrong.push(format!(
                "{:?}\n  llama.cpp: {:?}\n  ours:      {ours:?}",
                c.text, c.ids
            ));
        }
        assert_eq!(tok.decode(&ours), c.text, "round trip");
    }
    assert!(
        wrong.is_empty(),
        "{} of {} texts differ from llama.cpp ({name}):\n{}",
        wrong.len(),
        cases.len(),
        wrong.join("\n")
    );
}

#[test]
fn qwen2_tokens_are_llama_cpps() {
    same_ids_as_llama_cpp("qwen2");
}

#[test]
fn llama3_tokens_are_llama_cpps() {
    same_ids_as_llama_cpp("llama-bpe");
}

/// Figures, not assertions: encoding speed over the fixture texts (each text 200 times).
/// `cargo test --release --test llm tokenizer::figures -- --nocapture`
#[test]
fn figures_encoding_speed() {
    let (tok, cases) = fixture("qwen2");
    let bytes: usize = cases.iter().map(|c| c.text.len()).sum();
    let t = Instant::now();
    let mut ids = 0;
    for _ in 0..200 {
        for c in &cases {
            ids += tok.encode(&c.text).len();
        }
    }
    let s = t.elapsed().as_secs_f64();
    eprintln!(
        "FIGURES tokenizer (Qwen2 fixture): {:.2} MB/s, {:.0} k tokens/s ({} bytes × 200); load average {}",
        (bytes * 200) as f64 / s / 1e6,
        ids as f64 / s / 1e3,
        bytes,
        std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim()
    );
}
