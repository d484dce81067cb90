//! `exodus convert`: raw little-endian arrays between f32 and any format,
//! so scripts and other languages can use the codecs.

use std::io::{Read, Write};

use anyhow::{bail, Context};
use exodus_numerics::mx::ScaleRule;
use exodus_numerics::{Format, Overflow, QuantizeOptions, Rounding};

/// Arguments of `exodus convert`.
#[derive(clap::Args)]
pub struct Args {
    /// Format of the input (`exodus formats` lists them).
    #[arg(long)]
    from: String,
    /// Format of the output. One of `--from`/`--to` must be f32, unless
    /// both are element formats or both are formats exodus can quantize to
    /// (the conversion then goes through f32).
    #[arg(long)]
    to: String,
    /// Shared-scale rule of MX and fp8-block128 outputs: floor (OCP) or ceil (round up).
    #[arg(long, default_value = "floor")]
    scale_rule: String,
    /// What element formats do with values beyond their range: saturate or nonfinite.
    #[arg(long, default_value = "saturate")]
    overflow: String,
    /// Tie-breaking of element formats: even or away.
    #[arg(long, default_value = "even")]
    rounding: String,
    /// Pack FP6/FP4 element codes (instead of one code per byte).
    #[arg(long)]
    packed: bool,
    /// Input file, `-` for stdin.
    input: String,
    /// Output file, `-` for stdout.
    output: String,
}

fn read_input(path: &str) -> anyhow::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    if path == "-" {
        std::io::stdin()
            .read_to_end(&mut bytes)
            .context("reading stdin")?;
    } else {
        bytes = std::fs::read(path).with_context(|| format!("reading {path}"))?;
    }
    Ok(bytes)
}

fn write_output(path: &str, bytes: &[u8]) -> anyhow::Result<()> {
    if path == "-" {
        let mut out = std::io::stdout().lock();
        out.write_all(bytes).context("writing stdout")?;
        out.flush().context("writing stdout")?;
    } else {
        std::fs::write(path, bytes).with_context(|| format!("writing {path}"))?;
    }
    Ok(())
}

/// Run the subcommand.
pub fn run(args: &Args) -> anyhow::Result<()> {
    let from: Format = args.from.parse()?;
    let to: Format = args.to.parse()?;
    let opts = QuantizeOptions {
        rounding: Rounding::parse(&args.rounding)?,
        overflow: Overflow::parse(&args.overflow)?,
        scale_rule: ScaleRule::parse(&args.scale_rule)?,
        packed: args.packed,
    };
    if !to.can_quantize() {
        bail!("{to}: exodus can dequantize this format but not quantize to it");
    }
    let input = read_input(&args.input)?;
    let count = from.values_in(input.len(), args.packed).with_context(|| {
        format!(
            "{} bytes of input are not a whole number of {from} values",
            input.len()
        )
    })?;
    let mut values = vec![0f32; count];
    from.dequantize_into(&input, &mut values, args.packed)
        .with_context(|| format!("decoding {from}"))?;
    let output = to
        .quantize(&values, &opts)
        .with_context(|| format!("encoding {count} values as {to}"))?;
    write_output(&args.output, &output)
}
