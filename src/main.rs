use clap::Parser;

fn main() {
    let cli = assistant::cli::Cli::parse();
    // Model subcommands (issue 3); the rest of the app is wired by the lead.
    if let Some(code) = assistant::engine::moshi::run_model_command(&cli) {
        std::process::exit(code);
    }
    println!("{cli:?}");
}
