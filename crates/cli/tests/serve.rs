//! `exodus serve` end to end: the real server on a loopback port with the
//! real default model, driven by the official `openai` Python client and
//! by raw HTTP (every error status, a client that disconnects, a full
//! queue, the prefix cache, an exhausted KV pool, a graceful shutdown).

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// A server process, killed when dropped.
struct Server {
    child: Child,
    addr: String,
}

impl Server {
    /// Starts `exodus serve --port 0 ARGS` and waits for its address.
    fn start(args: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_exodus"))
            .args(["serve", "--port", "0", "--offline"])
            .args(args)
            .env("RUST_BACKTRACE", "0")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("exodus serve starts");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("a first line");
        let addr = line
            .split("http://")
            .nth(1)
            .and_then(|s| s.split_whitespace().next())
            .unwrap_or_else(|| panic!("no address in {line:?}"))
            .to_string();
        Server { child, addr }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn metrics(&self) -> String {
        http(&self.addr, "GET", "/metrics", &[], b"").body
    }

    /// A metric's value (summed over its label sets).
    fn metric(&self, name: &str) -> f64 {
        self.metrics()
            .lines()
            .filter(|l| l.starts_with(name) && l[name.len()..].starts_with('{'))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// Waits until `f` holds (the engine works asynchronously).
    fn wait_for(&self, what: &str, f: impl Fn(&Server) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !f(self) {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A response.
#[derive(Debug)]
struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

/// Sends one HTTP/1.1 request (connection closed after) and reads the
/// whole response.
fn http(addr: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Response {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    // A server may answer (413) before reading a large body.
    let _ = s.write_all(body);
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    let body = if chunked {
        dechunk(rest)
    } else {
        rest.to_string()
    };
    Response {
        status,
        headers,
        body,
    }
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

fn post(addr: &str, path: &str, body: &Value) -> Response {
    http(
        addr,
        "POST",
        path,
        &[("content-type", "application/json")],
        body.to_string().as_bytes(),
    )
}

/// A greedy completion's text and the client-measured time to its answer.
fn complete(addr: &str, prompt: &str, max_tokens: usize) -> (String, Duration) {
    let t = Instant::now();
    let r = post(
        addr,
        "/v1/completions",
        &json!({"prompt": prompt, "max_tokens": max_tokens, "temperature": 0}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let text = r.json()["choices"][0]["text"].as_str().unwrap().to_string();
    (text, t.elapsed())
}

#[test]
fn the_openai_python_client_drives_chat_and_completions() {
    let server = Server::start(&[]);
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../server/tests/openai_client.py"
    );
    let out = Command::new("python3")
        .arg(script)
        .arg(format!("{}/v1", server.url()))
        .output()
        .expect("python3 runs");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        out.status.success(),
        "the openai client checks failed (pip install openai):\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("all checks passed"), "{stdout}");
}

#[test]
fn every_error_status_is_an_openai_error_body() {
    let server = Server::start(&["--max-body-bytes", "2000", "--ctx", "256"]);
    let a = server.addr.as_str();
    let check = |r: Response, status: u16, want: &str| {
        assert_eq!(r.status, status, "{}", r.body);
        let err = &r.json()["error"];
        let msg = err["message"].as_str().unwrap_or_default();
        assert!(msg.contains(want), "{want:?} not in {msg:?}");
        assert!(err["type"].is_string(), "{}", r.body);
    };
    let chat = "/v1/chat/completions";
    let h = [("content-type", "application/json")];
    check(http(a, "POST", chat, &h, b"{not json"), 400, "invalid JSON");
    check(
        post(a, chat, &json!({"messages": []})),
        400,
        "messages is empty",
    );
    check(
        post(
            a,
            chat,
            &json!({"messages": [{"role": "user", "content": "hi"}], "temperature": 7}),
        ),
        400,
        "temperature",
    );
    check(
        post(
            a,
            chat,
            &json!({"messages": [{"role": "user", "content": "hi"}], "n": 2}),
        ),
        400,
        "n = 1",
    );
    let r = post(
        a,
        chat,
        &json!({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 100000}),
    );
    assert_eq!(r.json()["error"]["code"], "context_length_exceeded");
    check(r, 400, "context");
    let long = "word ".repeat(300);
    check(
        post(a, "/v1/completions", &json!({"prompt": long})),
        400,
        "context",
    );
    check(
        post(
            a,
            chat,
            &json!({"model": "gpt-4", "messages": [{"role": "user", "content": "hi"}]}),
        ),
        404,
        "gpt-4",
    );
    check(http(a, "GET", "/v1/nothing", &[], b""), 404, "/v1/nothing");
    let big = json!({"prompt": "x".repeat(5000)}).to_string();
    let r = http(a, "POST", "/v1/completions", &h, big.as_bytes());
    assert_eq!(r.status, 413, "{}", r.body);
    check(
        post(a, "/v1/completions", &json!({"prompt": [1, 2, 99999999]})),
        400,
        "vocabulary",
    );
    // The server is still healthy and serving.
    assert_eq!(http(a, "GET", "/health", &[], b"").status, 200);
    assert_eq!(http(a, "GET", "/ready", &[], b"").status, 200);
    assert!(!complete(a, "The capital of France is", 4).0.is_empty());
}

#[test]
fn a_client_that_disconnects_frees_its_blocks() {
    let server = Server::start(&[]);
    let a = server.addr.as_str();
    let body =
        json!({"prompt": "Once upon a time", "max_tokens": 400, "temperature": 0, "stream": true})
            .to_string();
    let mut s = TcpStream::connect(a).unwrap();
    write!(
        s,
        "POST /v1/completions HTTP/1.1\r\nhost: {a}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    // Read until a few tokens have streamed, then go away.
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while got.windows(6).filter(|w| w == b"data: ").count() < 3 {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "the stream ended early");
        got.extend_from_slice(&buf[..n]);
    }
    assert!(server.metric("vllm:kv_cache_usage_perc") > 0.0);
    drop(s);
    server.wait_for("the request to be cancelled", |s| {
        s.metric("exodus_requests_disconnected_total") >= 1.0
            && s.metric("vllm:num_requests_running") == 0.0
            && s.metric("vllm:kv_cache_usage_perc") == 0.0
    });
    let ended = server.metrics();
    assert!(ended.contains("finished_reason=\"abort\"} 1"), "{ended}");
}

#[test]
fn a_full_queue_answers_429_and_every_admitted_request_completes() {
    let server = Arc::new(Server::start(&["--max-running", "1", "--max-queue", "1"]));
    let want = complete(&server.addr, "The capital of France is", 24).0;
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let server = Arc::clone(&server);
            std::thread::spawn(move || {
                post(
                    &server.addr,
                    "/v1/completions",
                    &json!({"prompt": "The capital of France is", "max_tokens": 24, "temperature": 0}),
                )
            })
        })
        .collect();
    let (mut ok, mut refused) = (0, 0);
    for h in handles {
        let r = h.join().unwrap();
        match r.status {
            200 => {
                ok += 1;
                assert_eq!(r.json()["choices"][0]["text"], want.as_str());
            }
            429 => {
                refused += 1;
                assert!(r.header("retry-after").is_some(), "429 without Retry-After");
                assert_eq!(r.json()["error"]["code"], "queue_full");
            }
            s => panic!("status {s}: {}", r.body),
        }
    }
    assert!(refused > 0, "8 requests at once never filled a queue of 1");
    assert!(ok >= 2, "only {ok} admitted");
    assert!(server.metric("exodus_requests_rejected_total") >= refused as f64);
    assert_eq!(http(&server.addr, "GET", "/health", &[], b"").status, 200);
}

#[test]
fn a_repeated_prefix_is_served_from_the_cache() {
    let server = Server::start(&[]);
    let a = server.addr.as_str();
    let system = "You are a careful assistant. ".repeat(40);
    // Warm up the prefill shapes with an unrelated prompt of the same size.
    complete(a, &"Unrelated words here. ".repeat(36), 1);
    let hits_before = server.metric("vllm:prefix_cache_hits_total");
    let (_, cold) = complete(a, &format!("{system}Question one?"), 1);
    let (_, warm) = complete(a, &format!("{system}Question two?"), 1);
    let hits = server.metric("vllm:prefix_cache_hits_total") - hits_before;
    assert!(hits >= 200.0, "only {hits} prompt tokens hit the cache");
    assert!(
        warm < cold,
        "the cached prefix did not make the answer faster: {warm:?} vs {cold:?}"
    );
}

#[test]
fn an_exhausted_kv_pool_preempts_and_every_request_completes_correctly() {
    // 1 MiB of f16 KV is 45 tokens' blocks: two of these requests do not
    // fit at once.
    let server = Arc::new(Server::start(&[
        "--kv-cache-mib",
        "1",
        "--max-batch-tokens",
        "32",
    ]));
    let prompts = [
        "The capital of France is",
        "Once upon a time",
        "def add(a, b):",
    ];
    let alone: Vec<String> = prompts
        .iter()
        .map(|p| complete(&server.addr, p, 20).0)
        .collect();
    let handles: Vec<_> = prompts
        .iter()
        .map(|p| {
            let (server, p) = (Arc::clone(&server), p.to_string());
            std::thread::spawn(move || complete(&server.addr, &p, 20).0)
        })
        .collect();
    for (h, want) in handles.into_iter().zip(&alone) {
        assert_eq!(&h.join().unwrap(), want);
    }
    assert!(
        server.metric("vllm:num_preemptions_total") > 0.0,
        "no preemption"
    );
    assert_eq!(server.metric("vllm:kv_cache_usage_perc"), 0.0);
}

#[test]
fn sigterm_lets_the_request_in_flight_finish() {
    let mut server = Server::start(&[]);
    let addr = server.addr.clone();
    let inflight = std::thread::spawn(move || complete(&addr, "Once upon a time", 48));
    server.wait_for("the request to start", |s| {
        s.metric("vllm:num_requests_running") >= 1.0
    });
    let pid = server.child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let (text, _) = inflight.join().unwrap();
    assert!(!text.is_empty());
    let status = server.child.wait().unwrap();
    assert!(status.success(), "exit status {status}");
}

/// A greedy completion's tokens and, at each, the two best logprobs.
fn greedy_tokens(addr: &str, prompt: &str, max_tokens: usize) -> Vec<(String, Vec<f64>)> {
    let r = post(
        addr,
        "/v1/completions",
        &json!({"prompt": prompt, "max_tokens": max_tokens, "temperature": 0, "logprobs": 2}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let lp = &r.json()["choices"][0]["logprobs"];
    let tokens = lp["tokens"].as_array().unwrap();
    let tops = lp["top_logprobs"].as_array().unwrap();
    tokens
        .iter()
        .zip(tops)
        .map(|(t, top)| {
            let mut best: Vec<f64> = top
                .as_object()
                .unwrap()
                .values()
                .filter_map(Value::as_f64)
                .collect();
            best.sort_by(|a, b| b.total_cmp(a));
            (t.as_str().unwrap().to_string(), best)
        })
        .collect()
}

#[test]
fn tensor_parallel_serving_over_2_and_3_ranks_answers_like_one_rank() {
    // Ranks split the attention heads and the MLP; each gathers the
    // others' parts and computes its rows of the projections that follow
    // over the whole width, so every output is the single rank's dot: the
    // answers are the single rank's, token for token.
    let one = Server::start(&[]);
    let prompts = [
        "The capital of France is",
        "def fibonacci(n):",
        "Once upon a time, in a small village,",
        "Water boils at",
    ];
    let reference: Vec<_> = prompts
        .iter()
        .map(|p| greedy_tokens(&one.addr, p, 32))
        .collect();
    for tp in ["2", "3"] {
        let split = Server::start(&["--tp", tp]);
        for (p, want) in prompts.iter().zip(&reference) {
            let got = greedy_tokens(&split.addr, p, 32);
            let tokens =
                |v: &[(String, Vec<f64>)]| v.iter().map(|t| t.0.clone()).collect::<Vec<_>>();
            assert_eq!(tokens(&got), tokens(want), "--tp {tp}, {p:?}");
        }
    }
}

#[test]
fn a_tensor_parallel_trace_shows_every_ranks_collectives() {
    let dir = std::env::temp_dir().join(format!("exodus-tp-trace-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let trace = dir.join("serve.json");
    let mut server = Server::start(&["--tp", "2", "--trace", trace.to_str().unwrap()]);
    let (text, _) = complete(&server.addr, "The capital of France is", 8);
    assert!(!text.is_empty());
    // SIGTERM to rank 0 alone: it drains, tells rank 1 to stop, and both
    // write their traces.
    let pid = server.child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let status = server.child.wait().unwrap();
    assert!(status.success(), "exit status {status}");
    for file in [trace.clone(), dir.join("serve.rank1.json")] {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !file.exists() {
            assert!(Instant::now() < deadline, "no trace {}", file.display());
            std::thread::sleep(Duration::from_millis(50));
        }
        // Rank 1 may still be writing: read until it parses.
        let parsed = loop {
            let text = std::fs::read_to_string(&file).unwrap_or_default();
            if let Ok(t) = exodus_trace::Trace::from_chrome_json(&text) {
                break t;
            }
            assert!(Instant::now() < deadline, "{} never parsed", file.display());
            std::thread::sleep(Duration::from_millis(50));
        };
        let reduces = parsed
            .spans_in("comm")
            .filter(|s| s.name == "all_reduce")
            .count();
        // Four per layer per step (the AllGathers run as AllReduces of
        // zero-padded parts): 30 layers, the warm-up's 2 steps and the
        // request's prefill and 7 decode steps.
        assert!(
            reduces >= 120 * 10,
            "{}: {reduces} all_reduce spans",
            file.display()
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
