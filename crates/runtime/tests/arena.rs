//! Arenas: disjoint ranges borrow together (from several threads at
//! once), overlapping ones are refused with a typed error naming both
//! ranges, borrows end with their guards, and the block goes back to the
//! allocator.

use std::sync::Arc;

use exodus_runtime::{CpuDevice, Device, RuntimeError};

#[test]
fn disjoint_ranges_borrow_together_and_overlaps_are_refused() {
    let device = CpuDevice::new();
    let arena = device.alloc_arena::<f32>(100).unwrap();
    assert_eq!(arena.len(), 100);
    {
        let mut a = arena.borrow_mut(0..40).unwrap();
        let mut b = arena.borrow_mut(40..100).unwrap();
        a.fill(1.0);
        b.fill(2.0);
        // Any overlap with a mutable borrow is refused, shared or not.
        for (range, mutable) in [(39..41, false), (10..20, true), (0..100, false)] {
            let err = if mutable {
                arena.borrow_mut(range).map(|_| ()).unwrap_err()
            } else {
                arena.borrow(range).map(|_| ()).unwrap_err()
            };
            assert!(matches!(err, RuntimeError::ArenaConflict { .. }), "{err}");
            assert!(
                err.to_string().contains("overlaps a live mutable borrow"),
                "{err}"
            );
        }
        assert_eq!(arena.live_borrows(), 2);
    }
    assert_eq!(arena.live_borrows(), 0);
    // Shared borrows share; a mutable one over them is refused.
    let r1 = arena.borrow(30..50).unwrap();
    let r2 = arena.borrow(35..45).unwrap();
    assert_eq!(r1[9], 1.0);
    assert_eq!(r1[10], 2.0);
    assert_eq!(r2[0], 1.0);
    let err = arena.borrow_mut(44..46).map(|_| ()).unwrap_err();
    assert!(
        err.to_string()
            .contains("overlaps a live shared borrow of 30..50"),
        "{err}"
    );
    // Touching ranges do not overlap.
    assert!(arena.borrow_mut(50..60).is_ok());
    drop((r1, r2));
    assert_eq!(arena.to_host(38..42).unwrap(), vec![1.0, 1.0, 2.0, 2.0]);
}

#[test]
fn out_of_range_borrows_are_typed_errors() {
    let device = CpuDevice::new();
    let arena = device.alloc_arena::<u32>(8).unwrap();
    for range in [0..9, 7..9] {
        let err = arena.borrow(range).map(|_| ()).unwrap_err();
        assert!(
            matches!(err, RuntimeError::ArenaRange { len: 8, .. }),
            "{err}"
        );
    }
    let err = arena.copy_from_host(usize::MAX, &[1]).unwrap_err();
    assert!(matches!(err, RuntimeError::ArenaRange { .. }), "{err}");
    arena.copy_from_host(6, &[5, 6]).unwrap();
    arena.fill(3).unwrap();
    assert_eq!(arena.to_host(0..8).unwrap(), vec![3; 8]);
    assert!(arena.borrow(8..8).is_ok());
}

#[test]
fn threads_hold_disjoint_ranges_at_once() {
    let device = CpuDevice::new();
    let arena = Arc::new(device.alloc_arena::<u64>(4 * 1000).unwrap());
    let barrier = Arc::new(std::sync::Barrier::new(4));
    let handles: Vec<_> = (0..4u64)
        .map(|t| {
            let (arena, barrier) = (Arc::clone(&arena), Arc::clone(&barrier));
            std::thread::spawn(move || {
                let start = t as usize * 1000;
                for round in 0..200u64 {
                    let mut mine = arena.borrow_mut(start..start + 1000).unwrap();
                    if round == 0 {
                        // All four hold their range at the same time.
                        barrier.wait();
                    }
                    mine.iter_mut().for_each(|v| *v += t + 1);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let all = arena.to_host(0..4000).unwrap();
    for t in 0..4u64 {
        assert!(all[t as usize * 1000..(t as usize + 1) * 1000]
            .iter()
            .all(|&v| v == 200 * (t + 1)));
    }
}

#[test]
fn a_dropped_arena_returns_its_block_to_the_allocator() {
    let device = CpuDevice::new();
    let before = device.memory_stats().allocated_bytes;
    let arena = device.alloc_arena::<f32>(1 << 16).unwrap();
    assert!(device.memory_stats().allocated_bytes >= before + (4 << 16));
    drop(arena);
    assert_eq!(device.memory_stats().allocated_bytes, before);
    // The cached block serves the next arena of that size class.
    let hits = device.memory_stats().cache_hits;
    let _again = device.alloc_arena::<f32>(1 << 16).unwrap();
    assert_eq!(device.memory_stats().cache_hits, hits + 1);
}
