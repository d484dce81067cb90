//! Reductions, applied to element slices or to the bytes that arrive for
//! them.

use crate::element::Element;

/// A reduction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReduceOp {
    /// Sum.
    Sum,
    /// Maximum.
    Max,
    /// Minimum.
    Min,
    /// Mean over ranks.
    Avg,
}

impl ReduceOp {
    /// `acc[i] = op(incoming[i], acc[i])`: the incoming partial result
    /// first, so a chunk is reduced in the same order on every rank.
    pub(crate) fn apply<T: Element>(self, acc: &mut [T], incoming: &[T]) {
        // One loop per op, each with its function inlined (a function
        // pointer here would cost a call per element and no SIMD).
        let pairs = acc.iter_mut().zip(incoming);
        match self {
            ReduceOp::Sum | ReduceOp::Avg => pairs.for_each(|(a, &x)| *a = T::add(x, *a)),
            ReduceOp::Max => pairs.for_each(|(a, &x)| *a = T::max(x, *a)),
            ReduceOp::Min => pairs.for_each(|(a, &x)| *a = T::min(x, *a)),
        }
    }

    /// [`apply`](Self::apply) on wire bytes: `acc` holds whole `T`s (it is
    /// a caller's slice viewed as bytes), `incoming` may sit at any
    /// alignment.
    pub(crate) fn apply_bytes<T: Element>(self, acc: &mut [u8], incoming: &[u8]) {
        let acc: &mut [T] = bytemuck::cast_slice_mut(acc);
        match bytemuck::try_cast_slice::<u8, T>(incoming) {
            Ok(x) => self.apply(acc, x),
            Err(_) => {
                for (a, x) in acc.iter_mut().zip(incoming.chunks_exact(T::BYTES)) {
                    self.apply(std::slice::from_mut(a), &[bytemuck::pod_read_unaligned(x)]);
                }
            }
        }
    }
}
