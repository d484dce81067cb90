//! `exodus inspect MODEL.gguf`: the header, metadata (long strings cut,
//! arrays as `[type; len]` with their first items) and a table of tensors
//! (name, type, shape, bytes, file offset) with totals.

use std::collections::BTreeMap;

use exodus_gguf::{GgmlType, GgufError, GgufFile, Value};

/// Arguments of `exodus inspect`.
#[derive(clap::Args)]
pub struct Args {
    /// GGUF file (v2 or v3).
    model: String,
    /// Characters of a string value to show before cutting it.
    #[arg(long, default_value_t = 80)]
    max_chars: usize,
    /// Items of an array value to show.
    #[arg(long, default_value_t = 5)]
    max_items: usize,
}

/// Run the subcommand.
pub fn run(args: &Args) -> anyhow::Result<()> {
    let path = &args.model;
    let file = GgufFile::open(path).map_err(|e| match e {
        // Already names the file.
        GgufError::Io { .. } => anyhow::Error::new(e),
        e => anyhow::Error::new(e).context(format!("inspecting {path}")),
    })?;
    let meta = file.metadata();
    outln!(
        "{path}: GGUF v{}, {} bytes, {} metadata keys, {} tensors",
        file.version(),
        file.len(),
        meta.len(),
        file.tensors().len()
    )?;
    outln!(
        "alignment {}, data section at byte {}",
        file.alignment(),
        file.data_offset()
    )?;

    outln!("\nmetadata:")?;
    let key_width = meta.iter().map(|(k, _)| k.len()).max().unwrap_or(0).min(48);
    for (key, value) in meta.iter() {
        let ty = match value {
            Value::Array(_) => "array",
            v => v.value_type().name(),
        };
        outln!(
            "  {key:<key_width$}  {ty:<6}  {}",
            value.summary(args.max_chars, args.max_items)
        )?;
    }

    outln!("\ntensors (shape innermost first, offset from the start of the file):")?;
    let shapes: Vec<String> = file
        .tensors()
        .iter()
        .map(|t| format!("{:?}", t.dims()))
        .collect();
    let name_width = file
        .tensors()
        .iter()
        .map(|t| t.name().len())
        .chain([4])
        .max()
        .unwrap_or(4);
    let shape_width = shapes.iter().map(String::len).chain([5]).max().unwrap_or(5);
    outln!(
        "  {:<name_width$}  {:<7}  {:<shape_width$}  {:>12}  {:>12}",
        "name",
        "type",
        "shape",
        "bytes",
        "offset"
    )?;
    // Per type (by id): tensors, elements, bytes.
    let mut by_type: BTreeMap<u32, (GgmlType, usize, u64, u64)> = BTreeMap::new();
    for (t, shape) in file.tensors().iter().zip(&shapes) {
        outln!(
            "  {:<name_width$}  {:<7}  {shape:<shape_width$}  {:>12}  {:>12}",
            t.name(),
            t.ggml_type().name(),
            t.byte_size(),
            t.file_offset()
        )?;
        let ty = t.ggml_type();
        let entry = by_type.entry(ty.id()).or_insert((ty, 0, 0, 0));
        entry.1 += 1;
        entry.2 += t.elements();
        entry.3 += t.byte_size();
    }

    outln!(
        "\ntotal: {} tensors, {} elements, {} bytes ({:.1} MiB) of tensor data",
        file.tensors().len(),
        file.tensor_elements(),
        file.tensor_bytes(),
        file.tensor_bytes() as f64 / (1024.0 * 1024.0)
    )?;
    for (ty, count, elements, bytes) in by_type.values() {
        let support = match ty.format() {
            Some(_) => "",
            None => "  (not supported by exodus)",
        };
        outln!(
            "  {:<7}  {count:>5} tensors  {elements:>12} elements  {bytes:>12} bytes{support}",
            ty.name()
        )?;
    }
    Ok(())
}
