use assistant::cli::Cmd;

// Allocation inside an audio callback aborts debug builds (see audio::device);
// release builds keep the system allocator untouched.
#[cfg(debug_assertions)]
#[global_allocator]
static ALLOC: assert_no_alloc::AllocDisabler = assert_no_alloc::AllocDisabler;

fn main() {
    let cli = assistant::cli::parse();
    let _log = assistant::telemetry::init_logging(cli.run.log_file.as_deref());
    assistant::telemetry::install_panic_hook();
    let code = match &cli.command {
        Some(Cmd::Devices) => {
            print!("{}", assistant::audio::device::describe_devices());
            0
        }
        Some(Cmd::Bench(b)) if b.what == assistant::cli::BenchWhat::Ui => {
            match assistant::ui::bench_ui() {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    1
                }
            }
        }
        Some(Cmd::Bench(b)) if b.what == assistant::cli::BenchWhat::Audio => {
            match assistant::app::bench::audio::bench_audio(cli.run.input.as_deref()) {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    1
                }
            }
        }
        Some(Cmd::Bench(b)) if b.what == assistant::cli::BenchWhat::Cascade && b.published => {
            assistant::app::bench::cpu_cascade::run_command(b, &cli.run.cascade)
        }
        Some(Cmd::Bench(b)) if b.what == assistant::cli::BenchWhat::Cascade => {
            let mut args = cli.run.cascade.to_args();
            if cli.run.model.demo {
                args.push("--demo".into());
            }
            if let Some(p) = &cli.run.persona {
                args.extend(["--persona".into(), p.clone()]);
            }
            match assistant::app::bench::cascade::bench_cascade(&args, 12) {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    1
                }
            }
        }
        Some(Cmd::Bench(b)) if b.what == assistant::cli::BenchWhat::Pocket => {
            match assistant::app::bench::pocket::run(b, &mut std::io::stdout()) {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    1
                }
            }
        }
        Some(Cmd::Bench(b)) if b.what == assistant::cli::BenchWhat::Echo => {
            match assistant::app::bench::echo::run(
                &b.rooms,
                b.webrtc.as_deref(),
                &mut std::io::stdout(),
            ) {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    1
                }
            }
        }
        Some(Cmd::Say(s)) => assistant::app::say::run(&cli.run, s),
        Some(Cmd::Bench(b)) if b.what == assistant::cli::BenchWhat::Serve => {
            match assistant::app::bench::serve::bench_serve() {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    1
                }
            }
        }
        Some(Cmd::Bench(b)) if b.what == assistant::cli::BenchWhat::ServeBatch => {
            match assistant::app::bench::serve::bench_serve_batch(None) {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    1
                }
            }
        }
        Some(Cmd::Bench(b)) if b.what == assistant::cli::BenchWhat::Net => {
            match assistant::app::bench::net::bench_net() {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    1
                }
            }
        }
        Some(Cmd::Aec(args)) => {
            match assistant::audio::aec::run_aec_command(&args.run(), cli.run.output.as_deref()) {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    2
                }
            }
        }
        Some(Cmd::ExportDemo(_)) | Some(Cmd::Bench(_)) | Some(Cmd::Convert(_)) => {
            assistant::app::model_command(&cli).unwrap_or_else(|| {
                eprintln!("error: unknown benchmark");
                1
            })
        }
        Some(Cmd::History(h)) => history(h),
        Some(Cmd::Personas(p)) => personas(p),
        Some(Cmd::Doctor) => {
            let catalog = assistant::persona::Catalog::load();
            let weights = assistant::models::moshi::weights_report(&cli.run.model.options());
            let mut extra = assistant::app::doctor::weights(&weights);
            extra.extend(assistant::app::doctor::engine(&cli.run));
            extra.extend(assistant::app::doctor::persona_findings(&catalog));
            extra.extend(assistant::app::tools::doctor(&cli.run, &catalog));
            if cli.run.engine == assistant::cli::EngineKind::Cascade {
                let opts = cli.run.cascade.options(&cli.run.model);
                let disc = assistant::models::moshi::Discovery::from_env();
                let report = assistant::engine::cascade::report::cascade_report(&opts, &disc);
                extra.extend(assistant::app::doctor::cascade(&report));
            }
            let (text, code) =
                assistant::app::doctor::report(&assistant::app::doctor::findings(extra));
            print!("{text}");
            code
        }
        Some(Cmd::Serve(s)) => assistant::app::serve::run(&cli.run, s),
        Some(Cmd::Transcribe(t)) => assistant::app::transcribe::run(&cli.run, t),
        Some(Cmd::Wake(w)) => assistant::app::wake::run(&cli.run, w),
        None if cli.run.headless => assistant::app::headless::run(&cli.run),
        None => assistant::app::tui::run_app(&cli.run, &_log.path),
    };
    std::process::exit(code);
}

fn history(args: &assistant::cli::HistoryArgs) -> i32 {
    use assistant::session;
    let dir = session::sessions_dir();
    let sessions = session::list_sessions(&dir);
    match &args.command {
        None => {
            if sessions.is_empty() {
                println!("no sessions yet in {}", dir.display());
            }
            for s in &sessions {
                let (m, sec) = ((s.duration_s as u64) / 60, (s.duration_s as u64) % 60);
                println!(
                    "{}  {:>3}m{:02}s  {:<12} {}",
                    s.id, m, sec, s.persona, s.first_words
                );
            }
            0
        }
        Some(assistant::cli::HistoryCmd::Show { id }) => {
            let found = if id == "last" {
                sessions.last()
            } else {
                sessions.iter().find(|s| &s.id == id)
            };
            match found.map(|s| session::to_markdown(&s.path)) {
                Some(Ok(md)) => {
                    print!("{md}");
                    0
                }
                Some(Err(e)) => {
                    eprintln!("error: {e:#}");
                    1
                }
                None => {
                    eprintln!(
                        "error: no session '{id}' in {}; `assistant history` lists them",
                        dir.display()
                    );
                    2
                }
            }
        }
    }
}

fn personas(args: &assistant::cli::PersonasArgs) -> i32 {
    use assistant::persona::{user_dir, Catalog};
    let catalog = Catalog::load();
    match &args.command {
        None => {
            print!("{}", catalog.listing());
            match user_dir() {
                Some(d) => println!("\nyour personas: {} (a file there adds a persona, or overrides a built-in of the same name)", d.display()),
                None => println!("\nno config directory: set XDG_CONFIG_HOME to add personas"),
            }
            0
        }
        Some(assistant::cli::PersonasCmd::Check { file }) => match catalog.check_draft(file) {
            Ok(p) => {
                println!(
                    "{}: ok: {} ({}) — {}",
                    file.display(),
                    p.name,
                    assistant::persona::hotkey_label(p.hotkey),
                    p.description
                );
                0
            }
            Err(e) => {
                eprintln!("error: {e}");
                1
            }
        },
    }
}
