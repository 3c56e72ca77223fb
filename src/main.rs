use std::process::ExitCode;

use clap::Parser;

/// mimalloc instead of glibc's allocator: rustls and tokio allocate and free many small buffers
/// per handshake from two worker threads; measured 7-10 % less CPU per provisioning flow
/// (benches/results/2026-11-29-performance-targets.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = fleetstorm::cli::Cli::parse();
    fleetstorm::cli::main(cli)
}
