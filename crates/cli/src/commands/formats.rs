//! `exodus formats`: the table of every format, and with `--error` the
//! measured RMS relative error of quantize + dequantize.

use exodus_numerics::{sample, Format, QuantizeOptions};

/// Arguments of `exodus formats`.
#[derive(clap::Args)]
pub struct Args {
    /// Also measure the RMS relative error of quantize+dequantize on N(0,1)
    /// and on heavy-tailed (Student-t, 3 dof) data.
    #[arg(long)]
    error: bool,
    /// Values per measurement (rounded down to a multiple of 256).
    #[arg(long, default_value_t = 1 << 16)]
    samples: usize,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Print the value of every code of one element format of 8 bits or
    /// fewer (e.g. `--codes hif8`) as a 16-column grid, rows = high nibble.
    #[arg(long, value_name = "FORMAT")]
    codes: Option<String>,
}

/// The `--codes` grid.
fn print_codes(name: &str) -> anyhow::Result<()> {
    let format: Format = name.parse()?;
    let Format::Element(element) = format else {
        anyhow::bail!("--codes takes an element format, not the block format {format}");
    };
    if element.bits() > 8 {
        anyhow::bail!(
            "--codes takes a format of 8 bits or fewer; {format} has {}",
            element.bits()
        );
    }
    let count = 1u32 << element.bits();
    out!("{:>4}", "")?;
    for low in 0..16.min(count) {
        out!(" {:>11}", format!("x{low:X}"))?;
    }
    outln!()?;
    for high in 0..count.div_ceil(16) {
        out!("{:>4}", format!("{high:X}x"))?;
        for low in 0..16.min(count) {
            let v = element.decode(high * 16 + low);
            out!(" {:>11}", format!("{v}"))?;
        }
        outln!()?;
    }
    Ok(())
}

fn fmt_num(v: Option<f64>) -> String {
    match v {
        None => "-".into(),
        Some(v) if v.is_nan() => "-".into(),
        Some(0.0) => "0".into(),
        Some(v) if v.abs() >= 1e5 || v.abs() < 1e-3 => format!("{v:.3e}"),
        Some(v) => format!("{v}"),
    }
}

/// RMS relative error of a round trip, or `None` where it does not apply
/// (E8M0 holds only positive powers of two).
fn measure(format: Format, data: &[f32]) -> anyhow::Result<Option<f64>> {
    if !format.can_quantize() || format.name() == "e8m0" {
        return Ok(None);
    }
    let q = format.quantize(data, &QuantizeOptions::default())?;
    let y = format.dequantize(&q, data.len())?;
    Ok(Some(sample::rms_relative_error(data, &y)))
}

/// Run the subcommand.
pub fn run(args: &Args) -> anyhow::Result<()> {
    if let Some(name) = &args.codes {
        return print_codes(name);
    }
    let n = (args.samples / 256).max(1) * 256;
    let normal = sample::normal(n, 1);
    let heavy = sample::heavy_tailed(n, 2);
    let mut rows = Vec::new();
    for format in Format::all() {
        let info = format.info();
        let errors = if args.error {
            (measure(format, &normal)?, measure(format, &heavy)?)
        } else {
            (None, None)
        };
        rows.push((info, errors));
    }
    if args.json {
        let json: Vec<serde_json::Value> = rows
            .iter()
            .map(|(i, (en, eh))| {
                serde_json::json!({
                    "name": i.name, "kind": i.kind, "bits_per_value": i.bits_per_value,
                    "exp_bits": i.exp_bits, "man_bits": i.man_bits, "bias": i.bias,
                    "max_finite": i.max_finite, "min_normal": i.min_normal,
                    "min_subnormal": i.min_subnormal, "block_size": i.block_size,
                    "bytes_per_32": i.bytes_per_32, "inf": i.has_inf, "nan": i.has_nan,
                    "can_quantize": i.can_quantize,
                    "rms_rel_error_normal": en, "rms_rel_error_heavy_tailed": eh,
                })
            })
            .collect();
        outln!("{}", serde_json::to_string_pretty(&json)?)?;
        return Ok(());
    }
    let mut header = format!(
        "{:<13} {:<9} {:>6} {:>3} {:>3} {:>4} {:>11} {:>11} {:>11} {:>5} {:>7} {:>3} {:>3}",
        "format",
        "kind",
        "bits",
        "E",
        "M",
        "bias",
        "max",
        "min_normal",
        "min_subn",
        "block",
        "B/32",
        "inf",
        "nan"
    );
    if args.error {
        header.push_str(&format!(" {:>11} {:>11}", "rms_N(0,1)", "rms_t3"));
    }
    outln!("{header}")?;
    for (i, (en, eh)) in &rows {
        let yn = |b: bool| if b { "yes" } else { "no" };
        let mut line = format!(
            "{:<13} {:<9} {:>6.3} {:>3} {:>3} {:>4} {:>11} {:>11} {:>11} {:>5} {:>7.3} {:>3} {:>3}",
            i.name,
            i.kind,
            i.bits_per_value,
            i.exp_bits.map_or("-".into(), |v| v.to_string()),
            i.man_bits.map_or("-".into(), |v| v.to_string()),
            i.bias.map_or("-".into(), |v| v.to_string()),
            fmt_num(Some(i.max_finite)),
            fmt_num(i.min_normal),
            fmt_num(i.min_subnormal),
            i.block_size,
            i.bytes_per_32,
            yn(i.has_inf),
            yn(i.has_nan),
        );
        if args.error {
            let e = |v: &Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.3e}"));
            line.push_str(&format!(" {:>11} {:>11}", e(en), e(eh)));
        }
        outln!("{line}")?;
    }
    if args.error {
        outln!(
            "\nrms = sqrt(sum (x - dequant(quant(x)))^2 / sum x^2) over {n} values; \
             element formats are unscaled, so values beyond their range saturate."
        )?;
    }
    Ok(())
}
