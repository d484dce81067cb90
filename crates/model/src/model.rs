//! A model loaded from a GGUF file and bound to an exodus session: its
//! graph (run as written in eager mode, after the compiler's passes in
//! graph mode), its weights copied from the file in their own formats
//! (only norm and bias vectors are decoded to f32), and one sequence's
//! paged KV cache, which [`Model::forward`] appends to step by step.

use exodus_gguf::Gguf;
use std::sync::Arc;

use exodus_graph::{
    default_passes, run_passes, Collective, DType, KvFormat, Session, Tensor, ValueId,
};
use exodus_numerics::{ElementFormat, Format};

use crate::centering::{is_coarse, load_or_calibrate};
use crate::config::ModelConfig;
use crate::error::ModelError;
use crate::llama::{self, Cache, ModelGraph, SeqInputs, WeightPart, KV_BLOCK_TOKENS};
use crate::shard::Shard;

/// How a model runs: the same kernels either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Single-operator mode: the graph as written, one launch per node.
    Eager,
    /// Graph mode: the graph after the passes, captured once per shape and
    /// replayed.
    Graph,
}

impl Mode {
    /// `eager` or `graph`.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Eager => "eager",
            Mode::Graph => "graph",
        }
    }
}

impl std::str::FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Mode, String> {
        match s {
            "eager" => Ok(Mode::Eager),
            "graph" => Ok(Mode::Graph),
            other => Err(format!("unknown mode '{other}' (eager or graph)")),
        }
    }
}

/// How to load a model.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadOptions {
    /// Eager or graph mode.
    pub mode: Mode,
    /// Positions the KV cache holds (at most the model's context; 0: the
    /// smaller of the context and 4096).
    pub max_tokens: usize,
    /// Element format of the KV cache.
    pub kv_format: KvFormat,
    /// Layers whose KV cache takes another format: `(layer, format)`.
    pub kv_layer_formats: Vec<(usize, KvFormat)>,
    /// The part of the model this rank holds in a tensor-parallel job
    /// (the whole model by default; see [`Shard`]).
    pub shard: Shard,
    /// Center the K/V rows of coarse cache formats (FP8, MX) on offsets
    /// measured at load (see [`crate::centering`]); on by default.
    pub kv_centering: bool,
}

impl LoadOptions {
    /// The KV cache format of layer `l`.
    pub fn kv_format_of(&self, l: usize) -> KvFormat {
        self.kv_layer_formats
            .iter()
            .rev()
            .find(|(layer, _)| *layer == l)
            .map_or(self.kv_format, |(_, f)| *f)
    }

    /// Bytes of KV cache one token takes in every layer of `config`'s
    /// model together, with these formats.
    pub fn kv_bytes_per_token(&self, config: &ModelConfig) -> Result<usize, ModelError> {
        (0..config.layers)
            .map(|l| Ok(config.kv_bytes_per_token(self.kv_format_of(l))? / config.layers.max(1)))
            .sum()
    }
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            mode: Mode::Graph,
            max_tokens: 0,
            kv_format: KvFormat::F16,
            kv_layer_formats: Vec::new(),
            shard: Shard::WHOLE,
            kv_centering: true,
        }
    }
}

/// A loaded model with one sequence's KV cache.
pub struct Model {
    config: ModelConfig,
    graph: ModelGraph,
    session: Session,
    mode: Mode,
    max_tokens: usize,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("config", &self.config)
            .field("mode", &self.mode)
            .field("max_tokens", &self.max_tokens)
            .finish()
    }
}

/// Positions a sequence may hold: `opts.max_tokens`, at most the model's
/// context (0: the smaller of the context and 4096).
fn max_tokens(config: &ModelConfig, opts: &LoadOptions) -> usize {
    match opts.max_tokens {
        0 => config.context.min(4096),
        n => n.min(config.context.max(1)),
    }
}

/// One sequence's part of a batched step ([`Model::step`]).
#[derive(Debug, Clone, Copy)]
pub struct SeqStep<'a> {
    /// The tokens it runs.
    pub tokens: &'a [u32],
    /// Position of the first.
    pub start: usize,
    /// Its pool blocks, in logical block order (enough for `start +
    /// tokens.len()` positions).
    pub table: &'a [u32],
}

/// A weight tensor's data as the session takes it.
fn weight_data(format: Format, dtype: DType, bytes: &[u8], len: usize) -> Result<Tensor, String> {
    match dtype {
        DType::Weights(_) => Ok(Tensor::Bytes(bytes.to_vec())),
        _ if format == Format::Element(ElementFormat::F32) => Ok(Tensor::F32(
            bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
        )),
        _ => format
            .dequantize(bytes, len)
            .map(Tensor::F32)
            .map_err(|e| e.to_string()),
    }
}

/// The data of `part` of a GGUF tensor as the session takes it: encoded
/// matrices keep their format (whole rows, or the blocks of the columns
/// taken from each row), f32 values are decoded first and then cut.
fn part_data<B: AsRef<[u8]>>(
    file: &Gguf<B>,
    part: &WeightPart,
    dtype: DType,
) -> Result<Tensor, String> {
    let t = file.require_tensor(&part.name).map_err(|e| e.to_string())?;
    let format = t.format().map_err(|e| e.to_string())?;
    let bytes = file.data(&part.name).map_err(|e| e.to_string())?;
    let len = usize::try_from(t.elements()).unwrap_or(usize::MAX);
    if part.is_whole() {
        return weight_data(format, dtype, bytes, len);
    }
    let (rows, cols) = (part.rows.clone(), part.cols.clone());
    let row_len = part.shape.get(1).copied();
    match (dtype, row_len) {
        (DType::Weights(_), Some(row_len)) => {
            let at = |n: usize| format.encoded_len(n, false).map_err(|e| e.to_string());
            let (row_bytes, b0, b1) = (at(row_len)?, at(cols.start)?, at(cols.end)?);
            let mut out = Vec::with_capacity(rows.len() * (b1 - b0));
            for r in rows {
                let row = bytes
                    .get(r * row_bytes + b0..r * row_bytes + b1)
                    .ok_or_else(|| format!("row {r} is past the tensor's data"))?;
                out.extend_from_slice(row);
            }
            Ok(Tensor::Bytes(out))
        }
        _ => {
            let Tensor::F32(all) = weight_data(format, DType::F32, bytes, len)? else {
                return Err("not decoded to f32".into());
            };
            Ok(Tensor::F32(match row_len {
                None => all[rows].to_vec(),
                Some(row_len) => rows
                    .flat_map(|r| all[r * row_len + cols.start..r * row_len + cols.end].to_vec())
                    .collect(),
            }))
        }
    }
}

impl Model {
    /// Reads the model in `file`, builds its graph and binds its weights,
    /// with one sequence's KV cache.
    pub fn load<B: AsRef<[u8]>>(file: &Gguf<B>, opts: &LoadOptions) -> Result<Model, ModelError> {
        let config = ModelConfig::from_gguf(file)?;
        let max_tokens = max_tokens(&config, opts);
        Self::load_with(file, opts, config, Cache::One { max_tokens }, max_tokens)
    }

    /// Like [`Model::load`], with a pool of `blocks` KV cache blocks shared
    /// by batches of sequences of up to `opts.max_tokens` positions each
    /// (run with [`Model::step`]; the caller owns the block tables).
    pub fn load_pool<B: AsRef<[u8]>>(
        file: &Gguf<B>,
        opts: &LoadOptions,
        blocks: usize,
    ) -> Result<Model, ModelError> {
        let config = ModelConfig::from_gguf(file)?;
        let max_tokens = max_tokens(&config, opts);
        let cache = Cache::Pool {
            blocks,
            blocks_per_seq: max_tokens.div_ceil(KV_BLOCK_TOKENS).max(1),
        };
        Self::load_with(file, opts, config, cache, max_tokens)
    }

    pub(crate) fn load_with<B: AsRef<[u8]>>(
        file: &Gguf<B>,
        opts: &LoadOptions,
        config: ModelConfig,
        cache: Cache,
        max_tokens: usize,
    ) -> Result<Model, ModelError> {
        if let Some(&(l, _)) = opts
            .kv_layer_formats
            .iter()
            .find(|(l, _)| *l >= config.layers)
        {
            return Err(ModelError::Request(format!(
                "a KV format for layer {l}; the model has {} layers (0..{})",
                config.layers, config.layers
            )));
        }
        let coarse = (0..config.layers).any(|l| is_coarse(opts.kv_format_of(l)));
        let offsets = if opts.kv_centering && coarse {
            Some(load_or_calibrate(file, &config, opts)?)
        } else {
            None
        };
        let mut graph = llama::build(
            &config,
            file,
            cache,
            |l| opts.kv_format_of(l),
            opts.shard,
            offsets.as_ref(),
        )?;
        let mut weights = Vec::with_capacity(graph.weights.len());
        for (v, part) in &graph.weights {
            let info = graph.graph.value(*v).ok_or_else(|| ModelError::Tensor {
                name: part.name.clone(),
                reason: "not in the graph".into(),
            })?;
            let data = part_data(file, part, info.dtype).map_err(|reason| ModelError::Tensor {
                name: part.name.clone(),
                reason,
            })?;
            weights.push((*v, data));
        }
        for (v, data) in std::mem::take(&mut graph.computed) {
            weights.push((v, Tensor::F32(data)));
        }
        if opts.mode == Mode::Graph {
            run_passes(&mut graph.graph, &default_passes())?;
        }
        let session = Session::new(graph.graph.clone(), weights)?;
        Ok(Model {
            config,
            graph,
            session,
            mode: opts.mode,
            max_tokens,
        })
    }

    /// Gives the model its job's collective: a shard (see
    /// [`LoadOptions::shard`]) completes each block's output with an
    /// AllReduce over the job's ranks. Call it before the first step.
    pub fn set_collective(&mut self, collective: Arc<dyn Collective>) {
        self.session.set_collective(collective);
    }

    /// The bytes of the session's state value `name` (a layer's KV cache)
    /// after the last run.
    pub(crate) fn session_state(&self, name: &str) -> Option<Vec<u8>> {
        self.session.state_bytes(name)
    }

    /// The model's hyperparameters.
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// How it runs.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Positions the KV cache holds.
    pub fn max_tokens(&self) -> usize {
        self.max_tokens
    }

    /// Whether a sequence's logits are the same bits alone and in any
    /// batch of [`Model::step`] on this CPU (true for Q4_0 / Q4_1 / Q8_0
    /// weights with AVX-512 VNNI; see
    /// `exodus_graph::Session::rows_independent_of_batch`).
    pub fn batch_invariant(&self) -> bool {
        self.session.rows_independent_of_batch()
    }

    /// How many shape buckets graph mode has compiled.
    pub fn compiles(&self) -> usize {
        self.session.compiles()
    }

    /// Runs `tokens` at positions `start ..`: writes their keys and values
    /// to the KV cache (over whatever was there from `start` on) and
    /// returns the logits of the last token (`all_rows`: of every token,
    /// row by row), `vocab` values per row.
    pub fn forward(
        &self,
        tokens: &[u32],
        start: usize,
        all_rows: bool,
    ) -> Result<Vec<f32>, ModelError> {
        let n = tokens.len();
        if n == 0 {
            return Err(ModelError::Request("no tokens".into()));
        }
        if start + n > self.max_tokens {
            return Err(ModelError::Request(format!(
                "positions {start}..{} do not fit the KV cache of {} tokens",
                start + n,
                self.max_tokens
            )));
        }
        if let Some(&bad) = tokens.iter().find(|&&t| t as usize >= self.config.vocab) {
            return Err(ModelError::Request(format!(
                "token id {bad} is outside the vocabulary of {}",
                self.config.vocab
            )));
        }
        let rows: Vec<u32> = if all_rows {
            (0..n as u32).collect()
        } else {
            vec![n as u32 - 1]
        };
        let i = self.graph.inputs;
        let SeqInputs::One {
            table,
            start: start_in,
        } = i.seqs
        else {
            return Err(ModelError::Request(
                "a model loaded with a shared pool runs batches (Model::step)".into(),
            ));
        };
        let inputs = [
            (i.ids, Tensor::U32(tokens.to_vec())),
            (
                i.pos,
                Tensor::U32((start as u32..(start + n) as u32).collect()),
            ),
            (
                table,
                Tensor::U32((0..self.graph.cache_blocks as u32).collect()),
            ),
            (start_in, Tensor::U32(vec![start as u32])),
            (i.rows, Tensor::U32(rows.clone())),
        ];
        let symbols = [("tokens", n), ("outputs", rows.len())];
        self.run(&symbols, &inputs)
    }

    fn run(
        &self,
        symbols: &[(&str, usize)],
        inputs: &[(ValueId, Tensor)],
    ) -> Result<Vec<f32>, ModelError> {
        let out = match self.mode {
            Mode::Eager => self.session.run_eager(symbols, inputs)?,
            Mode::Graph => self.session.run_graph(symbols, inputs)?,
        };
        match out.into_iter().next() {
            Some(Tensor::F32(logits)) => Ok(logits),
            _ => Err(ModelError::Unsupported(
                "the graph returned no logits".into(),
            )),
        }
    }

    /// One step of a batch of sequences over the shared pool (a model from
    /// [`Model::load_pool`]): each runs its `tokens` at positions `start ..`
    /// through its own `table` of pool blocks; returns the last token's
    /// logits of every sequence, in order (`vocab` values each).
    pub fn step(&self, seqs: &[SeqStep<'_>]) -> Result<Vec<f32>, ModelError> {
        let i = self.graph.inputs;
        let SeqInputs::Batch {
            tables,
            starts,
            lens,
        } = i.seqs
        else {
            return Err(ModelError::Request(
                "a one-sequence model runs with Model::forward".into(),
            ));
        };
        if seqs.is_empty() {
            return Err(ModelError::Request("an empty batch".into()));
        }
        let per_seq = self.max_tokens.div_ceil(KV_BLOCK_TOKENS).max(1);
        let (mut ids, mut pos, mut table_rows, mut rows) = (vec![], vec![], vec![], vec![]);
        for (n, s) in seqs.iter().enumerate() {
            let end = s.start + s.tokens.len();
            if s.tokens.is_empty() || end > self.max_tokens {
                return Err(ModelError::Request(format!(
                    "sequence {n}: positions {}..{end} do not fit {} tokens (or no tokens)",
                    s.start, self.max_tokens
                )));
            }
            if s.table.len() < end.div_ceil(KV_BLOCK_TOKENS) || s.table.len() > per_seq {
                return Err(ModelError::Request(format!(
                    "sequence {n}: a table of {} blocks for {end} positions (at most {per_seq})",
                    s.table.len()
                )));
            }
            if let Some(&bad) = s.tokens.iter().find(|&&t| t as usize >= self.config.vocab) {
                return Err(ModelError::Request(format!(
                    "token id {bad} is outside the vocabulary"
                )));
            }
            if let Some(&bad) = s
                .table
                .iter()
                .find(|&&b| b as usize >= self.graph.cache_blocks)
            {
                return Err(ModelError::Request(format!(
                    "sequence {n}: block {bad} is outside the pool of {}",
                    self.graph.cache_blocks
                )));
            }
            ids.extend_from_slice(s.tokens);
            pos.extend(s.start as u32..end as u32);
            table_rows.extend_from_slice(s.table);
            table_rows.resize((n + 1) * per_seq, 0);
            rows.push(ids.len() as u32 - 1);
        }
        let inputs = [
            (i.ids, Tensor::U32(ids.clone())),
            (i.pos, Tensor::U32(pos)),
            (tables, Tensor::U32(table_rows)),
            (
                starts,
                Tensor::U32(seqs.iter().map(|s| s.start as u32).collect()),
            ),
            (
                lens,
                Tensor::U32(seqs.iter().map(|s| s.tokens.len() as u32).collect()),
            ),
            (i.rows, Tensor::U32(rows.clone())),
        ];
        let symbols = [
            ("tokens", ids.len()),
            ("outputs", rows.len()),
            ("seqs", seqs.len()),
        ];
        self.run(&symbols, &inputs)
    }
}
