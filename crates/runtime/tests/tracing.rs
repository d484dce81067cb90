//! With tracing on, every launch, copy and event wait of a stream shows up
//! as a span of the right category on that stream's track; with tracing
//! off, nothing does.

use exodus_runtime::{CpuDevice, Device, Event, Launch};
use exodus_trace::{Track, TrackKind};

#[test]
fn stream_work_is_traced() {
    let dev = CpuDevice::new();
    let (s, t) = (dev.create_stream().unwrap(), dev.create_stream().unwrap());
    let a = dev.alloc::<f32>(8).unwrap();
    let b = dev.alloc::<f32>(8).unwrap();

    // Off: nothing recorded.
    drop(exodus_trace::take());
    s.fill(&a, 1.0).unwrap();
    s.synchronize().unwrap();
    assert!(exodus_trace::take().spans.is_empty());

    exodus_trace::set_enabled(true);
    s.launch(
        Launch::new("relu", |k| {
            for v in k.output::<f32>(0)?.iter_mut() {
                *v = v.max(0.0);
            }
            Ok(())
        })
        .output(&a),
    )
    .unwrap();
    s.copy(&a, &b).unwrap();
    let e = Event::new();
    s.record(&e).unwrap();
    t.wait_event(&e).unwrap();
    t.fill(&a, 0.0).unwrap();
    s.begin_capture().unwrap();
    s.fill(&b, 2.0).unwrap();
    let exec = s.end_capture().unwrap().instantiate().unwrap();
    s.synchronize().unwrap();
    s.replay(&exec).unwrap();
    s.synchronize().unwrap();
    t.synchronize().unwrap();
    exodus_trace::set_enabled(false);

    let trace = exodus_trace::take();
    let on = |stream: u64, cat: &str| -> Vec<String> {
        trace
            .spans
            .iter()
            .filter(|sp| sp.track == Track::stream(stream) && sp.category == cat)
            .map(|sp| sp.name.to_string())
            .collect()
    };
    assert_eq!(on(s.id(), "launch"), ["relu"]);
    assert_eq!(
        on(s.id(), "copy"),
        ["copy", "fill"],
        "the replayed fill too"
    );
    assert_eq!(on(t.id(), "wait"), ["event wait"]);
    assert_eq!(on(t.id(), "copy"), ["fill"]);
    assert!(trace
        .spans
        .iter()
        .all(|sp| sp.track.kind == TrackKind::Stream));
    assert_eq!(
        trace.track_names[&Track::stream(s.id())],
        format!("stream {}", s.id())
    );
    // The trace survives the Chrome JSON round trip and summarises.
    let back = exodus_trace::Trace::from_chrome_json(&trace.to_chrome_json()).unwrap();
    assert_eq!(back, trace);
    let summary = back.op_summary_of("copy");
    assert_eq!(summary.rows.iter().map(|r| r.calls).sum::<u64>(), 3);
}
