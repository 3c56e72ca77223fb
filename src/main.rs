use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = fleetstorm::cli::Cli::parse();
    fleetstorm::cli::main(cli)
}
