//! `exodus trace summary FILE`: the op summary (calls, total, mean, min,
//! max, share of time per op) of a Chrome/Perfetto trace written by exodus.

use anyhow::Context;
use exodus_trace::Trace;

/// Arguments of `exodus trace`.
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Summarise a trace file per op.
    Summary {
        /// Trace-event JSON file (as written by `--trace`).
        file: String,
        /// Only spans of this category (e.g. `launch`), so shares are not
        /// diluted by waits or nested host spans.
        #[arg(long)]
        category: Option<String>,
        /// Print JSON rows instead of a table.
        #[arg(long)]
        json: bool,
    },
}

/// Run the subcommand.
pub fn run(args: &Args) -> anyhow::Result<()> {
    match &args.command {
        Command::Summary {
            file,
            category,
            json,
        } => {
            let text = std::fs::read_to_string(file).with_context(|| format!("reading {file}"))?;
            let trace =
                Trace::from_chrome_json(&text).with_context(|| format!("parsing {file}"))?;
            let summary = match category {
                Some(c) => trace.op_summary_of(c),
                None => trace.op_summary(),
            };
            if *json {
                let rows: Vec<serde_json::Value> = summary
                    .rows
                    .iter()
                    .map(|r| {
                        serde_json::json!({
                            "name": r.name, "category": r.category, "calls": r.calls,
                            "total_ns": r.total_ns, "mean_ns": r.mean_ns(),
                            "min_ns": r.min_ns, "max_ns": r.max_ns, "share": r.share,
                        })
                    })
                    .collect();
                outln!("{}", serde_json::to_string_pretty(&rows)?)?;
            } else {
                out!("{summary}")?;
            }
            Ok(())
        }
    }
}
