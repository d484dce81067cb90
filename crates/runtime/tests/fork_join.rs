//! Fork/join capture across streams: a stream joins a capture by waiting
//! on an event recorded in it, joins back through another event, and the
//! captured DAG replays with its branches running concurrently on the
//! graph's lane threads. Real threads; no timing assertions (a barrier
//! with a deadline turns a serial replay into a failure, a watchdog turns
//! a hang into one).

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use common::within;
use exodus_runtime::{CpuDevice, Device, DeviceBuffer, Event, Launch, RuntimeError, Stream};

const WATCHDOG: Duration = Duration::from_secs(120);

/// `from` records an event that `to` waits on: forks `to` into the
/// capture of `from` (or orders `to` after `from` inside one).
fn edge(from: &Stream, to: &Stream) {
    let e = Event::new();
    from.record(&e).unwrap();
    to.wait_event(&e).unwrap();
}

/// `y[i] = f(x[i])`.
fn map(
    name: &'static str,
    x: &DeviceBuffer<i64>,
    y: &DeviceBuffer<i64>,
    f: fn(i64) -> i64,
) -> Launch {
    Launch::new(name, move |k| {
        let x = k.input::<i64>(0)?;
        let mut y = k.output::<i64>(0)?;
        for (y, x) in y.iter_mut().zip(x.iter()) {
            *y = f(*x);
        }
        Ok(())
    })
    .input(x)
    .output(y)
}

/// `out[i] = a[i] + b[i]`.
fn sum(a: &DeviceBuffer<i64>, b: &DeviceBuffer<i64>, out: &DeviceBuffer<i64>) -> Launch {
    Launch::new("sum", |k| {
        let (a, b) = (k.input::<i64>(0)?, k.input::<i64>(1)?);
        let mut out = k.output::<i64>(0)?;
        for i in 0..out.len() {
            out[i] = a[i] + b[i];
        }
        Ok(())
    })
    .input(a)
    .input(b)
    .output(out)
}

fn input(round: i64, n: usize) -> Vec<i64> {
    (0..n as i64)
        .map(|i| (i * 7 + round * 13) % 101 - 50)
        .collect()
}

#[test]
fn two_branches_and_a_join_replay_right_many_times() {
    within(WATCHDOG, || {
        const N: usize = 257;
        let dev = CpuDevice::new();
        let [s, t, u] = [(); 3].map(|_| dev.create_stream().unwrap());
        let x = dev.alloc::<i64>(N).unwrap();
        let [a, b, c, out] = [(); 4].map(|_| dev.alloc::<i64>(N).unwrap());

        s.begin_capture().unwrap();
        edge(&s, &t); // fork t
        edge(&s, &u); // fork u
        t.launch(map("left", &x, &a, |v| 2 * v)).unwrap();
        u.launch(map("middle", &x, &c, |v| v * v)).unwrap();
        s.launch(map("right", &x, &b, |v| v + 3)).unwrap();
        edge(&t, &s); // join t
        s.launch(sum(&a, &b, &out)).unwrap();
        edge(&u, &s); // join u
        s.launch(sum(&out, &c, &out.clone())).unwrap_err(); // aliased: refused
        let total = dev.alloc::<i64>(N).unwrap();
        s.launch(sum(&out, &c, &total)).unwrap();
        assert!(t.is_capturing() && u.is_capturing());
        let graph = s.end_capture().unwrap();
        assert!(!t.is_capturing() && !u.is_capturing() && !s.is_capturing());

        assert_eq!(
            graph.node_names().collect::<Vec<_>>(),
            ["left", "middle", "right", "sum", "sum"]
        );
        assert_eq!(graph.lanes(), 3);
        assert_eq!(graph.lane_stream(1), Some(t.id()));
        let deps: Vec<&[usize]> = (0..5).map(|n| graph.dependencies(n).unwrap()).collect();
        assert_eq!(deps, [&[][..], &[], &[], &[0, 2], &[1, 3]]);
        assert_eq!(graph.node_lane(1), Some(2));
        // Captured, not run; and the joined streams run again afterwards.
        t.fill(&a, 5).unwrap();
        t.synchronize().unwrap();
        assert_eq!(a.to_host(), vec![5; N]);
        assert!(out.to_host().iter().all(|&v| v == 0));

        let exec = graph.instantiate().unwrap();
        assert_eq!((exec.len(), exec.lanes()), (5, 3));
        for round in 0..200 {
            let xs = input(round, N);
            x.copy_from_host(&xs).unwrap();
            let replayer = if round % 2 == 0 { &s } else { &t };
            let before = replayer.stats();
            replayer.replay(&exec).unwrap();
            replayer.synchronize().unwrap();
            let after = replayer.stats();
            assert_eq!(after.submitted - before.submitted, 1);
            assert_eq!(after.tasks_run - before.tasks_run, 5);
            let want: Vec<i64> = xs.iter().map(|v| 2 * v + v + 3 + v * v).collect();
            assert_eq!(total.to_host(), want, "round {round}");
        }
    });
}

/// A reusable barrier whose `wait` gives up after `limit`: false if the
/// other parties did not all arrive in time.
struct TimedBarrier {
    parties: usize,
    state: Mutex<(usize, u64)>,
    turned: Condvar,
}

impl TimedBarrier {
    fn new(parties: usize) -> Self {
        TimedBarrier {
            parties,
            state: Mutex::new((0, 0)),
            turned: Condvar::new(),
        }
    }

    fn wait(&self, limit: Duration) -> bool {
        let mut st = self.state.lock().unwrap();
        let generation = st.1;
        st.0 += 1;
        if st.0 == self.parties {
            *st = (0, generation + 1);
            self.turned.notify_all();
            return true;
        }
        let deadline = Instant::now() + limit;
        while st.1 == generation {
            let now = Instant::now();
            if now >= deadline {
                st.0 -= 1;
                return false;
            }
            st = self.turned.wait_timeout(st, deadline - now).unwrap().0;
        }
        true
    }
}

/// A launch writing `out` that must meet the other branch at `barrier`.
fn meet(name: &'static str, barrier: &Arc<TimedBarrier>, out: &DeviceBuffer<u64>) -> Launch {
    let barrier = Arc::clone(barrier);
    Launch::new(name, move |k| {
        k.output::<u64>(0)?[0] += 1;
        if barrier.wait(Duration::from_secs(5)) {
            Ok(())
        } else {
            Err("the other branch never arrived: replay is serial".into())
        }
    })
    .output(out)
}

#[test]
fn branches_replay_concurrently() {
    within(WATCHDOG, || {
        let dev = CpuDevice::new();
        let (s, t) = (dev.create_stream().unwrap(), dev.create_stream().unwrap());
        let (a, b) = (dev.alloc::<u64>(1).unwrap(), dev.alloc::<u64>(1).unwrap());
        let barrier = Arc::new(TimedBarrier::new(2));
        s.begin_capture().unwrap();
        edge(&s, &t);
        // Launches holding buffer locks on both branches, and host
        // callbacks (no locks): both pairs must be running at once.
        t.launch(meet("t_meets", &barrier, &a)).unwrap();
        s.launch(meet("s_meets", &barrier, &b)).unwrap();
        let (bt, bs) = (Arc::clone(&barrier), Arc::clone(&barrier));
        let missed = Arc::new(AtomicU64::new(0));
        let (mt, ms) = (Arc::clone(&missed), Arc::clone(&missed));
        t.host_fn("t_host", move || {
            if !bt.wait(Duration::from_secs(5)) {
                mt.fetch_add(1, Ordering::Relaxed);
            }
        })
        .unwrap();
        s.host_fn("s_host", move || {
            if !bs.wait(Duration::from_secs(5)) {
                ms.fetch_add(1, Ordering::Relaxed);
            }
        })
        .unwrap();
        edge(&t, &s);
        let exec = s.end_capture().unwrap().instantiate().unwrap();
        for _ in 0..20 {
            s.replay(&exec).unwrap();
        }
        s.synchronize().unwrap();
        assert_eq!(missed.load(Ordering::Relaxed), 0);
        assert_eq!((a.to_host(), b.to_host()), (vec![20], vec![20]));
    });
}

#[test]
fn event_edges_order_a_chain_across_streams() {
    within(WATCHDOG, || {
        const N: usize = 4096;
        let dev = CpuDevice::new();
        let (s, t) = (dev.create_stream().unwrap(), dev.create_stream().unwrap());
        let x = dev.alloc::<i64>(N).unwrap();
        let [a, b, c] = [(); 3].map(|_| dev.alloc::<i64>(N).unwrap());
        s.begin_capture().unwrap();
        s.launch(map("a", &x, &a, |v| v + 1)).unwrap();
        edge(&s, &t); // t's first node after "a"
        t.launch(map("b", &a, &b, |v| v * 3)).unwrap();
        edge(&t, &s); // s's next node after "b"
        s.launch(map("c", &b, &c, |v| v - 7)).unwrap();
        let graph = s.end_capture().unwrap();
        assert_eq!(graph.dependencies(1), Some(&[0][..]));
        assert_eq!(graph.dependencies(2), Some(&[0, 1][..]));
        let exec = graph.instantiate().unwrap();
        for round in 0..300 {
            let xs = input(round, N);
            x.copy_from_host(&xs).unwrap();
            s.replay(&exec).unwrap();
            s.synchronize().unwrap();
            let want: Vec<i64> = xs.iter().map(|v| (v + 1) * 3 - 7).collect();
            assert_eq!(c.to_host(), want, "round {round}");
        }
    });
}

#[test]
fn replays_of_one_graph_from_two_streams_take_turns() {
    within(WATCHDOG, || {
        let dev = CpuDevice::new();
        let [s, t, r1, r2] = [(); 4].map(|_| dev.create_stream().unwrap());
        let (a, b) = (dev.alloc::<u64>(1).unwrap(), dev.alloc::<u64>(1).unwrap());
        let bump = |name: &'static str, buf: &DeviceBuffer<u64>| {
            Launch::new(name, |k| {
                k.output::<u64>(0)?[0] += 1;
                Ok(())
            })
            .output(buf)
        };
        s.begin_capture().unwrap();
        edge(&s, &t);
        t.launch(bump("t", &a)).unwrap();
        s.launch(bump("s", &b)).unwrap();
        edge(&t, &s);
        let exec = s.end_capture().unwrap().instantiate().unwrap();
        for _ in 0..100 {
            r1.replay(&exec).unwrap();
            r2.replay(&exec).unwrap();
        }
        r1.synchronize().unwrap();
        r2.synchronize().unwrap();
        assert_eq!((a.to_host(), b.to_host()), (vec![200], vec![200]));
        // Dropping the exec while a replay is queued: the queue entry
        // keeps it (and its lane threads) until the replay is done.
        r1.replay(&exec).unwrap();
        drop(exec);
        r1.synchronize().unwrap();
        assert_eq!(a.to_host(), vec![201]);
    });
}

#[test]
fn end_capture_with_an_unjoined_branch_fails_and_frees_the_streams() {
    within(WATCHDOG, || {
        let dev = CpuDevice::new();
        let (s, t) = (dev.create_stream().unwrap(), dev.create_stream().unwrap());
        let a = dev.alloc::<i64>(1).unwrap();
        s.begin_capture().unwrap();
        edge(&s, &t);
        t.fill(&a, 1).unwrap();
        s.fill(&a, 2).unwrap();
        match s.end_capture() {
            Err(RuntimeError::CaptureUnjoined { stream, origin }) => {
                assert_eq!((stream, origin), (t.id(), s.id()));
            }
            other => panic!("{other:?}"),
        }
        assert!(!s.is_capturing() && !t.is_capturing());
        assert_eq!(a.to_host(), [0], "nothing captured ran");
        t.fill(&a, 3).unwrap();
        t.synchronize().unwrap();
        assert_eq!(a.to_host(), [3]);
        s.fill(&a, 4).unwrap();
        s.synchronize().unwrap();
        assert_eq!(a.to_host(), [4]);

        // A joined stream with no captured work needs no join.
        s.begin_capture().unwrap();
        edge(&s, &t);
        let e = Event::new();
        t.record(&e).unwrap();
        s.fill(&a, 5).unwrap();
        let graph = s.end_capture().unwrap();
        assert_eq!((graph.len(), graph.lanes()), (1, 2));
        let exec = graph.instantiate().unwrap();
        assert_eq!(exec.lanes(), 2);
        s.replay(&exec).unwrap();
        s.synchronize().unwrap();
        assert_eq!(a.to_host(), [5]);
        // The capture is over: its event was never really recorded.
        assert!(matches!(
            t.wait_event(&e),
            Err(RuntimeError::EventNotRecorded { .. })
        ));
    });
}

#[test]
fn only_the_origin_ends_a_capture() {
    within(WATCHDOG, || {
        let dev = CpuDevice::new();
        let (s, t) = (dev.create_stream().unwrap(), dev.create_stream().unwrap());
        let a = dev.alloc::<i64>(1).unwrap();
        s.begin_capture().unwrap();
        edge(&s, &t);
        t.fill(&a, 1).unwrap();
        match t.end_capture() {
            Err(RuntimeError::CaptureNotOrigin { stream, origin }) => {
                assert_eq!((stream, origin), (t.id(), s.id()));
            }
            other => panic!("{other:?}"),
        }
        // t is still in the capture; joined streams cannot begin one,
        // synchronize, or replay.
        assert!(t.is_capturing());
        assert!(matches!(
            t.begin_capture(),
            Err(RuntimeError::CaptureInProgress { .. })
        ));
        assert!(matches!(
            t.synchronize(),
            Err(RuntimeError::CaptureInProgress { .. })
        ));
        // A wait on an event of another capture is refused.
        let other = dev.create_stream().unwrap();
        other.begin_capture().unwrap();
        let foreign = Event::new();
        other.record(&foreign).unwrap();
        assert!(matches!(
            t.wait_event(&foreign),
            Err(RuntimeError::NotCapturable { .. })
        ));
        other.end_capture().unwrap();
        edge(&t, &s);
        let exec = s.end_capture().unwrap().instantiate().unwrap();
        s.replay(&exec).unwrap();
        s.synchronize().unwrap();
        assert_eq!(a.to_host(), [1]);
        assert!(matches!(
            t.end_capture(),
            Err(RuntimeError::CaptureNotStarted { .. })
        ));
    });
}

#[test]
fn closing_or_dropping_streams_mid_capture() {
    within(WATCHDOG, || {
        let dev = CpuDevice::new();
        let a = dev.alloc::<i64>(1).unwrap();
        // The origin goes away: the capture is discarded and the joined
        // stream runs its commands again.
        let t = dev.create_stream().unwrap();
        {
            let s = dev.create_stream().unwrap();
            s.begin_capture().unwrap();
            edge(&s, &t);
            t.fill(&a, 1).unwrap();
        }
        assert!(!t.is_capturing());
        t.fill(&a, 2).unwrap();
        t.synchronize().unwrap();
        assert_eq!(a.to_host(), [2]);
        // A joined stream closes: it leaves the capture, its captured work
        // stays (and must still be joined).
        let s = dev.create_stream().unwrap();
        let u = dev.create_stream().unwrap();
        s.begin_capture().unwrap();
        edge(&s, &u);
        u.fill(&a, 3).unwrap();
        edge(&u, &s);
        assert!(matches!(
            u.close(),
            Err(RuntimeError::CaptureInProgress { .. })
        ));
        drop(u);
        let exec = s.end_capture().unwrap().instantiate().unwrap();
        s.replay(&exec).unwrap();
        s.synchronize().unwrap();
        assert_eq!(a.to_host(), [3]);
    });
}

#[test]
fn a_failing_lane_poisons_the_replaying_stream_without_hanging() {
    within(WATCHDOG, || {
        let dev = CpuDevice::new();
        let (s, t) = (dev.create_stream().unwrap(), dev.create_stream().unwrap());
        let (a, b) = (dev.alloc::<u64>(1).unwrap(), dev.alloc::<u64>(1).unwrap());
        let fail_t = Arc::new(AtomicBool::new(true));
        let fail_s = Arc::new(AtomicBool::new(false));
        let flaky = |name: &'static str, fail: &Arc<AtomicBool>, buf: &DeviceBuffer<u64>| {
            let fail = Arc::clone(fail);
            Launch::new(name, move |k| {
                if fail.load(Ordering::Relaxed) {
                    return Err(format!("{name} was told to fail").into());
                }
                k.output::<u64>(0)?[0] += 1;
                Ok(())
            })
            .output(buf)
        };
        let bump = |buf: &DeviceBuffer<u64>| {
            Launch::new("bump", |k| {
                k.output::<u64>(0)?[0] += 1;
                Ok(())
            })
            .output(buf)
        };
        // s: bump a, flaky_s, ... ; t: flaky_t, then waits on s's
        // flaky_s, bumps b, and s joins it for a last bump of a.
        s.begin_capture().unwrap();
        s.launch(bump(&a)).unwrap();
        edge(&s, &t);
        t.launch(flaky("flaky_t", &fail_t, &b)).unwrap();
        s.launch(flaky("flaky_s", &fail_s, &a)).unwrap();
        edge(&s, &t);
        t.launch(bump(&b)).unwrap();
        edge(&t, &s);
        s.launch(bump(&a)).unwrap();
        let exec = s.end_capture().unwrap().instantiate().unwrap();

        // A failure on lane 1, then one on lane 0 that lane 1 waits on.
        for (ft, fs, name) in [(true, false, "flaky_t"), (false, true, "flaky_s")] {
            fail_t.store(ft, Ordering::Relaxed);
            fail_s.store(fs, Ordering::Relaxed);
            let r = dev.create_stream().unwrap();
            r.replay(&exec).unwrap();
            match r.synchronize() {
                Err(RuntimeError::StreamPoisoned { stream, reason }) => {
                    assert_eq!(stream, r.id());
                    assert!(reason.contains(name), "{reason}");
                }
                other => panic!("{other:?}"),
            }
            let stats = r.stats();
            assert_eq!(stats.tasks_run + stats.tasks_skipped, 5);
            assert!(stats.tasks_skipped >= 1, "the join node never runs");
            // The poisoned stream skips further replays whole.
            assert!(r.replay(&exec).is_err());
        }
        // A panic in a lane poisons too.
        let boom = dev.create_stream().unwrap();
        let v = dev.create_stream().unwrap();
        boom.begin_capture().unwrap();
        edge(&boom, &v);
        v.launch(Launch::new("panics", |_| panic!("lane task panicked")))
            .unwrap();
        edge(&v, &boom);
        let panics = boom.end_capture().unwrap().instantiate().unwrap();
        boom.replay(&panics).unwrap();
        assert!(matches!(
            boom.synchronize(),
            Err(RuntimeError::StreamPoisoned { reason, .. }) if reason.contains("panicked")
        ));

        // The same graph replays fine on a fresh stream once nothing fails.
        fail_t.store(false, Ordering::Relaxed);
        fail_s.store(false, Ordering::Relaxed);
        a.copy_from_host(&[0]).unwrap();
        b.copy_from_host(&[0]).unwrap();
        let fresh = dev.create_stream().unwrap();
        fresh.replay(&exec).unwrap();
        fresh.synchronize().unwrap();
        assert_eq!((a.to_host(), b.to_host()), (vec![3], vec![2]));
        // And so does another graph.
        let w = dev.create_stream().unwrap();
        fresh.begin_capture().unwrap();
        edge(&fresh, &w);
        w.launch(bump(&b)).unwrap();
        edge(&w, &fresh);
        let other = fresh.end_capture().unwrap().instantiate().unwrap();
        fresh.replay(&other).unwrap();
        fresh.synchronize().unwrap();
        assert_eq!(b.to_host(), vec![3]);
    });
}

#[test]
fn lanes_are_traced() {
    let dev = CpuDevice::new();
    let (s, t) = (dev.create_stream().unwrap(), dev.create_stream().unwrap());
    let (a, b) = (dev.alloc::<f32>(4).unwrap(), dev.alloc::<f32>(4).unwrap());
    s.begin_capture().unwrap();
    edge(&s, &t);
    t.fill(&a, 1.0).unwrap();
    s.fill(&b, 2.0).unwrap();
    edge(&t, &s);
    let exec = s.end_capture().unwrap().instantiate().unwrap();
    exodus_trace::set_enabled(true);
    s.replay(&exec).unwrap();
    s.synchronize().unwrap();
    exodus_trace::set_enabled(false);
    let trace = exodus_trace::take();
    let on_s = trace
        .spans
        .iter()
        .filter(|sp| sp.track == exodus_trace::Track::stream(s.id()) && sp.name == "fill")
        .count();
    assert_eq!(on_s, 1, "lane 0 on the replaying stream's track");
    let lane_name = format!("graph lane 1 (stream {})", t.id());
    let on_lane = trace
        .spans
        .iter()
        .filter(|sp| trace.track_names.get(&sp.track) == Some(&lane_name))
        .filter(|sp| sp.name == "fill" && sp.category == "copy")
        .count();
    assert_eq!(on_lane, 1, "lane 1 on its own track");
}
