//! `--device auto|cpu|cuda[:N]|metal`: parsing, selection, and whether a model can keep
//! real time there.

use super::error::ModelLoadError;
use moshi::candle::Device;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceChoice {
    Auto,
    Cpu,
    Cuda(usize),
    Metal,
}

impl std::str::FromStr for DeviceChoice {
    type Err = ModelLoadError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim().to_ascii_lowercase();
        let bad = || {
            ModelLoadError::new(
                format!("--device {s:?} is not a device"),
                "use auto, cpu, cuda, cuda:N (N a GPU index) or metal",
            )
        };
        match s.as_str() {
            "auto" => Ok(Self::Auto),
            "cpu" => Ok(Self::Cpu),
            "cuda" | "gpu" => Ok(Self::Cuda(0)),
            "metal" | "mps" => Ok(Self::Metal),
            _ => match s.strip_prefix("cuda:") {
                Some(n) => n.parse().map(Self::Cuda).map_err(|_| bad()),
                None => Err(bad()),
            },
        }
    }
}

/// The selected device and its display name ("cpu", "cuda:0", "metal").
pub fn select(choice: DeviceChoice) -> Result<(Device, String), ModelLoadError> {
    match choice {
        DeviceChoice::Cpu => Ok((Device::Cpu, "cpu".into())),
        DeviceChoice::Auto => {
            if moshi::candle::utils::cuda_is_available() {
                if let Ok(d) = Device::new_cuda(0) {
                    return Ok((d, "cuda:0".into()));
                }
            }
            if moshi::candle::utils::metal_is_available() {
                if let Ok(d) = Device::new_metal(0) {
                    return Ok((d, "metal".into()));
                }
            }
            Ok((Device::Cpu, "cpu".into()))
        }
        DeviceChoice::Cuda(n) => {
            if !moshi::candle::utils::cuda_is_available() {
                return Err(ModelLoadError::new(
                    "--device cuda: this build has no CUDA support",
                    "rebuild with `cargo build --release --features cuda`, or use --device cpu",
                ));
            }
            Device::new_cuda(n)
                .map(|d| (d, format!("cuda:{n}")))
                .map_err(|e| {
                    ModelLoadError::new(
                        format!("--device cuda:{n}: cannot open the GPU: {e}"),
                        "check nvidia-smi, or use --device cpu",
                    )
                })
        }
        DeviceChoice::Metal => {
            if !moshi::candle::utils::metal_is_available() {
                return Err(ModelLoadError::new(
                    "--device metal: this build has no Metal support",
                    "rebuild with `cargo build --release --features metal`, or use --device cpu",
                ));
            }
            Device::new_metal(0)
                .map(|d| (d, "metal".into()))
                .map_err(|e| {
                    ModelLoadError::new(
                        format!("--device metal: cannot open the GPU: {e}"),
                        "use --device cpu",
                    )
                })
        }
    }
}

/// Bytes an LM step reads whole: on the model's device, and on the host (layers moved
/// there to fit; `placement`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Streamed {
    pub device: u64,
    pub host: u64,
}

pub const CPU_BANDWIDTH: f64 = 15e9;
const GPU_BANDWIDTH: f64 = 300e9;

/// What one step costs where it runs, in ms: an LM step streams every weight once, so
/// it is bound by memory bandwidth; on the CPU the real Mimi alone takes ~100 ms a frame
/// (FACTS.md). The figures are deliberately rough: a conservative desktop CPU (~15 GB/s
/// effective) and GPU (~300 GB/s).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepEstimate {
    /// The LM, the layers on the host included.
    pub lm_ms: f64,
    /// Of `lm_ms`, the layers moved to the host.
    pub host_ms: f64,
    pub mimi_ms: f64,
}

impl StepEstimate {
    pub fn total_ms(&self) -> f64 {
        self.lm_ms + self.mimi_ms
    }
}

pub fn step_estimate(on_cpu: bool, lm: Streamed, real_size_mimi: bool) -> StepEstimate {
    let (bandwidth, mimi_ms) = if on_cpu {
        (CPU_BANDWIDTH, if real_size_mimi { 90.0 } else { 5.0 })
    } else {
        (GPU_BANDWIDTH, 5.0)
    };
    let host_ms = lm.host as f64 / CPU_BANDWIDTH * 1e3;
    StepEstimate {
        lm_ms: lm.device as f64 / bandwidth * 1e3 + host_ms,
        host_ms,
        mimi_ms,
    }
}

/// A warning when a model of this size cannot keep real time (80 ms a step) here.
pub fn realtime_warning(on_cpu: bool, lm: Streamed, real_size_mimi: bool) -> Option<String> {
    let e = step_estimate(on_cpu, lm, real_size_mimi);
    let (est, lm_ms, host_ms, mimi_ms) = (e.total_ms(), e.lm_ms, e.host_ms, e.mimi_ms);
    let host = if lm.host > 0 {
        format!(", of which ~{host_ms:.0} ms for the layers on the CPU")
    } else {
        String::new()
    };
    (est > 80.0).then(|| {
        format!(
            "this model needs about {est:.0} ms per 80 ms frame on {} (LM ~{lm_ms:.0} ms{host}, Mimi ~{mimi_ms:.0} ms): \
             it cannot keep up with real time, so input frames will be dropped",
            if on_cpu { "the CPU" } else { "this GPU" }
        )
    })
}

/// GPU memory in use on GPU 0 (bytes used, total), from NVML with the `nvml` feature.
#[cfg(feature = "nvml")]
pub fn gpu_memory() -> Result<(u64, u64), String> {
    let nvml = nvml_wrapper::Nvml::init().map_err(|e| format!("NVML: {e}"))?;
    let dev = nvml.device_by_index(0).map_err(|e| format!("NVML: {e}"))?;
    let m = dev.memory_info().map_err(|e| format!("NVML: {e}"))?;
    Ok((m.used, m.total))
}

/// Without the `nvml` feature GPU memory is not read.
#[cfg(not(feature = "nvml"))]
pub fn gpu_memory() -> Result<(u64, u64), String> {
    Err("n/a (built without the nvml feature)".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_device_strings() {
        assert_eq!("auto".parse::<DeviceChoice>().unwrap(), DeviceChoice::Auto);
        assert_eq!("CPU".parse::<DeviceChoice>().unwrap(), DeviceChoice::Cpu);
        assert_eq!(
            "cuda".parse::<DeviceChoice>().unwrap(),
            DeviceChoice::Cuda(0)
        );
        assert_eq!(
            "cuda:3".parse::<DeviceChoice>().unwrap(),
            DeviceChoice::Cuda(3)
        );
        assert_eq!(
            "metal".parse::<DeviceChoice>().unwrap(),
            DeviceChoice::Metal
        );
        assert!("cuda:x".parse::<DeviceChoice>().is_err());
        assert!("tpu".parse::<DeviceChoice>().is_err());
    }

    #[test]
    fn auto_falls_back_to_cpu_without_gpu_features() {
        let (_, name) = select(DeviceChoice::Auto).unwrap();
        if !moshi::candle::utils::cuda_is_available() && !moshi::candle::utils::metal_is_available()
        {
            assert_eq!(name, "cpu");
        }
    }

    #[test]
    fn warns_for_7b_on_cpu_not_for_demo() {
        let lm = |device| Streamed { device, host: 0 };
        assert!(realtime_warning(true, lm(8_000_000_000), true).is_some());
        assert!(realtime_warning(true, lm(4_000_000), false).is_none());
    }

    #[test]
    fn on_a_gpu_the_layers_moved_to_the_host_are_what_costs() {
        // moshiko q8 with 2 of 32 layers on the host (the 8 GiB plan): ~25 ms on the GPU
        // plus ~29 ms on the CPU fits a frame; with 16 layers there it does not.
        let layer = 218_000_000;
        assert!(realtime_warning(
            false,
            Streamed {
                device: 7_400_000_000,
                host: 2 * layer
            },
            true
        )
        .is_none());
        let w = realtime_warning(
            false,
            Streamed {
                device: 3_900_000_000,
                host: 16 * layer,
            },
            true,
        )
        .expect("a warning");
        assert!(
            w.contains("for the layers on the CPU") && w.contains("this GPU"),
            "{w}"
        );
    }

    #[test]
    fn gpu_memory_says_why_it_is_missing() {
        if cfg!(not(feature = "nvml")) {
            assert!(gpu_memory().unwrap_err().starts_with("n/a"));
        }
    }
}
