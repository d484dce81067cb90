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

use exodus_gguf::Gguf;
use exodus_graph::{rope_table, KvFormat, KvLayout, KvPart};
use exodus_numerics::{bulk, ElementFormat};

use crate::config::ModelConfig;
use crate::error::ModelError;
use crate::llama::{Cache, KV_BLOCK_TOKENS};
use crate::model::{LoadOptions, Model};
use crate::shard::Shard;
use crate::tokenizer::Tokenizer;

/// The text the offsets are measured on.
const CALIBRATION_TEXT: &str = include_str!("centering/calibration.txt");

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
    let rope = rope_table(config.rope_theta, d, n);
    let mut offsets = KvOffsets {
        k_mean: Vec::with_capacity(config.layers),
        v_mean: Vec::with_capacity(config.layers),
        tokens: n - 1,
    };
    let row_bytes = layout.row_bytes();
    for l in 0..config.layers {
        let name = format!("blk.{l}.kv_cache");
        let bytes = model
            .session_state(&name)
            .ok_or_else(|| ModelError::Tensor {
                name: name.clone(),
                reason: "the calibration model has no such cache".into(),
            })?;
        // Cache::One's block table is 0, 1, 2, ...: position `pos` is in
        // block `pos / KV_BLOCK_TOKENS`.
        let read = |pos: usize, part: KvPart, h: usize, row: &mut [f32]| {
            let at = layout.offset(pos / KV_BLOCK_TOKENS, part, h, pos % KV_BLOCK_TOKENS);
            let src = bytes
                .get(at..at + row_bytes)
                .ok_or_else(|| ModelError::Tensor {
                    name: name.clone(),
                    reason: format!("position {pos} is past the cache"),
                })?;
            bulk::decode(ElementFormat::F16, src, row).map_err(|e| ModelError::Tensor {
                name: name.clone(),
                reason: e.to_string(),
            })
        };
        let (mut k_sum, mut v_sum) = (vec![0f64; kv_heads * d], vec![0f64; kv_heads * d]);
        let mut row = vec![0f32; d];
        for pos in 1..n {
            let cs = &rope[pos * d..(pos + 1) * d];
            for h in 0..kv_heads {
                read(pos, KvPart::Key, h, &mut row)?;
                let sum = &mut k_sum[h * d..(h + 1) * d];
                for p in 0..d / 2 {
                    let (i0, i1) = pair(config.rope_neox, d, p);
                    let (c, s) = (cs[2 * p] as f64, cs[2 * p + 1] as f64);
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

/// The elements of rotated pair `p` of a head of `d` values.
fn pair(neox: bool, d: usize, p: usize) -> (usize, usize) {
    if neox {
        (p, p + d / 2)
    } else {
        (2 * p, 2 * p + 1)
    }
}
