//! Seeded random weights for the demo model and the benchmarks.
//!
//! A `SimpleBackend` that invents each tensor the model constructors ask for, seeded by
//! (seed, tensor name) so the result does not depend on construction order, and records
//! it so the same tensors can be written out as a checkpoint. Scales follow FACTS.md:
//! weights ~ N(0, 1/fan_in), norm scales near 1, so random Mimi codes vary.

use moshi::candle::{DType, Device, Result, Shape, Tensor};
use moshi::candle_nn::var_builder::SimpleBackend;
use moshi::candle_nn::{Init, VarBuilder};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

pub type TensorMap = BTreeMap<String, Tensor>;

pub struct RandomBackend {
    seed: u64,
    made: Arc<Mutex<TensorMap>>,
}

impl RandomBackend {
    /// A VarBuilder whose tensors are invented on demand; `made` receives each one (f32,
    /// on the CPU) under its full name.
    pub fn var_builder(
        seed: u64,
        dtype: DType,
        device: &Device,
    ) -> (VarBuilder<'static>, Arc<Mutex<TensorMap>>) {
        let made = Arc::new(Mutex::new(TensorMap::new()));
        let backend = Self {
            seed,
            made: made.clone(),
        };
        (
            VarBuilder::from_backend(Box::new(backend), dtype, device.clone()),
            made,
        )
    }
}

impl SimpleBackend for RandomBackend {
    fn get(&self, s: Shape, name: &str, _: Init, dtype: DType, dev: &Device) -> Result<Tensor> {
        let mut made = self
            .made
            .lock()
            .map_err(|_| moshi::candle::Error::Msg("poisoned".into()))?;
        let t = match made.get(name) {
            Some(t) => t.clone(),
            None => {
                let values = init_values(self.seed, name, s.dims());
                let t = Tensor::from_vec(values, s.clone(), &Device::Cpu)?;
                made.insert(name.to_string(), t.clone());
                t
            }
        };
        if t.dims() != s.dims() {
            moshi::candle::bail!(
                "{name} asked for with two shapes: {:?} and {:?}",
                t.dims(),
                s.dims()
            )
        }
        t.to_dtype(dtype)?.to_device(dev)
    }

    fn get_unchecked(&self, name: &str, _: DType, _: &Device) -> Result<Tensor> {
        moshi::candle::bail!("random weights need a shape for {name}")
    }

    /// Conv layers look for `weight` before `weight_g`/`weight_v`; answering yes for plain
    /// weights gives the tensor names of the official checkpoints. Layer norms look for
    /// `alpha` before `weight`: answering no gives the official LayerNorm names.
    fn contains_tensor(&self, name: &str) -> bool {
        name.ends_with("weight")
    }
}

/// How a tensor's values are drawn, chosen by its role (read from its name) and shape.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Role {
    Const(f32),
    Normal { mean: f32, std: f32 },
    Uniform { lo: f32, hi: f32 },
}

fn role(name: &str, dims: &[usize]) -> Role {
    let leaf = name.rsplit('.').next().unwrap_or(name);
    let is_norm = name.contains("norm");
    match leaf {
        "alpha" => Role::Normal {
            mean: 1.0,
            std: 0.05,
        },
        "_initialized" => Role::Const(1.0),
        "cluster_usage" => Role::Uniform { lo: 1.0, hi: 1.1 },
        "embedding_sum" => Role::Normal {
            mean: 0.0,
            std: 1.0,
        },
        "scale" => Role::Const(0.1), // layer scale
        "bias" if is_norm => Role::Const(0.0),
        "bias" => Role::Normal {
            mean: 0.0,
            std: 0.01,
        },
        "weight" if is_norm && dims.len() == 1 => Role::Normal {
            mean: 1.0,
            std: 0.05,
        },
        _ if name.contains("emb.") || name.starts_with("text_emb") => Role::Normal {
            mean: 0.0,
            std: 1.0,
        },
        _ => {
            let fan_in: usize = match dims.len() {
                0 | 1 => 1,
                // conv-transpose weights are (in, out/groups, k): each output sees in*k/2
                3 if name.contains("convtr") => (dims[0] * dims[2] / 2).max(1),
                _ => dims[1..].iter().product(),
            };
            Role::Normal {
                mean: 0.0,
                std: 1.0 / (fan_in as f32).sqrt(),
            }
        }
    }
}

/// Seeded values: reproducible across runs, platforms and versions.
fn init_values(seed: u64, name: &str, dims: &[usize]) -> Vec<f32> {
    let n: usize = dims.iter().product();
    let mut rng = SplitMix::new(seed ^ fnv1a(name));
    match role(name, dims) {
        Role::Const(v) => vec![v; n],
        Role::Normal { mean, std } => (0..n).map(|_| mean + std * rng.normal()).collect(),
        Role::Uniform { lo, hi } => (0..n).map(|_| lo + (hi - lo) * rng.uniform()).collect(),
    }
}

/// Unseeded values drawn by candle's optimized kernels: for benchmark-sized models, where
/// reproducibility does not matter and the seeded path would take minutes.
fn fast_tensor(name: &str, s: &Shape, dtype: DType, dev: &Device) -> Result<Tensor> {
    let t = match role(name, s.dims()) {
        Role::Const(v) => Tensor::full(v, s.clone(), dev)?,
        Role::Normal { mean, std } => Tensor::randn(mean, std, s.clone(), dev)?,
        Role::Uniform { lo, hi } => Tensor::rand(lo, hi, s.clone(), dev)?,
    };
    t.to_dtype(dtype)
}

/// Like `RandomBackend`, without seeding or recording.
pub struct FastRandomBackend;

impl FastRandomBackend {
    pub fn var_builder(dtype: DType, device: &Device) -> VarBuilder<'static> {
        VarBuilder::from_backend(Box::new(Self), dtype, device.clone())
    }
}

impl SimpleBackend for FastRandomBackend {
    fn get(&self, s: Shape, name: &str, _: Init, dtype: DType, dev: &Device) -> Result<Tensor> {
        fast_tensor(name, &s, dtype, dev)
    }
    fn get_unchecked(&self, name: &str, _: DType, _: &Device) -> Result<Tensor> {
        moshi::candle::bail!("random weights need a shape for {name}")
    }
    fn contains_tensor(&self, name: &str) -> bool {
        name.ends_with("weight")
    }
}

fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    })
}

/// SplitMix64: tiny, and stable forever (unlike `StdRng`, whose algorithm may change).
struct SplitMix(u64);

impl SplitMix {
    fn new(seed: u64) -> Self {
        Self(seed)
    }
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    fn uniform(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32
    }
    /// Standard normal (Box-Muller).
    fn normal(&mut self) -> f32 {
        let u1 = ((self.next() >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
        let u2 = (self.next() >> 11) as f64 / (1u64 << 53) as f64;
        ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_depend_on_seed_and_name_only() {
        let a = init_values(1, "x.linear.weight", &[4, 8]);
        assert_eq!(a, init_values(1, "x.linear.weight", &[4, 8]));
        assert_ne!(a, init_values(2, "x.linear.weight", &[4, 8]));
        assert_ne!(a, init_values(1, "y.linear.weight", &[4, 8]));
        let std = (a.iter().map(|v| v * v).sum::<f32>() / a.len() as f32).sqrt();
        assert!(std > 0.1 && std < 0.7, "{std}");
    }
}
