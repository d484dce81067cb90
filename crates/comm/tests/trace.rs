//! Collectives appear in exodus-trace's timeline: one `comm` span per
//! collective, with its bytes, algorithm and rank.

mod common;

use std::time::Duration;

use exodus_comm::{AllReduceAlgo, Bootstrap, Communicator, ReduceOp};

#[test]
fn every_collective_leaves_a_span_with_its_size_and_algorithm() {
    let master = common::free_master();
    let timeout = Duration::from_secs(60);
    let run = move |rank: usize| {
        let mut c = Communicator::connect(&Bootstrap::new(rank, 2, master).unwrap(), timeout)?;
        let mut buf = vec![rank as f32; 1000];
        c.all_reduce_with(&mut buf, ReduceOp::Sum, AllReduceAlgo::Ring)?;
        let mut out = vec![0f32; 2000];
        c.all_gather(&buf, &mut out)?;
        c.broadcast(&mut buf, 1)?;
        c.barrier()?;
        Ok::<_, exodus_comm::CommError>(buf)
    };
    exodus_trace::set_enabled(true);
    let peer = std::thread::spawn(move || run(1));
    let mine = run(0).unwrap();
    let theirs = peer.join().unwrap().unwrap();
    exodus_trace::set_enabled(false);
    assert_eq!(mine, vec![1.0; 1000]);
    assert_eq!(theirs, mine);
    let trace = exodus_trace::take();
    let comm: Vec<_> = trace.spans_in("comm").collect();
    let reduce = comm
        .iter()
        .find(|s| {
            s.name == "all_reduce" && s.args.get("algo").and_then(|a| a.as_str()) == Some("ring")
        })
        .unwrap_or_else(|| panic!("no ring all_reduce span in {comm:?}"));
    assert_eq!(
        reduce.args.get("bytes").and_then(|b| b.as_u64()),
        Some(4000)
    );
    for name in ["all_gather", "broadcast", "barrier"] {
        // One per rank (both ranks ran in this process).
        let ranks: Vec<_> = comm
            .iter()
            .filter(|s| s.name == name)
            .filter_map(|s| s.args.get("rank").and_then(|r| r.as_u64()))
            .collect();
        assert!(
            ranks.contains(&0) && ranks.contains(&1),
            "{name}: {ranks:?}"
        );
    }
}
