use clap::Parser;

fn main() {
    let cli = assistant::cli::Cli::parse();
    println!("{cli:?}");
}
