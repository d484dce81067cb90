//! Streams and events: launches run in order on the worker, events order
//! work across streams without blocking the host, elapsed time between
//! events, and every kind of misuse comes back as a typed error.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{within, Gate};
use exodus_runtime::{CpuDevice, Device, DeviceBuffer, Event, Launch, RuntimeError, Stream};

fn add_one(buf: &DeviceBuffer<i64>) -> Launch {
    Launch::new("add_one", |k| {
        for v in k.output::<i64>(0)?.iter_mut() {
            *v += 1;
        }
        Ok(())
    })
    .output(buf)
}

/// dst[i] = src[i] * factor
fn scale(src: &DeviceBuffer<i64>, dst: &DeviceBuffer<i64>, factor: i64) -> Launch {
    Launch::new("scale", move |k| {
        let src = k.input::<i64>(0)?;
        let mut dst = k.output::<i64>(0)?;
        for (d, s) in dst.iter_mut().zip(src.iter()) {
            *d = s * factor;
        }
        Ok(())
    })
    .input(src)
    .output(dst)
}

#[test]
fn launches_run_in_order() {
    let dev = CpuDevice::new();
    let s = dev.create_stream().unwrap();
    let a = dev.upload(&[1i64, 2, 3]).unwrap();
    let b = dev.alloc::<i64>(3).unwrap();
    s.launch(add_one(&a)).unwrap(); // 2 3 4
    s.launch(scale(&a, &b, 10)).unwrap(); // 20 30 40
    s.launch(add_one(&b)).unwrap(); // 21 31 41
    s.copy(&b, &a).unwrap();
    s.fill(&b, -1).unwrap();
    s.synchronize().unwrap();
    assert_eq!(a.to_host(), [21, 31, 41]);
    assert_eq!(b.to_host(), [-1, -1, -1]);
    let st = s.stats();
    assert_eq!((st.submitted, st.completed, st.tasks_run), (5, 5, 5));
}

#[test]
fn upload_and_host_callback() {
    let dev = CpuDevice::new();
    let s = dev.create_stream().unwrap();
    let a = dev.alloc::<u32>(4).unwrap();
    s.upload(&a, vec![4, 3, 2, 1]).unwrap();
    let seen = Arc::new(AtomicU64::new(0));
    let (a2, seen2) = (a.clone(), Arc::clone(&seen));
    s.host_fn("check", move || {
        seen2.store(
            a2.to_host().iter().map(|&v| v as u64).sum(),
            Ordering::SeqCst,
        );
    })
    .unwrap();
    s.synchronize().unwrap();
    assert_eq!(seen.load(Ordering::SeqCst), 10);
    assert!(matches!(
        s.upload(&a, vec![1]),
        Err(RuntimeError::LengthMismatch { .. })
    ));
}

#[test]
fn event_orders_streams_without_blocking_host() {
    let dev = CpuDevice::new();
    let producer = dev.create_stream().unwrap();
    let consumer = dev.create_stream().unwrap();
    let x = dev.alloc::<i64>(4).unwrap();
    let y = dev.alloc::<i64>(4).unwrap();
    let gate = Gate::default();
    let ready = Event::new();

    // The producer is held at the gate, then writes x.
    let g = gate.clone();
    producer.host_fn("gate", move || g.wait()).unwrap();
    producer.upload(&x, vec![1, 2, 3, 4]).unwrap();
    producer.record(&ready).unwrap();
    // The consumer must not read x before the producer wrote it.
    consumer.wait_event(&ready).unwrap();
    consumer.launch(scale(&x, &y, 3)).unwrap();
    let done = Event::new();
    consumer.record(&done).unwrap();

    // The host was not blocked: we are here with the producer still gated.
    assert!(!ready.query().unwrap());
    assert!(!done.query().unwrap());
    assert!(!consumer.query().unwrap());
    gate.open();
    done.synchronize().unwrap();
    assert_eq!(y.to_host(), [3, 6, 9, 12]);
    assert!(ready.query().unwrap());
    assert!(done.elapsed_since(&ready).is_ok());
}

#[test]
fn event_chain_across_many_streams() {
    let dev = CpuDevice::new();
    let streams: Vec<Stream> = (0..6).map(|_| dev.create_stream().unwrap()).collect();
    let buf = dev.alloc::<i64>(1).unwrap();
    let gate = Gate::default();
    let g = gate.clone();
    streams[0].host_fn("gate", move || g.wait()).unwrap();
    // Each stream doubles then adds its index, strictly after the previous.
    let mut prev: Option<Event> = None;
    for (i, s) in streams.iter().enumerate() {
        if let Some(e) = &prev {
            s.wait_event(e).unwrap();
        }
        let i = i as i64;
        s.launch(
            Launch::new("step", move |k| {
                let mut v = k.output::<i64>(0)?;
                v[0] = v[0] * 2 + i;
                Ok(())
            })
            .output(&buf),
        )
        .unwrap();
        let e = Event::new();
        s.record(&e).unwrap();
        prev = Some(e);
    }
    gate.open();
    prev.unwrap().synchronize().unwrap();
    let expected = (0..6).fold(0i64, |v, i| v * 2 + i);
    assert_eq!(buf.to_host(), [expected]);
}

#[test]
fn event_elapsed_and_states() {
    let s = Stream::new().unwrap();
    let (a, b) = (Event::new(), Event::new());
    assert!(matches!(
        a.query(),
        Err(RuntimeError::EventNotRecorded { .. })
    ));
    assert!(matches!(
        a.synchronize(),
        Err(RuntimeError::EventNotRecorded { .. })
    ));
    assert!(matches!(
        b.elapsed_since(&a),
        Err(RuntimeError::EventNotRecorded { .. })
    ));
    let gate = Gate::default();
    let g = gate.clone();
    s.record(&a).unwrap();
    s.host_fn("gate", move || g.wait()).unwrap();
    s.record(&b).unwrap();
    a.synchronize().unwrap();
    assert!(matches!(
        b.elapsed_since(&a),
        Err(RuntimeError::EventPending { .. })
    ));
    gate.open();
    b.synchronize().unwrap();
    // b was reached after a: elapsed is defined (its size is not checked).
    let _ = b.elapsed_since(&a).unwrap();
    assert_eq!(a.elapsed_since(&b).unwrap(), Duration::ZERO);
}

#[test]
fn misuse_is_typed() {
    let dev = CpuDevice::new();
    let s = dev.create_stream().unwrap();
    let buf = dev.alloc::<i64>(2).unwrap();
    // Waiting on an event never recorded.
    assert!(matches!(
        s.wait_event(&Event::new()),
        Err(RuntimeError::EventNotRecorded { .. })
    ));
    // Ending a capture that never began.
    assert!(matches!(
        s.end_capture(),
        Err(RuntimeError::CaptureNotStarted { .. })
    ));
    // A written buffer passed twice.
    let twice = add_one(&buf).output(&buf);
    assert!(matches!(
        s.launch(twice),
        Err(RuntimeError::ArgAliased { .. })
    ));
    let read_and_write = add_one(&buf).input(&buf);
    assert!(matches!(
        s.launch(read_and_write),
        Err(RuntimeError::ArgAliased { .. })
    ));
    assert!(matches!(
        s.copy(&buf, &buf),
        Err(RuntimeError::ArgAliased { .. })
    ));
    // Reading the same buffer twice is fine.
    let out = dev.alloc::<i64>(2).unwrap();
    let sum = Launch::new("sum", |k| {
        let (a, b) = (k.input::<i64>(0)?, k.input::<i64>(1)?);
        let mut o = k.output::<i64>(0)?;
        for i in 0..o.len() {
            o[i] = a[i] + b[i];
        }
        Ok(())
    });
    buf.copy_from_host(&[5, 6]).unwrap();
    s.launch(sum.input(&buf).input(&buf).output(&out)).unwrap();
    s.synchronize().unwrap();
    assert_eq!(out.to_host(), [10, 12]);
    // Launch on a closed stream.
    s.close().unwrap();
    s.close().unwrap();
    assert!(matches!(
        s.launch(add_one(&buf)),
        Err(RuntimeError::StreamClosed { .. })
    ));
    assert!(matches!(
        s.record(&Event::new()),
        Err(RuntimeError::StreamClosed { .. })
    ));
    assert!(matches!(
        s.begin_capture(),
        Err(RuntimeError::StreamClosed { .. })
    ));
}

#[test]
fn panicking_task_poisons_only_its_stream() {
    within(Duration::from_secs(60), || {
        let dev = CpuDevice::new();
        let bad = dev.create_stream().unwrap();
        let good = dev.create_stream().unwrap();
        let a = dev.alloc::<i64>(1).unwrap();
        let b = dev.alloc::<i64>(1).unwrap();
        let after = Event::new();
        bad.launch(Launch::new("boom", |_| panic!("kernel exploded")))
            .unwrap();
        bad.launch(add_one(&a)).unwrap(); // skipped
        bad.record(&after).unwrap(); // completes, marked failed
        good.launch(add_one(&b)).unwrap();
        match bad.synchronize() {
            Err(RuntimeError::StreamPoisoned { reason, .. }) => {
                assert!(
                    reason.contains("boom") && reason.contains("kernel exploded"),
                    "{reason}"
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            bad.launch(add_one(&a)),
            Err(RuntimeError::StreamPoisoned { .. })
        ));
        assert!(matches!(
            after.synchronize(),
            Err(RuntimeError::EventFailed { .. })
        ));
        assert_eq!(a.to_host(), [0], "launch after the panic was skipped");
        assert_eq!(bad.stats().tasks_skipped, 1);
        good.synchronize().unwrap();
        assert_eq!(b.to_host(), [1]);
        // A stream waiting on the failed event fails too, instead of hanging.
        good.wait_event(&after).unwrap();
        assert!(matches!(
            good.synchronize(),
            Err(RuntimeError::StreamPoisoned { .. })
        ));
        // Other streams are unaffected.
        let fresh = dev.create_stream().unwrap();
        fresh.launch(add_one(&b)).unwrap();
        fresh.synchronize().unwrap();
        assert_eq!(b.to_host(), [2]);
    });
}

#[test]
fn task_errors_and_bad_arguments_poison_with_a_message() {
    let dev = CpuDevice::new();
    let f = dev.alloc::<f32>(1).unwrap();
    let cases: Vec<(Launch, &str)> = vec![
        (
            Launch::new("wrong_type", |k| Ok(k.input::<i64>(0).map(|_| ())?)).input(&f),
            "f32",
        ),
        (
            Launch::new("no_output", |k| Ok(k.output::<f32>(3).map(|_| ())?)).output(&f),
            "output 3",
        ),
        (
            Launch::new("double_borrow", |k| {
                let _a = k.output::<f32>(0)?;
                let _b = k.output::<f32>(0)?;
                Ok(())
            })
            .output(&f),
            "more than once",
        ),
        (
            Launch::new("custom", |_| Err("shape mismatch 3 vs 4".into())),
            "shape mismatch",
        ),
    ];
    for (launch, needle) in cases {
        let s = dev.create_stream().unwrap();
        s.launch(launch).unwrap();
        match s.synchronize() {
            Err(RuntimeError::StreamPoisoned { reason, .. }) => {
                assert!(reason.contains(needle), "{reason} lacks {needle}")
            }
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn capture_left_open() {
    within(Duration::from_secs(60), || {
        let dev = CpuDevice::new();
        let buf = dev.alloc::<i64>(1).unwrap();
        let s = dev.create_stream().unwrap();
        s.begin_capture().unwrap();
        assert!(matches!(
            s.begin_capture(),
            Err(RuntimeError::CaptureInProgress { .. })
        ));
        s.launch(add_one(&buf)).unwrap();
        assert!(matches!(
            s.synchronize(),
            Err(RuntimeError::CaptureInProgress { .. })
        ));
        // A record during a capture marks the capture (no real record);
        // a wait on an event recorded outside the capture is refused.
        s.record(&Event::new()).unwrap();
        let outside = Event::new();
        assert!(matches!(
            s.wait_event(&outside),
            Err(RuntimeError::EventNotRecorded { .. })
        ));
        let other = dev.create_stream().unwrap();
        other.record(&outside).unwrap();
        assert!(matches!(
            s.wait_event(&outside),
            Err(RuntimeError::NotCapturable { .. })
        ));
        assert!(matches!(
            s.close(),
            Err(RuntimeError::CaptureInProgress { .. })
        ));
        assert_eq!(buf.to_host(), [0], "captured launch never ran");
        // Dropping a stream mid-capture neither hangs nor panics.
        let t = dev.create_stream().unwrap();
        t.begin_capture().unwrap();
        t.launch(add_one(&buf)).unwrap();
        drop(t);
        assert_eq!(buf.to_host(), [0]);
    });
}

#[test]
fn dropping_a_stream_runs_its_queue() {
    let dev = CpuDevice::new();
    let buf = dev.alloc::<i64>(1).unwrap();
    let s = dev.create_stream().unwrap();
    for _ in 0..100 {
        s.launch(add_one(&buf)).unwrap();
    }
    drop(s);
    assert_eq!(buf.to_host(), [100]);
}

#[test]
fn host_callback_may_close_its_own_stream() {
    within(Duration::from_secs(60), || {
        let s = Arc::new(Stream::new().unwrap());
        let me = Arc::clone(&s);
        s.host_fn("close-self", move || {
            let _ = me.close();
        })
        .unwrap();
        // Wait until closed without synchronize racing the close.
        while s.launch(Launch::new("x", |_| Ok(()))).is_ok() {
            std::thread::yield_now();
        }
        assert!(matches!(
            s.launch(Launch::new("x", |_| Ok(()))),
            Err(RuntimeError::StreamClosed { .. })
        ));
    });
}
