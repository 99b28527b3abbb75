//! `scripts/gpu-check --cpu`: the GPU check's dry run, the script and every section of
//! `assistant bench gpu` at the small size on the CPU, so neither rots before a GPU is
//! lent. Every measurement must pass, and the CPU-only facts must hold: `PlacedLm` is
//! bit-identical to moshi's `LmModel` wherever its layers are, and a load that does not
//! fit the device ends on the CPU with the reason.

use serde_json::Value;
use std::process::Command;

#[test]
fn the_gpu_check_dry_run_passes_every_measurement() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let run = Command::new("bash")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/gpu-check"))
        .arg("--cpu")
        .env("ASSISTANT_BIN", env!("CARGO_BIN_EXE_assistant"))
        .env("OUT", &out)
        .env("GPU_CHECK_WORK", tmp.path().join("work"))
        .env("GPU_CHECK_STEPS", "2")
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success(), "the dry run failed:\n{log}");
    assert_eq!(
        std::fs::read_to_string(out.join("gpu-check.log")).unwrap(),
        log,
        "the log is the output"
    );

    let report = std::fs::read_to_string(out.join("gpu-check.jsonl")).unwrap();
    let lines: Vec<Value> = report
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let find = |check: &str| {
        lines
            .iter()
            .find(|l| l["check"] == check)
            .unwrap_or_else(|| panic!("no `{check}` in\n{report}"))
    };
    for check in [
        "libraries",
        "write q8",
        "write bf16",
        "free",
        "warmup",
        "load q8 whole device",
        "steps q8 whole device",
        "memory q8 whole device",
        "load q8 --max-memory 7.6",
        "steps q8 --max-memory 7.6",
        "memory q8 --max-memory 7.6",
        "headless",
        "placed host_layers=0",
        "placed host_layers=2",
        "placed host_layers=6",
        "load bf16 whole device",
        "steps bf16 whole device",
        "memory bf16 whole device",
        "fallback plan-refuses",
        "fallback driver-oom",
        "headless-max-memory",
        "personaplex",
        "batch",
        "cascade",
    ] {
        let l = find(check);
        assert_eq!(l["ok"], true, "{l}");
        assert!(
            log.contains(&format!("gpu-check {check}: ")),
            "no line for {check}"
        );
    }
    for l in &lines {
        assert_eq!(
            (&l["ok"], &l["device"]),
            (&Value::Bool(true), &Value::from("cpu")),
            "{l}"
        );
    }
    // The figures are real: measured, finite, and the same on both sides of the CPU run.
    for k in [0, 2, 6] {
        let l = find(&format!("placed host_layers={k}"));
        assert_eq!(l["bit_identical"], true, "{l}");
        assert!(l["placed_step_ms"].as_f64().unwrap() > 0.0, "{l}");
    }
    let steps = find("steps q8 whole device");
    assert!(
        steps["total_ms"].as_f64().unwrap() > 0.0 && steps["rtf"].as_f64().unwrap().is_finite(),
        "{steps}"
    );
    let degraded = find("fallback plan-refuses")["degraded"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        degraded
            .starts_with("running on CPU (cpu-as-device failed: out of memory on cpu-as-device"),
        "{degraded}"
    );
    assert_eq!(find("fallback driver-oom")["skipped"], true);
    let headless = &find("headless")["stats"];
    assert!(headless["frames_out"].as_u64().unwrap() > 50, "{headless}");
    let plex = find("personaplex");
    assert_eq!(plex["prefill_steps"], 152, "{plex}");
    assert_eq!(plex["pt_prefill_steps"], 152, "{plex}");
    assert!(
        plex["prefill_steps_per_s"].as_f64().unwrap() > 0.0,
        "{plex}"
    );
    assert!(plex["step_ms"].as_f64().unwrap() > 0.0, "{plex}");
    // serve --batch: the sessions one device holds, alone and batched, measured.
    let held = lines
        .iter()
        .find(|l| l["check"] == "batch" && l.get("alone").is_some())
        .unwrap_or_else(|| panic!("no batch summary in\n{report}"));
    assert!(held["alone"].as_u64().is_some() && held["batched"].as_u64().is_some());
    assert!(
        lines
            .iter()
            .filter(|l| l["check"] == "batch" && l["batched_ms"].as_f64().is_some_and(|v| v > 0.0))
            .count()
            >= 1,
        "{report}"
    );
    assert!(
        log.contains("gpu-check summary: ") && log.contains(" 0 failed; sections failed: none;"),
        "{log}"
    );
}
