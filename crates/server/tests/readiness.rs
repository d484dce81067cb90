//! Readiness and shutdown at the HTTP level, against `exodus_server::serve`
//! with a fake engine model (the real tokenizer and chat template): 503
//! with `Retry-After` until the server is marked ready (and again once it
//! is not), `/health` 200 throughout, and a graceful stop.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use exodus_engine::text::{ChatTemplate, Tokenizer};
use exodus_engine::{BlockManager, Engine, Scheduler, SchedulerConfig, StepModel, Work};
use exodus_gguf::GgufFile;
use exodus_server::{HttpLimits, ServerState};

/// Logits that always pick token 42.
struct Constant {
    vocab: usize,
}

impl StepModel for Constant {
    fn run_step(&self, work: &[Work]) -> Result<Vec<f32>, String> {
        let mut out = vec![0f32; work.len() * self.vocab];
        for row in out.chunks_exact_mut(self.vocab) {
            row[42] = 1.0;
        }
        Ok(out)
    }
}

fn get(addr: &str, path: &str, body: Option<&str>) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let (method, body) = match body {
        Some(b) => ("POST", b),
        None => ("GET", ""),
    };
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = String::new();
    let _ = s.read_to_string(&mut raw);
    let status = raw
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, raw)
}

#[test]
fn not_ready_is_503_and_slow_clients_are_cut_off() {
    let file = GgufFile::open(exodus_model::fetch::test_model_path()).unwrap();
    let tokenizer = Tokenizer::from_gguf(&file).unwrap();
    let template = ChatTemplate::from_gguf(&file).unwrap();
    let vocab = tokenizer.vocab_size();
    let config = SchedulerConfig {
        context: 256,
        vocab,
        ..SchedulerConfig::default()
    };
    let scheduler = Scheduler::new(config, BlockManager::new(64, 16).unwrap()).unwrap();
    let engine = Arc::new(Engine::start(Constant { vocab }, scheduler).unwrap());
    let limits = HttpLimits {
        header_read_timeout: Duration::from_millis(500),
        body_read_timeout: Duration::from_millis(500),
        ..HttpLimits::default()
    };
    let state = Arc::new(ServerState::new(
        engine,
        tokenizer,
        template,
        "m".into(),
        256,
        limits,
    ));
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = runtime.spawn(exodus_server::serve(listener, Arc::clone(&state), async {
        let _ = stop_rx.await;
    }));

    let completion = r#"{"prompt": "hello", "max_tokens": 3, "temperature": 0}"#;
    let (status, raw) = get(&addr, "/ready", None);
    assert_eq!(status, 503, "{raw}");
    assert!(raw.to_ascii_lowercase().contains("retry-after"), "{raw}");
    assert_eq!(get(&addr, "/v1/completions", Some(completion)).0, 503);
    assert_eq!(get(&addr, "/health", None).0, 200);

    state.set_ready(true);
    assert_eq!(get(&addr, "/ready", None).0, 200);
    let (status, raw) = get(&addr, "/v1/completions", Some(completion));
    assert_eq!(status, 200, "{raw}");
    assert!(raw.contains("\"completion_tokens\":3"), "{raw}");

    // Headers that never end: the connection is closed.
    let mut slow = TcpStream::connect(&addr).unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    slow.write_all(b"GET /health HTTP/1.1\r\nhost: x\r\n")
        .unwrap();
    let t = std::time::Instant::now();
    let mut rest = Vec::new();
    let _ = slow.read_to_end(&mut rest);
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "a slow header was not cut off"
    );
    // A body that never arrives: 408.
    let mut slow = TcpStream::connect(&addr).unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    slow.write_all(
        b"POST /v1/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{\"prompt\"",
    )
    .unwrap();
    let mut raw = String::new();
    let _ = slow.read_to_string(&mut raw);
    assert!(raw.starts_with("HTTP/1.1 408"), "{raw}");

    state.set_ready(false);
    assert_eq!(get(&addr, "/ready", None).0, 503);
    let _ = stop_tx.send(());
    runtime.block_on(server).unwrap().unwrap();
}
