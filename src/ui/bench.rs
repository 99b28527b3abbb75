//! `assistant bench ui`: render time per frame at 80x24 and 200x60, and the UI
//! thread's CPU time while idle and while audio flows.

use super::clock::Clock;
use super::context::UiContext;
use super::event::AppEvent;
use super::main_loop::run_main_loop_report;
use super::render::render;
use super::state::UiState;
use crate::audio::meters::Meters;
use crate::bus::ModelInfo;
use crate::bus::{Endpoint, EngineEvent, StepStats};
use anyhow::Result;
use ratatui::backend::TestBackend;
use ratatui::Terminal;
use std::sync::Arc;
use std::time::{Duration, Instant};

const FRAMES: usize = 2000;

pub fn bench_ui() -> Result<()> {
    let profile = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    println!("ui render, busy screen (200-turn transcript, full visualizer), {profile} build:");
    for (w, h) in [(80, 24), (200, 60)] {
        let r = render_times(w, h)?;
        println!(
            "  {w:>3}x{h:<3} frame (render + diff + backend)  mean {:>6.1} µs   p50 {:>6.1} µs   p99 {:>6.1} µs",
            r.frame.mean, r.frame.p50, r.frame.p99
        );
        println!(
            "  {w:>3}x{h:<3} render alone into a buffer     mean {:>6.1} µs   p50 {:>6.1} µs   p99 {:>6.1} µs",
            r.render.mean, r.render.p50, r.render.p99
        );
    }
    let sw = switch_times()?;
    println!(
        "  persona switch (Tab: state update + next frame drawn, 80x24, busy screen)  mean {:>6.1} µs   p50 {:>6.1} µs   p99 {:>6.1} µs",
        sw.mean, sw.p50, sw.p99
    );
    println!("ui thread CPU (main loop on TestBackend 80x24):");
    for (label, audio) in [("idle", false), ("audio flowing", true)] {
        let c = loop_cpu(Duration::from_secs(3), audio)?;
        match c.cpu {
            Some(cpu) => println!(
                "  {label:<14} {:>6.3}% of one core ({:.2} ms CPU in {:.1} s)   {} frames drawn ({:.1}/s{}), {} meter samples",
                100.0 * cpu.as_secs_f64() / c.wall.as_secs_f64(),
                cpu.as_secs_f64() * 1e3,
                c.wall.as_secs_f64(),
                c.draws,
                c.draws as f64 / c.wall.as_secs_f64(),
                if audio { "; target 15-30" } else { "; target 0" },
                c.samples
            ),
            None => println!("  {label:<14} thread CPU time is not available on this platform"),
        }
    }
    Ok(())
}

/// From a Tab press to the frame that shows the next persona, cycling through all.
fn switch_times() -> Result<Spread> {
    use ratatui::crossterm::event::{KeyCode, KeyEvent};
    let mut state = busy_state();
    let mut terminal = Terminal::new(TestBackend::new(80, 24))?;
    terminal.draw(|f| render(&state, f))?;
    let mut micros = Vec::with_capacity(FRAMES / 4);
    for _ in 0..FRAMES / 4 {
        let t = Instant::now();
        let update = state.apply(AppEvent::Key(KeyEvent::from(KeyCode::Tab)));
        terminal.draw(|f| render(&state, f))?;
        micros.push(t.elapsed().as_secs_f64() * 1e6);
        std::hint::black_box(update);
    }
    Ok(Spread::of(micros))
}

struct Spread {
    mean: f64,
    p50: f64,
    p99: f64,
}

impl Spread {
    fn of(mut micros: Vec<f64>) -> Self {
        let mean = micros.iter().sum::<f64>() / micros.len() as f64;
        micros.sort_by(f64::total_cmp);
        let pct = |p: f64| micros[((micros.len() - 1) as f64 * p) as usize];
        Self {
            mean,
            p50: pct(0.5),
            p99: pct(0.99),
        }
    }
}

struct RenderTimes {
    /// `Terminal::draw`: render, diff against the last frame, write the changes.
    frame: Spread,
    /// `render::draw` into a cleared buffer.
    render: Spread,
}

fn quiet_context() -> UiContext {
    UiContext {
        no_color: false,
        ..UiContext::new(
            Arc::new(Meters::default()),
            Some("/tmp/assistant.log".into()),
        )
    }
}

fn stats(i: u64, mic: f32, out: f32) -> StepStats {
    StepStats {
        step_index: i,
        step_ms: 41.0,
        rtf: 0.51,
        latency_ms: 160.0,
        mic_rms: mic,
        out_rms: out,
        ..Default::default()
    }
}

/// A long conversation, speaking now, with a full level history.
fn busy_state() -> UiState {
    let (clock, hand) = Clock::manual();
    let mut s = UiState::new(&UiContext {
        clock,
        ..quiet_context()
    });
    s.apply(
        EngineEvent::Endpoints {
            input: Endpoint::Device("mic".into()),
            output: Endpoint::Device("speaker".into()),
        }
        .into(),
    );
    s.apply(
        EngineEvent::ModelReady {
            info: ModelInfo {
                name: "demo".into(),
                device: "cpu".into(),
                dtype: "f32".into(),
            },
            load_ms: 900.0,
        }
        .into(),
    );
    s.apply(AppEvent::Memory(200 << 20));
    let words = "so the thing about talking to a machine that listens while it speaks is that turns overlap".split(' ');
    let mut step = 0;
    let mut go = |s: &mut UiState, mic: f32, out: f32, word: Option<&str>| {
        step += 1;
        hand.advance(Duration::from_millis(80));
        s.apply(EngineEvent::Step(stats(step, mic, out)).into());
        if let Some(w) = word {
            s.apply(EngineEvent::Text(format!(" {w}")).into());
        }
        s.apply(AppEvent::Levels {
            mic: mic * 2.0,
            out: out * 2.0,
        });
    };
    for _turn in 0..200 {
        for w in words.clone() {
            go(&mut s, 0.0, 0.1, Some(w));
        }
        for _ in 0..10 {
            go(&mut s, 0.0, 0.0, None);
        }
        for _ in 0..10 {
            go(&mut s, 0.08, 0.0, None);
        }
        for _ in 0..10 {
            go(&mut s, 0.0, 0.0, None);
        }
    }
    for w in words {
        go(&mut s, 0.0, 0.1, Some(w));
    }
    s
}

fn render_times(w: u16, h: u16) -> Result<RenderTimes> {
    let mut state = busy_state();
    state.apply(AppEvent::Resize(w, h));
    let mut terminal = Terminal::new(TestBackend::new(w, h))?;
    let area = ratatui::layout::Rect::new(0, 0, w, h);
    let mut buf = ratatui::buffer::Buffer::empty(area);
    let (mut frame, mut render_only) = (Vec::with_capacity(FRAMES), Vec::with_capacity(FRAMES));
    for i in 0..FRAMES + 100 {
        // A new level sample every frame, as while audio flows.
        let level = 0.05 + 0.04 * ((i % 13) as f32 / 13.0);
        state.apply(AppEvent::Levels {
            mic: level,
            out: level * 2.0,
        });
        let t = Instant::now();
        terminal.draw(|f| render(&state, f))?;
        let t_frame = t.elapsed();
        buf.reset();
        let t = Instant::now();
        super::render::draw(&state, area, &mut buf);
        let t_render = t.elapsed();
        if i >= 100 {
            frame.push(t_frame.as_secs_f64() * 1e6);
            render_only.push(t_render.as_secs_f64() * 1e6);
        }
    }
    Ok(RenderTimes {
        frame: Spread::of(frame),
        render: Spread::of(render_only),
    })
}

struct LoopCpu {
    cpu: Option<Duration>,
    wall: Duration,
    draws: u64,
    samples: u64,
}

/// Runs the main loop for `wall`, fed like a live session when `audio`, and
/// measures the CPU time of its thread.
fn loop_cpu(wall: Duration, audio: bool) -> Result<LoopCpu> {
    let ctx = quiet_context();
    let meters = ctx.meters.clone();
    let (tx, rx) = crossbeam_channel::unbounded();
    let (cmd_tx, _cmd_rx) = crossbeam_channel::unbounded();
    tx.send(
        EngineEvent::ModelReady {
            info: ModelInfo::default(),
            load_ms: 0.0,
        }
        .into(),
    )?;
    let ui = std::thread::spawn(move || -> Result<_> {
        let mut terminal = Terminal::new(TestBackend::new(80, 24))?;
        let before = thread_cpu_time();
        let t0 = Instant::now();
        let report = run_main_loop_report(&mut terminal, rx, cmd_tx, ctx)?;
        let cpu = thread_cpu_time()
            .zip(before)
            .map(|(a, b)| a.saturating_sub(b));
        Ok((report, cpu, t0.elapsed()))
    });
    let start = Instant::now();
    let mut i = 0u64;
    while start.elapsed() < wall {
        if audio {
            // Callbacks every 10 ms, an engine step every 80 ms.
            meters.raise_mic(0.1 + 0.05 * (i % 5) as f32);
            meters.raise_out(0.2);
            if i.is_multiple_of(8) {
                tx.send(EngineEvent::Step(stats(i / 8, 0.05, 0.1)).into())?;
            }
        }
        i += 1;
        std::thread::sleep(Duration::from_millis(10));
    }
    drop(tx);
    let (report, cpu, wall) = ui
        .join()
        .map_err(|_| anyhow::anyhow!("ui thread panicked"))??;
    Ok(LoopCpu {
        cpu,
        wall,
        draws: report.draws,
        samples: report.level_samples,
    })
}

/// CPU time of the calling thread: nanoseconds from schedstat where the kernel
/// keeps it, else clock ticks from stat (Linux only).
fn thread_cpu_time() -> Option<Duration> {
    if let Ok(s) = std::fs::read_to_string("/proc/thread-self/schedstat") {
        if let Some(ns) = s
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<u64>().ok())
        {
            return Some(Duration::from_nanos(ns));
        }
    }
    let stat = std::fs::read_to_string("/proc/thread-self/stat").ok()?;
    // Fields after the parenthesised name; utime and stime are the 14th and 15th.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

#[cfg(test)]
mod tests {
    #[test]
    fn thread_cpu_time_moves_when_the_thread_works() {
        let Some(a) = super::thread_cpu_time() else {
            return;
        };
        let t = std::time::Instant::now();
        let mut x = 0u64;
        while t.elapsed() < std::time::Duration::from_millis(60) {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        std::hint::black_box(x);
        let b = super::thread_cpu_time().unwrap();
        assert!(b > a, "{a:?} -> {b:?}");
    }
}
