//! `exodus`: one command for every rung of the stack. This file only parses
//! arguments and hands each subcommand to its module in `commands/`.

#![forbid(unsafe_code)]

mod commands;

use clap::{Parser, Subcommand};

/// exodus: a hardware-neutral AI inference stack.
#[derive(Parser)]
#[command(name = "exodus", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print every number format (bits, range, block size, special values),
    /// optionally with its measured quantization error.
    Formats(commands::formats::Args),
    /// Convert a raw little-endian array between f32 and any format.
    Convert(commands::convert::Args),
    /// Inspect trace files (Chrome trace-event JSON, as Perfetto opens).
    Trace(commands::trace::Args),
    /// Inspect compute graphs: the IR before and after passes, pass
    /// statistics, the memory plan, Graphviz DOT.
    Graph(commands::graph::Args),
    /// Inspect a GGUF model file: version, metadata, a table of tensors
    /// (name, type, shape, bytes, offset) and totals.
    Inspect(commands::inspect::Args),
    /// Benchmarks: `exodus bench kernels` (every kernel at model shapes,
    /// against this machine's FMA peak and memcpy bandwidth).
    Bench(commands::bench::Args),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Formats(args) => commands::formats::run(&args),
        Command::Convert(args) => commands::convert::run(&args),
        Command::Trace(args) => commands::trace::run(&args),
        Command::Graph(args) => commands::graph::run(&args),
        Command::Inspect(args) => commands::inspect::run(&args),
        Command::Bench(args) => commands::bench::run(&args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        // The reader went away (`exodus ... | head`): not an error.
        Err(e) if is_broken_pipe(&e) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // The cause chain on one line; no backtrace for user errors.
            eprintln!("Error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
