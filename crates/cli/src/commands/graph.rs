//! `exodus graph dump`: a graph before and after the passes, what each pass
//! changed, and its memory plan for a number of tokens; or the graph in
//! Graphviz DOT. The graph is a built-in example until model files provide
//! real ones.

use anyhow::Context;
use exodus_graph::examples::{
    block, block_without_attention, decoder, BlockDims, SMOLLM2_135M_LAYERS, SMOLLM2_135M_VOCAB,
};
use exodus_graph::{default_passes, run_passes};
use exodus_kernels::attention::KvFormat;
use exodus_numerics::Format;

/// Arguments of `exodus graph`.
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Print a graph, run the passes, print it again with their statistics
    /// and the memory plan.
    Dump {
        /// Which graph: `block` (a SmolLM2-135M block, attention over an
        /// FP8 KV cache), `block-no-attention`, or `decoder` (a whole
        /// SmolLM2-135M-shaped decoder: embedding, `--layers` blocks, final
        /// norm, lm head over `--vocab` tokens).
        #[arg(long, default_value = "block")]
        example: String,
        /// Blocks of the decoder (SmolLM2-135M has 30).
        #[arg(long, default_value_t = SMOLLM2_135M_LAYERS)]
        layers: usize,
        /// Vocabulary of the decoder (SmolLM2-135M has 49152).
        #[arg(long, default_value_t = SMOLLM2_135M_VOCAB)]
        vocab: usize,
        /// Weight format of the matmuls (any `exodus formats` name).
        #[arg(long, default_value = "q4_1")]
        format: String,
        /// Tokens to plan memory for.
        #[arg(long, default_value_t = 512)]
        tokens: usize,
        /// Print Graphviz DOT (after the passes) instead of text.
        #[arg(long)]
        dot: bool,
        /// Streams to spread independent branches over (the stream plan
        /// printed at the end, and the memory plan made for it).
        #[arg(long, default_value_t = 1)]
        streams: usize,
    },
}

/// Run the subcommand.
pub fn run(args: &Args) -> anyhow::Result<()> {
    match &args.command {
        Command::Dump {
            example,
            layers,
            vocab,
            format,
            tokens,
            dot,
            streams,
        } => {
            let format: Format = format
                .parse()
                .map_err(|e| anyhow::anyhow!("{e}"))
                .with_context(|| format!("--format {format}"))?;
            let mut graph = match example.as_str() {
                "block" => block(BlockDims::SMOLLM2_135M, format, KvFormat::Fp8E4M3)?,
                "block-no-attention" => block_without_attention(BlockDims::SMOLLM2_135M, format)?,
                "decoder" => {
                    anyhow::ensure!(*layers > 0, "--layers must be at least 1");
                    anyhow::ensure!(*vocab > 0, "--vocab must be at least 1");
                    decoder(
                        BlockDims::SMOLLM2_135M,
                        *layers,
                        *vocab,
                        format,
                        KvFormat::Fp8E4M3,
                    )?
                }
                other => anyhow::bail!(
                    "unknown --example {other:?} (known: block, block-no-attention, decoder)"
                ),
            };
            let before = graph.dump();
            let stats = run_passes(&mut graph, &default_passes())?;
            if *dot {
                out!("{}", graph.to_dot())?;
                return Ok(());
            }
            outln!("# before passes\n{before}")?;
            outln!("# passes")?;
            for s in &stats {
                outln!(
                    "{:<34} nodes {} -> {}, values {} -> {}: {}",
                    s.pass,
                    s.nodes.0,
                    s.nodes.1,
                    s.values.0,
                    s.values.1,
                    s.detail
                )?;
            }
            outln!("\n# after passes\n{}", graph.dump())?;
            let stream_plan = graph.assign_streams(*streams);
            outln!("# stream plan: {}", stream_plan.summary())?;
            for (n, node) in graph.nodes().iter().enumerate() {
                let waits: Vec<String> = stream_plan.waits[n]
                    .iter()
                    .map(|&w| graph.nodes()[w].name.clone())
                    .collect();
                let waits = if waits.is_empty() {
                    String::new()
                } else {
                    format!("  (waits for {})", waits.join(", "))
                };
                outln!(
                    "  stream {}: {}{waits}",
                    stream_plan.stream_of[n],
                    node.name
                )?;
            }
            let plan = graph.plan_memory_ordered(&[("tokens", *tokens)], &stream_plan.order())?;
            let in_place = plan
                .slots
                .values()
                .filter(|s| s.in_place_of.is_some())
                .count();
            outln!(
                "\n# memory plan for tokens = {tokens}: intermediates {} bytes (arena {} + own buffers {}; {in_place} computed in place) vs {} bytes for every intermediate on its own; outputs {} bytes",
                plan.intermediate_bytes(),
                plan.arena_bytes,
                plan.intermediate_bytes() - plan.arena_bytes,
                plan.total_bytes - plan.output_bytes,
                plan.output_bytes,
            )?;
            Ok(())
        }
    }
}
