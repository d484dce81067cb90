//! The persistent thread pool: every task runs once, borrowed data is
//! safe, panics reach the caller and leave the pool usable, nesting and
//! concurrent submitters do not deadlock.

use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use exodus_kernels::pool::{default_threads, global};
use exodus_kernels::ThreadPool;

#[test]
fn every_task_runs_exactly_once() {
    for threads in [0, 1, 2, 4] {
        let pool = ThreadPool::new(threads);
        assert_eq!(pool.threads(), threads.max(1));
        for n_tasks in [0, 1, 2, 3, 17, 1000] {
            let counts: Vec<AtomicUsize> = (0..n_tasks).map(|_| AtomicUsize::new(0)).collect();
            pool.parallel_for(n_tasks, |i| {
                counts[i].fetch_add(1, Ordering::Relaxed);
            });
            assert!(counts.iter().all(|c| c.load(Ordering::Relaxed) == 1));
        }
    }
}

#[test]
fn returns_only_after_every_task_finished() {
    let pool = ThreadPool::new(3);
    for _ in 0..20 {
        let done: Vec<AtomicBool> = (0..8).map(|_| AtomicBool::new(false)).collect();
        pool.parallel_for(done.len(), |i| {
            // Give the workers time to still be running when the caller
            // runs out of tasks.
            std::thread::sleep(Duration::from_micros(200 * (i as u64 % 3)));
            done[i].store(true, Ordering::Release);
        });
        assert!(done.iter().all(|d| d.load(Ordering::Acquire)));
    }
}

#[test]
fn chunks_are_disjoint_and_cover_the_slice() {
    let pool = ThreadPool::new(2);
    for (len, chunk) in [(0, 3), (1, 3), (10, 3), (12, 4), (5, 0), (7, 100)] {
        let mut data = vec![usize::MAX; len];
        pool.for_each_chunk_mut(&mut data, chunk, |c, part| {
            for (i, v) in part.iter_mut().enumerate() {
                *v = c * 1000 + i;
            }
        });
        let chunk = if chunk == 0 { len.max(1) } else { chunk };
        for (i, v) in data.iter().enumerate() {
            assert_eq!(
                *v,
                (i / chunk) * 1000 + i % chunk,
                "len {len} chunk {chunk}"
            );
        }
    }
}

#[test]
fn a_panic_reaches_the_caller_and_the_pool_survives() {
    let pool = ThreadPool::new(2);
    for victim in [0, 5, 99] {
        let result = panic::catch_unwind(AssertUnwindSafe(|| {
            pool.parallel_for(100, |i| {
                std::thread::sleep(Duration::from_micros(50));
                if i == victim {
                    panic!("task {i} failed");
                }
            })
        }));
        let payload = result.expect_err("the panic must propagate");
        let msg = payload
            .downcast_ref::<String>()
            .cloned()
            .unwrap_or_default();
        assert_eq!(msg, format!("task {victim} failed"));
        // Still works afterwards.
        let sum = AtomicUsize::new(0);
        pool.parallel_for(10, |i| {
            sum.fetch_add(i, Ordering::Relaxed);
        });
        assert_eq!(sum.load(Ordering::Relaxed), 45);
    }
}

#[test]
fn every_task_panicking_does_not_hang() {
    let pool = ThreadPool::new(4);
    let result = panic::catch_unwind(AssertUnwindSafe(|| {
        pool.parallel_for(64, |_| panic!("all fail"));
    }));
    assert!(result.is_err());
}

#[test]
fn nested_calls_run_inline() {
    let pool = ThreadPool::new(2);
    let total = AtomicUsize::new(0);
    pool.parallel_for(4, |_| {
        pool.parallel_for(5, |j| {
            total.fetch_add(j, Ordering::Relaxed);
        });
    });
    assert_eq!(total.load(Ordering::Relaxed), 4 * 10);
}

#[test]
fn concurrent_submitters_are_served_in_turn() {
    let pool = ThreadPool::new(2);
    let total = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..50 {
                    pool.parallel_for(8, |i| {
                        total.fetch_add(i, Ordering::Relaxed);
                    });
                }
            });
        }
    });
    assert_eq!(total.load(Ordering::Relaxed), 4 * 50 * 28);
}

#[test]
fn global_pool_is_sized_and_works() {
    assert!(default_threads() >= 1);
    let pool = global();
    assert!(pool.threads() >= 1);
    let mut v = vec![0u32; 1000];
    pool.for_each_chunk_mut(&mut v, 7, |_, part| part.iter_mut().for_each(|x| *x += 1));
    assert!(v.iter().all(|&x| x == 1));
}

#[test]
fn kept_awake_the_pool_runs_every_task_of_every_job() {
    for threads in [2, 3, 4] {
        let pool = ThreadPool::new(threads);
        let _awake = pool.stay_awake();
        for job in 0..2000usize {
            let n = 1 + job % 17;
            let hits: Vec<AtomicUsize> = (0..n).map(|_| AtomicUsize::new(0)).collect();
            pool.parallel_for(n, |i| {
                hits[i].fetch_add(1, Ordering::Relaxed);
            });
            assert!(hits.iter().all(|h| h.load(Ordering::Relaxed) == 1));
        }
    }
}

#[test]
fn guards_nest_and_the_pool_sleeps_again_after_the_last() {
    let pool = ThreadPool::new(3);
    let sum = AtomicUsize::new(0);
    {
        let _outer = pool.stay_awake();
        {
            let _inner = pool.stay_awake();
            pool.parallel_for(100, |i| {
                sum.fetch_add(i, Ordering::Relaxed);
            });
        }
        pool.parallel_for(100, |i| {
            sum.fetch_add(i, Ordering::Relaxed);
        });
    }
    // Workers park again; a job after a pause still reaches them, and the
    // pool drops cleanly (a spinning worker would hang the join).
    std::thread::sleep(Duration::from_millis(20));
    pool.parallel_for(100, |i| {
        sum.fetch_add(i, Ordering::Relaxed);
    });
    assert_eq!(sum.load(Ordering::Relaxed), 3 * 4950);
    drop(pool);
}

#[test]
fn kept_awake_a_panic_still_reaches_the_caller() {
    let pool = ThreadPool::new(2);
    let _awake = pool.stay_awake();
    let result = panic::catch_unwind(AssertUnwindSafe(|| {
        pool.parallel_for(50, |i| {
            if i == 7 {
                panic!("task 7 failed");
            }
        })
    }));
    assert!(result.is_err());
    let sum = AtomicUsize::new(0);
    pool.parallel_for(10, |i| {
        sum.fetch_add(i, Ordering::Relaxed);
    });
    assert_eq!(sum.load(Ordering::Relaxed), 45);
}
