//! The commands that run a real model: `exodus run`, `exodus chat`,
//! `exodus perplexity` and `exodus bench model`. Each resolves `--model`
//! (a path, or a name fetched into the cache: the default model unless
//! told otherwise), loads it in eager or graph mode, and reports what users
//! quote: prompt tokens, time to first token, prefill and decode tokens per
//! second, perplexity.

use std::io::{BufRead, Write};
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use exodus_gguf::GgufFile;
use exodus_model::chat::{ChatTemplate, Message};
use exodus_model::tokenizer::Tokenizer;
use exodus_model::{
    fetch, generate_reusing, perplexity, GenerateOptions, Generation, LoadOptions, Mode, Model,
    SamplerConfig,
};
use serde_json::json;

/// Which model and how to run it (shared by every model command).
#[derive(clap::Args, Debug, Clone)]
pub struct ModelArgs {
    /// A GGUF file, or a known model name (fetched into the cache when
    /// absent; `exodus fetch --list` lists them).
    #[arg(long, default_value = fetch::DEFAULT_MODEL)]
    model: String,
    /// `graph` (compiled, captured and replayed) or `eager` (one launch
    /// per op).
    #[arg(long, default_value = "graph")]
    mode: String,
    /// Positions the KV cache holds (0: the model's context, at most 4096).
    #[arg(long, default_value_t = 0)]
    ctx: usize,
    /// Never touch the network (fail if the model is not cached).
    #[arg(long)]
    offline: bool,
    /// Element format of the KV cache: bf16, f16, fp8-e4m3, fp8-e5m2,
    /// mxfp8, mxfp4.
    #[arg(long, default_value = "f16")]
    kv_dtype: String,
    /// Another KV format for some layers: `LAYER=FORMAT` or
    /// `FIRST-LAST=FORMAT` (repeatable; e.g. `0-1=f16` keeps the first two
    /// layers exact under `--kv-dtype fp8-e4m3`).
    #[arg(long)]
    kv_dtype_layer: Vec<String>,
    /// Store FP8/MX cache rows as they are, not centered on the key and
    /// value offsets measured at load (centering costs a calibration pass
    /// of about 1,300 tokens at load and cuts the formats' rounding).
    #[arg(long)]
    no_kv_centering: bool,
}

/// Parses `--kv-dtype-layer` specs (`L=FMT` or `A-B=FMT`).
pub(crate) fn parse_kv_layers(
    specs: &[String],
) -> anyhow::Result<Vec<(usize, exodus_graph::KvFormat)>> {
    let mut out = Vec::new();
    for spec in specs {
        let bad = || anyhow::anyhow!("--kv-dtype-layer {spec}: LAYER=FORMAT or FIRST-LAST=FORMAT");
        let (layers, format) = spec.split_once('=').ok_or_else(bad)?;
        let format: exodus_graph::KvFormat = format
            .parse()
            .map_err(|e| anyhow::anyhow!("--kv-dtype-layer {spec}: {e}"))?;
        let (first, last) = match layers.split_once('-') {
            Some((a, b)) => (
                a.trim().parse().map_err(|_| bad())?,
                b.trim().parse().map_err(|_| bad())?,
            ),
            None => {
                let l: usize = layers.trim().parse().map_err(|_| bad())?;
                (l, l)
            }
        };
        anyhow::ensure!(first <= last, "--kv-dtype-layer {spec}: an empty range");
        out.extend((first..=last).map(|l| (l, format)));
    }
    Ok(out)
}

/// How to pick tokens.
#[derive(clap::Args, Debug, Clone)]
pub struct SamplingArgs {
    /// 0 is greedy.
    #[arg(long, default_value_t = 0.0)]
    temperature: f32,
    /// Keep the k most likely tokens (0: all).
    #[arg(long, default_value_t = 40)]
    top_k: usize,
    /// Keep the most likely tokens up to this probability mass.
    #[arg(long, default_value_t = 0.95)]
    top_p: f32,
    /// Drop tokens less likely than this times the most likely one.
    #[arg(long, default_value_t = 0.05)]
    min_p: f32,
    /// Penalty on tokens seen in the last 64 (1: off).
    #[arg(long, default_value_t = 1.0)]
    repeat_penalty: f32,
    /// Subtracted per occurrence of a seen token.
    #[arg(long, default_value_t = 0.0)]
    frequency_penalty: f32,
    /// Subtracted once from every seen token.
    #[arg(long, default_value_t = 0.0)]
    presence_penalty: f32,
    /// Seed of the draws (same seed, same text).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// New tokens at most.
    #[arg(long, default_value_t = 256)]
    max_tokens: usize,
    /// Stop when the text contains this (repeatable).
    #[arg(long)]
    stop: Vec<String>,
}

impl SamplingArgs {
    fn sampler(&self) -> SamplerConfig {
        SamplerConfig {
            temperature: self.temperature,
            top_k: self.top_k,
            top_p: self.top_p,
            min_p: self.min_p,
            repetition_penalty: self.repeat_penalty,
            frequency_penalty: self.frequency_penalty,
            presence_penalty: self.presence_penalty,
            seed: self.seed,
            ..SamplerConfig::default()
        }
    }
}

/// A loaded model with its tokenizer and chat template.
struct Loaded {
    model: Model,
    tokenizer: Tokenizer,
    template: ChatTemplate,
    path: PathBuf,
    load_seconds: f64,
}

fn load(args: &ModelArgs) -> anyhow::Result<Loaded> {
    let mode: Mode = args
        .mode
        .parse()
        .map_err(|e: String| anyhow::anyhow!("--mode: {e}"))?;
    let opts = fetch::FetchOptions {
        quiet: false,
        offline: args.offline,
    };
    let path =
        fetch::resolve(&args.model, &opts).with_context(|| format!("--model {}", args.model))?;
    let start = Instant::now();
    let file = GgufFile::open(&path).with_context(|| format!("opening {}", path.display()))?;
    let tokenizer = Tokenizer::from_gguf(&file).context("reading the tokenizer")?;
    let template = ChatTemplate::from_gguf(&file).context("reading the chat template")?;
    let model = Model::load(
        &file,
        &LoadOptions {
            mode,
            max_tokens: args.ctx,
            kv_format: args
                .kv_dtype
                .parse()
                .map_err(|e| anyhow::anyhow!("--kv-dtype {}: {e}", args.kv_dtype))?,
            kv_layer_formats: parse_kv_layers(&args.kv_dtype_layer)?,
            kv_centering: !args.no_kv_centering,
            ..Default::default()
        },
    )
    .with_context(|| format!("loading {}", path.display()))?;
    Ok(Loaded {
        model,
        tokenizer,
        template,
        path,
        load_seconds: start.elapsed().as_secs_f64(),
    })
}

/// Generates from `prompt` (its first `reused` tokens already in the KV
/// cache), streaming the text to stdout; returns the generation and its
/// text.
fn stream(
    m: &Loaded,
    prompt: &[u32],
    reused: usize,
    sampling: &SamplingArgs,
) -> anyhow::Result<(Generation, String)> {
    let opts = GenerateOptions {
        max_new_tokens: sampling.max_tokens,
        sampler: sampling.sampler(),
        stop_tokens: m.tokenizer.eog_ids(),
    };
    let mut decoder = m.tokenizer.stream_decoder(true);
    let mut text = String::new();
    let mut failure = None;
    let generation = generate_reusing(&m.model, prompt, reused, &opts, |id| {
        let piece = match decoder.push(&m.tokenizer, id) {
            Ok(p) => p,
            Err(e) => {
                failure = Some(e);
                return ControlFlow::Break(());
            }
        };
        text.push_str(&piece);
        let stop = sampling
            .stop
            .iter()
            .find(|s| !s.is_empty() && text.contains(s.as_str()));
        let shown = match stop {
            // Print up to the stop string, then end.
            Some(s) => {
                let cut = text.find(s.as_str()).unwrap_or(text.len());
                let before = text.len() - piece.len();
                let tail = if cut > before { &text[before..cut] } else { "" };
                let _ = out!("{tail}");
                text.truncate(cut);
                return ControlFlow::Break(());
            }
            None => piece,
        };
        let _ = out!("{shown}");
        let _ = std::io::stdout().flush();
        ControlFlow::Continue(())
    })?;
    if let Some(e) = failure {
        return Err(e).context("decoding a token");
    }
    let rest = decoder.finish();
    let _ = out!("{rest}");
    text.push_str(&rest);
    Ok((generation, text))
}

fn report(m: &Loaded, g: &Generation) -> anyhow::Result<()> {
    eprintln!(
        "\n[{}: {} mode; prompt {} tokens ({} reused from the cache), time to first token {:.1} ms, prefill {:.1} tok/s, decode {:.1} tok/s over {} tokens, {:?}]",
        m.path.file_name().map_or_else(|| "model".into(), |n| n.to_string_lossy()),
        m.model.mode().name(),
        g.prompt_tokens,
        g.reused_tokens,
        g.time_to_first_token.as_secs_f64() * 1e3,
        g.prefill_tokens_per_second(),
        g.decode_tokens_per_second(),
        g.tokens.len(),
        g.finish,
    );
    Ok(())
}

/// Arguments of `exodus run`.
#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// The user's message (or the raw prompt with `--raw`).
    prompt: String,
    /// A system message before it.
    #[arg(long)]
    system: Option<String>,
    /// Send the prompt as it is, without the chat template.
    #[arg(long)]
    raw: bool,
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    sampling: SamplingArgs,
}

/// `exodus run "PROMPT"`.
pub fn run(args: &RunArgs) -> anyhow::Result<()> {
    let m = load(&args.model)?;
    let text = if args.raw {
        args.prompt.clone()
    } else {
        let mut messages = Vec::new();
        if let Some(s) = &args.system {
            messages.push(Message::system(s.clone()));
        }
        messages.push(Message::user(args.prompt.clone()));
        m.template.render(&messages, true)?
    };
    let ids = m.tokenizer.encode(&text, true, !args.raw)?;
    let (g, _) = stream(&m, &ids, 0, &args.sampling)?;
    outln!()?;
    report(&m, &g)
}

/// Arguments of `exodus chat`.
#[derive(clap::Args, Debug)]
pub struct ChatArgs {
    /// A system message for the conversation.
    #[arg(long)]
    system: Option<String>,
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    sampling: SamplingArgs,
}

/// `exodus chat`: reads user turns from stdin (one per line; `/reset`
/// starts over, an empty line or end of input quits) and keeps the
/// conversation. The KV cache keeps it too: each turn runs only the tokens
/// after the longest prefix it shares with what the cache holds.
pub fn chat(args: &ChatArgs) -> anyhow::Result<()> {
    let m = load(&args.model)?;
    let mut messages = Vec::new();
    if let Some(s) = &args.system {
        messages.push(Message::system(s.clone()));
    }
    // The tokens whose keys and values the cache holds, positions 0 ...
    let mut in_cache: Vec<u32> = Vec::new();
    let stdin = std::io::stdin();
    eprintln!(
        "[{} loaded in {:.1} s; type a message, /reset to start over, an empty line to quit]",
        m.path.display(),
        m.load_seconds
    );
    loop {
        eprint!("> ");
        let mut line = String::new();
        if stdin.lock().read_line(&mut line)? == 0 || line.trim().is_empty() {
            return Ok(());
        }
        let line = line.trim_end_matches(['\n', '\r']);
        if line == "/reset" {
            messages.truncate(usize::from(args.system.is_some()));
            continue;
        }
        messages.push(Message::user(line));
        let prompt = m.template.render(&messages, true)?;
        let ids = m.tokenizer.encode(&prompt, true, true)?;
        if ids.len() >= m.model.max_tokens() {
            messages.pop();
            eprintln!(
                "[the conversation ({} tokens) no longer fits the {}-token context: /reset]",
                ids.len(),
                m.model.max_tokens()
            );
            continue;
        }
        let shared = in_cache
            .iter()
            .zip(&ids)
            .take_while(|(a, b)| a == b)
            .count();
        let reused = shared.min(ids.len() - 1);
        let (g, text) = stream(&m, &ids, reused, &args.sampling)?;
        outln!()?;
        report(&m, &g)?;
        in_cache = ids;
        in_cache.extend_from_slice(&g.tokens);
        in_cache.truncate(g.cached_positions);
        messages.push(Message::assistant(text));
    }
}

/// Arguments of `exodus perplexity`.
#[derive(clap::Args, Debug)]
pub struct PerplexityArgs {
    /// The text file to score.
    #[arg(short = 'f', long = "file")]
    file: PathBuf,
    /// Tokens per window (llama.cpp's `-c`).
    #[arg(short = 'c', long = "ctx-size", default_value_t = 512)]
    window: usize,
    #[command(flatten)]
    model: ModelArgs,
}

/// `exodus perplexity -f FILE -c 512`: llama.cpp's method, so the numbers
/// compare with its `perplexity` tool.
pub fn perplexity_cmd(args: &PerplexityArgs) -> anyhow::Result<()> {
    let mut margs = args.model.clone();
    margs.ctx = margs.ctx.max(args.window);
    let m = load(&margs)?;
    let text = std::fs::read_to_string(&args.file)
        .with_context(|| format!("reading {}", args.file.display()))?;
    let ids = m.tokenizer.encode(&text, false, false)?;
    let bos = if m.tokenizer.add_bos() {
        m.tokenizer.bos()
    } else {
        None
    };
    let start = Instant::now();
    let p = perplexity(&m.model, &ids, args.window, bos, |c, n, ppl| {
        eprintln!("[{c}/{n}] {ppl:.4}");
    })?;
    let secs = start.elapsed().as_secs_f64();
    outln!(
        "perplexity {:.4} (nll {:.5}) over {} scored tokens in {} windows of {} ({} tokens, {:.1} s, {:.1} tok/s, {} mode)",
        p.ppl,
        p.nll,
        p.scored,
        p.chunks,
        args.window,
        ids.len(),
        secs,
        (p.chunks * args.window) as f64 / secs,
        m.model.mode().name()
    )?;
    Ok(())
}

/// Arguments of `exodus bench model`.
#[derive(clap::Args, Debug)]
pub struct BenchModelArgs {
    /// Prompt-processing tokens (llama-bench's pp).
    #[arg(long, default_value_t = 512)]
    pp: usize,
    /// Generated tokens (llama-bench's tg).
    #[arg(long, default_value_t = 128)]
    tg: usize,
    /// Runs of each.
    #[arg(long, default_value_t = 3)]
    repeats: usize,
    /// Where to write the JSON report.
    #[arg(long, default_value = "bench/results/model.json")]
    out: PathBuf,
    #[command(flatten)]
    model: ModelArgs,
}

/// Bytes of weights a decode step reads: every tensor, except the token
/// embedding when the model has its own output matrix (a step then reads
/// one embedding row).
fn streamed_bytes_per_token(file: &GgufFile) -> u64 {
    let untied = file.tensor("output.weight").is_some();
    file.tensors()
        .iter()
        .filter(|t| !(untied && t.name() == "token_embd.weight"))
        .map(|t| t.byte_size())
        .sum()
}

/// `exodus bench model`: prompt processing (`pp`) and token generation
/// (`tg`) tokens per second like llama-bench, min and median over repeats.
pub fn bench_model(args: &BenchModelArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.repeats > 0 && args.pp > 0 && args.tg > 0,
        "--pp, --tg and --repeats must be at least 1"
    );
    let mut margs = args.model.clone();
    margs.ctx = margs.ctx.max(args.pp + args.tg);
    let m = load(&margs)?;
    let vocab = m.model.config().vocab as u64;
    // Arbitrary valid tokens (llama-bench uses random ones too).
    let tokens: Vec<u32> = (0..args.pp as u64)
        .map(|i| ((i * 7919 + 13) % vocab) as u32)
        .collect();
    m.model.forward(&tokens, 0, false)?; // compile / warm up
    m.model.forward(&tokens[..1], args.pp, false)?;
    let mut pp = Vec::new();
    let mut tg = Vec::new();
    for _ in 0..args.repeats {
        let t = Instant::now();
        m.model.forward(&tokens, 0, false)?;
        pp.push(args.pp as f64 / t.elapsed().as_secs_f64());
        let t = Instant::now();
        for i in 0..args.tg {
            m.model
                .forward(&tokens[i % args.pp..i % args.pp + 1], i, false)?;
        }
        tg.push(args.tg as f64 / t.elapsed().as_secs_f64());
    }
    let stats = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        (v[0], v[v.len() / 2], v[v.len() - 1])
    };
    let (pp_min, pp_med, pp_max) = stats(&mut pp);
    let (tg_min, tg_med, tg_max) = stats(&mut tg);
    outln!(
        "{} ({} mode): pp{} {:.1} tok/s (median; min {:.1}, max {:.1}), tg{} {:.1} tok/s (median; min {:.1}, max {:.1}), {} repeats",
        m.path.file_name().map_or_else(|| "model".into(), |n| n.to_string_lossy()),
        m.model.mode().name(),
        args.pp, pp_med, pp_min, pp_max,
        args.tg, tg_med, tg_min, tg_max,
        args.repeats
    )?;
    // The physical limit of tg, measured in the same run: every generated
    // token streams the weights once, at best at the machine's read speed.
    let file = GgufFile::open(&m.path).with_context(|| format!("opening {}", m.path.display()))?;
    let bytes_per_token = streamed_bytes_per_token(&file);
    let read_gbps = exodus_kernels::bench::read_gbps(
        exodus_kernels::pool::global(),
        bytes_per_token as usize,
        5,
    );
    let tg_bound = read_gbps * 1e9 / bytes_per_token as f64;
    outln!(
        "tg bound: {:.1} MB of weights read per token at {:.1} GB/s ({} threads reading as many bytes, best of 5) = {:.1} tok/s; tg{} median at {:.0}% of it, best at {:.0}%",
        bytes_per_token as f64 / 1e6,
        read_gbps,
        exodus_kernels::pool::global().threads(),
        tg_bound,
        args.tg,
        100.0 * tg_med / tg_bound,
        100.0 * tg_max / tg_bound,
    )?;
    let report = json!({
        "bench": "model", "model": m.path.file_name().map(|n| n.to_string_lossy().into_owned()),
        "mode": m.model.mode().name(), "pp": args.pp, "tg": args.tg, "repeats": args.repeats,
        "pp_tokens_per_second": {"min": pp_min, "median": pp_med, "max": pp_max},
        "tg_tokens_per_second": {"min": tg_min, "median": tg_med, "max": tg_max},
        "weight_bytes_per_token": bytes_per_token, "read_gbps": read_gbps,
        "tg_bound_tokens_per_second": tg_bound,
    });
    if let Some(dir) = args.out.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(&args.out, serde_json::to_string_pretty(&report)? + "\n")
        .with_context(|| format!("writing {}", args.out.display()))?;
    outln!("wrote {}", args.out.display())?;
    Ok(())
}
