//! The in-process LLM on a tiny Qwen2 GGUF the test writes (random weights, Qwen's
//! layout and tokenizer metadata): streaming, greedy determinism, the KV cache kept
//! across turns, cancel, bad files, and finding the file in the Hugging Face cache or
//! downloading it from a hub on 127.0.0.1.

use crate::load_server;
use assistant::bus::Cancel;
use assistant::models::llm::gguf::{self, DEFAULT_FILE, DEFAULT_REPO};
use assistant::models::llm::synthetic::{write_tiny_qwen2, TinyQwen2};
use assistant::models::llm::{locate_gguf, GgufLlm, GgufLlmOptions};
use assistant::models::moshi::Discovery;
use assistant::models::parts::{ChatMessage, ChatRequest, ChatRole, Llm};
use moshi::candle::Device;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn tiny(dir: &Path, m: &TinyQwen2) -> PathBuf {
    let p = dir.join("tiny.gguf");
    write_tiny_qwen2(&p, m).unwrap();
    p
}

fn load(p: &Path) -> GgufLlm {
    GgufLlm::load(p, &Device::Cpu, &GgufLlmOptions::default(), &Cancel::new()).unwrap()
}

fn ask(history: &[(&str, &str)], max_tokens: u32, temperature: f32) -> ChatRequest {
    ChatRequest {
        system: "You are a helpful assistant.".into(),
        messages: history
            .iter()
            .map(|(r, c)| ChatMessage {
                role: if *r == "user" {
                    ChatRole::User
                } else {
                    ChatRole::Assistant
                },
                content: c.to_string(),
            })
            .collect(),
        temperature,
        max_tokens,
        model: None,
    }
}

fn reply(llm: &GgufLlm, req: &ChatRequest) -> Vec<String> {
    let mut pieces = vec![];
    llm.stream(req, &Cancel::new(), &mut |p| pieces.push(p.to_string()))
        .unwrap();
    pieces
}

#[test]
fn a_reply_streams_piece_by_piece_and_greedy_decoding_repeats_itself() {
    let tmp = tempfile::tempdir().unwrap();
    let p = tiny(tmp.path(), &TinyQwen2::default());
    let llm = load(&p);
    assert_eq!(llm.name(), "tiny (in-process)");
    let req = ask(&[("user", "hello world, is it you?")], 24, 0.0);
    let prompt = llm.prompt_tokens(&req);
    let pieces = reply(&llm, &req);
    assert!(pieces.len() > 4, "{pieces:?}");
    // Untied, the tiny model never picks a control token: all 24 tokens come, and
    // all but the last are in the cache after the prompt.
    assert_eq!(llm.cached_tokens(), prompt.len() + 23);
    // The same question on a fresh load gives the same greedy reply.
    assert_eq!(reply(&load(&p), &req), pieces);
    assert!(llm.count_tokens("hello world") < "hello world".len());
}

#[test]
fn the_kv_cache_kept_across_turns_gives_what_a_fresh_model_gives() {
    let tmp = tempfile::tempdir().unwrap();
    let p = tiny(tmp.path(), &TinyQwen2::default());
    let warm = load(&p);
    let first = ask(&[("user", "hello there")], 12, 0.0);
    let a = reply(&warm, &first).concat();
    // The same request again: all but the last prompt token come from the cache.
    assert_eq!(reply(&warm, &first).concat(), a);
    // The next turn extends the conversation; what was heard may differ from what
    // was generated (here it is cut), so only the shared prefix is kept.
    let heard: String = a.chars().take(5).collect();
    let second = ask(
        &[
            ("user", "hello there"),
            ("assistant", &heard),
            ("user", "is it you?"),
        ],
        12,
        0.0,
    );
    let before = warm.cached_tokens();
    assert!(before > 0);
    let b_warm = reply(&warm, &second).concat();
    let b_fresh = reply(&load(&p), &second).concat();
    assert_eq!(b_warm, b_fresh, "prefix reuse must not change the reply");
    // A shorter, different conversation after a long one is still right.
    let other = ask(&[("user", "the world")], 8, 0.0);
    assert_eq!(reply(&warm, &other), reply(&load(&p), &other));
}

#[test]
fn a_prepared_prompt_is_read_once_and_changes_nothing_in_the_reply() {
    let tmp = tempfile::tempdir().unwrap();
    let p = tiny(tmp.path(), &TinyQwen2::default());
    let llm = load(&p);
    // The persona's prompt and the history so far, read while the user speaks.
    let history = [("user", "hello there"), ("assistant", "hello")];
    llm.prepare(&ask(&history, 0, 0.0), &Cancel::new()).unwrap();
    let prepared = llm.cached_tokens();
    let full = ask(&[history[0], history[1], ("user", "is it you?")], 12, 0.0);
    let prompt = llm.prompt_tokens(&full);
    assert_eq!(
        prompt[..prepared],
        llm.prompt_tokens(&ask(&history, 0, 0.0))[..prepared]
    );
    assert!(
        prepared > 10 && prepared < prompt.len() - 5,
        "{prepared} of {}",
        prompt.len()
    );
    assert_eq!(reply(&llm, &full), reply(&load(&p), &full));
    // Cancelled: nothing is read.
    let fresh = load(&p);
    let c = Cancel::new();
    c.cancel();
    fresh.prepare(&full, &c).unwrap();
    assert_eq!(fresh.cached_tokens(), 0);
}

/// The conversation and the user's words so far, as the turn machine reads them ahead.
fn with_words(history: &[(&str, &str)], words: &str) -> ChatRequest {
    let mut h = history.to_vec();
    h.push(("user", words));
    ask(&h, 12, 0.0)
}

#[test]
fn the_users_words_read_ahead_leave_only_the_tail_and_a_correction_rereads_from_the_change() {
    let tmp = tempfile::tempdir().unwrap();
    let p = tiny(tmp.path(), &TinyQwen2::default());
    let llm = load(&p);
    let history = [("user", "hello there"), ("assistant", "hello")];
    // Word by word, as the recogniser gives them.
    for n in 1..=3 {
        let words = ["is", "it", "you"][..n].join(" ");
        llm.prepare(&with_words(&history, &words), &Cancel::new())
            .unwrap();
    }
    let full = with_words(&history, "is it you there");
    let prompt = llm.prompt_tokens(&full);
    let cached = llm.cached();
    assert_eq!(
        prompt[..cached.len()],
        cached[..],
        "the cache is the prompt's start"
    );
    // Left for the end of speech: the last word and the template's tail.
    let tail = llm.count_tokens(" there") + llm.count_tokens("\nassistant\n") + 2;
    assert!(
        prompt.len() - cached.len() <= tail,
        "{} of {} tokens left to read",
        prompt.len() - cached.len(),
        prompt.len()
    );
    let read = llm.tokens_read();
    assert_eq!(reply(&llm, &full), reply(&load(&p), &full));
    assert!(
        llm.tokens_read() - read <= tail as u64,
        "the reply read only the tail"
    );
    // The recogniser's words change (a correction): read again from the change only.
    let before = with_words(&history, "is it you there and who");
    llm.prepare(&before, &Cancel::new()).unwrap();
    let corrected = with_words(&history, "is it you they and who");
    let shared = llm
        .prompt_tokens(&before)
        .iter()
        .zip(llm.prompt_tokens(&corrected))
        .take_while(|(a, b)| **a == *b)
        .count();
    let read = llm.tokens_read();
    llm.prepare(&corrected, &Cancel::new()).unwrap();
    let open_len = llm.cached_tokens();
    assert_eq!(
        llm.tokens_read() - read,
        (open_len - shared) as u64,
        "read from where the words differ"
    );
    assert_eq!(reply(&llm, &corrected), reply(&load(&p), &corrected));
}

#[test]
fn a_history_cut_at_its_front_moves_the_cache_down_instead_of_reading_it_again() {
    // One layer: its cache depends only on tokens and positions, so the reply after
    // the move must be the one a fresh model gives.
    let tmp = tempfile::tempdir().unwrap();
    let p = tiny(
        tmp.path(),
        &TinyQwen2 {
            layers: 1,
            ..TinyQwen2::default()
        },
    );
    let llm = load(&p);
    let lines = [
        "hello there, is it you?",
        "hello, it is the assistant.",
        "the weather is nice",
        "it is, isn't it?",
        "tell me of the world",
        "the world is wide and old.",
        "and the system?",
        "the system is working well.",
    ];
    let history: Vec<(&str, &str)> = lines
        .iter()
        .enumerate()
        .map(|(i, l)| (if i % 2 == 0 { "user" } else { "assistant" }, *l))
        .collect();
    llm.prepare(&with_words(&history, "who"), &Cancel::new())
        .unwrap();
    // The first two exchanges are cut, as the history budget cuts it.
    let cut = with_words(&history[4..], "who are you");
    let prompt = llm.prompt_tokens(&cut);
    let read = llm.tokens_read();
    let pieces = reply(&llm, &cut);
    let tail = llm.count_tokens(" are you") + llm.count_tokens("\nassistant\n") + 2;
    assert!(
        llm.tokens_read() - read <= tail as u64,
        "{} of the cut prompt's {} tokens were read",
        llm.tokens_read() - read,
        prompt.len()
    );
    assert_eq!(pieces, reply(&load(&p), &cut));
    // The cache is the cut conversation's: the next turn reads on from it.
    assert_eq!(llm.cached()[..prompt.len()], prompt[..]);
}

#[test]
fn a_change_inside_the_system_turn_is_read_again_from_the_change_not_moved() {
    // A tool no longer offered, or a persona's prompt edited: what follows the change
    // read the old text, so it is read again rather than moved down.
    let tmp = tempfile::tempdir().unwrap();
    let p = tiny(tmp.path(), &TinyQwen2::default());
    let llm = load(&p);
    let lines = [
        ("user", "hello there, is it you?"),
        ("assistant", "hello, it is the assistant."),
        ("user", "tell me of the world"),
        ("assistant", "the world is wide and old."),
        ("user", "and the system?"),
    ];
    let mut before = ask(&lines, 4, 0.0);
    before.system = "You are a helpful assistant. You tell the weather. You speak briefly.".into();
    reply(&llm, &before);
    let mut after = ask(&lines, 4, 0.0);
    after.system = "You are a helpful assistant. You speak briefly.".into();
    let prompt = llm.prompt_tokens(&after);
    let shared = llm
        .cached()
        .iter()
        .zip(&prompt)
        .take_while(|(a, b)| a == b)
        .count();
    let read = llm.tokens_read();
    let pieces = reply(&llm, &after);
    assert_eq!(llm.tokens_read() - read, (prompt.len() - shared) as u64);
    assert_eq!(pieces, reply(&load(&p), &after));
}

/// `bench cascade --published` read the count from inside a reply's callback, and
/// the count sat behind the reply's lock: the first piece never returned.
#[test]
fn the_count_of_tokens_read_can_be_read_while_a_reply_is_writing() {
    let tmp = tempfile::tempdir().unwrap();
    let p = tiny(tmp.path(), &TinyQwen2::default());
    let llm = std::sync::Arc::new(load(&p));
    let (tx, rx) = std::sync::mpsc::channel();
    let l = llm.clone();
    std::thread::spawn(move || {
        let req = ask(&[("user", "hello world, is it you?")], 6, 0.0);
        let prompt = l.prompt_tokens(&req).len() as u64;
        let mut seen = Vec::new();
        l.stream(&req, &Cancel::new(), &mut |_| seen.push(l.tokens_read()))
            .unwrap();
        let _ = tx.send((prompt, seen));
    });
    let (prompt, seen) = rx
        .recv_timeout(Duration::from_secs(120))
        .expect("reading the count inside a reply blocks the reply");
    assert!(!seen.is_empty());
    // The prompt was read before the first piece, and writing reads no prompt.
    assert!(
        seen.iter().all(|n| *n == prompt),
        "{seen:?} against {prompt}"
    );
}

#[test]
fn the_context_and_the_rendered_prompt_are_counted_for_the_history_budget() {
    let tmp = tempfile::tempdir().unwrap();
    let p = tiny(tmp.path(), &TinyQwen2::default());
    let llm = load(&p);
    // The tiny model holds 2048 positions, less than the default 4096.
    assert_eq!(llm.context_tokens(), 2048);
    let req = ask(&[("user", "hello there"), ("assistant", "hi")], 8, 0.0);
    assert_eq!(llm.count_prompt(&req), llm.prompt_tokens(&req).len());
    let opts = GgufLlmOptions {
        context: 256,
        ..Default::default()
    };
    let small = GgufLlm::load(&p, &Device::Cpu, &opts, &Cancel::new()).unwrap();
    assert_eq!(small.context_tokens(), 256);
}

#[test]
fn temperature_samples_and_max_tokens_bounds_the_reply() {
    let tmp = tempfile::tempdir().unwrap();
    let p = tiny(tmp.path(), &TinyQwen2::default());
    let llm = load(&p);
    let greedy = reply(&llm, &ask(&[("user", "hello")], 16, 0.0)).concat();
    let hot: Vec<String> = (0..3)
        .map(|_| reply(&llm, &ask(&[("user", "hello")], 16, 1.5)).concat())
        .collect();
    assert!(
        hot.iter().any(|h| h != &greedy),
        "sampling at 1.5 should leave the greedy path: {greedy:?} {hot:?}"
    );
    let req = ask(&[("user", "hello")], 3, 0.0);
    let prompt = llm.prompt_tokens(&req).len();
    reply(&llm, &req);
    assert_eq!(llm.cached_tokens(), prompt + 2, "3 tokens: 2 fed back");
}

#[test]
fn a_tied_model_stops_at_its_end_token_or_max_tokens() {
    let tmp = tempfile::tempdir().unwrap();
    let p = tiny(
        tmp.path(),
        &TinyQwen2 {
            tied: true,
            ..Default::default()
        },
    );
    let llm = load(&p);
    let pieces = reply(&llm, &ask(&[("user", "hello")], 40, 0.0));
    assert!(pieces.concat().chars().count() <= 40 * 4);
}

#[test]
fn cancel_stops_the_reply_within_a_token() {
    let tmp = tempfile::tempdir().unwrap();
    let p = tiny(tmp.path(), &TinyQwen2::default());
    let llm = load(&p);
    let cancel = Cancel::new();
    let mut n = 0;
    let t = Instant::now();
    llm.stream(&ask(&[("user", "hello")], 2000, 0.0), &cancel, &mut |_| {
        n += 1;
        if n == 3 {
            cancel.cancel();
        }
    })
    .unwrap();
    assert_eq!(n, 3, "no piece after the cancel");
    assert!(t.elapsed() < Duration::from_secs(5));
    // Already cancelled: nothing at all.
    let mut more = 0;
    llm.stream(&ask(&[("user", "hello")], 20, 0.0), &cancel, &mut |_| {
        more += 1
    })
    .unwrap();
    assert_eq!(more, 0);
}

#[test]
fn a_conversation_past_the_context_is_refused_with_the_fix() {
    let tmp = tempfile::tempdir().unwrap();
    let p = tiny(tmp.path(), &TinyQwen2::default());
    let opts = GgufLlmOptions {
        context: 64,
        ..Default::default()
    };
    let llm = GgufLlm::load(&p, &Device::Cpu, &opts, &Cancel::new()).unwrap();
    assert_eq!(llm.context(), 64);
    let long = "hello world ".repeat(40);
    let e = llm
        .stream(
            &ask(&[("user", &long)], 8, 0.0),
            &Cancel::new(),
            &mut |_| {},
        )
        .unwrap_err();
    assert!(e.message.contains("holds 64") && !e.transient, "{e:?}");
    // A short one still works afterwards, bounded by the room left.
    assert!(!reply(&llm, &ask(&[("user", "hi")], 200, 0.0)).is_empty());
}

#[test]
fn bad_files_are_named_with_the_fix() {
    let tmp = tempfile::tempdir().unwrap();
    let good = tiny(tmp.path(), &TinyQwen2::default());
    let load_err = |p: &Path| {
        GgufLlm::load(p, &Device::Cpu, &GgufLlmOptions::default(), &Cancel::new())
            .err()
            .unwrap()
    };
    let missing = tmp.path().join("nope.gguf");
    let e = load_err(&missing);
    assert!(
        e.message.contains("nope.gguf") && e.message.contains("does not exist"),
        "{e:?}"
    );
    assert!(e.remedy.contains("--llm-gguf"));

    let text = tmp.path().join("notes.gguf");
    std::fs::write(&text, "not a model at all").unwrap();
    let e = load_err(&text);
    assert!(
        e.message.contains("notes.gguf") && e.message.contains("not a readable GGUF"),
        "{e:?}"
    );

    let cut = tmp.path().join("cut.gguf");
    let bytes = std::fs::read(&good).unwrap();
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let e = load_err(&cut);
    assert!(
        e.message.contains("cut.gguf") && e.message.contains("truncated"),
        "{e:?}"
    );
    assert!(e.remedy.contains("Download it again"), "{e:?}");

    // A GGUF of another kind (Moshi's, no chat metadata).
    let other = tmp.path().join("other.gguf");
    let entries = [assistant::models::moshi::gguf_write::GgufEntry {
        name: "x",
        dims: &[32],
        dtype: moshi::candle::quantized::GgmlDType::F32,
    }];
    let mut buf = assistant::models::moshi::gguf_write::header(&entries);
    buf.extend_from_slice(&[0u8; 128]);
    std::fs::write(&other, buf).unwrap();
    let e = load_err(&other);
    assert!(
        e.message.contains("other.gguf") && e.message.contains("general.architecture"),
        "{e:?}"
    );
    assert!(e.remedy.contains("Qwen2"), "{e:?}");
}

#[test]
fn memory_estimate_covers_weights_embedding_and_cache() {
    let tmp = tempfile::tempdir().unwrap();
    let p = tiny(tmp.path(), &TinyQwen2::default());
    let s = gguf::check_file(&p).unwrap();
    let file = std::fs::metadata(&p).unwrap().len();
    assert!(s.tensor_bytes <= file && s.tensor_bytes > file / 2);
    let small = gguf::memory_bytes(&s, 256);
    let big = gguf::memory_bytes(&s, 2048);
    let embed_f32 = (s.vocab * s.config.hidden * 4) as u64;
    assert!(small >= s.tensor_bytes + embed_f32 + s.config.kv_bytes(256));
    assert!(
        big - small >= s.config.kv_bytes(2048 - 256),
        "the KV cache grows with the context"
    );
}

#[test]
fn the_default_is_found_in_the_hf_cache_or_downloaded_into_it() {
    let tmp = tempfile::tempdir().unwrap();
    let www = tmp.path().join("www");
    std::fs::create_dir_all(&www).unwrap();
    write_tiny_qwen2(&www.join(DEFAULT_FILE), &TinyQwen2::default()).unwrap();
    let hub = load_server::Hub::start(DEFAULT_REPO, &www);
    let cache = tmp.path().join("hub");
    let disc = Discovery {
        hf_cache: Some(cache.clone()),
        endpoint: Some(hub.endpoint.clone()),
        chunk_bytes: 64 << 10,
    };
    let opts = GgufLlmOptions::default();
    let mut progress = vec![];
    let got = locate_gguf(&opts, &disc, &mut |p| progress.push(p), &Cancel::new()).unwrap();
    assert!(got.starts_with(&cache), "{got:?}");
    assert_eq!(std::fs::read(&got).unwrap(), hub.file(DEFAULT_FILE));
    assert!(progress
        .last()
        .is_some_and(|p| p.done == p.total && p.total > 0));
    // Found in the cache now: no request to the hub.
    let asked = hub.requests();
    let offline = Discovery {
        endpoint: None,
        ..disc.clone()
    };
    assert_eq!(
        locate_gguf(&opts, &offline, &mut |_| {}, &Cancel::new()).unwrap(),
        got
    );
    assert_eq!(hub.requests(), asked);
    assert!(!reply(&load(&got), &ask(&[("user", "hi")], 4, 0.0)).is_empty());
    // Offline, with an empty cache: the error says how to proceed.
    let empty = Discovery {
        hf_cache: Some(tmp.path().join("empty")),
        endpoint: None,
        chunk_bytes: 1,
    };
    let e = locate_gguf(&opts, &empty, &mut |_| {}, &Cancel::new()).unwrap_err();
    assert!(
        e.message.contains(DEFAULT_FILE) && e.remedy.contains("--llm-gguf"),
        "{e:?}"
    );
}

/// Figures, not assertions: time to the first piece and tokens per second of the
/// tiny model, and of a real GGUF when ASSISTANT_LLM_GGUF names one.
#[test]
fn figures_time_to_first_piece_and_tokens_per_second() {
    let tmp = tempfile::tempdir().unwrap();
    let mut models = vec![(
        "tiny (64 wide, 2 layers)".to_string(),
        tiny(tmp.path(), &TinyQwen2::default()),
    )];
    if let Some(p) = std::env::var_os("ASSISTANT_LLM_GGUF") {
        models.push(("ASSISTANT_LLM_GGUF".into(), PathBuf::from(p)));
    } else {
        eprintln!(
            "(set ASSISTANT_LLM_GGUF=path/to/qwen2.5-0.5b-instruct-q4_k_m.gguf for its figures)"
        );
    }
    for (label, p) in models {
        let t = Instant::now();
        let llm = load(&p);
        let load_s = t.elapsed().as_secs_f64();
        let req = ask(
            &[("user", "Hello! Tell me about the weather in two sentences.")],
            64,
            0.0,
        );
        let prompt = llm.prompt_tokens(&req).len();
        let t = Instant::now();
        let mut first = None;
        let mut text = String::new();
        llm.stream(&req, &Cancel::new(), &mut |p| {
            first.get_or_insert(t.elapsed());
            text.push_str(p);
        })
        .unwrap();
        let total = t.elapsed();
        // Re-encoded, which may differ by a token or two from what was sampled.
        let tokens = llm.count_tokens(&text);
        let first = first.unwrap_or(total);
        let rate = (tokens.saturating_sub(1)) as f64 / (total - first).as_secs_f64().max(1e-9);
        eprintln!(
            "FIGURES in-process {label}: load {load_s:.2} s, prompt {prompt} tokens, first piece {:.0} ms, {tokens} tokens, {rate:.1} tokens/s after the first",
            first.as_secs_f64() * 1e3
        );
    }
}

/// Figures at the size of the default model (Qwen2.5 0.5B's shape, random, Q8_0): what
/// the in-process LLM costs on this machine before its real weights are at hand. Slow
/// to write (about 1 GB of work): `cargo test --test llm gguf:: -- --ignored`.
#[test]
#[ignore]
fn figures_at_the_default_models_size() {
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("qwen-0.5b-shape.gguf");
    let t = Instant::now();
    write_tiny_qwen2(&p, &TinyQwen2::qwen25_05b_shape()).unwrap();
    eprintln!("written in {:.1} s", t.elapsed().as_secs_f64());
    let s = gguf::check_file(&p).unwrap();
    eprintln!(
        "memory estimate at {} positions: {}",
        gguf::DEFAULT_CONTEXT,
        assistant::bus::Bytes(gguf::memory_bytes(&s, gguf::DEFAULT_CONTEXT))
    );
    let t = Instant::now();
    let llm = load(&p);
    let load_s = t.elapsed().as_secs_f64();
    // A persona prompt and a first question, then a follow-up that reuses the cache.
    let q1 = ask(
        &[("user", "Hello! Tell me about the weather in two sentences.")],
        32,
        0.0,
    );
    let mut a1 = String::new();
    for (label, req) in [("first turn", q1.clone()), ("next turn", q1)] {
        let req = if label == "next turn" {
            ask(
                &[
                    ("user", "Hello! Tell me about the weather in two sentences."),
                    ("assistant", &a1),
                    ("user", "And tomorrow?"),
                ],
                32,
                0.0,
            )
        } else {
            req
        };
        let before = llm.cached_tokens();
        let prompt = llm.prompt_tokens(&req).len();
        let t = Instant::now();
        let mut first = None;
        let mut text = String::new();
        let mut pieces = 0usize;
        llm.stream(&req, &Cancel::new(), &mut |p| {
            first.get_or_insert(t.elapsed());
            text.push_str(p);
            pieces += 1;
        })
        .unwrap();
        let total = t.elapsed();
        let first = first.unwrap_or(total);
        eprintln!(
            "FIGURES in-process, Qwen2.5-0.5B shape (Q8_0, random): {label}: load {load_s:.1} s, prompt {prompt} tokens ({before} cached), first piece {:.0} ms, {pieces} pieces, {:.1} pieces/s after the first",
            first.as_secs_f64() * 1e3,
            pieces.saturating_sub(1) as f64 / (total - first).as_secs_f64().max(1e-9)
        );
        if label == "first turn" {
            a1 = text;
        }
    }
    // The system prompt read ahead (at a persona switch, or while the user speaks).
    let llm = load(&p);
    let q = ask(
        &[("user", "Hello! Tell me about the weather in two sentences.")],
        8,
        0.0,
    );
    let t = Instant::now();
    llm.prepare(&ask(&[], 0, 0.0), &Cancel::new()).unwrap();
    let prepare = t.elapsed();
    let cached = llm.cached_tokens();
    let t = Instant::now();
    let mut first = None;
    llm.stream(&q, &Cancel::new(), &mut |_| {
        first.get_or_insert(t.elapsed());
    })
    .unwrap();
    eprintln!(
        "FIGURES in-process, Qwen2.5-0.5B shape (Q8_0, random): system prompt prepared ({cached} tokens in {:.0} ms): first piece {:.0} ms for a {}-token prompt",
        prepare.as_secs_f64() * 1e3,
        first.unwrap_or_default().as_secs_f64() * 1e3,
        llm.prompt_tokens(&q).len()
    );
}

#[test]
fn a_download_is_cancelled_within_a_second() {
    let tmp = tempfile::tempdir().unwrap();
    let www = tmp.path().join("www");
    std::fs::create_dir_all(&www).unwrap();
    write_tiny_qwen2(&www.join(DEFAULT_FILE), &TinyQwen2::default()).unwrap();
    let hub = load_server::Hub::start(DEFAULT_REPO, &www);
    hub.slow(DEFAULT_FILE, 20_000);
    let disc = Discovery {
        hf_cache: Some(tmp.path().join("hub")),
        endpoint: Some(hub.endpoint.clone()),
        chunk_bytes: 64 << 10,
    };
    let cancel = Cancel::new();
    let c = cancel.clone();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        c.cancel();
    });
    let mut progress = vec![];
    let t = Instant::now();
    let e = locate_gguf(
        &GgufLlmOptions::default(),
        &disc,
        &mut |p| progress.push(p),
        &cancel,
    )
    .unwrap_err();
    let took = t.elapsed();
    assert!(e.message.contains("cancelled"), "{e:?}");
    assert!(took < Duration::from_secs(1), "{took:?}");
    assert!(progress.iter().any(|p| p.done > 0 && p.done < p.total));
}

#[test]
fn open_llm_loads_either_kind() {
    use assistant::models::llm::{open_llm, LlmChoice, OpenAiOptions};
    let tmp = tempfile::tempdir().unwrap();
    let p = tiny(tmp.path(), &TinyQwen2::default());
    let disc = Discovery::default();
    let choice = LlmChoice::Gguf(GgufLlmOptions {
        gguf: Some(p),
        ..Default::default()
    });
    let llm = open_llm(&choice, &disc, &Device::Cpu, &mut |_| {}, &Cancel::new()).unwrap();
    let mut n = 0;
    llm.stream(&ask(&[("user", "hi")], 4, 0.0), &Cancel::new(), &mut |_| {
        n += 1
    })
    .unwrap();
    assert!(n > 0);
    let server = LlmChoice::Server(OpenAiOptions::new("http://127.0.0.1:9", "m"));
    let llm = open_llm(&server, &disc, &Device::Cpu, &mut |_| {}, &Cancel::new()).unwrap();
    assert_eq!(llm.name(), "m at http://127.0.0.1:9");
    let missing = LlmChoice::Gguf(GgufLlmOptions {
        gguf: Some(tmp.path().join("gone.gguf")),
        ..Default::default()
    });
    let e = open_llm(&missing, &disc, &Device::Cpu, &mut |_| {}, &Cancel::new())
        .err()
        .unwrap();
    assert!(e.message.contains("gone.gguf"), "{e:?}");
}

/// Figures for the end of speech at the default model's size (Qwen2.5 0.5B's shape,
/// random, Q8_0): the first piece of the reply to a 15-word question, with its words
/// read ahead as they come (all but the last, which comes with the end of speech), and
/// without (only the system prompt and history read ahead, as before). Slow to write:
/// `cargo test --test llm gguf::figures_first_piece -- --ignored --nocapture`.
#[test]
#[ignore]
fn figures_first_piece_after_the_end_of_speech_with_and_without_read_ahead() {
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("qwen-0.5b-shape.gguf");
    write_tiny_qwen2(&p, &TinyQwen2::qwen25_05b_shape()).unwrap();
    let history = [
        ("user", "Hello! Tell me about the weather in two sentences."),
        (
            "assistant",
            "It is sunny and warm today. Tomorrow brings light rain.",
        ),
    ];
    let words: Vec<&str> =
        "could you tell me whether I should take an umbrella when I walk to work"
            .split(' ')
            .collect();
    assert_eq!(words.len(), 15);
    let question = words.join(" ");
    let load_avg = || std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let first_piece = |llm: &GgufLlm, req: &ChatRequest| {
        let t = Instant::now();
        let mut first = None;
        llm.stream(req, &Cancel::new(), &mut |_| {
            first.get_or_insert(t.elapsed());
        })
        .unwrap();
        first.unwrap_or(t.elapsed()).as_secs_f64() * 1e3
    };
    let mut req = with_words(&history, &question);
    req.max_tokens = 2;
    for round in 0..3 {
        // Without: the conversation so far was read at the onset, the words were not.
        let llm = load(&p);
        llm.prepare(&ask(&history, 0, 0.0), &Cancel::new()).unwrap();
        let read = llm.tokens_read();
        let without = first_piece(&llm, &req);
        let left_without = llm.tokens_read() - read;
        // With: the same, and the words read as they come (each word's read timed: it
        // must keep up with speech, about 0.4 s a word).
        let llm = load(&p);
        llm.prepare(&ask(&history, 0, 0.0), &Cancel::new()).unwrap();
        let mut per_word = Vec::new();
        for n in 1..words.len() {
            let t = Instant::now();
            llm.prepare(&with_words(&history, &words[..n].join(" ")), &Cancel::new())
                .unwrap();
            per_word.push(t.elapsed().as_secs_f64() * 1e3);
        }
        let read = llm.tokens_read();
        let with = first_piece(&llm, &req);
        let left_with = llm.tokens_read() - read;
        per_word.sort_by(f64::total_cmp);
        eprintln!(
            "FIGURES read-ahead, Qwen2.5-0.5B shape (Q8_0, random), round {round}: first piece after the end of speech: without {without:.0} ms ({left_without} tokens read), with {with:.0} ms ({left_with} tokens read); reading a word ahead: median {:.0} ms, max {:.0} ms; load average {}",
            per_word[per_word.len() / 2],
            per_word[per_word.len() - 1],
            load_avg().trim()
        );
    }
}

#[test]
fn with_tools_the_system_turn_lists_them_and_is_read_ahead_once() {
    use assistant::models::llm::tool_loop::ToolUsingLlm;
    use assistant::tools::{config::Access, consent::Desk, ToolBox, ToolsOptions};
    let tmp = tempfile::tempdir().unwrap();
    let p = tiny(tmp.path(), &TinyQwen2::default());
    let cfg = tmp.path().join("mcp.json");
    std::fs::write(&cfg, r#"{"mcpServers": {}}"#).unwrap();
    let tools = ToolBox::start(
        &ToolsOptions {
            config: Some(cfg),
            access: Some(Access::ReadOnly),
            persona_tools: None,
            every_persona: true,
            workdir: tmp.path().to_path_buf(),
            llm_url: None,
        },
        Desk::nobody(),
        Box::new(|_| {}),
    )
    .unwrap()
    .tools;
    let llm = ToolUsingLlm::new(load(&p), std::sync::Arc::new(tools));
    let plain = load(&p);
    let history = [("user", "hello there"), ("assistant", "hello")];
    plain
        .prepare(&ask(&history, 0, 0.0), &Cancel::new())
        .unwrap();
    llm.prepare(&ask(&history, 0, 0.0), &Cancel::new()).unwrap();
    let prepared = llm.inner().cached_tokens();
    // The `# Tools` block with the built-ins' signatures is in the system turn.
    assert!(
        prepared > plain.cached_tokens() + 100,
        "{prepared} vs {} without tools",
        plain.cached_tokens()
    );
    // The reply reads only the new turn, and the prompt is counted with the tools.
    let full = ask(
        &[history[0], history[1], ("user", "what time is it?")],
        4,
        0.0,
    );
    let prompt = llm.inner().round_tokens(&full, &[], &llm.specs());
    assert_eq!(llm.count_prompt(&full), prompt.len());
    assert_eq!(prompt[..prepared], llm.inner().cached()[..prepared]);
    let read = llm.inner().tokens_read();
    let mut said = String::new();
    llm.stream(&full, &Cancel::new(), &mut |p| said.push_str(p))
        .unwrap();
    let reread = llm.inner().tokens_read() - read;
    assert!(
        reread as usize <= prompt.len() - prepared,
        "read {reread} of {} new tokens",
        prompt.len() - prepared
    );
}
