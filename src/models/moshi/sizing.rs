//! How much memory a model needs where it runs, and the placement and LM context that fit.
//!
//! Weights are counted tensor by tensor from the LM file's own header (or, for a config
//! without a file, from the tensors moshi's constructors ask for), through the same
//! `placement` rules the loader follows, so the plan and the load cannot disagree. The
//! LM's KV cache is allocated whole (`context` rows per layer) at the first step, so the
//! context decides whether a model starts: Kyutai's 3000 steps are 3 GiB of f32 cache for
//! moshiko (1.5 GiB in bf16, which q8 uses on CUDA). When even the shortest useful context does not fit, leading transformer layers
//! move to the host until it does. `--context STEPS` fixes the context instead.

use super::files::TensorHeader;
use super::placement::{resident_bytes, Home, Placement, Stored};
use moshi::candle::{DType, Device, Shape, Tensor};
use moshi::candle_nn::var_builder::SimpleBackend;
use moshi::candle_nn::{Init, VarBuilder};
use moshi::lm;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// Device memory the plan leaves for what it does not itemise: cuBLAS workspaces, kernel
/// modules loaded on first use, Mimi's activations, allocator slack. The CUDA context
/// itself is already gone from the driver's free figure the budget starts from.
pub const RESERVE_BYTES: u64 = 256 << 20;
/// Below this context the conversation forgets within seconds (100 steps = 8 s): refuse
/// rather than start something useless.
pub const MIN_CONTEXT: usize = 100;

/// One tensor of a checkpoint as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorEntry {
    pub name: String,
    pub dims: Vec<usize>,
    pub stored: Stored,
    pub elems: u64,
}

/// The tensor table of an LM file, from the header `files::check_*` parsed. A dtype
/// this does not know is counted at 4 bytes a value, which errs on the safe side.
pub fn table_from_headers(headers: &BTreeMap<String, TensorHeader>) -> Vec<TensorEntry> {
    headers
        .iter()
        .map(|(name, h)| {
            let stored = Stored::from_header_dtype(&h.dtype).unwrap_or_else(|| {
                tracing::warn!("tensor `{name}`: dtype {} unknown to the memory plan, counted as 4 bytes a value", h.dtype);
                Stored::Plain(4)
            });
            TensorEntry { name: name.clone(), dims: h.shape.clone(), stored, elems: h.shape.iter().product::<usize>() as u64 }
        })
        .collect()
}

/// The tensors moshi's `LmModel` reads for `cfg`, stored as the official files store them:
/// q8_0 for matrices whose rows are whole blocks (as candle's `tensor-tools quantize`
/// made `model.q8.gguf`), f32 otherwise; or all in `dense` bytes per value.
pub fn census(cfg: &lm::Config, q8: bool, dense: u64) -> Result<Vec<TensorEntry>, String> {
    let seen = Arc::new(Mutex::new(BTreeMap::new()));
    let vb = VarBuilder::from_backend(
        Box::new(ShapeOnly { seen: seen.clone() }),
        DType::F32,
        Device::Cpu,
    );
    moshi::lm::LmModel::new(cfg, moshi::nn::MaybeQuantizedVarBuilder::Real(vb))
        .map_err(|e| e.to_string())?;
    let seen = seen.lock().map_err(|_| "poisoned".to_string())?;
    Ok(seen
        .iter()
        .map(|(name, dims): (&String, &Vec<usize>)| {
            let elems = dims.iter().product::<usize>() as u64;
            let stored = if !q8 {
                Stored::Plain(dense)
            } else if dims.len() == 2 && dims[1] % 32 == 0 {
                Stored::Q8_0
            } else {
                Stored::Plain(4)
            };
            TensorEntry {
                name: name.clone(),
                dims: dims.clone(),
                stored,
                elems,
            }
        })
        .collect())
}

/// Bytes of a Mimi once loaded (f32), from the tensors its constructor reads: only the
/// codebooks it uses, not all 32 of the file.
pub fn mimi_bytes(cfg: &moshi::mimi::Config) -> Result<u64, String> {
    let seen = Arc::new(Mutex::new(BTreeMap::new()));
    let vb = VarBuilder::from_backend(
        Box::new(ShapeOnly { seen: seen.clone() }),
        DType::F32,
        Device::Cpu,
    );
    moshi::mimi::Mimi::new(cfg.clone(), vb).map_err(|e| e.to_string())?;
    let seen = seen.lock().map_err(|_| "poisoned".to_string())?;
    Ok(seen
        .values()
        .map(|d: &Vec<usize>| d.iter().product::<usize>() as u64 * 4)
        .sum())
}

/// Records the shape of each tensor asked for and answers with a broadcast zero: a view of
/// one value, so even a 7B model is "built" in no memory.
struct ShapeOnly {
    seen: Arc<Mutex<BTreeMap<String, Vec<usize>>>>,
}

impl SimpleBackend for ShapeOnly {
    fn get(
        &self,
        s: Shape,
        name: &str,
        _: Init,
        dtype: DType,
        dev: &Device,
    ) -> moshi::candle::Result<Tensor> {
        if let Ok(mut seen) = self.seen.lock() {
            seen.insert(name.to_string(), s.dims().to_vec());
        }
        Tensor::zeros((), dtype, dev)?.broadcast_as(s)
    }
    fn get_unchecked(&self, name: &str, _: DType, _: &Device) -> moshi::candle::Result<Tensor> {
        moshi::candle::bail!("{name}: a shape is needed")
    }
    /// Plain names, as the official checkpoints have them.
    fn contains_tensor(&self, name: &str) -> bool {
        name.ends_with("weight")
    }
}

/// Bytes of the LM's weights on each side for a placement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Residency {
    pub device: u64,
    pub host: u64,
    /// What a step reads whole on each side: all but the embeddings, which it only looks
    /// up a row of.
    pub device_streamed: u64,
    pub host_streamed: u64,
}

/// `compute_bytes`: bytes per value of dense tensors on the device (2 for bf16 on a GPU).
pub fn residency(table: &[TensorEntry], placement: Placement, compute_bytes: u64) -> Residency {
    let mut r = Residency {
        device: 0,
        host: 0,
        device_streamed: 0,
        host_streamed: 0,
    };
    for t in table {
        let home = placement.home(&t.name).0;
        let b = resident_bytes(&t.name, t.stored, t.elems, home, compute_bytes);
        let streamed = if super::placement::is_embedding(&t.name) {
            0
        } else {
            b
        };
        match home {
            Home::Host => {
                r.host += b;
                r.host_streamed += streamed;
            }
            Home::Device => {
                r.device += b;
                r.device_streamed += streamed;
            }
        }
    }
    r
}

/// Where the bytes of a loaded model go, and the placement and context chosen.
#[derive(Debug, Clone, PartialEq)]
pub struct MemoryPlan {
    pub placement: Placement,
    pub layers: usize,
    /// The LM's weights on the device, and on the host (embeddings, host layers).
    pub weights: Residency,
    pub mimi: u64,
    /// KV cache of one step in the device's layers.
    pub kv_per_step: u64,
    pub context: usize,
    /// Activations of all sessions.
    pub activations: u64,
    pub reserve: u64,
    pub budget: u64,
    /// Sessions sharing the weights: each has a KV cache of `context` steps.
    pub sessions: u64,
}

impl MemoryPlan {
    /// The KV caches of all sessions.
    pub fn kv_cache(&self) -> u64 {
        self.kv_per_step * self.context as u64 * self.sessions.max(1)
    }
    /// What the device must hold.
    pub fn total(&self) -> u64 {
        self.weights.device + self.mimi + self.kv_cache() + self.activations + self.reserve
    }
    /// The arithmetic, for notices and the test log.
    pub fn explain(&self) -> String {
        let host = match (self.weights.host, self.placement.host_layers) {
            (0, _) => String::new(),
            (b, 0) => format!(" (+{} on the host: embeddings)", size(b)),
            (b, k) => format!(
                " (+{} on the host: embeddings and {k} of {} layers)",
                size(b),
                self.layers
            ),
        };
        let sessions = match self.sessions {
            0 | 1 => String::new(),
            n => format!("{n} sessions x "),
        };
        format!(
            "LM {}{host} + Mimi {} + KV cache {} ({sessions}{} steps x {}) + activations {} + reserve {} = {} of {}",
            size(self.weights.device),
            size(self.mimi),
            size(self.kv_cache()),
            self.context,
            size(self.kv_per_step),
            size(self.activations),
            size(self.reserve),
            size(self.total()),
            size(self.budget)
        )
    }
}

/// Bytes for people, in the one unit (`bus::Bytes`).
pub fn size(b: u64) -> String {
    crate::bus::Bytes(b).to_string()
}

/// The largest in-memory GGUF a split load stages on the host on the way to the device:
/// the device's non-layer tensors, or one stack of `STACK_LAYERS` layers.
pub fn largest_part(table: &[TensorEntry], placement: Placement) -> u64 {
    use super::lm_sources::STACK_LAYERS;
    let mut parts: BTreeMap<Option<usize>, u64> = BTreeMap::new();
    for t in table {
        if let (Home::Device, name) = placement.home(&t.name) {
            let stack = super::placement::layer_of(&name).map(|(j, _)| j / STACK_LAYERS);
            *parts.entry(stack).or_default() += t.stored.bytes(t.elems);
        }
    }
    parts.into_values().max().unwrap_or(0)
}

/// Keys and values of one step in `layers` layers of the temporal transformer.
pub fn kv_bytes_per_step(cfg: &lm::Config, layers: usize, elem_bytes: u64) -> u64 {
    let t = &cfg.transformer;
    let kv_dim = (t.d_model / t.kv_repeat.max(1)) as u64;
    2 * layers as u64 * kv_dim * elem_bytes
}

/// Per-step working memory: the feed-forward and logits buffers of one token, a few
/// times over for candle's temporaries, plus one attention row over the context.
pub fn activation_bytes(cfg: &lm::Config, context: usize) -> u64 {
    let t = &cfg.transformer;
    let per_token =
        (4 * t.d_model + 2 * t.dim_feedforward + cfg.text_out_vocab_size + cfg.audio_vocab_size)
            as u64
            * 4;
    let attention = (t.num_heads * context) as u64 * 4 * 2;
    8 * per_token + attention
}

/// What to plan for.
#[derive(Debug, Clone, Copy)]
pub struct Target {
    /// Bytes per value of dense device tensors.
    pub compute_bytes: u64,
    /// Bytes per value of the device's KV cache: the compute dtype for dense weights; for
    /// quantized ones moshi's attention dtype (`moshi::nn::matmul_dtype`: bf16 on CUDA).
    pub kv_bytes: u64,
    /// Host and device are different memories (a GPU): layers can move to the host.
    pub split: bool,
    pub mimi_bytes: u64,
    pub budget: u64,
    /// Free host memory, checked when layers and embeddings live there (`split`).
    pub host_budget: Option<u64>,
    /// The context wanted; with `exact` nothing shorter will do (`--context`).
    pub context: usize,
    pub exact: bool,
    /// Sessions sharing the weights, each with its own KV cache and activations.
    pub sessions: u64,
}

/// The fewest host layers, then the longest context up to the one wanted, that fit.
pub fn plan(cfg: &lm::Config, table: &[TensorEntry], t: Target) -> Result<MemoryPlan, String> {
    let n = cfg.transformer.num_layers;
    let floor = if t.exact {
        t.context
    } else {
        MIN_CONTEXT.min(t.context)
    };
    let mut last = None;
    for k in 0..=if t.split { n } else { 0 } {
        let placement = Placement { host_layers: k };
        let mut weights = residency(table, placement, t.compute_bytes);
        if !t.split {
            // One memory: the host's share is on the "device" too.
            weights = Residency {
                device: weights.device + weights.host,
                host: 0,
                device_streamed: weights.device_streamed + weights.host_streamed,
                host_streamed: 0,
            };
        }
        let mut p = MemoryPlan {
            placement,
            layers: n,
            weights,
            mimi: t.mimi_bytes,
            kv_per_step: kv_bytes_per_step(cfg, n - k, t.kv_bytes),
            context: 0,
            activations: activation_bytes(cfg, t.context) * t.sessions.max(1),
            reserve: RESERVE_BYTES,
            budget: t.budget,
            sessions: t.sessions.max(1),
        };
        if let (true, Some(host_free)) = (t.split, t.host_budget) {
            // Host layers keep an f32 cache, and the load stages one part of the device's
            // share at a time in host memory. More host layers only need more: stop here.
            let host = weights.host
                + kv_bytes_per_step(cfg, k, 4) * floor as u64
                + largest_part(table, placement);
            if host > host_free {
                p.context = floor;
                return Err(format!(
                    "the host has {} free but needs {} for the embeddings{}: {}",
                    size(host_free),
                    size(host),
                    if k > 0 {
                        format!(" and {k} layers")
                    } else {
                        String::new()
                    },
                    p.explain()
                ));
            }
        }
        let fixed = p.total();
        let per_step = p.kv_per_step * p.sessions;
        let fits =
            usize::try_from(t.budget.saturating_sub(fixed) / per_step.max(1)).unwrap_or(usize::MAX);
        p.context = t.context.min(fits);
        if fixed <= t.budget && p.context >= floor {
            return Ok(p);
        }
        p.context = floor;
        last = Some(p);
    }
    let p = last.expect("the loop runs at least once");
    let tried = if t.split {
        format!(" even with all {n} layers on the host")
    } else {
        String::new()
    };
    Err(format!("the model does not fit{tried}: {}", p.explain()))
}

/// The kind of device a plan is for (tests plan for CUDA without one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Cpu,
    Cuda,
    Metal,
}

impl Backend {
    pub fn of(device: &Device) -> Self {
        match device {
            Device::Cpu => Backend::Cpu,
            Device::Cuda(_) => Backend::Cuda,
            Device::Metal(_) => Backend::Metal,
        }
    }
}

/// The device's budget: its free memory, capped by `--max-memory` (GiB).
pub fn device_budget(device: &Device, max_memory_gib: Option<f64>) -> Option<u64> {
    let limit = max_memory_gib.map(|g| (g * (1u64 << 30) as f64) as u64);
    match (free_memory(device), limit) {
        (Some(free), Some(limit)) => Some(free.min(limit)),
        (free, limit) => free.or(limit),
    }
}

/// Free memory where the model will live: sysinfo's available memory for the CPU; the
/// driver's free memory for CUDA. `None` when it cannot be known (Metal).
pub fn free_memory(device: &Device) -> Option<u64> {
    match device {
        Device::Cpu => {
            let mut sys = sysinfo::System::new();
            sys.refresh_memory();
            Some(sys.available_memory())
        }
        Device::Cuda(_) => cuda_free(device),
        _ => None,
    }
}

#[cfg(feature = "cuda")]
fn cuda_free(device: &Device) -> Option<u64> {
    // The driver reports for the current context; candle's device binds it.
    let cuda = device.as_cuda_device().ok()?;
    cuda.cuda_stream().context().bind_to_thread().ok()?;
    moshi::candle::cuda_backend::cudarc::driver::result::mem_get_info()
        .ok()
        .map(|(free, _total)| free as u64)
}

#[cfg(not(feature = "cuda"))]
fn cuda_free(_device: &Device) -> Option<u64> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;
    const MIB: u64 = 1 << 20;

    fn moshiko_q8() -> (lm::Config, Vec<TensorEntry>) {
        let cfg = lm::Config::v0_1_streaming(8);
        let table = census(&cfg, true, 4).unwrap();
        (cfg, table)
    }

    fn gpu(budget: u64, mimi: u64) -> Target {
        Target {
            compute_bytes: 4,
            kv_bytes: 2,
            split: true,
            mimi_bytes: mimi,
            budget,
            host_budget: None,
            context: 3000,
            exact: false,
            sessions: 1,
        }
    }

    #[test]
    fn moshiko_kv_cache_is_a_mebibyte_a_step_in_f32_half_that_in_bf16() {
        let cfg = lm::Config::v0_1_streaming(8);
        assert_eq!(kv_bytes_per_step(&cfg, 32, 4), 2 * 32 * 4096 * 4);
        // Kyutai's default context of 3000 steps: 3 GiB before a word is said.
        assert_eq!(kv_bytes_per_step(&cfg, 32, 4) * 3000, 3000 * MIB);
        // q8 on CUDA: moshi's attention runs in bf16 (`matmul_dtype`), and so does its cache.
        assert_eq!(kv_bytes_per_step(&cfg, 32, 2) * 3000, 1500 * MIB);
    }

    #[test]
    fn the_census_matches_the_official_q8_file() {
        // kyutai/moshiko-candle-q8 model.q8.gguf is 8.17 GB on the Hub.
        let (_, table) = moshiko_q8();
        let stored: u64 = table.iter().map(|t| t.stored.bytes(t.elems)).sum();
        eprintln!(
            "census of moshiko q8: {} tensors, {stored} bytes",
            table.len()
        );
        assert!((8_100_000_000..8_250_000_000).contains(&stored), "{stored}");
        // 32 layers of the temporal transformer, 8 depformer slices.
        assert!(table
            .iter()
            .any(|t| t.name.starts_with("transformer.layers.31.")));
        assert!(!table
            .iter()
            .any(|t| t.name.starts_with("transformer.layers.32.")));
        assert!(table.iter().any(|t| t.name == "depformer.7.emb.weight"));
    }

    #[test]
    fn the_published_mimi_is_a_third_of_a_gib_loaded() {
        let b = mimi_bytes(&moshi::mimi::Config::v0_1(Some(8))).unwrap();
        eprintln!("Mimi (8 codebooks) loaded: {b} bytes");
        // The file is 385 MB with all 32 codebooks; loaded with 8, a little less.
        assert!((300_000_000..385_000_000).contains(&b), "{b}");
    }

    /// The 8 GB question with the official moshiko q8 tensors. On a card sold as 8 GB
    /// (8 GiB) the CUDA context takes about 0.3-0.5 GiB before we can ask; a desktop on
    /// the same card takes more. Both start: embeddings stay on the host, and when the
    /// rest still does not fit, the fewest leading layers follow them.
    #[test]
    fn moshiko_q8_starts_on_an_8_gib_gpu() {
        let (cfg, table) = moshiko_q8();
        let mimi = mimi_bytes(&moshi::mimi::Config::v0_1(Some(8))).unwrap();
        // What moshi 0.6.4's own LmModel would put on the device: everything, embeddings
        // dequantized to f32. That alone is past 8 GiB: the reason for `PlacedLm`.
        let all_on_device: u64 = table
            .iter()
            .map(|t| resident_bytes(&t.name, t.stored, t.elems, Home::Device, 4))
            .sum();
        eprintln!(
            "moshi's LmModel on the device: {:.2} GiB",
            all_on_device as f64 / GIB as f64
        );
        assert!(all_on_device > 8 * GIB);
        // Free after the CUDA context: a headless card, a lighter and a busier desktop.
        for free in [7_800 * MIB, 7_600 * MIB, 7_000 * MIB] {
            let p = plan(&cfg, &table, gpu(free, mimi)).unwrap_or_else(|e| panic!("{free}: {e}"));
            eprintln!(
                "{:.2} GiB free: {} host layers, context {} ({:.0} s): {}",
                free as f64 / GIB as f64,
                p.placement.host_layers,
                p.context,
                p.context as f64 * 0.08,
                p.explain()
            );
            assert!(p.total() <= free);
            assert!(p.context >= MIN_CONTEXT);
            assert!(p.placement.host_layers <= 6, "{}", p.placement.host_layers);
            // One layer fewer on the host would not have fitted a useful context.
            if p.placement.host_layers > 0 {
                let fewer = Placement {
                    host_layers: p.placement.host_layers - 1,
                };
                let dev = residency(&table, fewer, 4).device + mimi + RESERVE_BYTES + p.activations;
                assert!(
                    dev + kv_bytes_per_step(&cfg, 32 - fewer.host_layers, 2) * MIN_CONTEXT as u64
                        > free
                );
            }
        }
        // With a little more room everything but the embeddings is on the device.
        let p = plan(&cfg, &table, gpu(8 * GIB + 512 * MIB, mimi)).unwrap();
        eprintln!("8.50 GiB free: context {}: {}", p.context, p.explain());
        assert_eq!(p.placement.host_layers, 0);
        // 10 GiB holds Kyutai's full default context (a bf16 cache on CUDA: 1.5 GiB).
        assert_eq!(
            plan(&cfg, &table, gpu(10 * GIB, mimi)).unwrap().context,
            3000
        );
    }

    #[test]
    fn the_host_must_hold_what_moves_there() {
        let (cfg, table) = moshiko_q8();
        let t = Target {
            host_budget: Some(GIB),
            ..gpu(16 * GIB, 0)
        };
        let err = plan(&cfg, &table, t).unwrap_err();
        assert!(
            err.starts_with("the host has 1.00 GiB free but needs 1.9")
                && err.contains("for the embeddings:"),
            "{err}"
        );
        // Staging: moshiko's largest part is its 4-layer stack or its depformer and head.
        let staged = largest_part(&table, Placement::default());
        eprintln!("largest staged part: {}", size(staged));
        assert!((800_000_000..1_000_000_000).contains(&staged), "{staged}");
        assert!(plan(
            &cfg,
            &table,
            Target {
                host_budget: Some(3 * GIB),
                ..t
            }
        )
        .is_ok());
    }

    #[test]
    fn context_shrinks_with_the_budget_and_never_exceeds_what_was_asked() {
        let (cfg, table) = moshiko_q8();
        let small = plan(&cfg, &table, gpu(9 * GIB, 0)).unwrap();
        let big = plan(&cfg, &table, gpu(10 * GIB, 0)).unwrap();
        assert_eq!(
            (small.placement.host_layers, big.placement.host_layers),
            (0, 0)
        );
        assert!(small.context < big.context);
        let t = Target {
            context: 500,
            ..gpu(64 * GIB, 0)
        };
        assert_eq!(plan(&cfg, &table, t).unwrap().context, 500);
    }

    #[test]
    fn sessions_that_share_the_weights_each_get_a_kv_cache_and_one_copy_of_the_weights() {
        let (cfg, table) = moshiko_q8();
        let roomy = 64 * GIB;
        let one = plan(&cfg, &table, gpu(roomy, 0)).unwrap();
        let four = plan(
            &cfg,
            &table,
            Target {
                sessions: 4,
                ..gpu(roomy, 0)
            },
        )
        .unwrap();
        // The weights once; the caches and activations four times.
        assert_eq!(four.weights, one.weights);
        assert_eq!(four.context, one.context);
        assert_eq!(four.kv_cache(), 4 * one.kv_cache());
        assert_eq!(four.activations, 4 * one.activations);
        assert_eq!(
            four.total() - one.total(),
            3 * (one.kv_cache() + one.activations)
        );
        assert!(
            four.explain().contains("4 sessions x"),
            "{}",
            four.explain()
        );
        // Where one session's cache fits whole, four get a shorter context each.
        let tight = one.total() + GIB;
        let one_tight = plan(&cfg, &table, gpu(tight, 0)).unwrap();
        let four_tight = plan(
            &cfg,
            &table,
            Target {
                sessions: 4,
                ..gpu(tight, 0)
            },
        )
        .unwrap();
        assert!(four_tight.context < one_tight.context);
        assert!(four_tight.total() <= tight);
    }

    #[test]
    fn an_exact_context_moves_layers_rather_than_shrink() {
        let (cfg, table) = moshiko_q8();
        let free = 9 * GIB;
        let loose = plan(&cfg, &table, gpu(free, 0)).unwrap();
        let t = Target {
            context: 3000,
            exact: true,
            sessions: 1,
            ..gpu(free, 0)
        };
        let exact = plan(&cfg, &table, t).unwrap();
        assert!(loose.context < 3000 && exact.context == 3000);
        assert!(exact.placement.host_layers > loose.placement.host_layers);
        assert!(exact.total() <= free);
    }

    #[test]
    fn on_one_memory_nothing_moves_and_everything_counts() {
        let (cfg, table) = moshiko_q8();
        let cpu = Target {
            split: false,
            ..gpu(64 * GIB, 0)
        };
        let p = plan(&cfg, &table, cpu).unwrap();
        assert_eq!(p.placement.host_layers, 0);
        assert_eq!(p.weights.host, 0);
        let err = plan(
            &cfg,
            &table,
            Target {
                budget: 6 * GIB,
                ..cpu
            },
        )
        .unwrap_err();
        assert!(
            err.contains("does not fit:") && !err.contains("even with"),
            "{err}"
        );
    }

    #[test]
    fn a_budget_below_the_non_layer_weights_is_refused_with_the_arithmetic() {
        let (cfg, table) = moshiko_q8();
        let err = plan(&cfg, &table, gpu(GIB / 2, 0)).unwrap_err();
        assert!(
            err.contains("even with all 32 layers on the host") && err.contains("GiB of 512.0 MiB"),
            "{err}"
        );
    }

    #[test]
    fn demo_sized_models_fit_anywhere() {
        let cfg = super::super::config::demo_lm();
        let table = census(&cfg, false, 4).unwrap();
        let t = Target {
            split: false,
            mimi_bytes: 4 << 20,
            budget: GIB,
            host_budget: None,
            context: cfg.transformer.context,
            exact: false,
            sessions: 1,
            compute_bytes: 4,
            kv_bytes: 4,
        };
        let p = plan(&cfg, &table, t).unwrap();
        assert_eq!(p.context, cfg.transformer.context);
    }

    /// PersonaPlex is moshiko with a 16-step depformer: 8 more depformer slices, about
    /// 0.7 B parameters. bf16 16.7 GB (moshiko 15.4), q8 8.9 GB (moshiko 8.2).
    #[test]
    fn personaplex_is_moshiko_plus_eight_depformer_slices() {
        let bytes = |cfg: &lm::Config, q8: bool, dense: u64| -> u64 {
            census(cfg, q8, dense)
                .unwrap()
                .iter()
                .map(|t| t.stored.bytes(t.elems))
                .sum()
        };
        let (ko, plex) = (
            lm::Config::v0_1_streaming(8),
            lm::Config::v0_1_streaming(16),
        );
        let (ko_bf16, plex_bf16) = (bytes(&ko, false, 2), bytes(&plex, false, 2));
        let (ko_q8, plex_q8) = (bytes(&ko, true, 4), bytes(&plex, true, 4));
        eprintln!(
            "PersonaPlex bf16 {plex_bf16} (moshiko {ko_bf16}), q8 {plex_q8} (moshiko {ko_q8})"
        );
        assert!(
            (16_600_000_000..16_900_000_000).contains(&plex_bf16),
            "{plex_bf16}"
        );
        assert!(
            (8_800_000_000..9_000_000_000).contains(&plex_q8),
            "{plex_q8}"
        );
        let table = census(&plex, true, 4).unwrap();
        assert!(table.iter().any(|t| t.name == "depformer.15.emb.weight"));
        // q8 on a 12 GB card (about 11.5 GiB free): every layer on the GPU, a long context.
        let mimi = mimi_bytes(&moshi::mimi::Config::v0_1(Some(8))).unwrap();
        let p = plan(&plex, &table, gpu(11_500 * MIB, mimi)).unwrap();
        eprintln!("PersonaPlex q8, 11.5 GiB free: {}", p.explain());
        assert_eq!(p.placement.host_layers, 0);
        assert!(p.context >= 1000, "{}", p.context);
        // On a 10 GB card (9.3 GiB free) it starts, with a shorter context or host layers.
        let p = plan(&plex, &table, gpu(9_300 * MIB, mimi)).unwrap();
        eprintln!(
            "PersonaPlex q8, 9.3 GiB free: {} host layers, {}",
            p.placement.host_layers,
            p.explain()
        );
        assert!(p.total() <= 9_300 * MIB && p.context >= MIN_CONTEXT);
        // bf16 needs a 24 GB card.
        let bf16 = census(&plex, false, 2).unwrap();
        let t = Target {
            compute_bytes: 2,
            kv_bytes: 2,
            ..gpu(22 * GIB, mimi)
        };
        let p = plan(&plex, &bf16, t).unwrap();
        eprintln!("PersonaPlex bf16, 22 GiB free: {}", p.explain());
        assert_eq!(p.placement.host_layers, 0);
    }
}
