//! `PlacedLm` computes exactly what moshi's own `LmModel` computes, wherever its tensors
//! live: embeddings on the host always, and any number of leading layers with them.

use assistant::models::moshi::checkpoint;
use assistant::models::moshi::config;
use assistant::models::moshi::demo::{random_lm, reference_lm, DEMO_WEIGHT_SEED};
use assistant::models::moshi::export::{write_demo, LmFormat};
use assistant::models::moshi::lm_sources::split_gguf_sources;
use assistant::models::moshi::placed_lm::PlacedLm;
use assistant::models::moshi::placement::Placement;
use candle_transformers::generation::{LogitsProcessor, Sampling};
use moshi::candle::{Device, IndexOp, Tensor};
use moshi::lm::LmModel;
use moshi::nn::MaybeQuantizedVarBuilder;

const CPU: Device = Device::Cpu;

fn ids(step: u32) -> (u32, Vec<u32>) {
    (
        (step * 37) % 512,
        (0..16).map(|c| (step * 11 + c * 5) % 256).collect(),
    )
}

fn vec(t: &Tensor) -> Vec<f32> {
    t.i((0, 0)).unwrap().to_vec1().unwrap()
}

/// Teacher-forced steps through both; logits, hidden state and depformer tokens must be
/// identical, bit for bit.
fn assert_same(reference: &mut LmModel, placed: &mut PlacedLm, steps: u32) {
    let lp = || {
        LogitsProcessor::from_sampling(
            7,
            Sampling::TopK {
                k: 20,
                temperature: 0.8,
            },
        )
    };
    let (mut lp_a, mut lp_b) = (lp(), lp());
    for step in 0..steps {
        let (text, audio) = ids(step);
        let t = Tensor::new(&[[text]], &CPU).unwrap();
        let codes = audio
            .iter()
            .map(|&a| Some(Tensor::new(&[[a]], &CPU).unwrap()))
            .collect();
        let (la, ya) = reference.forward(Some(t), codes, &().into()).unwrap();
        let audio: Vec<Option<u32>> = audio.into_iter().map(Some).collect();
        let (lb, yb) = placed.forward(Some(text), &audio).unwrap();
        assert_eq!(vec(&la), vec(&lb), "logits at step {step}");
        assert_eq!(vec(&ya), vec(&yb), "hidden state at step {step}");
        let forced = [None, Some(3), None, None];
        let a = reference
            .depformer_sample(&ya, Some(text), &forced, &mut lp_a)
            .unwrap();
        let b = placed
            .depformer_sample(&yb, Some(text), &forced, &mut lp_b)
            .unwrap();
        assert_eq!(a, b, "audio tokens at step {step}");
    }
}

#[test]
fn placed_lm_equals_moshis_lm_model_wherever_the_layers_live() {
    let cfg = config::demo();
    for host_layers in 0..=cfg.lm.transformer.num_layers {
        let mut reference = reference_lm(&cfg, DEMO_WEIGHT_SEED, &CPU).unwrap();
        let mut placed =
            random_lm(&cfg, DEMO_WEIGHT_SEED, Placement { host_layers }, &CPU).unwrap();
        assert_same(&mut reference, &mut placed, 25);
        // And after a reset, from the start again.
        reference.reset_state();
        placed.reset_state();
        assert_same(&mut reference, &mut placed, 5);
    }
}

/// The split GGUF load (one in-memory GGUF per part) gives the model moshi builds from
/// the whole file, however the layers are split and stacked, and the device's parts hold
/// no embedding table.
#[test]
fn split_q8_load_equals_moshis_own_load_of_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    write_demo(tmp.path(), LmFormat::Q8).unwrap();
    let ck = checkpoint::inspect(tmp.path()).unwrap();
    let n = ck.config.lm.transformer.num_layers;
    assert_eq!(n, 2);
    let q = |vb: &MaybeQuantizedVarBuilder| match vb {
        MaybeQuantizedVarBuilder::Quantized(q) => q.clone(),
        MaybeQuantizedVarBuilder::Real(_) => panic!("q8 sources"),
    };
    let layer = |i: usize| format!("transformer.layers.{i}.self_attn.in_proj_weight");
    for host_layers in 0..=n {
        for stack_layers in [1, 4] {
            let placement = Placement { host_layers };
            let mut last = (0, 0);
            let src = split_gguf_sources(
                &ck.lm_file,
                placement,
                n,
                stack_layers,
                &CPU,
                "lm",
                &mut |p| last = (p.done, p.total),
                &Default::default(),
            )
            .unwrap();
            assert!(
                last.0 == last.1 && last.1 > 0,
                "progress ends complete: {last:?}"
            );
            let (host, others) = (q(&src.host), q(&src.device));
            for emb in ["text_emb.weight", "emb.0.weight", "depformer.0.emb.weight"] {
                assert!(host.contains_key(emb) && !others.contains_key(emb), "{emb}");
            }
            assert!(others.contains_key("text_linear.weight") && !others.contains_key(&layer(0)));
            // The host's stack first, then the device's, each named from 0.
            let sizes: Vec<usize> = src.stacks.iter().map(|(_, l)| *l).collect();
            let expected: Vec<usize> = std::iter::once(host_layers)
                .chain(
                    (host_layers..n)
                        .step_by(stack_layers)
                        .map(|i| stack_layers.min(n - i)),
                )
                .collect();
            assert_eq!(
                sizes, expected,
                "host {host_layers}, stacks of {stack_layers}"
            );
            for (vb, l) in src.stacks.iter().skip(1) {
                let vb = q(vb);
                assert!(
                    (0..*l).all(|i| vb.contains_key(&layer(i)))
                        && !vb.contains_key(&layer(*l))
                        && !vb.contains_key("text_emb.weight")
                );
            }
            assert!(
                (0..host_layers).all(|i| host.contains_key(&layer(i)))
                    && !host.contains_key(&layer(host_layers))
            );

            let mut placed = PlacedLm::new(&ck.config.lm, src).unwrap();
            let vb = candle_transformers::quantized_var_builder::VarBuilder::from_gguf(
                &ck.lm_file,
                &CPU,
            )
            .unwrap();
            let mut reference =
                LmModel::new(&ck.config.lm, MaybeQuantizedVarBuilder::Quantized(vb)).unwrap();
            assert_same(&mut reference, &mut placed, 20);
        }
    }
}

/// Loading through the checkpoint with a placement builds the same model.
#[test]
fn a_checkpoint_load_follows_its_placement() {
    let tmp = tempfile::tempdir().unwrap();
    write_demo(tmp.path(), LmFormat::Q8).unwrap();
    let mut ck = checkpoint::inspect(tmp.path()).unwrap();
    ck.placement = Placement { host_layers: 1 };
    let (_, mut placed, dtype) =
        checkpoint::load_parts(&ck, &CPU, &mut |_| {}, &Default::default()).unwrap();
    assert_eq!(
        (dtype, placed.placement()),
        ("q8", Placement { host_layers: 1 })
    );
    let vb = candle_transformers::quantized_var_builder::VarBuilder::from_gguf(&ck.lm_file, &CPU)
        .unwrap();
    let mut reference =
        LmModel::new(&ck.config.lm, MaybeQuantizedVarBuilder::Quantized(vb)).unwrap();
    assert_same(&mut reference, &mut placed, 10);
    // The header and the headless log say where the layers are.
    let model = checkpoint::load(
        ck,
        &Default::default(),
        &CPU,
        "cuda:0",
        &mut |_| {},
        &Default::default(),
    )
    .unwrap();
    assert_eq!(
        assistant::models::duplex::DuplexModel::info(&model).device,
        "cuda:0 + 1/2 layers on cpu"
    );
}
