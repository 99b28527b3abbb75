//! The LM context (KV cache) of a checkpoint: `--context` overrides, otherwise it is cut
//! to what fits the device's free memory, and a model that cannot fit is refused with
//! the arithmetic instead of failing with an out-of-memory in its first step.

use assistant::engine::moshi::checkpoint::inspect;
use assistant::engine::moshi::export::{write_demo, LmFormat};
use assistant::engine::moshi::size_context_for;
use assistant::engine::moshi::sizing::{plan, WeightFormat};

#[test]
fn context_follows_the_flag_then_the_free_memory() {
    let tmp = tempfile::tempdir().unwrap();
    write_demo(tmp.path(), LmFormat::Q8).unwrap();
    let fresh = || inspect(tmp.path()).unwrap();
    let default = fresh().config.lm.transformer.context;
    assert_eq!(default, 3000);

    // --context wins.
    let mut ck = fresh();
    assert!(size_context_for(&mut ck, true, "cpu", Some(250), Some(1)).unwrap().is_none());
    assert_eq!(ck.config.lm.transformer.context, 250);

    // Plenty of memory: the checkpoint's own context, no notice.
    let mut ck = fresh();
    assert!(size_context_for(&mut ck, true, "cpu", None, Some(64 << 30)).unwrap().is_none());
    assert_eq!(ck.config.lm.transformer.context, default);

    // Tight memory: room for 1000 steps of cache beyond everything else. Cut, and the
    // user is told the arithmetic.
    let mut ck = fresh();
    let mimi = std::fs::metadata(tmp.path().join("tokenizer-e351c8d8-checkpoint125.safetensors")).unwrap().len();
    let p = plan(&ck.config.lm, WeightFormat::Q8, mimi, 1 << 40, 3000).unwrap();
    let budget = p.total() - p.kv_cache() + 1000 * p.kv_per_step;
    let notice = size_context_for(&mut ck, false, "cuda:0", None, Some(budget)).unwrap().expect("a notice");
    let cut = ck.config.lm.transformer.context;
    assert_eq!(cut, 1000);
    assert!(notice.message.contains(&format!("cut from 3000 to {cut} steps")) && notice.message.contains("KV cache"), "{}", notice.message);

    // No memory at all: refused, saying why.
    let mut ck = fresh();
    let e = size_context_for(&mut ck, false, "cuda:0", None, Some(1 << 20)).unwrap_err();
    assert!(e.message.starts_with("out of memory on cuda:0: the model does not fit"), "{}", e.message);
}
