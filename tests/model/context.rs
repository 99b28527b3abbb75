//! The LM context (KV cache) of a checkpoint: `--context` overrides, otherwise it is cut
//! to what fits the device's free memory, and a model that cannot fit is refused with
//! the arithmetic instead of failing with an out-of-memory in its first step.

use assistant::models::moshi::checkpoint::inspect;
use assistant::models::moshi::checkpoint::{lm_headers, Checkpoint};
use assistant::models::moshi::export::{write_demo, LmFormat};
use assistant::models::moshi::placement::Placement;
use assistant::models::moshi::size_context_for;
use assistant::models::moshi::sizing::{
    mimi_bytes, plan, residency, table_from_headers, Backend, MemoryPlan, Target, MIN_CONTEXT,
    RESERVE_BYTES,
};

/// The plan for a GPU with all the memory in the world.
fn roomy(
    ck: &Checkpoint,
) -> (
    MemoryPlan,
    Vec<assistant::models::moshi::sizing::TensorEntry>,
    u64,
) {
    let table = table_from_headers(&lm_headers(ck).unwrap());
    let mimi = mimi_bytes(&ck.config.mimi).unwrap();
    let t = Target {
        compute_bytes: 4,
        kv_bytes: 2,
        split: true,
        mimi_bytes: mimi,
        budget: 1 << 40,
        host_budget: None,
        context: 3000,
        exact: false,
        sessions: 1,
    };
    (plan(&ck.config.lm, &table, t).unwrap(), table, mimi)
}

#[test]
fn context_follows_the_flag_then_the_free_memory() {
    let tmp = tempfile::tempdir().unwrap();
    write_demo(tmp.path(), LmFormat::Q8).unwrap();
    let fresh = || inspect(tmp.path()).unwrap();
    let default = fresh().config.lm.transformer.context;
    assert_eq!(default, 3000);

    // --context wins where free memory cannot be known (Metal).
    let mut ck = fresh();
    assert!(
        size_context_for(&mut ck, Backend::Metal, "metal", Some(250), None)
            .unwrap()
            .is_none()
    );
    assert_eq!(ck.config.lm.transformer.context, 250);

    // Plenty of memory: the checkpoint's own context, nothing moved, no notice.
    let mut ck = fresh();
    assert!(
        size_context_for(&mut ck, Backend::Cpu, "cpu", None, Some(64 << 30))
            .unwrap()
            .is_none()
    );
    assert_eq!(ck.config.lm.transformer.context, default);
    assert_eq!(ck.placement, Placement::default());

    // Tight memory: room for 1000 steps of cache beyond everything else. Cut, and the
    // user is told the arithmetic.
    let mut ck = fresh();
    let (p, _, _) = roomy(&ck);
    let budget = p.total() - p.kv_cache() + 1000 * p.kv_per_step;
    let notice = size_context_for(&mut ck, Backend::Cuda, "cuda:0", None, Some(budget))
        .unwrap()
        .expect("a notice");
    let cut = ck.config.lm.transformer.context;
    assert_eq!(cut, 1000);
    assert!(
        notice
            .message
            .contains(&format!("cut from 3000 to {cut} steps"))
            && notice.message.contains("KV cache"),
        "{}",
        notice.message
    );

    // No memory at all: refused, saying why.
    let mut ck = fresh();
    let e = size_context_for(&mut ck, Backend::Cuda, "cuda:0", None, Some(1 << 20)).unwrap_err();
    assert!(
        e.message.starts_with(
            "out of memory on cuda:0: the model does not fit even with all 2 layers on the host"
        ),
        "{}",
        e.message
    );
}

/// Too little for all layers with a useful context: the first layer moves to the host,
/// the user is told, and the loader builds exactly that split.
#[test]
fn a_short_device_moves_the_fewest_layers_to_the_host() {
    let tmp = tempfile::tempdir().unwrap();
    write_demo(tmp.path(), LmFormat::Q8).unwrap();
    let mut ck = inspect(tmp.path()).unwrap();
    let (p, table, mimi) = roomy(&ck);
    let one = Placement { host_layers: 1 };
    let kv_one_layer = p.kv_per_step / 2;
    let budget = residency(&table, one, 4).device
        + mimi
        + RESERVE_BYTES
        + p.activations
        + kv_one_layer * (MIN_CONTEXT as u64 + 50);
    let notice = size_context_for(&mut ck, Backend::Cuda, "cuda:0", None, Some(budget))
        .unwrap()
        .expect("a notice");
    assert_eq!(ck.placement, one);
    assert_eq!(ck.config.lm.transformer.context, MIN_CONTEXT + 50);
    assert!(
        notice.message.contains("1 of 2 LM layers run on the CPU")
            && notice.message.contains("embeddings and 1 of 2 layers"),
        "{}",
        notice.message
    );

    // --context asks for far more than fits with one layer moved: both move.
    let mut ck = inspect(tmp.path()).unwrap();
    size_context_for(&mut ck, Backend::Cuda, "cuda:0", Some(2000), Some(budget)).unwrap();
    assert_eq!(
        (ck.placement.host_layers, ck.config.lm.transformer.context),
        (2, 2000)
    );
}
