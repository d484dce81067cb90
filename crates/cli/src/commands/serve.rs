//! `exodus serve`: the OpenAI-compatible server on the default model (or
//! `--model`): load, size the KV pool from `--kv-cache-mib` and
//! `--kv-dtype`, compile the graphs, start the engine, listen, and shut
//! down gracefully on Ctrl-C / SIGTERM (new requests get 503, admitted ones
//! finish).

use std::io::Write;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use exodus_comm::{Bootstrap, Communicator};
use exodus_engine::tensor_parallel::{run_worker, CommCollective, SharedComm, TensorParallel};
use exodus_engine::text::{ChatTemplate, Tokenizer};
use exodus_engine::{BlockManager, Engine, Scheduler, SchedulerConfig, Shutdown, StepModel, Work};
use exodus_gguf::GgufFile;
use exodus_graph::KvFormat;
use exodus_model::llama::KV_BLOCK_TOKENS;
use exodus_model::{fetch, LoadOptions, Model, Shard};
use exodus_server::{HttpLimits, ServerState};

/// Arguments of `exodus serve`.
#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Port to listen on (0: any free port; the address is printed).
    #[arg(long, default_value_t = 8000)]
    port: u16,
    /// A GGUF file, or a known model name (fetched into the cache when
    /// absent).
    #[arg(long, default_value = fetch::DEFAULT_MODEL)]
    model: String,
    /// The name clients use for it (default: the model's name).
    #[arg(long)]
    served_model_name: Option<String>,
    /// Never touch the network (fail if the model is not cached).
    #[arg(long)]
    offline: bool,
    /// `graph` or `eager`.
    #[arg(long, default_value = "graph")]
    mode: String,
    /// Positions one request may use, prompt and answer (0: the model's
    /// context, at most 4096).
    #[arg(long, default_value_t = 0)]
    ctx: usize,
    /// Element format of the KV cache: bf16, f16, fp8-e4m3, fp8-e5m2,
    /// mxfp8, mxfp4.
    #[arg(long, default_value = "f16")]
    kv_dtype: String,
    /// Another KV format for some layers: `LAYER=FORMAT` or
    /// `FIRST-LAST=FORMAT` (repeatable).
    #[arg(long)]
    kv_dtype_layer: Vec<String>,
    /// Store FP8/MX cache rows as they are, not centered on the key and
    /// value offsets measured at load (centering costs a calibration pass
    /// of about 1,300 tokens at load and cuts the formats' rounding).
    #[arg(long)]
    no_kv_centering: bool,
    /// Memory of the KV cache pool, MiB (shared by all requests).
    #[arg(long, default_value_t = 256)]
    kv_cache_mib: usize,
    /// Requests running at once.
    #[arg(long, default_value_t = 8)]
    max_running: usize,
    /// Requests waiting at most (429 beyond).
    #[arg(long, default_value_t = 64)]
    max_queue: usize,
    /// Prompt tokens waiting at most (429 beyond).
    #[arg(long, default_value_t = 65536)]
    max_queue_tokens: usize,
    /// Tokens one engine step runs at most (decodes plus prefill chunks).
    #[arg(long, default_value_t = 256)]
    max_batch_tokens: usize,
    /// Prompts whose prefill shares one step at most.
    #[arg(long, default_value_t = 2)]
    max_prefill_seqs: usize,
    /// Largest request body, bytes (413 beyond).
    #[arg(long, default_value_t = 4 << 20)]
    max_body_bytes: usize,
    /// Seconds a client has to send a request's headers (the connection is
    /// closed after).
    #[arg(long, default_value_t = 10.0)]
    header_timeout: f64,
    /// Seconds a client has to send a request's body (408 after).
    #[arg(long, default_value_t = 30.0)]
    body_timeout: f64,
    /// Tensor parallelism: split the model over this many ranks (local
    /// processes started here, or the ranks of mpirun / srun / torchrun
    /// when launched under one); rank 0 serves.
    #[arg(long, default_value_t = 1)]
    tp: usize,
    /// Records a trace (Chrome trace-event JSON, for Perfetto: every graph
    /// op, every collective) and writes it here at shutdown; with `--tp`,
    /// rank r > 0 writes `FILE.rank{r}.json`. For diagnosis: the trace
    /// grows with the run.
    #[arg(long)]
    trace: Option<std::path::PathBuf>,
}

/// Writes what was traced, if `--trace` asked for it (rank `rank`'s file).
fn write_trace(args: &ServeArgs, rank: usize) -> anyhow::Result<()> {
    let Some(path) = &args.trace else {
        return Ok(());
    };
    let path = match rank {
        0 => path.clone(),
        r => path.with_extension(format!("rank{r}.json")),
    };
    exodus_trace::set_enabled(false);
    exodus_trace::take()
        .write(&path)
        .with_context(|| format!("writing the trace {}", path.display()))?;
    eprintln!("exodus serve: wrote the trace {}", path.display());
    Ok(())
}

/// Runs the server until Ctrl-C or SIGTERM.
pub fn run(args: &ServeArgs) -> anyhow::Result<()> {
    let start = Instant::now();
    if args.trace.is_some() {
        exodus_trace::set_enabled(true);
    }
    let opts = fetch::FetchOptions {
        quiet: false,
        offline: args.offline,
    };
    let path =
        fetch::resolve(&args.model, &opts).with_context(|| format!("--model {}", args.model))?;
    let kv_format: KvFormat = args
        .kv_dtype
        .parse()
        .map_err(|e| anyhow::anyhow!("--kv-dtype {}: {e}", args.kv_dtype))?;
    let mode = args
        .mode
        .parse()
        .map_err(|e: String| anyhow::anyhow!("--mode: {e}"))?;
    let file = GgufFile::open(&path).with_context(|| format!("opening {}", path.display()))?;
    let tokenizer = Tokenizer::from_gguf(&file).context("reading the tokenizer")?;
    let template = ChatTemplate::from_gguf(&file).context("reading the chat template")?;
    let load = LoadOptions {
        mode,
        max_tokens: args.ctx,
        kv_format,
        kv_layer_formats: super::model::parse_kv_layers(&args.kv_dtype_layer)?,
        kv_centering: !args.no_kv_centering,
        ..Default::default()
    };
    let config = exodus_model::ModelConfig::from_gguf(&file)?;
    let per_token = load.kv_bytes_per_token(&config)?;
    let blocks = (args.kv_cache_mib << 20) / (per_token * KV_BLOCK_TOKENS);
    anyhow::ensure!(
        blocks >= 2,
        "--kv-cache-mib {} holds {blocks} blocks of {KV_BLOCK_TOKENS} tokens at {per_token} bytes per token; give it more",
        args.kv_cache_mib
    );
    if args.tp > 1 {
        return serve_split(args, &file, &path, load, blocks, |model| {
            serve_model(
                args,
                start,
                tokenizer,
                template,
                model,
                (blocks, per_token, kv_format),
            )
        });
    }
    let model = Model::load_pool(&file, &load, blocks)
        .with_context(|| format!("loading {}", path.display()))?;
    warm_up(&model)?;
    serve_model(
        args,
        start,
        tokenizer,
        template,
        model,
        (blocks, per_token, kv_format),
    )
}

/// What a served model tells the engine and the server.
trait Served: StepModel {
    /// The whole model's (or rank 0's shard's) model.
    fn model(&self) -> &Model;
}

impl Served for Model {
    fn model(&self) -> &Model {
        self
    }
}

impl Served for TensorParallel {
    fn model(&self) -> &Model {
        TensorParallel::model(self)
    }
}

/// Runs the engine on `served` and the server in front of it until Ctrl-C
/// or SIGTERM; `pool` is the KV pool (blocks, bytes per token, format).
fn serve_model<M: Served>(
    args: &ServeArgs,
    start: Instant,
    tokenizer: Tokenizer,
    template: ChatTemplate,
    served: M,
    pool: (usize, usize, KvFormat),
) -> anyhow::Result<()> {
    let (blocks, per_token, kv_format) = pool;
    let model = served.model();
    let context = model.max_tokens();
    let scheduler = Scheduler::new(
        SchedulerConfig {
            max_running: args.max_running,
            max_waiting: args.max_queue,
            max_waiting_tokens: args.max_queue_tokens,
            max_batch_tokens: args.max_batch_tokens,
            max_prefill_seqs: args.max_prefill_seqs,
            context,
            vocab: model.config().vocab,
        },
        BlockManager::new(blocks as u32, KV_BLOCK_TOKENS)?,
    )
    .map_err(|e| anyhow::anyhow!("scheduler limits: {e}"))?;
    let invariant = model.batch_invariant();
    let engine = Arc::new(Engine::start(served, scheduler).context("starting the engine")?);
    let name = args
        .served_model_name
        .clone()
        .unwrap_or_else(|| args.model.clone());
    let seconds = |name: &str, s: f64| {
        anyhow::ensure!(
            s.is_finite() && s > 0.0,
            "--{name} must be a positive number of seconds"
        );
        Ok(std::time::Duration::from_secs_f64(s))
    };
    let limits = HttpLimits {
        max_body_bytes: args.max_body_bytes,
        header_read_timeout: seconds("header-timeout", args.header_timeout)?,
        body_read_timeout: seconds("body-timeout", args.body_timeout)?,
    };
    let state = Arc::new(ServerState::new(
        Arc::clone(&engine),
        tokenizer,
        template,
        name.clone(),
        context,
        limits,
    ));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind((args.host.as_str(), args.port))
            .await
            .with_context(|| format!("listening on {}:{}", args.host, args.port))?;
        let addr = listener.local_addr()?;
        state.set_ready(true);
        let mut out = std::io::stdout().lock();
        let split = match args.tp {
            1 => String::new(),
            n => format!(", split over {n} ranks"),
        };
        let centered = if !args.no_kv_centering && exodus_model::centering::is_coarse(kv_format) {
            " (centered)"
        } else {
            ""
        };
        writeln!(
            out,
            "exodus serve: listening on http://{addr} ({name}: {} mode{split}, context {context}, KV {}{centered} in {blocks} blocks of {KV_BLOCK_TOKENS} = {} tokens, {:.0} tokens/GiB; batch-invariant: {invariant}; ready in {:.1} s)",
            args.mode,
            kv_format.name(),
            blocks * KV_BLOCK_TOKENS,
            (1u64 << 30) as f64 / per_token as f64,
            start.elapsed().as_secs_f64(),
        )?;
        out.flush()?;
        drop(out);
        let shutdown = {
            let state = Arc::clone(&state);
            let engine = Arc::clone(&engine);
            async move {
                signal().await;
                eprintln!("exodus serve: shutting down (finishing admitted requests)");
                state.set_ready(false);
                // Admitted requests finish; new ones get 503.
                tokio::task::spawn_blocking(move || engine.shutdown(Shutdown::Drain));
            }
        };
        exodus_server::serve(listener, Arc::clone(&state), shutdown)
            .await
            .context("serving")
    })?;
    engine.shutdown(Shutdown::Drain);
    drop(engine);
    write_trace(args, 0)
}

/// Seconds a worker rank waits for rank 0's next step (the server may idle
/// that long); a rank 0 that dies is noticed at once all the same.
const WORKER_IDLE: std::time::Duration = std::time::Duration::from_secs(365 * 24 * 3600);

/// `--tp N`: joins (or starts) a job of N ranks, each loading its shard of
/// the model; rank 0 serves through `serve` (a [`TensorParallel`] model that
/// sends every step to the others), the others run the steps they get.
/// Started without a launcher, this process is rank 0 and starts the other
/// ranks as copies of itself.
fn serve_split(
    args: &ServeArgs,
    file: &GgufFile,
    path: &std::path::Path,
    load: LoadOptions,
    blocks: usize,
    serve: impl FnOnce(TensorParallel) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let under_launcher = Bootstrap::from_env().ok();
    let mut children = Vec::new();
    let boot = match under_launcher {
        Some(boot) => boot,
        None => {
            let port = std::net::TcpListener::bind("127.0.0.1:0")?
                .local_addr()?
                .port();
            let exe = std::env::current_exe().context("finding the exodus binary")?;
            for rank in 1..args.tp {
                let child = std::process::Command::new(&exe)
                    .args(std::env::args_os().skip(1))
                    .env("RANK", rank.to_string())
                    .env("WORLD_SIZE", args.tp.to_string())
                    .env("MASTER_ADDR", "127.0.0.1")
                    .env("MASTER_PORT", port.to_string())
                    .stdout(std::process::Stdio::null())
                    .spawn()
                    .with_context(|| format!("starting rank {rank}"))?;
                children.push(KillOnDrop(child));
            }
            Bootstrap::new(0, args.tp, ([127, 0, 0, 1], port).into())?
        }
    };
    anyhow::ensure!(
        boot.size == args.tp,
        "--tp {} in a job of {} ranks ({})",
        args.tp,
        boot.size,
        boot.source
    );
    let comm = Communicator::connect(&boot, std::time::Duration::from_secs(120))
        .context("joining the tensor-parallel job")?;
    let rank = comm.rank();
    let comm: SharedComm = Arc::new(std::sync::Mutex::new(comm));
    let load = LoadOptions {
        shard: Shard {
            rank,
            ranks: args.tp,
        },
        ..load
    };
    let mut model = Model::load_pool(file, &load, blocks)
        .with_context(|| format!("loading rank {rank}'s part of {}", path.display()))?;
    model.set_collective(Arc::new(CommCollective(Arc::clone(&comm))));
    if rank != 0 {
        let worked = run_worker(&model, &comm, WORKER_IDLE);
        write_trace(args, rank)?;
        return worked.map_err(|e| anyhow::anyhow!("rank {rank}: {e}"));
    }
    let split = TensorParallel::new(model, comm);
    // Warm-up goes through the job: every rank compiles the same shapes.
    warm_up(&split)?;
    let served = serve(split);
    // The engine has dropped the model, which told the other ranks to stop.
    for mut child in children {
        let _ = child.0.wait();
    }
    served
}

/// A rank started here, stopped if this process ends first.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Compiles the decode and a prefill shape before the server says ready
/// (through the whole job when the model is split).
fn warm_up(model: &impl StepModel) -> anyhow::Result<()> {
    for tokens in [vec![1u32; 8], vec![1]] {
        model
            .run_step(&[Work {
                id: 0,
                start: 0,
                tokens,
                table: vec![0],
            }])
            .map_err(|e| anyhow::anyhow!("warming up the model: {e}"))?;
    }
    Ok(())
}

/// Ctrl-C, or SIGTERM on Unix.
async fn signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
