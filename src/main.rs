use assistant::cli::{Cli, Cmd};
use clap::Parser;

// Allocation inside an audio callback aborts debug builds (see audio::device).
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
        Some(Cmd::ExportDemo(_)) | Some(Cmd::Bench(_)) => assistant::engine::moshi::run_model_command(&cli).unwrap_or_else(|| {
            eprintln!("error: not available in this build yet");
            1
        }),
        None if cli.run.headless => assistant::headless::run(&cli.run),
        None => {
            eprintln!("error: the TUI is not available in this build yet; use --headless");
            1
        }
    };
    std::process::exit(code);
}
