//! moshiko q8 at full size (random weights, the official tensor table) through the split
//! loader and `PlacedLm`: the file the memory plan counts is the file that loads, a GPU
//! load borrows little host memory on the way, and a real-size step runs. Writes an
//! 8.2 GB file, so it runs by hand:
//!
//! ASSISTANT_FULL_SIZE_DIR=/big/dir cargo test --release --test model_full_size -- --ignored --nocapture

use assistant::bus::Sampling;
use assistant::models::moshi::files::check_gguf;
use assistant::models::moshi::gguf_write::{self, GgufEntry};
use assistant::models::moshi::lm_sources::{split_gguf_sources, STACK_LAYERS};
use assistant::models::moshi::placed_lm::PlacedLm;
use assistant::models::moshi::placement::{Placement, Stored};
use assistant::models::moshi::sizing::{census, residency, table_from_headers};
use assistant::models::moshi::stepper::Stepper;
use moshi::candle::quantized::{GgmlDType, QTensor};
use moshi::candle::{Device, Tensor};
use std::io::Write;
use std::time::Instant;

fn status_kib(field: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    s.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap()
        .parse()
        .unwrap()
}

fn gb(kib: u64) -> f64 {
    kib as f64 * 1024.0 / 1e9
}

#[test]
#[ignore]
fn moshiko_q8_at_full_size() {
    let dir =
        std::env::var_os("ASSISTANT_FULL_SIZE_DIR").map_or_else(std::env::temp_dir, Into::into);
    let path = dir.join("moshiko-layout.q8.gguf");
    let cfg = moshi::lm::Config::v0_1_streaming(8);
    let table = census(&cfg, true, 4).unwrap();
    let dtype = |s: Stored| {
        if s == Stored::Q8_0 {
            GgmlDType::Q8_0
        } else {
            GgmlDType::F32
        }
    };
    let entries: Vec<_> = table
        .iter()
        .map(|t| GgufEntry {
            name: &t.name,
            dims: &t.dims,
            dtype: dtype(t.stored),
        })
        .collect();

    // 1. Write it a tensor at a time.
    let t = Instant::now();
    let mut f = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    f.write_all(&gguf_write::header(&entries)).unwrap();
    for e in &entries {
        let fan_in = if e.dims.len() == 2 { e.dims[1] } else { 1 };
        let std = if e.dims.len() == 2 {
            1.0 / (fan_in as f64).sqrt()
        } else {
            0.05
        };
        let mean = if e.dims.len() == 2 { 0.0 } else { 1.0 };
        let values = Tensor::randn(mean as f32, std as f32, e.dims, &Device::Cpu).unwrap();
        let mut data = QTensor::quantize(&values, e.dtype)
            .unwrap()
            .data()
            .unwrap()
            .into_owned();
        assert_eq!(data.len() as u64, e.bytes());
        gguf_write::pad(&mut data);
        f.write_all(&data).unwrap();
    }
    f.flush().unwrap();
    drop(f);
    let file_bytes = std::fs::metadata(&path).unwrap().len();
    eprintln!(
        "wrote {} ({file_bytes} bytes, {} tensors) in {:.0} s",
        path.display(),
        entries.len(),
        t.elapsed().as_secs_f64()
    );

    // 2. Its header is the census the memory plan used for the official model.
    let from_file = table_from_headers(&check_gguf(&path).unwrap());
    let stored = |t: &[assistant::models::moshi::sizing::TensorEntry]| {
        t.iter().map(|e| e.stored.bytes(e.elems)).sum::<u64>()
    };
    assert_eq!(stored(&from_file), stored(&table));
    assert_eq!(stored(&table), 8_169_374_464);

    // 3. The split load of the 8 GiB plan (2 host layers): time, what it holds, and the
    // most the process held on the way (VmHWM, reset first).
    let placement = Placement { host_layers: 2 };
    let plan = residency(&table, placement, 4);
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let before = status_kib("VmRSS:");
    let t = Instant::now();
    let src = split_gguf_sources(
        &path,
        placement,
        32,
        STACK_LAYERS,
        &Device::Cpu,
        "lm",
        &mut |_| {},
        &Default::default(),
    )
    .unwrap();
    let lm = PlacedLm::new(&cfg, src).unwrap();
    let load_s = t.elapsed().as_secs_f64();
    let (after, peak) = (status_kib("VmRSS:"), status_kib("VmHWM:"));
    let held = gb(after - before);
    let expected = (plan.device + plan.host) as f64 / 1e9;
    eprintln!(
        "loaded in {load_s:.1} s: process holds {held:.2} GB more (plan: {:.2} GB device + {:.2} GB host = {expected:.2} GB); peak {:.2} GB over that",
        plan.device as f64 / 1e9,
        plan.host as f64 / 1e9,
        gb(peak - after)
    );
    // The plan counts what the load holds, within allocator slack.
    assert!(
        (held - expected).abs() < 0.05 * expected,
        "held {held:.2} GB, plan {expected:.2} GB"
    );
    // One stack's buffer at a time, not the model's.
    assert!(
        gb(peak - after) < 1.5,
        "peak {:.2} GB over the loaded size",
        gb(peak - after)
    );

    // 4. Real-size steps on this CPU.
    let gen = moshi::lm_generate_multistream::Config::v0_1();
    let mut stepper = Stepper::new(lm, gen.clone());
    let mut samplers = assistant::models::moshi::sampling_for_tests(&Sampling::default());
    let mut times = Vec::new();
    for step in 0..8u32 {
        let codes: Vec<u32> = (0..8).map(|c| (step * 31 + c * 17) % 2048).collect();
        let t = Instant::now();
        let text = stepper.step(&codes, &mut samplers).unwrap();
        times.push(t.elapsed().as_secs_f64() * 1e3);
        assert!(text < 32000);
    }
    times.sort_by(f64::total_cmp);
    eprintln!("moshiko q8 LM step on the CPU (2 of its layers counted as host, all here): median {:.0} ms over {} steps", times[times.len() / 2], times.len());
    if std::env::var_os("ASSISTANT_FULL_SIZE_KEEP").is_none() {
        let _ = std::fs::remove_file(&path);
    }
}
