//! `exodus-server`: the OpenAI-compatible HTTP front of the engine (axum
//! on tokio). It knows HTTP and JSON; the engine knows requests.
//!
//! | route | what |
//! |---|---|
//! | `GET /v1/models` | the served model |
//! | `POST /v1/completions` | text completion, streaming (SSE) or not |
//! | `POST /v1/chat/completions` | chat completion with the model's chat template, streaming or not |
//! | `GET /health` | liveness: 200 while the process serves HTTP |
//! | `GET /ready` | readiness: 200 once the model is loaded and its graphs compiled, 503 before and while shutting down |
//! | `GET /metrics` | Prometheus text, vLLM's metric names |
//!
//! Errors are OpenAI's JSON bodies with the matching status: 400 for a
//! malformed request or one that does not fit the context, 404 for an
//! unknown model or route, 413 for a body over the limit, 429 with
//! `Retry-After` when the engine's queue is full, 503 while not ready.
//! A client that disconnects mid-stream has its request cancelled and its
//! KV blocks freed at once (the SSE body owns the engine's stream).

pub mod assemble;
pub mod error;
pub mod handlers;
pub mod metrics;
pub mod openai;

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::routing::{get, post};
use axum::Router;
use exodus_engine::text::{ChatTemplate, Tokenizer};
use exodus_engine::Engine;

pub use error::ApiError;
pub use metrics::Metrics;

/// Limits of the HTTP side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// Largest request body, bytes (413 beyond).
    pub max_body_bytes: usize,
    /// Time a client has to send a request's headers (the connection is
    /// closed after it).
    pub header_read_timeout: Duration,
    /// Time a client has to send a request's body (408 after it).
    pub body_read_timeout: Duration,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            max_body_bytes: 4 << 20,
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
        }
    }
}

/// Everything the handlers share.
pub struct ServerState {
    /// The engine.
    pub engine: Arc<Engine>,
    /// The model's tokenizer.
    pub tokenizer: Tokenizer,
    /// The model's chat template.
    pub template: ChatTemplate,
    /// The name `/v1/models` lists and requests must use.
    pub model: String,
    /// Positions one request may use (prompt and output).
    pub context: usize,
    /// Tokens that end a generation (the model's end-of-generation ids).
    pub stop_tokens: Vec<u32>,
    /// Metrics.
    pub metrics: Metrics,
    /// HTTP limits.
    pub limits: HttpLimits,
    ready: AtomicBool,
    next_id: AtomicU64,
    created: u64,
}

impl ServerState {
    /// The state for `engine` serving `model` (not ready until
    /// [`set_ready`](Self::set_ready)).
    pub fn new(
        engine: Arc<Engine>,
        tokenizer: Tokenizer,
        template: ChatTemplate,
        model: String,
        context: usize,
        limits: HttpLimits,
    ) -> ServerState {
        ServerState {
            engine,
            stop_tokens: tokenizer.eog_ids(),
            tokenizer,
            template,
            model,
            context,
            metrics: Metrics::default(),
            limits,
            ready: AtomicBool::new(false),
            next_id: AtomicU64::new(1),
            created: unix_now(),
        }
    }

    /// Marks the server ready (model loaded, graphs compiled) or not
    /// (shutting down).
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::SeqCst);
    }

    /// Whether the server takes generation requests.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }

    fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }
}

/// Seconds since the Unix epoch.
pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The routes (see the [crate docs](crate)).
pub fn router(state: Arc<ServerState>) -> Router {
    Router::new()
        .route("/health", get(handlers::health))
        .route("/ready", get(handlers::ready))
        .route("/metrics", get(handlers::metrics))
        .route("/v1/models", get(handlers::models))
        .route("/v1/completions", post(handlers::completions))
        .route("/v1/chat/completions", post(handlers::chat))
        .fallback(handlers::not_found)
        .with_state(state)
}

/// Serves on `listener` until `shutdown` resolves, then stops accepting
/// and returns once the requests in flight have finished. Each connection
/// is HTTP/1.1 with the state's header read timeout (a client that does
/// not finish its headers in time is disconnected).
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<ServerState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let header_timeout = state.limits.header_read_timeout;
    let app = router(state);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    // Out of file descriptors, a connection reset before
                    // accept: wait a little, keep serving.
                    Err(_) => {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let service = hyper_util::service::TowerToHyperService::new(app.clone());
                let mut http = hyper::server::conn::http1::Builder::new();
                http.timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(header_timeout);
                let conn = http.serve_connection(hyper_util::rt::TokioIo::new(stream), service);
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    let _ = conn.await;
                });
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}
