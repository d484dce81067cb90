//! Spans from many threads all land in one trace: none lost, none
//! duplicated, even while `take` runs concurrently; nothing is recorded
//! while tracing is off. Tests share the global recorder, so they run one
//! at a time.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use exodus_trace::{record, set_enabled, span, take, Span, Track, TrackKind};

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    let g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    set_enabled(false);
    drop(take());
    g
}

#[test]
fn spans_from_many_threads_are_all_collected() {
    let _s = serial();
    const THREADS: u64 = 8;
    const PER: u64 = 2_000;
    set_enabled(true);
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            std::thread::Builder::new()
                .name(format!("worker-{t}"))
                .spawn(move || {
                    for i in 0..PER {
                        let _g = span("work", "host").arg("t", t).arg("i", i);
                    }
                })
                .unwrap()
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    set_enabled(false);
    let trace = take();
    assert_eq!(trace.spans.len() as u64, THREADS * PER);
    let seen: BTreeSet<(u64, u64)> = trace
        .spans
        .iter()
        .map(|s| (s.args["t"].as_u64().unwrap(), s.args["i"].as_u64().unwrap()))
        .collect();
    assert_eq!(seen.len() as u64, THREADS * PER, "no duplicates");
    // One track per thread, each named after its thread.
    let tracks: BTreeSet<Track> = trace.spans.iter().map(|s| s.track).collect();
    assert_eq!(tracks.len() as u64, THREADS);
    for track in &tracks {
        assert_eq!(track.kind, TrackKind::Thread);
        assert!(trace.track_names[track].starts_with("worker-"));
    }
    // Each thread's spans sit on one track.
    for t in 0..THREADS {
        let on: BTreeSet<Track> = trace
            .spans
            .iter()
            .filter(|s| s.args["t"] == t)
            .map(|s| s.track)
            .collect();
        assert_eq!(on.len(), 1);
    }
    assert!(take().spans.is_empty(), "take drains");
}

#[test]
fn concurrent_take_loses_nothing() {
    let _s = serial();
    const THREADS: u64 = 4;
    const PER: u64 = 20_000;
    set_enabled(true);
    let done = Arc::new(AtomicBool::new(false));
    let collector = {
        let done = Arc::clone(&done);
        std::thread::spawn(move || {
            let mut n = 0u64;
            while !done.load(Ordering::Acquire) {
                n += take().spans.len() as u64;
                std::thread::yield_now();
            }
            n
        })
    };
    let writers: Vec<_> = (0..THREADS)
        .map(|t| {
            std::thread::spawn(move || {
                for i in 0..PER {
                    record(Span::new("k", "launch", Track::stream(t), i, 1));
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    done.store(true, Ordering::Release);
    let collected = collector.join().unwrap() + take().spans.len() as u64;
    set_enabled(false);
    assert_eq!(collected, THREADS * PER);
}

#[test]
fn nothing_is_recorded_when_off() {
    let _s = serial();
    {
        let g = span("off", "host");
        assert!(!g.is_recording());
    }
    record(Span::new("off", "launch", Track::stream(1), 0, 1));
    std::thread::spawn(|| drop(span("off", "host")))
        .join()
        .unwrap();
    assert!(take().spans.is_empty());
    set_enabled(true);
    assert!(span("on", "host").is_recording());
    set_enabled(false);
    assert_eq!(take().spans.len(), 1);
}

#[test]
fn stream_tracks_keep_their_names() {
    let _s = serial();
    exodus_trace::set_track_name(Track::stream(42), "stream 42");
    set_enabled(true);
    record(Span::new("k", "launch", Track::stream(42), 5, 1));
    set_enabled(false);
    let t = take();
    assert_eq!(t.spans.len(), 1);
    assert_eq!(
        t.track_names.get(&Track::stream(42)).map(String::as_str),
        Some("stream 42")
    );
    assert_eq!(t.track_names.len(), 1, "only tracks with spans are named");
}
