//! The one clock of every span: nanoseconds since a process-wide epoch
//! (the first call), monotonic, shared by all threads.

use std::sync::OnceLock;
use std::time::Instant;

static EPOCH: OnceLock<Instant> = OnceLock::new();

/// Nanoseconds elapsed since the process-wide trace epoch (fixed on the
/// first call). Monotonic and comparable across threads; use it for the
/// `start_ns` of spans given to [`record`](crate::record).
pub fn now_ns() -> u64 {
    let epoch = *EPOCH.get_or_init(Instant::now);
    // u64 nanoseconds last 584 years; saturate rather than wrap.
    u64::try_from(epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
}
