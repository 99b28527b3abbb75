//! A tiny Qwen2 chat model with random weights, written as a GGUF in the layout of
//! Qwen's own files (tensor names, `qwen2.*` keys, a byte-level BPE vocabulary with
//! merges and ChatML's control tokens, Qwen's chat template), complete enough that
//! llama.cpp loads it as well as we do. Tests and benchmarks write it.

use moshi::candle::quantized::gguf_file::{self, Value};
use moshi::candle::quantized::{GgmlDType, QTensor};
use moshi::candle::{Device, Tensor};
use rand::{Rng, SeedableRng};
use std::path::Path;

/// Merges of the tiny vocabulary, each joining two tokens that exist before it (GPT-2's
/// byte characters: `Ġ` is a space, `Ċ` a newline).
const MERGES: &[&str] = &[
    "h e", "l l", "Ġ t", "Ġt he", "i n", "Ġ a", "e r", "o n", "Ġ s", "r e", "Ġ w", "he ll",
    "hell o", "Ġ he", "Ġhe ll", "Ġhell o", "o r", "Ġw or", "l d", "Ġwor ld", "i s", "Ġ is", "Ġ y",
    "o u", "Ġy ou", "i t", "Ġ it", "Ċ Ċ", "s t", "e m", "s y", "st em", "sy stem", "u s", "us er",
    "a s", "as s", "in g", "Ġ I", "Ġ o", "Ġo f", "e d", "a n", "a t",
];

pub const CHAT_TEMPLATE: &str = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

#[derive(Debug, Clone, PartialEq)]
pub struct TinyQwen2 {
    pub hidden: usize,
    pub layers: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub ffn: usize,
    pub context: usize,
    pub seed: u64,
    /// Share the output projection with the token embedding, as Qwen2.5 0.5B does.
    /// Untied, the output rows of control tokens and of bytes outside printable ASCII
    /// are zero, so greedy decoding never ends a reply early (tests then get exactly
    /// `max_tokens` tokens) and writes plain text.
    pub tied: bool,
    /// Filler tokens after the real ones, to give the embedding and output the size
    /// of a real vocabulary (for timing).
    pub filler_tokens: usize,
    /// Quantize as llama.cpp's Q4_K_M does (the file Qwen publishes and the cascade
    /// downloads) rather than all in Q8_0.
    pub q4_k_m: bool,
    /// A real vocabulary cut down to some texts (JSON, as
    /// `tools/llama_vocab_fixture/bench.py` writes it: its size, the tokens kept at
    /// their ids, their types, the merges) in place of the tiny one and the filler:
    /// those texts then cost the tokens the real tokenizer gives them. For a tied
    /// model (an untied one's output rows assume the tiny vocabulary's ids).
    pub vocab: Option<&'static str>,
}

impl TinyQwen2 {
    /// The shape of Qwen2.5 0.5B (its 151 936-token vocabulary as filler), random and
    /// in Q8_0: for timing what that model costs on this machine.
    pub fn qwen25_05b_shape() -> Self {
        Self {
            hidden: 896,
            layers: 24,
            heads: 14,
            kv_heads: 2,
            ffn: 4864,
            context: 32768,
            seed: 7,
            tied: true,
            filler_tokens: 151_936 - vocabulary().0.len(),
            q4_k_m: false,
            vocab: None,
        }
    }

    /// The same shape in Q4_K_M, as `qwen2.5-0.5b-instruct-q4_k_m.gguf` is quantized.
    pub fn qwen25_05b_q4_k_m() -> Self {
        Self {
            q4_k_m: true,
            ..Self::qwen25_05b_shape()
        }
    }
}

/// llama.cpp's Q4_K_M choice for one matrix: Q6_K for the value projection and the
/// down projection in every other layer, Q4_K elsewhere; k-quants need rows of a
/// multiple of 256, else the fallback llama.cpp takes (Q8_0 for Q6_K, Q5_0 for Q4_K:
/// 896-wide rows in the 0.5B).
fn q4_k_m_type(name: &str, layer: usize, row: usize) -> GgmlDType {
    let six = name == "token_embd.weight"
        || name == "attn_v.weight"
        || (name == "ffn_down.weight" && layer.is_multiple_of(2));
    match (six, row.is_multiple_of(256)) {
        (true, true) => GgmlDType::Q6K,
        (true, false) => GgmlDType::Q8_0,
        (false, true) => GgmlDType::Q4K,
        (false, false) => GgmlDType::Q5_0,
    }
}

impl Default for TinyQwen2 {
    fn default() -> Self {
        Self {
            hidden: 64,
            layers: 2,
            heads: 4,
            kv_heads: 2,
            ffn: 128,
            context: 2048,
            seed: 7,
            tied: false,
            filler_tokens: 0,
            q4_k_m: false,
            vocab: None,
        }
    }
}

/// The vocabulary: GPT-2's 256 byte characters, one token per merge, then
/// `<|endoftext|>`, `<|im_start|>`, `<|im_end|>` (control tokens, type 3).
pub fn vocabulary() -> (Vec<String>, Vec<i32>) {
    let printable =
        |b: u32| (33..=126).contains(&b) || (161..=172).contains(&b) || (174..=255).contains(&b);
    let mut extra = 0;
    let mut tokens: Vec<String> = (0..256u32)
        .map(|b| {
            let c = if printable(b) {
                b
            } else {
                extra += 1;
                255 + extra
            };
            char::from_u32(c).map(String::from).unwrap_or_default()
        })
        .collect();
    tokens.extend(MERGES.iter().map(|m| m.replace(' ', "")));
    let mut types = vec![1; tokens.len()];
    for s in ["<|endoftext|>", "<|im_start|>", "<|im_end|>"] {
        tokens.push(s.into());
        types.push(3);
    }
    (tokens, types)
}

/// A cut-down vocabulary (`TinyQwen2::vocab`): tokens (placeholders at the ids not
/// kept), types, merges.
fn reduced_vocabulary(json: &str) -> anyhow::Result<(Vec<String>, Vec<i32>, Vec<String>)> {
    use anyhow::Context;
    #[derive(serde::Deserialize)]
    struct Reduced {
        vocab_size: usize,
        tokens: std::collections::HashMap<usize, String>,
        types: std::collections::HashMap<usize, i32>,
        merges: Vec<String>,
    }
    let r: Reduced = serde_json::from_str(json).context("a reduced vocabulary")?;
    let mut tokens: Vec<String> = (0..r.vocab_size)
        .map(|i| format!("<placeholder {i}>"))
        .collect();
    let mut types = vec![1; r.vocab_size];
    for (id, t) in r.tokens {
        *tokens
            .get_mut(id)
            .context("a token past the vocabulary's size")? = t;
    }
    for (id, t) in r.types {
        *types
            .get_mut(id)
            .context("a type past the vocabulary's size")? = t;
    }
    Ok((tokens, types, r.merges))
}

/// Write the model to `path`.
pub fn write_tiny_qwen2(path: &Path, m: &TinyQwen2) -> anyhow::Result<()> {
    anyhow::ensure!(
        m.tied || m.vocab.is_none(),
        "a reduced vocabulary is for a tied model (the untied output assumes the tiny one's ids)"
    );
    let (tokens, types, merges) = match m.vocab {
        Some(json) => reduced_vocabulary(json)?,
        None => {
            let (mut tokens, mut types) = vocabulary();
            tokens.extend((0..m.filler_tokens).map(|i| format!("<filler_{i}>")));
            types.resize(tokens.len(), 4);
            (
                tokens,
                types,
                MERGES.iter().map(|m| m.to_string()).collect(),
            )
        }
    };
    let vocab = tokens.len();
    let hd = m.hidden / m.heads;
    let mut rng = rand::rngs::StdRng::seed_from_u64(m.seed);
    let dev = Device::Cpu;
    let random = |rng: &mut rand::rngs::StdRng,
                  dims: &[usize],
                  scale: f32,
                  dtype: GgmlDType|
     -> anyhow::Result<QTensor> {
        let n: usize = dims.iter().product();
        let v: Vec<f32> = (0..n).map(|_| rng.random_range(-scale..scale)).collect();
        Ok(QTensor::quantize(&Tensor::from_vec(v, dims, &dev)?, dtype)?)
    };
    let ones = |n: usize| -> anyhow::Result<QTensor> {
        Ok(QTensor::quantize(
            &Tensor::ones(n, moshi::candle::DType::F32, &dev)?,
            GgmlDType::F32,
        )?)
    };
    let q8 = GgmlDType::Q8_0;
    let kind = |name: &str, layer: usize, row: usize| {
        if m.q4_k_m {
            q4_k_m_type(name, layer, row)
        } else {
            q8
        }
    };
    let mut tensors: Vec<(String, QTensor)> = vec![
        (
            "token_embd.weight".into(),
            random(
                &mut rng,
                &[vocab, m.hidden],
                1.0,
                kind("token_embd.weight", 0, m.hidden),
            )?,
        ),
        ("output_norm.weight".into(), ones(m.hidden)?),
    ];
    if !m.tied {
        let mut rows: Vec<f32> = (0..vocab * m.hidden)
            .map(|_| rng.random_range(-1.0..1.0))
            .collect();
        for (i, t) in types.iter().enumerate() {
            // Only printable ASCII and the merges can win (so any text it writes is
            // valid UTF-8, readable in a test's output).
            let byte = i < 256 && !(0x20..=0x7e).contains(&i);
            if *t != 1 || byte {
                rows[i * m.hidden..(i + 1) * m.hidden].fill(0.);
            }
        }
        let t = Tensor::from_vec(rows, (vocab, m.hidden), &dev)?;
        tensors.push(("output.weight".into(), QTensor::quantize(&t, q8)?));
    }
    let w = 1.0 / (m.hidden as f32).sqrt();
    for i in 0..m.layers {
        let kv = m.kv_heads * hd;
        let mut add = |name: &str, t: QTensor| tensors.push((format!("blk.{i}.{name}"), t));
        add("attn_norm.weight", ones(m.hidden)?);
        add("ffn_norm.weight", ones(m.hidden)?);
        add(
            "attn_q.weight",
            random(
                &mut rng,
                &[m.hidden, m.hidden],
                w,
                kind("attn_q.weight", i, m.hidden),
            )?,
        );
        add(
            "attn_k.weight",
            random(
                &mut rng,
                &[kv, m.hidden],
                w,
                kind("attn_k.weight", i, m.hidden),
            )?,
        );
        add(
            "attn_v.weight",
            random(
                &mut rng,
                &[kv, m.hidden],
                w,
                kind("attn_v.weight", i, m.hidden),
            )?,
        );
        add(
            "attn_q.bias",
            random(&mut rng, &[m.hidden], 0.1, GgmlDType::F32)?,
        );
        add("attn_k.bias", random(&mut rng, &[kv], 0.1, GgmlDType::F32)?);
        add("attn_v.bias", random(&mut rng, &[kv], 0.1, GgmlDType::F32)?);
        add(
            "attn_output.weight",
            random(
                &mut rng,
                &[m.hidden, m.hidden],
                w,
                kind("attn_output.weight", i, m.hidden),
            )?,
        );
        add(
            "ffn_gate.weight",
            random(
                &mut rng,
                &[m.ffn, m.hidden],
                w,
                kind("ffn_gate.weight", i, m.hidden),
            )?,
        );
        add(
            "ffn_up.weight",
            random(
                &mut rng,
                &[m.ffn, m.hidden],
                w,
                kind("ffn_up.weight", i, m.hidden),
            )?,
        );
        add(
            "ffn_down.weight",
            random(
                &mut rng,
                &[m.hidden, m.ffn],
                1.0 / (m.ffn as f32).sqrt(),
                kind("ffn_down.weight", i, m.ffn),
            )?,
        );
    }
    let id = |s: &str| tokens.iter().position(|t| t == s).unwrap_or(0) as u32;
    let s = |v: &str| Value::String(v.into());
    let u = |v: usize| Value::U32(v as u32);
    let metadata: Vec<(&str, Value)> = vec![
        ("general.architecture", s("qwen2")),
        ("general.name", s("tiny-qwen2-random")),
        // llama.cpp's file types: 7 mostly Q8_0, 15 mostly Q4_K_M.
        (
            "general.file_type",
            Value::U32(if m.q4_k_m { 15 } else { 7 }),
        ),
        ("qwen2.context_length", u(m.context)),
        ("qwen2.embedding_length", u(m.hidden)),
        ("qwen2.block_count", u(m.layers)),
        ("qwen2.feed_forward_length", u(m.ffn)),
        ("qwen2.attention.head_count", u(m.heads)),
        ("qwen2.attention.head_count_kv", u(m.kv_heads)),
        ("qwen2.attention.layer_norm_rms_epsilon", Value::F32(1e-6)),
        ("qwen2.rope.freq_base", Value::F32(1_000_000.0)),
        ("tokenizer.ggml.model", s("gpt2")),
        ("tokenizer.ggml.pre", s("qwen2")),
        (
            "tokenizer.ggml.tokens",
            Value::Array(tokens.iter().map(|t| s(t)).collect()),
        ),
        (
            "tokenizer.ggml.token_type",
            Value::Array(types.iter().map(|&t| Value::I32(t)).collect()),
        ),
        (
            "tokenizer.ggml.merges",
            Value::Array(merges.iter().map(|m| s(m)).collect()),
        ),
        ("tokenizer.ggml.eos_token_id", Value::U32(id("<|im_end|>"))),
        (
            "tokenizer.ggml.padding_token_id",
            Value::U32(id("<|endoftext|>")),
        ),
        (
            "tokenizer.ggml.bos_token_id",
            Value::U32(id("<|endoftext|>")),
        ),
        ("tokenizer.ggml.add_bos_token", Value::Bool(false)),
        ("tokenizer.chat_template", s(CHAT_TEMPLATE)),
    ];
    let md: Vec<(&str, &Value)> = metadata.iter().map(|(k, v)| (*k, v)).collect();
    let ts: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
    gguf_file::write(&mut f, &md, &ts)?;
    use std::io::Write;
    f.flush()?;
    Ok(())
}
