use clap::Parser;

fn main() {
    let cli = assistant::cli::Cli::parse();
    if let Some(assistant::cli::Cmd::Aec(args)) = &cli.command {
        if let Err(e) = assistant::audio::aec::run_aec_command(args, cli.run.output.as_deref()) {
            eprintln!("error: {e:#}");
            std::process::exit(2);
        }
        return;
    }
    println!("{cli:?}");
}
