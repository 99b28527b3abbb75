//! The audio callbacks are real-time safe: no allocation (this test binary uses
//! assert_no_alloc's aborting allocator), and xruns are counted. The checker is compiled
//! out of release builds (its `disable_release` feature), so these run in debug only.
#![cfg(debug_assertions)]

use assistant::audio::device::{capture_callback, playback_callback};
use assistant::audio::meters::Meters;
use ringbuf::traits::{Producer, Split};
use ringbuf::HeapRb;
use std::sync::atomic::AtomicBool;

#[global_allocator]
static ALLOC: assert_no_alloc::AllocDisabler = assert_no_alloc::AllocDisabler;

#[test]
fn callbacks_do_not_allocate_in_any_sample_format_or_buffer_size() {
    let meters = Meters::default();
    let (mut prod, mut cons) = HeapRb::<f32>::new(48_000).split();
    let started = AtomicBool::new(false);
    let i16s = vec![1000i16; 4096];
    let f32s = vec![0.25f32; 4096];
    let u8s = vec![200u8; 4096];
    let i24s = vec![cpal::I24::new(1 << 20).unwrap(); 4096];
    let mut out_i16 = vec![0i16; 4096];
    let mut out_f32 = vec![0f32; 4096];
    let mut out_u16 = vec![0u16; 4096];
    for size in [1usize, 64, 480, 512, 513, 1024, 4096] {
        assert_no_alloc::assert_no_alloc(|| {
            capture_callback(&i16s[..size], &mut prod, &meters);
            capture_callback(&f32s[..size], &mut prod, &meters);
            capture_callback(&u8s[..size], &mut prod, &meters);
            capture_callback(&i24s[..size], &mut prod, &meters);
            playback_callback(&mut out_i16[..size], &mut cons, &meters, &started);
            playback_callback(&mut out_f32[..size], &mut cons, &meters, &started);
            playback_callback(&mut out_u16[..size], &mut cons, &meters, &started);
        });
    }
    assert!(
        meters
            .callbacks_in
            .load(std::sync::atomic::Ordering::Relaxed)
            == 28
    );
}

#[test]
fn forced_overruns_and_underruns_are_counted() {
    let meters = Meters::default();
    let (mut prod, mut cons) = HeapRb::<f32>::new(1000).split();
    let started = AtomicBool::new(false);
    let block = vec![0.1f32; 400];
    // Nobody drains the capture ring: the third block overflows it.
    for _ in 0..5 {
        capture_callback(&block, &mut prod, &meters);
    }
    assert_eq!(meters.xruns_in(), 3, "blocks 3, 4 and 5 did not fit");
    // The playback side drains 1000 samples, then starves.
    let mut out = vec![0.0f32; 300];
    for _ in 0..5 {
        playback_callback(&mut out, &mut cons, &meters, &started);
    }
    assert_eq!(
        meters.xruns_out(),
        2,
        "the 4th callback is short, the 5th empty"
    );
    assert!(out.iter().all(|&s| s == 0.0), "silence on underrun");
    let _ = prod.try_push(0.0);
}

/// Run in a child process by the test below: it must abort.
#[test]
#[ignore = "negative control, run by allocation_inside_a_callback_is_caught"]
fn child_allocates_inside_assert_no_alloc() {
    if std::env::var_os("ASSISTANT_ALLOC_CHILD").is_none() {
        return;
    }
    let v = assert_no_alloc::assert_no_alloc(|| vec![1u8; 64]);
    println!("survived {}", v.len());
}

#[test]
fn allocation_inside_a_callback_is_caught() {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "child_allocates_inside_assert_no_alloc",
            "--nocapture",
        ])
        .env("ASSISTANT_ALLOC_CHILD", "1")
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "an allocation under assert_no_alloc must abort the debug build"
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains("survived"));
}
