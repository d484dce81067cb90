//! KV centering for the coarse cache formats (FP8, MX): the per-layer key
//! and value offsets that exodus-kernels' `KvCentering` stores rows
//! relative to, measured on the model itself.
//!
//! The keys of Llama-family models sit on large per-channel offsets that
//! are fixed before RoPE (SmolLM2-135M: up to ±15 against a spread of
//! about 2); E4M3 keeps 3 mantissa bits, so it rounds the offset and not
//! the information. [`calibrate`] runs the model once over a short built-in
//! text (prose, a question and answer, code, a letter: `calibration.txt`)
//! with an f16 cache, reads every layer's keys back, turns them back to
//! before RoPE and averages them; values are averaged as they are. The
//! first position (BOS, an attention sink unlike every other key) is left
//! out. The means are a property of the model, not of a request, so every
//! sequence (and the prefix cache) sees the same stored bytes for the same
//! tokens. 16-bit formats are not centered: they lose nothing to round.
//!
//! Calibration is a prefill of about 1,300 tokens (3 s for SmolLM2-135M
//! on 2 cores, far more for a large model), so [`load_or_calibrate`] keeps
//! the offsets in the cache directory under a key of the model file (its
//! header and the ends of every tensor's data), the calibration text and
//! [`OFFSETS_VERSION`]; a missing, unreadable or mismatched file is simply
//! measured again.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use exodus_gguf::Gguf;
use exodus_graph::{rope_table, KvCentered, KvFormat, KvLayout, KvPart, PagedKvCache, RopeStyle};
use sha2::{Digest, Sha256};

use crate::config::ModelConfig;
use crate::error::ModelError;
use crate::fetch::cache_dir;
use crate::llama::{Cache, KV_BLOCK_TOKENS};
use crate::model::{LoadOptions, Model};
use crate::shard::Shard;
use crate::tokenizer::Tokenizer;

/// The text the offsets are measured on.
const CALIBRATION_TEXT: &str = include_str!("centering/calibration.txt");

/// Version of how the offsets are measured and stored; part of the key of
/// the cached offsets, so a change here is never read from an old file.
pub const OFFSETS_VERSION: u32 = 1;

/// First bytes of a file of cached offsets.
const MAGIC: &[u8; 8] = b"EXKVOFS1";

/// Whether a cache format rounds coarsely enough to be centered (8 bits
/// or fewer per value).
pub fn is_coarse(format: KvFormat) -> bool {
    !matches!(format, KvFormat::Bf16 | KvFormat::F16)
}

/// Per layer, the mean key (before RoPE) and the mean value of every KV
/// head of the whole model, `[kv_heads * head_dim]` each.
#[derive(Debug, Clone, PartialEq)]
pub struct KvOffsets {
    /// Key means, before RoPE, by layer.
    pub k_mean: Vec<Vec<f32>>,
    /// Value means, by layer.
    pub v_mean: Vec<Vec<f32>>,
    /// Positions they were measured on.
    pub tokens: usize,
}

/// Measures the model's [`KvOffsets`] on the built-in text (see the
/// module docs): one forward pass of the whole model with an f16 cache.
pub fn calibrate<B: AsRef<[u8]>>(
    file: &Gguf<B>,
    config: &ModelConfig,
    opts: &LoadOptions,
) -> Result<KvOffsets, ModelError> {
    let tokenizer = Tokenizer::from_gguf(file)?;
    let mut tokens = tokenizer.encode(CALIBRATION_TEXT, true, false)?;
    tokens.truncate(config.context.max(2));
    let n = tokens.len();
    if n < 2 {
        return Err(ModelError::Request(
            "the calibration text has fewer than 2 tokens".into(),
        ));
    }
    let plain = LoadOptions {
        mode: opts.mode,
        max_tokens: n,
        kv_format: KvFormat::F16,
        kv_layer_formats: Vec::new(),
        shard: Shard::WHOLE,
        kv_centering: false,
    };
    let cache = Cache::One { max_tokens: n };
    let model = Model::load_with(file, &plain, config.clone(), cache, n)?;
    model.forward(&tokens, 0, false)?;

    let (kv_heads, d) = (config.kv_heads, config.head_dim);
    let layout = KvLayout::new(KV_BLOCK_TOKENS, kv_heads, d, KvFormat::F16)
        .map_err(|e| ModelError::Unsupported(e.to_string()))?;
    // The table's own pair style does not matter here: only the angle of
    // each lane is read.
    let rope = rope_table(config.rope_theta, d, n, RopeStyle::Interleaved);
    let mut offsets = KvOffsets {
        k_mean: Vec::with_capacity(config.layers),
        v_mean: Vec::with_capacity(config.layers),
        tokens: n - 1,
    };
    // Cache::One's block table is 0, 1, 2, ...
    let table: Vec<u32> = (0..n.div_ceil(KV_BLOCK_TOKENS) as u32).collect();
    let style = KvCentered {
        neox: config.rope_neox,
    }
    .style();
    for l in 0..config.layers {
        let name = format!("blk.{l}.kv_cache");
        let bad = |reason: String| ModelError::Tensor {
            name: name.clone(),
            reason,
        };
        let bytes = model
            .session_state(&name)
            .ok_or_else(|| bad("the calibration model has no such cache".into()))?;
        let cache = PagedKvCache::new(layout, bytes).map_err(|e| bad(e.to_string()))?;
        let read = |pos: usize, part: KvPart, h: usize, row: &mut [f32]| {
            cache
                .read_row(&table, pos, part, h, row)
                .map_err(|e| bad(e.to_string()))
        };
        let (mut k_sum, mut v_sum) = (vec![0f64; kv_heads * d], vec![0f64; kv_heads * d]);
        let mut row = vec![0f32; d];
        for pos in 1..n {
            let (cos, sin) = rope[pos * 2 * d..(pos + 1) * 2 * d].split_at(d);
            for h in 0..kv_heads {
                read(pos, KvPart::Key, h, &mut row)?;
                let sum = &mut k_sum[h * d..(h + 1) * d];
                for p in 0..d / 2 {
                    let (i0, i1) = style.pair(d, p);
                    // The angle of pair p, from the interleaved table.
                    let (c, s) = (cos[2 * p] as f64, sin[2 * p] as f64);
                    let (a, b) = (row[i0] as f64, row[i1] as f64);
                    // The inverse rotation: R(-pos) * (a, b).
                    sum[i0] += a * c + b * s;
                    sum[i1] += b * c - a * s;
                }
                read(pos, KvPart::Value, h, &mut row)?;
                for (acc, &x) in v_sum[h * d..(h + 1) * d].iter_mut().zip(&row) {
                    *acc += x as f64;
                }
            }
        }
        let mean = |sum: Vec<f64>| sum.iter().map(|s| (s / (n - 1) as f64) as f32).collect();
        offsets.k_mean.push(mean(k_sum));
        offsets.v_mean.push(mean(v_sum));
    }
    Ok(offsets)
}

/// The model's offsets from the cache directory when they were measured
/// before for this file, else [`calibrate`]d and stored there (storing is
/// best effort: a read-only or missing cache directory only means the next
/// load measures again).
pub fn load_or_calibrate<B: AsRef<[u8]>>(
    file: &Gguf<B>,
    config: &ModelConfig,
    opts: &LoadOptions,
) -> Result<KvOffsets, ModelError> {
    let path = cache_dir().ok().map(|dir| {
        dir.join("kv-centering")
            .join(format!("{}.bin", offsets_key(file)))
    });
    if let Some(found) = path.as_deref().and_then(|p| read_offsets(p, config).ok()) {
        return Ok(found);
    }
    let offsets = calibrate(file, config, opts)?;
    if let Some(path) = path {
        let _ = write_offsets(&path, &offsets);
    }
    Ok(offsets)
}

/// The cache key of `file`'s offsets (lower-case hex SHA-256): the file's
/// header and tensor infos, the first and last 4 KiB of every tensor's
/// data, the calibration text and [`OFFSETS_VERSION`]. Any retrained or
/// requantized model changes every tensor, so the ends suffice; hashing
/// all of a large model's data would cost seconds.
pub fn offsets_key<B: AsRef<[u8]>>(file: &Gguf<B>) -> String {
    const END: usize = 4096;
    let mut h = Sha256::new();
    h.update(OFFSETS_VERSION.to_le_bytes());
    h.update(CALIBRATION_TEXT.as_bytes());
    let bytes = file.bytes();
    let header = (file.data_offset() as usize).min(bytes.len());
    h.update(&bytes[..header]);
    for t in file.tensors() {
        if let Ok(data) = file.tensor_data(t) {
            h.update(&data[..END.min(data.len())]);
            h.update(&data[data.len().saturating_sub(END)..]);
        }
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Stores `offsets` at `path` (written to a temporary file, then renamed,
/// so a reader never sees half a file).
pub fn write_offsets(path: &Path, offsets: &KvOffsets) -> std::io::Result<()> {
    let layers = offsets.k_mean.len();
    let width = offsets.k_mean.first().map_or(0, Vec::len);
    let mut out = Vec::with_capacity(20 + 8 * layers * width);
    out.extend_from_slice(MAGIC);
    for n in [layers, width, offsets.tokens] {
        out.extend_from_slice(&(n as u32).to_le_bytes());
    }
    for row in offsets.k_mean.iter().chain(&offsets.v_mean) {
        if row.len() != width {
            return Err(std::io::Error::other("offsets of unequal widths"));
        }
        out.extend(row.iter().flat_map(|x| x.to_le_bytes()));
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = temp_path(path);
    std::fs::write(&tmp, &out)?;
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

/// A sibling of `path` for one partial write (of this process and call).
fn temp_path(path: &Path) -> PathBuf {
    static WRITES: AtomicU64 = AtomicU64::new(0);
    let n = WRITES.fetch_add(1, Ordering::Relaxed);
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{}.{n}.tmp", std::process::id()));
    path.with_file_name(name)
}

/// Reads offsets stored by [`write_offsets`] for a model of `config`'s
/// shape; any other content (another shape, a short or corrupt file, a
/// non-finite value) is an error.
pub fn read_offsets(path: &Path, config: &ModelConfig) -> Result<KvOffsets, ModelError> {
    let bad = |reason: String| ModelError::Tensor {
        name: path.display().to_string(),
        reason,
    };
    let bytes = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
    let (layers, width) = (config.layers, config.kv_heads * config.head_dim);
    if width == 0 || bytes.len() != 20 + 8 * layers * width || &bytes[..8] != MAGIC {
        return Err(bad("not offsets of this model's shape".into()));
    }
    let word = |i: usize| u32::from_le_bytes(bytes[8 + 4 * i..12 + 4 * i].try_into().unwrap());
    if word(0) as usize != layers || word(1) as usize != width {
        return Err(bad("not offsets of this model's shape".into()));
    }
    let values: Vec<f32> = bytes[20..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    if values.iter().any(|x| !x.is_finite()) {
        return Err(bad("a non-finite offset".into()));
    }
    let rows: Vec<Vec<f32>> = values.chunks_exact(width).map(<[f32]>::to_vec).collect();
    let (k_mean, v_mean) = rows.split_at(layers);
    Ok(KvOffsets {
        k_mean: k_mean.to_vec(),
        v_mean: v_mean.to_vec(),
        tokens: word(2) as usize,
    })
}
