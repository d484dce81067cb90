//! Malformed trace files give typed errors naming the bad event; nothing
//! panics.

use exodus_trace::{Trace, TraceError};

fn err(text: &str) -> TraceError {
    match Trace::from_chrome_json(text) {
        Ok(t) => panic!("accepted malformed trace {text:?}: {t:?}"),
        Err(e) => e,
    }
}

const GOOD: &str = r#"{"name":"a","cat":"c","ph":"X","ts":1,"dur":2,"pid":2,"tid":1,"args":{}}"#;

/// GOOD with `field` replaced by `value` (or removed when `value` is None).
fn with(field: &str, value: Option<&str>) -> String {
    let mut ev: serde_json::Map<String, serde_json::Value> = serde_json::from_str(GOOD).unwrap();
    match value {
        Some(v) => {
            ev.insert(field.into(), serde_json::from_str(v).unwrap());
        }
        None => {
            ev.remove(field);
        }
    }
    format!(
        "{{\"traceEvents\":[{GOOD},{}]}}",
        serde_json::Value::Object(ev)
    )
}

#[test]
fn good_event_parses() {
    assert_eq!(
        Trace::from_chrome_json(&with("cat", Some("\"c\"")))
            .unwrap()
            .spans
            .len(),
        2
    );
}

#[test]
fn not_json() {
    for text in ["", "{", "traceEvents", "[1,2", "\u{0}"] {
        assert!(matches!(err(text), TraceError::Json(_)), "{text:?}");
    }
}

#[test]
fn not_a_trace() {
    for text in [
        "1",
        "\"x\"",
        "null",
        "{}",
        r#"{"traceEvents":{}}"#,
        r#"{"traceEvents":3}"#,
    ] {
        assert!(matches!(err(text), TraceError::NotATrace), "{text:?}");
    }
}

#[test]
fn missing_fields() {
    for field in ["name", "ph", "ts", "dur", "pid", "tid"] {
        match err(&with(field, None)) {
            TraceError::MissingField { index, field: f } => {
                assert_eq!((index, f), (1, field));
            }
            e => panic!("{field}: {e}"),
        }
    }
}

#[test]
fn wrong_types_and_ranges() {
    let cases = [
        ("name", "3"),
        ("cat", "[]"),
        ("ph", "1"),
        ("ts", "\"1\""),
        ("ts", "-1"),
        ("dur", "-0.5"),
        ("dur", "1e300"),
        ("pid", "-2"),
        ("pid", "2.5"),
        ("tid", "\"main\""),
        ("args", "[1]"),
    ];
    for (field, value) in cases {
        match err(&with(field, Some(value))) {
            TraceError::BadField {
                index, field: f, ..
            } => assert_eq!((index, f), (1, field)),
            e => panic!("{field}={value}: {e}"),
        }
    }
}

#[test]
fn unknown_pid() {
    assert!(matches!(
        err(&with("pid", Some("77"))),
        TraceError::UnknownPid { index: 1, pid: 77 }
    ));
}

#[test]
fn event_not_an_object() {
    assert!(matches!(
        err(r#"{"traceEvents":[1]}"#),
        TraceError::BadField {
            index: 0,
            field: "event",
            ..
        }
    ));
}

#[test]
fn thread_name_without_name_arg() {
    let text = r#"[{"name":"thread_name","ph":"M","pid":1,"tid":1,"args":{"nom":"x"}}]"#;
    assert!(matches!(
        err(text),
        TraceError::BadField { field: "args", .. }
    ));
    let text = r#"[{"name":"thread_name","ph":"M","pid":1,"tid":1}]"#;
    assert!(matches!(
        err(text),
        TraceError::MissingField { field: "args", .. }
    ));
}

#[test]
fn truncated_written_trace_never_panics() {
    let mut t = Trace::new();
    for i in 0..20 {
        t.spans.push(exodus_trace::Span::new(
            "op",
            "launch",
            exodus_trace::Track::stream(1),
            i,
            1,
        ));
    }
    let text = t.to_chrome_json();
    for cut in 0..text.len() {
        // Every prefix is an error (or, never, a panic).
        assert!(
            Trace::from_chrome_json(&text[..cut]).is_err(),
            "prefix {cut}"
        );
    }
}

#[test]
fn io_error_names_the_path() {
    let path = std::env::temp_dir().join("exodus-no-such-dir/x/trace.json");
    match Trace::new().write(&path) {
        Err(TraceError::Io { path: p, .. }) => assert!(p.contains("exodus-no-such-dir")),
        other => panic!("{other:?}"),
    }
}
