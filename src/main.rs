use assistant::cli::{Cli, Cmd};
use clap::Parser;

// Allocation inside an audio callback aborts debug builds (see audio::device);
// release builds keep the system allocator untouched.
#[cfg(debug_assertions)]
#[global_allocator]
static ALLOC: assert_no_alloc::AllocDisabler = assert_no_alloc::AllocDisabler;

fn main() {
    let cli = Cli::parse();
    let _log = assistant::telemetry::init_logging(cli.run.log_file.as_deref());
    assistant::telemetry::install_panic_hook();
    let code = match &cli.command {
        Some(Cmd::Devices) => {
            print!("{}", assistant::audio::device::describe_devices());
            0
        }
        Some(Cmd::Bench(b)) if b.what == assistant::cli::BenchWhat::Audio => {
            let shared = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/audio");
            match assistant::bench::bench_audio(&shared) {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    1
                }
            }
        }
        Some(Cmd::Aec(args)) => match assistant::audio::aec::run_aec_command(args, cli.run.output.as_deref()) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("error: {e:#}");
                2
            }
        },
        Some(Cmd::ExportDemo(_)) | Some(Cmd::Bench(_)) => {
            eprintln!("error: not available in this build yet");
            1
        }
        None if cli.run.headless => assistant::headless::run(&cli.run),
        None => {
            eprintln!("error: the TUI is not available in this build yet; use --headless");
            1
        }
    };
    std::process::exit(code);
}
