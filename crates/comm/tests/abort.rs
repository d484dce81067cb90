//! Abort from another thread: a rank blocked in an AllReduce whose peer
//! never joins returns `Aborted` at once when another thread aborts, long
//! before the operation's timeout.

mod common;

use std::time::{Duration, Instant};

use exodus_comm::{AllReduceAlgo, Bootstrap, CommError, Communicator, ReduceOp};

#[test]
fn abort_from_another_thread_ends_a_blocked_all_reduce() {
    let master = common::free_master();
    let timeout = Duration::from_secs(60);
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    let peer = std::thread::spawn(move || {
        let mut c = Communicator::connect(&Bootstrap::new(1, 2, master).unwrap(), timeout).unwrap();
        // Joins the job but does not take part in the collective until
        // rank 0 has been aborted; then its next operation fails.
        go_rx.recv().unwrap();
        c.barrier()
    });
    let mut c = Communicator::connect(&Bootstrap::new(0, 2, master).unwrap(), timeout).unwrap();
    let abort = c.abort_handle();
    let aborter = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(200));
        abort.abort();
    });
    let start = Instant::now();
    let mut buf = vec![1f32; 1000];
    let err = c
        .all_reduce_with(&mut buf, ReduceOp::Sum, AllReduceAlgo::Ring)
        .unwrap_err();
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "abort took {:?}",
        start.elapsed()
    );
    assert!(matches!(err, CommError::Aborted { .. }), "{err}");
    assert!(err.to_string().contains("all_reduce (ring)"), "{err}");
    aborter.join().unwrap();
    // The peer's next operation fails too (its connection was cut), as a
    // typed error, without waiting for its 60 s timeout.
    go_tx.send(()).unwrap();
    let start = Instant::now();
    let peer_err = peer.join().unwrap().unwrap_err();
    assert!(start.elapsed() < Duration::from_secs(10));
    assert!(
        matches!(
            peer_err,
            CommError::PeerGone { .. } | CommError::Mismatch { .. }
        ),
        "{peer_err}"
    );
}
