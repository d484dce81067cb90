//! Many streams and events under load: every command runs exactly once,
//! cross-stream waits are honoured, and the whole thing finishes (a
//! watchdog turns a deadlock into a failure).

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::within;
use exodus_runtime::{CpuDevice, Device, Event, Launch, Stream};

#[test]
fn many_streams_and_events_lose_nothing() {
    within(Duration::from_secs(120), || {
        const STREAMS: usize = 12;
        const ROUNDS: usize = 500;
        let dev = CpuDevice::new();
        let streams: Vec<Stream> = (0..STREAMS).map(|_| dev.create_stream().unwrap()).collect();
        // One counter buffer per stream; each launch adds 1 to its own
        // stream's counter and, after waiting on the previous stream's
        // event, reads that stream's counter, which must already include
        // the round it waited for.
        let counters: Vec<_> = (0..STREAMS).map(|_| dev.alloc::<u64>(1).unwrap()).collect();
        let executed = Arc::new(AtomicU64::new(0));
        let violations = Arc::new(AtomicU64::new(0));
        let mut events: Vec<Option<Event>> = vec![None; STREAMS];
        for round in 0..ROUNDS {
            for i in 0..STREAMS {
                let s = &streams[i];
                let prev = (i + STREAMS - 1) % STREAMS;
                let waited = if let Some(e) = &events[prev] {
                    s.wait_event(e).unwrap();
                    true
                } else {
                    false
                };
                // The previous stream has (at least) this many increments
                // done when its event of this round (or the last) is reached.
                let need = if prev < i {
                    round as u64 + 1
                } else {
                    round as u64
                };
                let (ex, vi) = (Arc::clone(&executed), Arc::clone(&violations));
                s.launch(
                    Launch::new("step", move |k| {
                        if waited && k.input::<u64>(0)?[0] < need {
                            vi.fetch_add(1, Ordering::Relaxed);
                        }
                        k.output::<u64>(0)?[0] += 1;
                        ex.fetch_add(1, Ordering::Relaxed);
                        Ok(())
                    })
                    .input(&counters[prev])
                    .output(&counters[i]),
                )
                .unwrap();
                let ex = Arc::clone(&executed);
                s.host_fn("tick", move || {
                    ex.fetch_add(1, Ordering::Relaxed);
                })
                .unwrap();
                let e = events[i].take().unwrap_or_default();
                s.record(&e).unwrap();
                events[i] = Some(e);
            }
        }
        for s in &streams {
            s.synchronize().unwrap();
        }
        let total = (STREAMS * ROUNDS) as u64;
        assert_eq!(
            executed.load(Ordering::Relaxed),
            2 * total,
            "every command ran once"
        );
        assert_eq!(violations.load(Ordering::Relaxed), 0, "waits were honoured");
        for c in &counters {
            assert_eq!(c.to_host(), [ROUNDS as u64]);
        }
        for s in &streams {
            let st = s.stats();
            assert_eq!(st.submitted, st.completed);
            assert_eq!(st.tasks_run, 2 * ROUNDS as u64);
            assert_eq!(st.tasks_skipped, 0);
        }
    });
}

#[test]
fn many_threads_submit_to_shared_streams() {
    within(Duration::from_secs(120), || {
        const THREADS: usize = 8;
        const PER: u64 = 2_000;
        let dev = CpuDevice::new();
        let streams: Arc<Vec<Stream>> =
            Arc::new((0..3).map(|_| dev.create_stream().unwrap()).collect());
        let count = Arc::new(AtomicU64::new(0));
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let (streams, count) = (Arc::clone(&streams), Arc::clone(&count));
                std::thread::spawn(move || {
                    for i in 0..PER {
                        let s = &streams[(t + i as usize) % streams.len()];
                        let c = Arc::clone(&count);
                        s.host_fn("inc", move || {
                            c.fetch_add(1, Ordering::Relaxed);
                        })
                        .unwrap();
                        if i % 100 == 0 {
                            let e = Event::new();
                            s.record(&e).unwrap();
                            streams[(t + 1) % streams.len()].wait_event(&e).unwrap();
                        }
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        for s in streams.iter() {
            s.synchronize().unwrap();
        }
        assert_eq!(count.load(Ordering::Relaxed), THREADS as u64 * PER);
    });
}
