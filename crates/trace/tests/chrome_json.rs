//! The Chrome JSON we write: every event carries the fields its phase
//! requires with the right JSON types, every span's track is named, and
//! reading the text back gives the same trace.

use std::collections::BTreeSet;

use exodus_trace::{Span, Trace, Track, Value};

fn sample_trace() -> Trace {
    let mut t = Trace::new();
    t.spans.push(
        Span::new("matmul", "launch", Track::stream(3), 1_500, 2_750)
            .with_arg("m", 64)
            .with_arg("dtype", "bf16"),
    );
    t.spans
        .push(Span::new("copy", "copy", Track::stream(3), 4_251, 999));
    t.spans.push(
        Span::new("decode step", "host", Track::thread(1), 1_000, 123_456_789)
            .with_arg("ratio", 0.125)
            .with_arg("nested", serde_json::json!({"a": [1, 2, 3]})),
    );
    // A large start time (days of uptime) must survive the µs conversion.
    t.spans.push(Span::new(
        "late",
        "launch",
        Track::stream(4),
        345_678_901_234_567,
        1,
    ));
    t.track_names.insert(Track::stream(3), "stream 3".into());
    t.track_names
        .insert(Track::stream(4), "stream 4 (copy)".into());
    t.track_names
        .insert(Track::thread(1), "main (thread 1)".into());
    t
}

fn field<'a>(ev: &'a Value, name: &str) -> &'a Value {
    ev.get(name)
        .unwrap_or_else(|| panic!("event {ev} lacks \"{name}\""))
}

#[test]
fn every_event_has_required_fields_with_right_types() {
    let trace = sample_trace();
    let root: Value = serde_json::from_str(&trace.to_chrome_json()).unwrap();
    let events = root["traceEvents"].as_array().expect("traceEvents array");
    let mut named_tracks = BTreeSet::new();
    let mut named_pids = BTreeSet::new();
    let mut span_tracks = BTreeSet::new();
    let mut x_events = 0;
    for ev in events {
        assert!(ev.is_object());
        let pid = field(ev, "pid").as_u64().expect("pid integer");
        let tid = field(ev, "tid").as_u64().expect("tid integer");
        match field(ev, "ph").as_str().expect("ph string") {
            "X" => {
                x_events += 1;
                assert!(field(ev, "name").is_string());
                assert!(field(ev, "cat").is_string());
                let ts = field(ev, "ts").as_f64().expect("ts number");
                let dur = field(ev, "dur").as_f64().expect("dur number");
                assert!(ts >= 0.0 && dur >= 0.0);
                assert!(field(ev, "args").is_object());
                span_tracks.insert((pid, tid));
            }
            "M" => {
                let name = field(ev, "name").as_str().expect("name string");
                assert!(field(ev, "args")["name"].is_string());
                match name {
                    "process_name" => {
                        named_pids.insert(pid);
                    }
                    "thread_name" => {
                        named_tracks.insert((pid, tid));
                    }
                    other => panic!("unexpected metadata event {other}"),
                }
            }
            other => panic!("unexpected phase {other}"),
        }
    }
    assert_eq!(x_events, trace.spans.len());
    assert!(
        span_tracks.is_subset(&named_tracks),
        "every span's track is named"
    );
    let pids: BTreeSet<u64> = span_tracks.iter().map(|&(p, _)| p).collect();
    assert_eq!(pids, named_pids, "every track group is named");
}

#[test]
fn times_are_microseconds() {
    let trace = sample_trace();
    let root: Value = serde_json::from_str(&trace.to_chrome_json()).unwrap();
    let events = root["traceEvents"].as_array().unwrap();
    let matmul = events.iter().find(|e| e["name"] == "matmul").unwrap();
    assert_eq!(
        matmul["ts"].as_f64(),
        Some(trace.spans[0].start_ns as f64 / 1000.0)
    );
    assert_eq!(
        matmul["dur"].as_f64(),
        Some(trace.spans[0].dur_ns as f64 / 1000.0)
    );
    assert_eq!(matmul["pid"], 2);
    assert_eq!(matmul["tid"], 3);
}

#[test]
fn written_json_reads_back_equal() {
    let trace = sample_trace();
    let back = Trace::from_chrome_json(&trace.to_chrome_json()).unwrap();
    assert_eq!(back, trace);
}

#[test]
fn written_file_reads_back_equal() {
    let trace = sample_trace();
    let path = std::env::temp_dir().join(format!("exodus-trace-{}.json", std::process::id()));
    trace.write(&path).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    let _ = std::fs::remove_file(&path);
    assert_eq!(Trace::from_chrome_json(&text).unwrap(), trace);
}

#[test]
fn recorded_spans_read_back_equal() {
    exodus_trace::set_enabled(true);
    {
        let _outer = exodus_trace::span("outer", "host").arg("k", 7);
        let _inner = exodus_trace::span(format!("inner {}", 1), "host");
    }
    exodus_trace::set_enabled(false);
    let trace = exodus_trace::take();
    assert_eq!(trace.spans.len(), 2);
    assert_eq!(trace.track_names.len(), 1);
    let back = Trace::from_chrome_json(&trace.to_chrome_json()).unwrap();
    assert_eq!(back, trace);
    let outer = &back.spans[0];
    let inner = &back.spans[1];
    assert_eq!(outer.name, "outer");
    assert_eq!(outer.args["k"], 7);
    assert!(inner.start_ns >= outer.start_ns && inner.end_ns() <= outer.end_ns());
}

#[test]
fn bare_event_array_and_foreign_phases_are_accepted() {
    let text = r#"[
        {"name":"a","ph":"X","ts":1.5,"dur":2,"pid":2,"tid":9},
        {"name":"b","ph":"i","ts":3,"pid":1,"tid":1,"s":"t"},
        {"name":"thread_sort_index","ph":"M","pid":2,"tid":9,"args":{"sort_index":1}}
    ]"#;
    let t = Trace::from_chrome_json(text).unwrap();
    assert_eq!(t.spans.len(), 1);
    let s = &t.spans[0];
    assert_eq!(
        (s.start_ns, s.dur_ns, s.track),
        (1_500, 2_000, Track::stream(9))
    );
    assert_eq!(s.category, "");
    assert!(t.track_names.is_empty());
}
