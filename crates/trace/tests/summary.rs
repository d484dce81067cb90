//! Op summary math: calls, total, mean, min, max and share per
//! (category, name), sorted by total; and the text table.

use exodus_trace::{Span, Trace, Track};

fn trace_of(spans: &[(&'static str, &'static str, u64)]) -> Trace {
    let mut t = Trace::new();
    let mut start = 0;
    for &(name, cat, dur) in spans {
        t.spans
            .push(Span::new(name, cat, Track::stream(1), start, dur));
        start += dur;
    }
    t
}

#[test]
fn rows_match_the_spans() {
    let spans = [
        ("matmul", "launch", 300),
        ("add", "launch", 10),
        ("matmul", "launch", 500),
        ("add", "launch", 30),
        ("add", "launch", 20),
        ("copy", "copy", 140),
    ];
    let trace = trace_of(&spans);
    let summary = trace.op_summary();
    let grand: u64 = spans.iter().map(|s| s.2).sum();
    assert_eq!(summary.total_ns, grand);
    assert_eq!(summary.rows.len(), 3);
    for row in &summary.rows {
        let durs: Vec<u64> = spans
            .iter()
            .filter(|s| s.0 == row.name && s.1 == row.category)
            .map(|s| s.2)
            .collect();
        let total: u64 = durs.iter().sum();
        assert_eq!(row.calls, durs.len() as u64);
        assert_eq!(row.total_ns, total);
        assert_eq!(row.min_ns, *durs.iter().min().unwrap());
        assert_eq!(row.max_ns, *durs.iter().max().unwrap());
        assert!((row.mean_ns() - total as f64 / durs.len() as f64).abs() < 1e-9);
        assert!((row.share - total as f64 / grand as f64).abs() < 1e-12);
    }
    let totals: Vec<u64> = summary.rows.iter().map(|r| r.total_ns).collect();
    assert!(
        totals.windows(2).all(|w| w[0] >= w[1]),
        "sorted by total: {totals:?}"
    );
    let shares: f64 = summary.rows.iter().map(|r| r.share).sum();
    assert!((shares - 1.0).abs() < 1e-12);
}

#[test]
fn same_name_in_two_categories_is_two_rows() {
    let trace = trace_of(&[("x", "launch", 5), ("x", "copy", 7)]);
    let s = trace.op_summary();
    assert_eq!(s.rows.len(), 2);
    assert_eq!(
        (s.rows[0].category.as_str(), s.rows[0].total_ns),
        ("copy", 7)
    );
}

#[test]
fn one_category_only() {
    let trace = trace_of(&[
        ("a", "launch", 30),
        ("w", "wait", 1000),
        ("b", "launch", 10),
    ]);
    let s = trace.op_summary_of("launch");
    assert_eq!(s.total_ns, 40);
    assert_eq!(
        s.rows.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(),
        ["a", "b"]
    );
    assert!((s.rows[0].share - 0.75).abs() < 1e-12);
}

#[test]
fn empty_and_zero_duration() {
    assert!(Trace::new().op_summary().rows.is_empty());
    let s = trace_of(&[("z", "launch", 0), ("z", "launch", 0)]).op_summary();
    assert_eq!(
        (s.rows[0].calls, s.rows[0].share, s.rows[0].mean_ns()),
        (2, 0.0, 0.0)
    );
}

#[test]
fn table_lists_every_row() {
    let trace = trace_of(&[("matmul", "launch", 1_500), ("rms_norm", "launch", 500)]);
    let text = trace.op_summary().to_string();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    assert!(lines[0].starts_with("op"));
    assert!(
        lines[1].starts_with("matmul") && lines[1].contains("1.500") && lines[1].contains("75.0%")
    );
    assert!(lines[2].starts_with("rms_norm") && lines[2].contains("25.0%"));
    assert!(lines[3].starts_with("total") && lines[3].contains("2.000"));
}
