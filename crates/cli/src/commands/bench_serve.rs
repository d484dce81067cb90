//! `exodus bench serve --url URL`: a load generator for any
//! OpenAI-compatible server (exodus, llama.cpp's, vLLM...), so that one
//! piece of code measures them all the same way.
//!
//! Each request is a streamed `/v1/completions` call with greedy sampling,
//! a prompt of about `--prompt-tokens` tokens (common English words, most
//! of them one token each; an optional `--shared-prefix` of words common to
//! every prompt) and `--output-tokens` new tokens. Load is a fixed number
//! of clients each sending one request after another (`--concurrency`, a
//! list sweeps several levels), or arrivals at a Poisson `--rate`. Each
//! level is bounded by `--requests` and `--duration`.
//!
//! Per request: time to first token (TTFT, from sending the request to the
//! first text), time per output token after the first (TPOT), the gaps
//! between streamed tokens (ITL) and the end-to-end latency; per level:
//! their mean, p50, p90, p99, request and token throughput, goodput (the
//! requests per second that met every `--slo`), and with `--watts` etc. the
//! energy and cost per million output tokens. Results go to a JSON file and
//! an SVG plot of latency against load.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use exodus_numerics::sample::SplitMix64 as Rng;
use serde_json::{json, Value};

/// Arguments of `exodus bench serve`.
#[derive(clap::Args, Debug)]
pub struct BenchServeArgs {
    /// The server's base URL (`http://HOST:PORT`; `/v1/...` is appended).
    #[arg(long)]
    url: String,
    /// The model name to send (default: the first of `/v1/models`).
    #[arg(long)]
    model: Option<String>,
    /// Clients sending one request after another; a comma-separated list
    /// runs one level each (`1,4,8`).
    #[arg(long, default_value = "4")]
    concurrency: String,
    /// Poisson arrivals at this many requests per second instead of fixed
    /// clients (a comma-separated list runs one level each).
    #[arg(long)]
    rate: Option<String>,
    /// Requests per level at most.
    #[arg(long, default_value_t = 32)]
    requests: usize,
    /// Seconds per level at most (no new request after it).
    #[arg(long, default_value_t = 600.0)]
    duration: f64,
    /// Prompt length, tokens (about: words of one token each, mostly).
    #[arg(long, default_value_t = 500)]
    prompt_tokens: usize,
    /// Output length, tokens (`max_tokens`).
    #[arg(long, default_value_t = 64)]
    output_tokens: usize,
    /// Length distribution of prompts and outputs: `fixed`, or `uniform`
    /// (each length drawn from half to 1.5 times the given one).
    #[arg(long, default_value = "fixed")]
    lengths: String,
    /// Words at the start of every prompt (a shared system prompt).
    #[arg(long, default_value_t = 0)]
    shared_prefix: usize,
    /// Send `ignore_eos: true` (a vLLM / llama.cpp extension) so every
    /// answer runs to `max_tokens`.
    #[arg(long)]
    ignore_eos: bool,
    /// Service-level objectives for goodput, seconds: `ttft=0.5,tpot=0.05`
    /// (also `e2e=`).
    #[arg(long)]
    slo: Option<String>,
    /// Power drawn by the server machine, watts (for the cost line).
    #[arg(long)]
    watts: Option<f64>,
    /// Power usage effectiveness of the facility.
    #[arg(long, default_value_t = 1.0)]
    pue: f64,
    /// Electricity price, USD per kWh.
    #[arg(long, default_value_t = 0.0)]
    usd_per_kwh: f64,
    /// Machine price, USD per hour.
    #[arg(long, default_value_t = 0.0)]
    usd_per_hour: f64,
    /// Seed of the prompts and lengths.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// A name for the server in the report.
    #[arg(long, default_value = "server")]
    label: String,
    /// Per-request timeout, seconds.
    #[arg(long, default_value_t = 900.0)]
    timeout: f64,
    /// Where to write the JSON report (the SVG plot goes next to it).
    #[arg(long, default_value = "bench/results/serve.json")]
    out: PathBuf,
}

/// One request's measurements.
#[derive(Debug, Clone, Default)]
struct Sample {
    ok: bool,
    error: Option<String>,
    ttft: f64,
    e2e: f64,
    itl: Vec<f64>,
    prompt_tokens: usize,
    output_tokens: usize,
}

impl Sample {
    fn tpot(&self) -> Option<f64> {
        (self.output_tokens > 1).then(|| (self.e2e - self.ttft) / (self.output_tokens - 1) as f64)
    }
}

/// `host:port` of an `http://` URL.
fn host_port(url: &str) -> anyhow::Result<String> {
    let rest = url
        .strip_prefix("http://")
        .with_context(|| format!("{url}: only http:// URLs"))?;
    let host = rest.split('/').next().unwrap_or(rest);
    Ok(if host.contains(':') {
        host.to_string()
    } else {
        format!("{host}:80")
    })
}

/// Common words, one token each in most English BPE vocabularies.
const WORDS: &[&str] = &[
    "the", "of", "and", "to", "in", "is", "that", "for", "it", "as", "was", "with", "be", "by",
    "on", "not", "he", "this", "are", "or", "his", "from", "at", "which", "but", "have", "an",
    "had", "they", "you", "were", "their", "one", "all", "we", "can", "her", "has", "there",
    "been", "if", "more", "when", "will", "would", "who", "so", "no", "time", "people", "water",
    "world", "house", "school", "day", "year", "work", "city", "river", "light",
];

fn words(rng: &mut Rng, n: usize) -> String {
    (0..n)
        .map(|_| WORDS[(rng.next_u64() % WORDS.len() as u64) as usize])
        .collect::<Vec<_>>()
        .join(" ")
}

fn length(rng: &mut Rng, base: usize, dist: &str) -> usize {
    match dist {
        "uniform" => ((base as f64) * (0.5 + rng.uniform())).round().max(1.0) as usize,
        _ => base.max(1),
    }
}

/// One HTTP/1.1 request with a JSON body; returns the status and a reader
/// positioned at the body, and whether the body is chunked.
fn send(
    addr: &str,
    path: &str,
    body: &Value,
    timeout: Duration,
) -> anyhow::Result<(u16, bool, BufReader<TcpStream>)> {
    let mut s = TcpStream::connect(addr).with_context(|| format!("connecting to {addr}"))?;
    s.set_read_timeout(Some(timeout))?;
    s.set_nodelay(true)?;
    let body = body.to_string();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\naccept: text/event-stream\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut r = BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line)?;
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .with_context(|| format!("bad status line {line:?}"))?;
    let mut chunked = false;
    loop {
        line.clear();
        if r.read_line(&mut line)? == 0 || line == "\r\n" {
            break;
        }
        let lower = line.to_ascii_lowercase();
        if lower.starts_with("transfer-encoding:") && lower.contains("chunked") {
            chunked = true;
        }
    }
    Ok((status, chunked, r))
}

/// The body's bytes as they arrive, de-chunked; `on_bytes` is called with
/// each piece.
fn read_body(
    r: &mut BufReader<TcpStream>,
    chunked: bool,
    mut on_bytes: impl FnMut(&[u8]) -> bool,
) -> anyhow::Result<()> {
    if !chunked {
        let mut buf = [0u8; 8192];
        loop {
            let n = r.read(&mut buf)?;
            if n == 0 || !on_bytes(&buf[..n]) {
                return Ok(());
            }
        }
    }
    let mut line = String::new();
    loop {
        line.clear();
        if r.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let size = usize::from_str_radix(line.trim(), 16)
            .with_context(|| format!("bad chunk size {line:?}"))?;
        if size == 0 {
            return Ok(());
        }
        let mut chunk = vec![0u8; size];
        r.read_exact(&mut chunk)?;
        let mut crlf = [0u8; 2];
        r.read_exact(&mut crlf)?;
        if !on_bytes(&chunk) {
            return Ok(());
        }
    }
}

/// Runs one streamed completion and measures it.
fn one_request(addr: &str, body: &Value, timeout: Duration) -> Sample {
    let start = Instant::now();
    let mut sample = Sample::default();
    let result = (|| -> anyhow::Result<()> {
        let (status, chunked, mut r) = send(addr, "/v1/completions", body, timeout)?;
        let mut pending = Vec::new();
        let mut last: Option<Instant> = None;
        let mut chunks = 0usize;
        let mut error_body = String::new();
        let mut done = false;
        read_body(&mut r, chunked, |bytes| {
            if status != 200 {
                error_body.push_str(&String::from_utf8_lossy(bytes));
                return true;
            }
            pending.extend_from_slice(bytes);
            let now = Instant::now();
            while let Some(end) = pending.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = pending.drain(..=end).collect();
                let line = String::from_utf8_lossy(&line);
                let Some(data) = line.trim().strip_prefix("data:") else {
                    continue;
                };
                let data = data.trim();
                if data == "[DONE]" {
                    done = true;
                    return false;
                }
                let Ok(v) = serde_json::from_str::<Value>(data) else {
                    continue;
                };
                if let Some(u) = v.get("usage").filter(|u| !u.is_null()) {
                    sample.prompt_tokens = u["prompt_tokens"].as_u64().unwrap_or(0) as usize;
                    sample.output_tokens = u["completion_tokens"].as_u64().unwrap_or(0) as usize;
                }
                if v.get("error").is_some() {
                    error_body = data.to_string();
                }
                let text = v["choices"][0]["text"].as_str().unwrap_or_default();
                if !text.is_empty() {
                    chunks += 1;
                    match last {
                        None => sample.ttft = (now - start).as_secs_f64(),
                        Some(t) => sample.itl.push((now - t).as_secs_f64()),
                    }
                    last = Some(now);
                }
            }
            true
        })?;
        if status != 200 {
            bail!("HTTP {status}: {}", error_body.trim());
        }
        if !error_body.is_empty() {
            bail!("{error_body}");
        }
        if !done {
            bail!("the stream ended without [DONE]");
        }
        if sample.output_tokens == 0 {
            sample.output_tokens = chunks;
        }
        Ok(())
    })();
    sample.e2e = start.elapsed().as_secs_f64();
    match result {
        Ok(()) => sample.ok = sample.output_tokens > 0,
        Err(e) => sample.error = Some(format!("{e:#}")),
    }
    sample
}

/// How load is applied in one level.
#[derive(Debug, Clone, Copy)]
enum Load {
    Clients(usize),
    Rate(f64),
}

impl Load {
    fn name(self) -> String {
        match self {
            Load::Clients(n) => format!("concurrency {n}"),
            Load::Rate(r) => format!("rate {r}/s"),
        }
    }
}

/// Percentile `p` (0 to 100) of sorted values.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (p / 100.0 * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn stats(mut v: Vec<f64>) -> Value {
    v.retain(|x| x.is_finite());
    v.sort_by(f64::total_cmp);
    let mean = if v.is_empty() {
        f64::NAN
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    };
    json!({"mean": mean, "p50": percentile(&v, 50.0), "p90": percentile(&v, 90.0), "p99": percentile(&v, 99.0), "n": v.len()})
}

/// Service-level objectives, seconds.
#[derive(Debug, Default, Clone, Copy)]
struct Slo {
    ttft: Option<f64>,
    tpot: Option<f64>,
    e2e: Option<f64>,
}

fn parse_slo(s: &str) -> anyhow::Result<Slo> {
    let mut slo = Slo::default();
    for part in s.split(',').filter(|p| !p.is_empty()) {
        let (k, v) = part
            .split_once('=')
            .with_context(|| format!("--slo {part}: NAME=SECONDS"))?;
        let v: f64 = v.parse().with_context(|| format!("--slo {part}"))?;
        match k {
            "ttft" => slo.ttft = Some(v),
            "tpot" => slo.tpot = Some(v),
            "e2e" => slo.e2e = Some(v),
            _ => bail!("--slo {k}: one of ttft, tpot, e2e"),
        }
    }
    Ok(slo)
}

fn meets(s: &Sample, slo: &Slo) -> bool {
    s.ok && slo.ttft.is_none_or(|t| s.ttft <= t)
        && slo.tpot.is_none_or(|t| s.tpot().is_none_or(|p| p <= t))
        && slo.e2e.is_none_or(|t| s.e2e <= t)
}

/// Runs one level and summarizes it.
fn run_level(
    a: &BenchServeArgs,
    addr: &str,
    model: &str,
    load: Load,
    level: usize,
    slo: &Slo,
) -> Value {
    // The shared prefix is the same in every level; the rest of the
    // prompts differ between levels, so no level hits another's cache.
    let prefix = words(&mut Rng::new(a.seed ^ 0x5eed), a.shared_prefix);
    let mut rng = Rng::new(a.seed ^ 0x9e37 ^ (level as u64 + 1).wrapping_mul(0x1000_0000_01b3));
    let bodies: Vec<Value> = (0..a.requests)
        .map(|_| {
            let own = length(
                &mut rng,
                a.prompt_tokens.saturating_sub(a.shared_prefix).max(1),
                &a.lengths,
            );
            let prompt = if prefix.is_empty() {
                words(&mut rng, own)
            } else {
                format!("{prefix} {}", words(&mut rng, own))
            };
            let mut body = json!({
                "model": model, "prompt": prompt, "temperature": 0,
                "max_tokens": length(&mut rng, a.output_tokens, &a.lengths),
                "stream": true, "stream_options": {"include_usage": true},
            });
            if a.ignore_eos {
                body["ignore_eos"] = json!(true);
            }
            body
        })
        .collect();
    let bodies = Arc::new(bodies);
    let samples = Arc::new(Mutex::new(Vec::new()));
    let timeout = Duration::from_secs_f64(a.timeout);
    let deadline = Instant::now() + Duration::from_secs_f64(a.duration);
    let start = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let mut threads = Vec::new();
    let spawn = |i: usize| {
        let (bodies, samples, addr) = (Arc::clone(&bodies), Arc::clone(&samples), addr.to_string());
        std::thread::spawn(move || {
            let s = one_request(&addr, &bodies[i], timeout);
            samples.lock().unwrap_or_else(|e| e.into_inner()).push(s);
        })
    };
    match load {
        Load::Clients(n) => {
            for _ in 0..n {
                let (bodies, samples, addr, next) = (
                    Arc::clone(&bodies),
                    Arc::clone(&samples),
                    addr.to_string(),
                    Arc::clone(&next),
                );
                threads.push(std::thread::spawn(move || loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= bodies.len() || Instant::now() >= deadline {
                        return;
                    }
                    let s = one_request(&addr, &bodies[i], timeout);
                    samples.lock().unwrap_or_else(|e| e.into_inner()).push(s);
                }));
            }
        }
        Load::Rate(rate) => {
            let mut arrivals = Rng::new(a.seed ^ 0xa441);
            for i in 0..bodies.len() {
                if Instant::now() >= deadline {
                    break;
                }
                threads.push(spawn(i));
                let gap = -(1.0 - arrivals.uniform()).ln() / rate.max(1e-9);
                std::thread::sleep(Duration::from_secs_f64(gap));
            }
        }
    }
    for t in threads {
        let _ = t.join();
    }
    let wall = start.elapsed().as_secs_f64();
    let samples = samples.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let ok: Vec<&Sample> = samples.iter().filter(|s| s.ok).collect();
    let output: usize = ok.iter().map(|s| s.output_tokens).sum();
    let prompt: usize = ok.iter().map(|s| s.prompt_tokens).sum();
    let good = samples.iter().filter(|s| meets(s, slo)).count();
    let errors: Vec<&str> = samples
        .iter()
        .filter_map(|s| s.error.as_deref())
        .take(5)
        .collect();
    let mut level = json!({
        "load": load.name(),
        "concurrency": match load { Load::Clients(n) => json!(n), Load::Rate(_) => Value::Null },
        "rate": match load { Load::Rate(r) => json!(r), Load::Clients(_) => Value::Null },
        "requests": samples.len(), "completed": ok.len(), "failed": samples.len() - ok.len(),
        "first_errors": errors, "duration_s": wall,
        "mean_prompt_tokens": if ok.is_empty() { 0.0 } else { prompt as f64 / ok.len() as f64 },
        "mean_output_tokens": if ok.is_empty() { 0.0 } else { output as f64 / ok.len() as f64 },
        "ttft_s": stats(ok.iter().map(|s| s.ttft).collect()),
        "tpot_s": stats(ok.iter().filter_map(|s| s.tpot()).collect()),
        "itl_s": stats(ok.iter().flat_map(|s| s.itl.iter().copied()).collect()),
        "e2e_s": stats(ok.iter().map(|s| s.e2e).collect()),
        "request_throughput": ok.len() as f64 / wall,
        "output_token_throughput": output as f64 / wall,
        "total_token_throughput": (output + prompt) as f64 / wall,
        "goodput": good as f64 / wall,
    });
    if let Some(watts) = a.watts {
        let kwh = watts * a.pue * wall / 3.6e6;
        let per_million = 1e6 / output.max(1) as f64;
        level["energy_kwh_per_million_output_tokens"] = json!(kwh * per_million);
        level["usd_per_million_output_tokens"] =
            json!((kwh * a.usd_per_kwh + a.usd_per_hour * wall / 3600.0) * per_million);
    } else if a.usd_per_hour > 0.0 {
        level["usd_per_million_output_tokens"] =
            json!(a.usd_per_hour * wall / 3600.0 * 1e6 / output.max(1) as f64);
    }
    level
}

/// The served model's name from `/v1/models`.
fn first_model(addr: &str) -> anyhow::Result<String> {
    let mut s = TcpStream::connect(addr).with_context(|| format!("connecting to {addr}"))?;
    write!(
        s,
        "GET /v1/models HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n"
    )?;
    let mut raw = String::new();
    s.read_to_string(&mut raw)?;
    let body = raw
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .unwrap_or_default();
    // A chunked body: the JSON object sits between the chunk sizes.
    let json_text = body
        .find('{')
        .zip(body.rfind('}'))
        .map(|(a, b)| &body[a..=b])
        .unwrap_or(body);
    let v: Value =
        serde_json::from_str(json_text).with_context(|| format!("/v1/models answered {body:?}"))?;
    v["data"][0]["id"]
        .as_str()
        .map(str::to_string)
        .with_context(|| format!("/v1/models lists no model: {v}"))
}

/// An SVG plot of TTFT p50/p99 and E2E p50 against the load levels.
fn svg(levels: &[Value], label: &str) -> String {
    let series = [
        ("ttft_s", "p50", "#1f77b4"),
        ("ttft_s", "p99", "#d62728"),
        ("e2e_s", "p50", "#2ca02c"),
    ];
    let (w, h, m) = (640.0, 400.0, 60.0);
    let ymax = levels
        .iter()
        .flat_map(|l| {
            series
                .iter()
                .map(move |(k, p, _)| l[*k][*p].as_f64().unwrap_or(0.0))
        })
        .filter(|v| v.is_finite())
        .fold(0.0f64, f64::max)
        .max(1e-3)
        * 1.1;
    let n = levels.len().max(2) - 1;
    let x = |i: usize| m + (w - 2.0 * m) * i as f64 / n as f64;
    let y = |v: f64| h - m - (h - 2.0 * m) * v / ymax;
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n<text x=\"{m}\" y=\"20\">{label}: latency against load (seconds)</text>\n<line x1=\"{m}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"black\"/>\n<line x1=\"{m}\" y1=\"{m}\" x2=\"{m}\" y2=\"{}\" stroke=\"black\"/>\n",
        h - m, w - m, h - m, h - m
    );
    for t in 0..=4 {
        let v = ymax * t as f64 / 4.0;
        out += &format!("<text x=\"5\" y=\"{:.1}\">{v:.2}</text>\n", y(v) + 4.0);
    }
    for (i, l) in levels.iter().enumerate() {
        out += &format!(
            "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n",
            x(i),
            h - m + 18.0,
            l["load"].as_str().unwrap_or("")
        );
    }
    for (s, (k, p, color)) in series.iter().enumerate() {
        let points: Vec<String> = levels
            .iter()
            .enumerate()
            .filter_map(|(i, l)| {
                l[*k][*p]
                    .as_f64()
                    .filter(|v| v.is_finite())
                    .map(|v| format!("{:.1},{:.1}", x(i), y(v)))
            })
            .collect();
        out += &format!(
            "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"2\" points=\"{}\"/>\n",
            points.join(" ")
        );
        out += &format!(
            "<text x=\"{}\" y=\"{}\" fill=\"{color}\">{} {}</text>\n",
            w - m - 100.0,
            m + 16.0 * s as f64,
            k.trim_end_matches("_s"),
            p
        );
    }
    out + "</svg>\n"
}

/// `exodus bench serve`.
pub fn run(a: &BenchServeArgs) -> anyhow::Result<()> {
    let addr = host_port(&a.url)?;
    let slo = a
        .slo
        .as_deref()
        .map(parse_slo)
        .transpose()?
        .unwrap_or_default();
    anyhow::ensure!(a.requests > 0, "--requests must be at least 1");
    anyhow::ensure!(
        matches!(a.lengths.as_str(), "fixed" | "uniform"),
        "--lengths fixed or uniform"
    );
    let model = match &a.model {
        Some(m) => m.clone(),
        None => first_model(&addr)?,
    };
    let loads: Vec<Load> = match &a.rate {
        Some(rates) => rates
            .split(',')
            .map(|r| {
                r.trim()
                    .parse()
                    .map(Load::Rate)
                    .with_context(|| format!("--rate {r}"))
            })
            .collect::<anyhow::Result<_>>()?,
        None => a
            .concurrency
            .split(',')
            .map(|c| {
                c.trim()
                    .parse()
                    .map(Load::Clients)
                    .with_context(|| format!("--concurrency {c}"))
            })
            .collect::<anyhow::Result<_>>()?,
    };
    let mut levels = Vec::new();
    outln!(
        "{:<16} {:>5} {:>6} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "load",
        "ok",
        "failed",
        "ttft p50",
        "ttft p99",
        "tpot p50",
        "itl p99",
        "e2e p99",
        "req/s",
        "out tok/s"
    )?;
    for (i, load) in loads.into_iter().enumerate() {
        let level = run_level(a, &addr, &model, load, i, &slo);
        outln!(
            "{:<16} {:>5} {:>6} {:>9.3} {:>9.3} {:>9.4} {:>9.4} {:>9.3} {:>9.3} {:>9.1}",
            load.name(),
            level["completed"],
            level["failed"],
            level["ttft_s"]["p50"].as_f64().unwrap_or(f64::NAN),
            level["ttft_s"]["p99"].as_f64().unwrap_or(f64::NAN),
            level["tpot_s"]["p50"].as_f64().unwrap_or(f64::NAN),
            level["itl_s"]["p99"].as_f64().unwrap_or(f64::NAN),
            level["e2e_s"]["p99"].as_f64().unwrap_or(f64::NAN),
            level["request_throughput"].as_f64().unwrap_or(0.0),
            level["output_token_throughput"].as_f64().unwrap_or(0.0),
        )?;
        if let Some(cost) = level.get("usd_per_million_output_tokens") {
            outln!(
                "  cost: {cost:.4} USD per million output tokens; energy: {} kWh per million",
                level
                    .get("energy_kwh_per_million_output_tokens")
                    .unwrap_or(&Value::Null)
            )?;
        }
        if let Some(errors) = level["first_errors"].as_array().filter(|e| !e.is_empty()) {
            outln!("  errors: {}", Value::Array(errors.clone()))?;
        }
        levels.push(level);
    }
    let report = json!({
        "bench": "serve", "label": a.label, "url": a.url, "model": model,
        "prompt_tokens": a.prompt_tokens, "output_tokens": a.output_tokens, "lengths": a.lengths,
        "shared_prefix": a.shared_prefix, "ignore_eos": a.ignore_eos, "requests": a.requests,
        "slo": {"ttft": slo.ttft, "tpot": slo.tpot, "e2e": slo.e2e}, "levels": levels,
    });
    if let Some(dir) = a.out.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(&a.out, serde_json::to_string_pretty(&report)? + "\n")
        .with_context(|| format!("writing {}", a.out.display()))?;
    let plot = a.out.with_extension("svg");
    std::fs::write(
        &plot,
        svg(report["levels"].as_array().map_or(&[][..], |v| v), &a.label),
    )
    .with_context(|| format!("writing {}", plot.display()))?;
    outln!("wrote {} and {}", a.out.display(), plot.display())?;
    Ok(())
}
