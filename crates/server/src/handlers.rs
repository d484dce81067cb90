//! The route handlers: checks, submission to the engine, and the answer,
//! whole or as server-sent events.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, StatusCode, Uri};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use exodus_engine::text::Message;
use exodus_engine::{Event, FinishReason, GenerationRequest, RequestStream, TokenLogprobs};
use futures_util::stream::{self, StreamExt};
use serde_json::{json, Value};

use crate::assemble::{Piece, TextAssembler};
use crate::error::ApiError;
use crate::metrics::Outcome;
use crate::openai::{self, ChatRequest, Checked, CompletionRequest, OnePrompt};
use crate::{unix_now, ServerState};

type AppState = State<Arc<ServerState>>;

/// `GET /health`: the process serves HTTP.
pub async fn health() -> impl IntoResponse {
    Json(json!({"status": "ok"}))
}

/// `GET /ready`: 200 once the model is loaded and compiled.
pub async fn ready(State(s): AppState) -> Response {
    if s.is_ready() {
        Json(json!({"status": "ready", "model": s.model})).into_response()
    } else {
        ApiError::unavailable("the model is not ready (loading, or shutting down)").into_response()
    }
}

/// `GET /metrics`.
pub async fn metrics(State(s): AppState) -> impl IntoResponse {
    let text = s.metrics.render(&s.model, &s.engine.stats());
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
}

/// `GET /v1/models`.
pub async fn models(State(s): AppState) -> impl IntoResponse {
    Json(json!({
        "object": "list",
        "data": [{
            "id": s.model, "object": "model", "created": s.created, "owned_by": "exodus",
            "max_model_len": s.context,
        }],
    }))
}

/// Any other route.
pub async fn not_found(uri: Uri) -> ApiError {
    ApiError::not_found(uri.path())
}

/// The request body, read within the state's time and size limits: 408
/// for a client too slow to send it, 413 for one too large.
async fn read_body(s: &ServerState, body: Body) -> Result<Bytes, ApiError> {
    let limits = s.limits;
    match tokio::time::timeout(
        limits.body_read_timeout,
        axum::body::to_bytes(body, limits.max_body_bytes),
    )
    .await
    {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(e)) => {
            // http-body-util's LengthLimitError, somewhere in the chain.
            let mut cause: Option<&dyn std::error::Error> = Some(&e);
            let mut too_large = false;
            while let Some(c) = cause {
                too_large |= c.to_string().contains("length limit");
                cause = c.source();
            }
            Err(if too_large {
                ApiError {
                    status: StatusCode::PAYLOAD_TOO_LARGE,
                    ..ApiError::invalid(format!(
                        "the request body is over {} bytes",
                        limits.max_body_bytes
                    ))
                }
            } else {
                ApiError::invalid(format!("reading the request body: {e}"))
            })
        }
        Err(_) => Err(ApiError {
            status: StatusCode::REQUEST_TIMEOUT,
            ..ApiError::invalid(format!(
                "the request body did not arrive within {} s",
                limits.body_read_timeout.as_secs_f64()
            ))
        }),
    }
}

/// Which endpoint, for the shapes of its answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Api {
    Completions,
    Chat,
}

/// One admitted generation.
struct Job {
    api: Api,
    id: String,
    created: u64,
    model: String,
    stream: RequestStream,
    prompt_tokens: usize,
    checked: Checked,
    /// `Some(n)`: log-probabilities with `n` alternatives.
    logprobs: Option<usize>,
    arrived: Instant,
}

/// Checks what both endpoints share and submits the request.
fn submit(
    s: &ServerState,
    api: Api,
    model: Option<&str>,
    prompt: Vec<u32>,
    max_tokens: Option<u64>,
    checked: Checked,
    logprobs: Option<usize>,
) -> Result<Job, ApiError> {
    let arrived = Instant::now();
    if let Some(m) = model {
        if m != s.model {
            return Err(ApiError::unknown_model(m, &s.model));
        }
    }
    if !s.is_ready() {
        return Err(ApiError::unavailable(
            "the model is not ready (loading, or shutting down)",
        ));
    }
    let n = prompt.len();
    if n == 0 {
        return Err(ApiError::invalid_param("prompt", "the prompt is empty"));
    }
    if n >= s.context {
        return Err(ApiError::context_too_long(format!(
            "this model's context is {} tokens; the prompt has {n}, leaving no room for an answer",
            s.context
        )));
    }
    let room = s.context - n;
    let max_new = match max_tokens {
        Some(0) => return Err(ApiError::invalid_param("max_tokens", "max_tokens must be at least 1")),
        Some(m) if m as usize > room => {
            return Err(ApiError::context_too_long(format!(
                "this model's context is {} tokens; the prompt has {n} and max_tokens asks for {m} more",
                s.context
            )))
        }
        Some(m) => m as usize,
        None if api == Api::Completions => 16.min(room),
        None => room,
    };
    let req = GenerationRequest {
        prompt,
        sampler: checked.sampler.clone(),
        max_new_tokens: max_new,
        stop_tokens: if checked.ignore_eos {
            Vec::new()
        } else {
            s.stop_tokens.clone()
        },
        logprobs,
    };
    let stream = s.engine.submit(req).map_err(|e| {
        s.metrics
            .rejected(matches!(e, exodus_engine::SubmitError::QueueFull { .. }));
        ApiError::from(e)
    })?;
    let number = s.next_id();
    Ok(Job {
        api,
        id: match api {
            Api::Completions => format!("cmpl-{number}"),
            Api::Chat => format!("chatcmpl-{number}"),
        },
        created: unix_now(),
        model: s.model.clone(),
        stream,
        prompt_tokens: n,
        checked,
        logprobs,
        arrived,
    })
}

/// `POST /v1/completions`.
pub async fn completions(State(s): AppState, body: Body) -> Result<Response, ApiError> {
    let req: CompletionRequest = openai::parse(&read_body(&s, body).await?)?;
    if req.echo {
        return Err(ApiError::invalid_param("echo", "echo is not supported"));
    }
    if req.best_of.is_some_and(|b| b != 1) {
        return Err(ApiError::invalid_param(
            "best_of",
            "only best_of = 1 is supported",
        ));
    }
    let logprobs = req
        .logprobs
        .map(|n| openai::check_top_logprobs("logprobs", n))
        .transpose()?;
    let checked = req.common.check(s.next_id())?;
    let prompt = match req.prompt.single()? {
        OnePrompt::Text(text) => s
            .tokenizer
            .encode(&text, true, true)
            .map_err(|e| ApiError::invalid_param("prompt", e.to_string()))?,
        OnePrompt::Tokens(ids) => ids,
    };
    let job = submit(
        &s,
        Api::Completions,
        req.common.model.as_deref(),
        prompt,
        req.max_tokens,
        checked,
        logprobs,
    )?;
    Ok(respond(s, job).await)
}

/// `POST /v1/chat/completions`.
pub async fn chat(State(s): AppState, body: Body) -> Result<Response, ApiError> {
    let req: ChatRequest = openai::parse(&read_body(&s, body).await?)?;
    if req.messages.is_empty() {
        return Err(ApiError::invalid_param("messages", "messages is empty"));
    }
    let logprobs = match (req.logprobs, req.top_logprobs) {
        (true, n) => Some(openai::check_top_logprobs("top_logprobs", n.unwrap_or(0))?),
        (false, Some(n)) if n > 0 => {
            return Err(ApiError::invalid_param(
                "top_logprobs",
                "top_logprobs needs logprobs = true",
            ))
        }
        (false, _) => None,
    };
    let checked = req.common.check(s.next_id())?;
    let messages = req
        .messages
        .iter()
        .map(|m| Ok(Message::new(m.role.clone(), m.text()?)))
        .collect::<Result<Vec<_>, ApiError>>()?;
    let text = s
        .template
        .render(&messages, true)
        .map_err(|e| ApiError::invalid_param("messages", e.to_string()))?;
    let prompt = s
        .tokenizer
        .encode(&text, true, true)
        .map_err(|e| ApiError::invalid_param("messages", e.to_string()))?;
    let job = submit(
        &s,
        Api::Chat,
        req.common.model.as_deref(),
        prompt,
        req.max_completion_tokens.or(req.max_tokens),
        checked,
        logprobs,
    )?;
    Ok(respond(s, job).await)
}

async fn respond(s: Arc<ServerState>, job: Job) -> Response {
    if job.checked.stream {
        stream_response(s, job)
    } else {
        whole_response(s, job).await
    }
}

/// The progress of one generation: its text, log-probabilities and end.
struct Run {
    s: Arc<ServerState>,
    job: Job,
    text: TextAssembler,
    last_token_at: Option<Instant>,
    /// Tokens generated so far (a stop string's own tokens included).
    tokens: usize,
    /// How it ended.
    end: Option<FinishReason>,
}

/// What one engine event gave the client.
struct Step {
    text: String,
    logprobs: Option<(u32, TokenLogprobs)>,
    done: bool,
}

impl Run {
    fn new(s: Arc<ServerState>, job: Job) -> Run {
        let text = TextAssembler::new(&s.tokenizer, job.checked.stop.clone());
        Run {
            s,
            job,
            text,
            last_token_at: None,
            tokens: 0,
            end: None,
        }
    }

    /// Waits for the next event.
    async fn next(&mut self) -> Option<Step> {
        if self.end.is_some() {
            return None;
        }
        let event = self.job.stream.next().await;
        let now = Instant::now();
        match event {
            Some(Event::Token { token, logprobs }) => {
                match self.last_token_at {
                    None => self.s.metrics.first_token(now - self.job.arrived),
                    Some(t) => self.s.metrics.inter_token(now - t),
                }
                self.last_token_at = Some(now);
                self.tokens += 1;
                let logprobs = logprobs.map(|l| (token, l));
                match self.text.push(&self.s.tokenizer, token) {
                    Piece::Text(text) => Some(Step {
                        text,
                        logprobs,
                        done: false,
                    }),
                    Piece::Stopped(text) => {
                        // Ends the engine request now (its blocks freed).
                        self.job.stream.cancel();
                        self.end = Some(FinishReason::Stop);
                        self.finish_metrics(Outcome::Stop, Duration::ZERO);
                        Some(Step {
                            text,
                            logprobs,
                            done: true,
                        })
                    }
                }
            }
            Some(Event::Finished { reason, timing, .. }) => {
                let outcome = match &reason {
                    FinishReason::Stop => Outcome::Stop,
                    FinishReason::Length => Outcome::Length,
                    FinishReason::Cancelled => Outcome::Abort,
                    FinishReason::Error(_) => Outcome::Error,
                };
                self.finish_metrics(outcome, timing.queued);
                self.end = Some(reason);
                Some(Step {
                    text: self.text.finish(),
                    logprobs: None,
                    done: true,
                })
            }
            None => {
                self.end = Some(FinishReason::Error("the engine stopped".into()));
                self.finish_metrics(Outcome::Error, Duration::ZERO);
                None
            }
        }
    }

    fn finish_metrics(&self, outcome: Outcome, queued: Duration) {
        self.s
            .metrics
            .finished(outcome, self.job.arrived.elapsed(), queued);
    }

    /// Token counts.
    fn usage(&self) -> Value {
        let prompt = self.job.prompt_tokens;
        json!({
            "prompt_tokens": prompt,
            "completion_tokens": self.tokens,
            "total_tokens": prompt + self.tokens,
        })
    }

    fn finish_reason(&self) -> &'static str {
        self.end.as_ref().map_or("stop", FinishReason::as_str)
    }

    /// The engine's error, if the request failed.
    fn error(&self) -> Option<&str> {
        match &self.end {
            Some(FinishReason::Error(msg)) => Some(msg),
            _ => None,
        }
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        if self.end.is_none() {
            // The client went away mid-stream; dropping the job's stream
            // cancels the engine request and frees its blocks.
            self.s.metrics.disconnected();
            self.finish_metrics(Outcome::Abort, Duration::ZERO);
        }
    }
}

/// Log-probabilities, in the shape of each endpoint.
struct Logprobs {
    api: Api,
    tokens: Vec<Value>,
    token_logprobs: Vec<Value>,
    top: Vec<Value>,
    offsets: Vec<usize>,
    content: Vec<Value>,
}

impl Logprobs {
    fn new(api: Api) -> Logprobs {
        Logprobs {
            api,
            tokens: vec![],
            token_logprobs: vec![],
            top: vec![],
            offsets: vec![],
            content: vec![],
        }
    }

    fn push(&mut self, s: &ServerState, token: u32, l: &TokenLogprobs, offset: usize) {
        let text = |id: u32| {
            s.tokenizer
                .piece(id)
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default()
        };
        let bytes = |id: u32| {
            s.tokenizer
                .piece(id)
                .map(<[u8]>::to_vec)
                .unwrap_or_default()
        };
        match self.api {
            Api::Completions => {
                self.tokens.push(json!(text(token)));
                self.token_logprobs.push(json!(l.logprob));
                let top: serde_json::Map<String, Value> =
                    l.top.iter().map(|&(t, p)| (text(t), json!(p))).collect();
                self.top.push(Value::Object(top));
                self.offsets.push(offset);
            }
            Api::Chat => self.content.push(json!({
                "token": text(token), "logprob": l.logprob, "bytes": bytes(token),
                "top_logprobs": l.top.iter().map(|&(t, p)| json!({
                    "token": text(t), "logprob": p, "bytes": bytes(t),
                })).collect::<Vec<_>>(),
            })),
        }
    }

    fn value(&self) -> Value {
        match self.api {
            Api::Completions => json!({
                "tokens": self.tokens, "token_logprobs": self.token_logprobs,
                "top_logprobs": self.top, "text_offset": self.offsets,
            }),
            Api::Chat => json!({"content": self.content}),
        }
    }
}

/// The whole answer as one JSON body.
async fn whole_response(s: Arc<ServerState>, job: Job) -> Response {
    let api = job.api;
    let wants_logprobs = job.logprobs.is_some();
    let mut run = Run::new(s.clone(), job);
    let mut text = String::new();
    let mut logprobs = Logprobs::new(api);
    while let Some(step) = run.next().await {
        if let Some((token, l)) = &step.logprobs {
            logprobs.push(&s, *token, l, text.len());
        }
        text.push_str(&step.text);
        if step.done {
            break;
        }
    }
    if let Some(msg) = run.error() {
        return ApiError::internal(msg).into_response();
    }
    let logprobs = wants_logprobs.then(|| logprobs.value());
    let choice = match api {
        Api::Completions => json!({
            "index": 0, "text": text, "logprobs": logprobs, "finish_reason": run.finish_reason(),
        }),
        Api::Chat => json!({
            "index": 0, "message": {"role": "assistant", "content": text},
            "logprobs": logprobs, "finish_reason": run.finish_reason(),
        }),
    };
    Json(json!({
        "id": run.job.id, "object": match api {
            Api::Completions => "text_completion",
            Api::Chat => "chat.completion",
        },
        "created": run.job.created, "model": run.job.model,
        "choices": [choice], "usage": run.usage(),
    }))
    .into_response()
}

/// The answer as server-sent events: a chunk per piece of text, the
/// finish reason, the usage if asked, then `data: [DONE]`. The event
/// stream owns the [`Run`]: a client that disconnects drops it, which
/// cancels the engine request.
fn stream_response(s: Arc<ServerState>, job: Job) -> Response {
    let api = job.api;
    let run = Run::new(s, job);
    let first = (api == Api::Chat).then(|| {
        chunk(
            &run,
            json!({"role": "assistant", "content": ""}),
            None,
            None,
        )
    });
    let state = Streaming {
        run,
        first,
        offset: 0,
        finished: false,
    };
    let events = stream::unfold(state, |mut st| async move {
        let events = st.next_events().await?;
        Some((events, st))
    })
    .flat_map(|events| stream::iter(events.into_iter().map(Ok::<_, Infallible>)));
    Sse::new(events)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

/// One streamed chunk (`delta`: the chat delta; completions take its
/// `content` as `text`).
fn chunk(run: &Run, delta: Value, finish: Option<&str>, logprobs: Option<Value>) -> Value {
    let choice = match run.job.api {
        Api::Completions => json!({
            "index": 0, "text": delta.get("content").cloned().unwrap_or(json!("")),
            "logprobs": logprobs, "finish_reason": finish,
        }),
        Api::Chat => json!({
            "index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": finish,
        }),
    };
    json!({
        "id": run.job.id, "object": match run.job.api {
            Api::Completions => "text_completion",
            Api::Chat => "chat.completion.chunk",
        },
        "created": run.job.created, "model": run.job.model, "choices": [choice],
    })
}

/// The state of an event stream.
struct Streaming {
    run: Run,
    /// The chat stream's opening chunk (the assistant role), not sent yet.
    first: Option<Value>,
    /// Bytes of text sent (completions' `text_offset`).
    offset: usize,
    finished: bool,
}

impl Streaming {
    /// The events of the next engine event (`None`: the stream is over).
    async fn next_events(&mut self) -> Option<Vec<SseEvent>> {
        let data = |v: Value| SseEvent::default().data(v.to_string());
        if let Some(first) = self.first.take() {
            return Some(vec![data(first)]);
        }
        if self.finished {
            return None;
        }
        let mut out = Vec::new();
        let Some(step) = self.run.next().await else {
            self.finished = true;
            out.push(data(ApiError::internal("the engine stopped").body()));
            out.push(SseEvent::default().data("[DONE]"));
            return Some(out);
        };
        let run = &self.run;
        let logprobs = step.logprobs.as_ref().map(|(token, l)| {
            let mut lp = Logprobs::new(run.job.api);
            lp.push(&run.s, *token, l, self.offset);
            lp.value()
        });
        self.offset += step.text.len();
        if !step.text.is_empty() || logprobs.is_some() {
            out.push(data(chunk(
                run,
                json!({"content": step.text}),
                None,
                logprobs,
            )));
        }
        if step.done {
            self.finished = true;
            if let Some(msg) = run.error() {
                out.push(data(ApiError::internal(msg).body()));
            } else {
                out.push(data(chunk(run, json!({}), Some(run.finish_reason()), None)));
                if run.job.checked.include_usage {
                    let mut usage = chunk(run, json!({}), None, None);
                    usage["choices"] = json!([]);
                    usage["usage"] = run.usage();
                    out.push(data(usage));
                }
            }
            out.push(SseEvent::default().data("[DONE]"));
        }
        Some(out)
    }
}
