//! Capture and replay: a captured sequence replays with the same results
//! as the same launches run eagerly, as one queue entry, any number of
//! times; replay refuses when a captured buffer was freed or resized.

use exodus_runtime::{CpuDevice, Device, DeviceBuffer, Launch, RuntimeError, Stream};

/// A small pipeline over four buffers: y = 2x + 1; z = y * y - x; x = z % 97
/// (updated in place), then y is filled and copied; deterministic per input.
fn pipeline(
    s: &Stream,
    x: &DeviceBuffer<i64>,
    y: &DeviceBuffer<i64>,
    z: &DeviceBuffer<i64>,
    w: &DeviceBuffer<i64>,
) {
    s.launch(
        Launch::new("affine", |k| {
            let x = k.input::<i64>(0)?;
            let mut y = k.output::<i64>(0)?;
            for (y, x) in y.iter_mut().zip(x.iter()) {
                *y = 2 * x + 1;
            }
            Ok(())
        })
        .input(x)
        .output(y),
    )
    .unwrap();
    s.launch(
        Launch::new("square_minus", |k| {
            let (y, x) = (k.input::<i64>(0)?, k.input::<i64>(1)?);
            let mut z = k.output::<i64>(0)?;
            for i in 0..z.len() {
                z[i] = y[i] * y[i] - x[i];
            }
            Ok(())
        })
        .input(y)
        .input(x)
        .output(z),
    )
    .unwrap();
    s.launch(
        Launch::new("mod_in_place", |k| {
            let z = k.input::<i64>(0)?;
            let mut x = k.output::<i64>(0)?;
            for (x, z) in x.iter_mut().zip(z.iter()) {
                *x = z.rem_euclid(97);
            }
            Ok(())
        })
        .input(z)
        .output(x),
    )
    .unwrap();
    s.copy(x, w).unwrap();
    s.fill(y, 7).unwrap();
}

fn buffers(dev: &CpuDevice, n: usize) -> [DeviceBuffer<i64>; 4] {
    let x: Vec<i64> = (0..n as i64).map(|i| i * 31 - 17).collect();
    [
        dev.upload(&x).unwrap(),
        dev.alloc(n).unwrap(),
        dev.alloc(n).unwrap(),
        dev.alloc(n).unwrap(),
    ]
}

#[test]
fn replay_matches_eager() {
    let dev = CpuDevice::new();
    let s = dev.create_stream().unwrap();
    let eager = buffers(&dev, 33);
    let graph = buffers(&dev, 33);
    let [x, y, z, w] = &graph;

    s.begin_capture().unwrap();
    pipeline(&s, x, y, z, w);
    let g = s.end_capture().unwrap();
    assert_eq!(g.len(), 5);
    assert_eq!(
        g.node_names().collect::<Vec<_>>(),
        ["affine", "square_minus", "mod_in_place", "copy", "fill"]
    );
    // Capture records, it does not run.
    s.synchronize().unwrap();
    assert!(y.to_host().iter().all(|&v| v == 0));
    let exec = g.instantiate().unwrap();

    for round in 0..4 {
        pipeline(&s, &eager[0], &eager[1], &eager[2], &eager[3]);
        s.synchronize().unwrap();
        let before = s.stats();
        s.replay(&exec).unwrap();
        s.synchronize().unwrap();
        let after = s.stats();
        assert_eq!(
            after.submitted - before.submitted,
            1,
            "one queue entry per replay"
        );
        assert_eq!(after.tasks_run - before.tasks_run, 5);
        for (e, r) in eager.iter().zip(&graph) {
            assert_eq!(e.to_host(), r.to_host(), "round {round}");
        }
    }
    // The pipeline does change the data from round to round.
    assert_ne!(
        x.to_host(),
        (0..33).map(|i| i * 31 - 17).collect::<Vec<i64>>()
    );
}

#[test]
fn replay_on_another_stream_and_empty_graph() {
    let dev = CpuDevice::new();
    let (s, t) = (dev.create_stream().unwrap(), dev.create_stream().unwrap());
    let [x, y, z, w] = buffers(&dev, 8);
    s.begin_capture().unwrap();
    let empty = s.end_capture().unwrap().instantiate().unwrap();
    assert!(empty.is_empty());
    s.replay(&empty).unwrap();
    s.begin_capture().unwrap();
    pipeline(&s, &x, &y, &z, &w);
    let exec = s.end_capture().unwrap().instantiate().unwrap();
    t.replay(&exec).unwrap();
    t.synchronize().unwrap();
    assert_eq!(w.to_host(), x.to_host());
    assert_eq!(y.to_host(), vec![7; 8]);
}

#[test]
fn replay_refuses_freed_buffer() {
    let dev = CpuDevice::new();
    let s = dev.create_stream().unwrap();
    let [x, y, z, w] = buffers(&dev, 4);
    s.begin_capture().unwrap();
    pipeline(&s, &x, &y, &z, &w);
    let graph = s.end_capture().unwrap();
    let exec = graph.instantiate().unwrap();
    let z_id = z.id();
    drop(z);
    match s.replay(&exec) {
        Err(RuntimeError::BufferFreed { task, buffer }) => {
            assert_eq!((task.as_str(), buffer), ("square_minus", z_id));
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        graph.instantiate(),
        Err(RuntimeError::BufferFreed { .. })
    ));
    assert_eq!(s.stats().submitted, 0, "nothing was queued");
    // The stream is fine: refusal is not poison.
    s.synchronize().unwrap();
}

#[test]
fn replay_refuses_resized_buffer() {
    let dev = CpuDevice::new();
    let s = dev.create_stream().unwrap();
    let [x, y, z, w] = buffers(&dev, 4);
    s.begin_capture().unwrap();
    pipeline(&s, &x, &y, &z, &w);
    let exec = s.end_capture().unwrap().instantiate().unwrap();
    w.resize(5).unwrap();
    match s.replay(&exec) {
        Err(RuntimeError::BufferResized {
            task,
            captured,
            now,
            ..
        }) => {
            assert_eq!((task.as_str(), captured, now), ("copy", 4, 5));
        }
        other => panic!("{other:?}"),
    }
    w.resize(4).unwrap();
    s.replay(&exec).unwrap();
    s.synchronize().unwrap();
}

#[test]
fn capture_checks_arguments_and_panics_poison_replay() {
    let dev = CpuDevice::new();
    let s = dev.create_stream().unwrap();
    let a = dev.alloc::<u8>(3).unwrap();
    s.begin_capture().unwrap();
    let aliased = Launch::new("bad", |_| Ok(())).input(&a).output(&a);
    assert!(matches!(
        s.launch(aliased),
        Err(RuntimeError::ArgAliased { .. })
    ));
    s.fill(&a, 1).unwrap();
    s.launch(Launch::new("boom", |_| panic!("in graph")))
        .unwrap();
    s.fill(&a, 2).unwrap();
    let exec = s.end_capture().unwrap().instantiate().unwrap();
    assert_eq!(exec.len(), 3);
    s.replay(&exec).unwrap();
    assert!(matches!(
        s.synchronize(),
        Err(RuntimeError::StreamPoisoned { .. })
    ));
    assert_eq!(a.to_host(), [1, 1, 1], "nodes after the panic are skipped");
}

#[test]
fn host_callback_inside_a_replay_can_read_graph_buffers() {
    // A replay holds the locks of each run of launches between host
    // callbacks; the callback itself runs with nothing held, so reading a
    // buffer of the graph from the host neither deadlocks nor sees a stale
    // value.
    use std::sync::{Arc, Mutex};
    let dev = CpuDevice::new();
    let s = dev.create_stream().unwrap();
    let [x, y, z, w] = buffers(&dev, 8);
    let seen: Arc<Mutex<Vec<Vec<i64>>>> = Arc::default();
    s.begin_capture().unwrap();
    pipeline(&s, &x, &y, &z, &w);
    let (w_host, log) = (w.clone(), Arc::clone(&seen));
    s.host_fn("peek", move || log.lock().unwrap().push(w_host.to_host()))
        .unwrap();
    s.fill(&z, -1).unwrap();
    let exec = s.end_capture().unwrap().instantiate().unwrap();
    for _ in 0..3 {
        s.replay(&exec).unwrap();
    }
    s.synchronize().unwrap();
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 3);
    // Each peek saw that replay's copy of x into w (x changes per replay).
    assert_ne!(seen[0], seen[1]);
    assert_eq!(seen[2], w.to_host());
    assert_eq!(w.to_host(), x.to_host());
    assert!(z.to_host().iter().all(|&v| v == -1));
}

#[test]
fn single_stream_capture_is_a_chain() {
    let dev = CpuDevice::new();
    let s = dev.create_stream().unwrap();
    let [x, y, z, w] = buffers(&dev, 4);
    s.begin_capture().unwrap();
    pipeline(&s, &x, &y, &z, &w);
    let g = s.end_capture().unwrap();
    assert_eq!(g.lanes(), 1);
    assert_eq!(g.lane_stream(0), Some(s.id()));
    assert_eq!(g.dependencies(0), Some(&[][..]));
    for n in 1..g.len() {
        assert_eq!(g.dependencies(n), Some(&[n - 1][..]));
        assert_eq!(g.node_lane(n), Some(0));
    }
    assert_eq!(g.dependencies(g.len()), None);
    assert_eq!(g.instantiate().unwrap().lanes(), 1);
}
