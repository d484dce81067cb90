//! The caching allocator: freed blocks are reused without a real
//! allocation, counters add up, `empty_cache` releases, the memory limit
//! gives a typed out-of-memory error (after releasing the cache once),
//! `reset_peak` starts the high-water marks from the current values.

use exodus_runtime::{size_class, CpuDevice, Device, MemoryStats, RuntimeError, MIN_CLASS_BYTES};

#[test]
fn freed_blocks_are_reused() {
    let dev = CpuDevice::new();
    let a = dev.alloc::<f32>(1000).unwrap();
    let class = size_class(4000).unwrap();
    let s = dev.memory_stats();
    assert_eq!(
        (s.real_allocs, s.allocated_bytes, s.reserved_bytes),
        (1, class, class)
    );
    drop(a);
    let s = dev.memory_stats();
    assert_eq!(
        (s.allocated_bytes, s.reserved_bytes, s.cached_blocks),
        (0, class, 1)
    );
    // Same class (999 floats round to the same class as 1000): reused.
    let b = dev.alloc::<f32>(999).unwrap();
    let s = dev.memory_stats();
    assert_eq!((s.real_allocs, s.cache_hits, s.requests), (1, 1, 2));
    assert_eq!(b.to_host(), vec![0.0; 999], "reused blocks start zeroed");
    // Another element type does not take an f32 block.
    let c = dev.alloc::<u32>(1000).unwrap();
    assert_eq!(dev.memory_stats().real_allocs, 2);
    drop((b, c));
    assert_eq!(dev.memory_stats().peak_allocated_bytes, 2 * class);
}

#[test]
fn reused_block_is_cleared() {
    let dev = CpuDevice::new();
    let a = dev.upload(&[7u64; 100]).unwrap();
    drop(a);
    let b = dev.alloc::<u64>(100).unwrap();
    assert_eq!(dev.memory_stats().cache_hits, 1);
    assert!(b.to_host().iter().all(|&v| v == 0));
}

#[test]
fn clones_share_memory_until_the_last_drops() {
    let dev = CpuDevice::new();
    let a = dev.alloc::<u8>(10_000).unwrap();
    let b = a.clone();
    drop(a);
    assert_eq!(dev.memory_stats().cached_blocks, 0);
    b.copy_from_host(&[1; 10_000]).unwrap();
    drop(b);
    assert_eq!(dev.memory_stats().cached_blocks, 1);
}

#[test]
fn empty_cache_releases_free_blocks_only() {
    let dev = CpuDevice::new();
    let keep = dev.alloc::<f64>(64).unwrap();
    let blocks: Vec<_> = (1..=5)
        .map(|i| dev.alloc::<f64>(i * 1000).unwrap())
        .collect();
    drop(blocks);
    let before = dev.memory_stats();
    assert_eq!(before.cached_blocks, 5);
    dev.empty_cache();
    let after = dev.memory_stats();
    assert_eq!(after.cached_blocks, 0);
    assert_eq!(after.real_frees, 5);
    assert_eq!(after.reserved_bytes, after.allocated_bytes);
    assert_eq!(after.allocated_bytes, size_class(64 * 8).unwrap());
    assert_eq!(after.peak_reserved_bytes, before.peak_reserved_bytes);
    drop(keep);
}

#[test]
fn memory_limit_gives_typed_oom() {
    let limit = 1 << 20;
    let dev = CpuDevice::with_memory_limit(limit);
    let a = dev.alloc::<u8>(600_000).unwrap();
    match dev.alloc::<u8>(600_000) {
        Err(RuntimeError::OutOfMemory {
            requested,
            allocated,
            limit: l,
            ..
        }) => {
            assert_eq!(l, limit);
            assert!(requested >= 600_000);
            assert_eq!(allocated, dev.memory_stats().allocated_bytes);
        }
        other => panic!("expected OOM, got {other:?}"),
    }
    drop(a);
    // The freed block is cached; a request of another type does not fit
    // beside it, so the cache is released and the request succeeds.
    let b = dev.alloc::<u16>(300_000).unwrap();
    let s = dev.memory_stats();
    assert_eq!(s.real_frees, 1);
    assert!(s.reserved_bytes <= limit);
    assert_eq!(b.len(), 300_000);
}

#[test]
fn absurd_sizes_are_errors_not_aborts() {
    let dev = CpuDevice::new();
    assert!(matches!(
        dev.alloc::<u64>(usize::MAX / 2),
        Err(RuntimeError::OutOfMemory { .. })
    ));
    assert!(matches!(
        dev.alloc::<u8>(usize::MAX),
        Err(RuntimeError::OutOfMemory { .. })
    ));
    let s = dev.memory_stats();
    assert_eq!((s.allocated_bytes, s.reserved_bytes), (0, 0));
}

#[test]
fn host_copies_and_resize() {
    let dev = CpuDevice::new();
    let a = dev.upload(&[1i32, 2, 3]).unwrap();
    let mut out = [0; 3];
    a.copy_to_host(&mut out).unwrap();
    assert_eq!(out, [1, 2, 3]);
    assert!(matches!(
        a.copy_from_host(&[1, 2]),
        Err(RuntimeError::LengthMismatch {
            expected: 3,
            got: 2,
            ..
        })
    ));
    a.resize(5).unwrap();
    assert_eq!(a.to_host(), [1, 2, 3, 0, 0]);
    a.resize(100_000).unwrap();
    assert_eq!(&a.to_host()[..3], [1, 2, 3]);
    assert_eq!(dev.memory_stats().cached_blocks, 1, "old block cached");
    a.resize(2).unwrap();
    assert_eq!(a.to_host(), [1, 2]);
}

#[test]
fn reset_peak_starts_the_high_water_marks_afresh() {
    let dev = CpuDevice::new();
    let alloc = dev.allocator();
    let big = dev.alloc::<f32>(100_000).unwrap();
    let small = dev.alloc::<f32>(1000).unwrap();
    let (big_c, small_c) = (size_class(400_000).unwrap(), size_class(4000).unwrap());
    drop(big);
    let s = dev.memory_stats();
    assert_eq!(s.peak_allocated_bytes, big_c + small_c);
    assert_eq!(s.peak_reserved_bytes, big_c + small_c);
    assert_eq!(
        (s.allocated_bytes, s.reserved_bytes),
        (small_c, big_c + small_c)
    );
    // The peaks drop to the current values; nothing else changes.
    alloc.reset_peak();
    let r = dev.memory_stats();
    assert_eq!(r.peak_allocated_bytes, small_c);
    assert_eq!(r.peak_reserved_bytes, big_c + small_c);
    assert_eq!(
        MemoryStats {
            peak_allocated_bytes: s.peak_allocated_bytes,
            ..r
        },
        s
    );
    // A later high-water mark is measured from there: a cached block
    // reused raises allocated but not reserved.
    let again = dev.alloc::<f32>(100_000).unwrap();
    let t = dev.memory_stats();
    assert_eq!(t.peak_allocated_bytes, big_c + small_c);
    assert_eq!(t.peak_reserved_bytes, big_c + small_c);
    drop((again, small));
    alloc.empty_cache();
    alloc.reset_peak();
    let u = dev.memory_stats();
    assert_eq!((u.peak_allocated_bytes, u.peak_reserved_bytes), (0, 0));
    let tiny = dev.alloc::<u8>(10).unwrap();
    let v = dev.memory_stats();
    assert_eq!(v.peak_allocated_bytes, MIN_CLASS_BYTES);
    assert_eq!(v.peak_reserved_bytes, MIN_CLASS_BYTES);
    drop(tiny);
}
