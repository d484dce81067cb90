//! Tensor parallelism: which part of the model one rank of a job holds.
//!
//! Attention is split by KV heads (each rank keeps whole groups of query
//! heads with their KV head, so no head straddles two ranks): the rows of
//! `attn_q/k/v`. The MLP is split by its hidden units: the rows of
//! `ffn_gate/up`. What those produce is gathered from every rank
//! (`Op::AllGather`), and `attn_output` and `ffn_down` are split by their
//! rows instead (the hidden features each rank computes, over the whole
//! width), then gathered too. So every value is the dot the whole model
//! computes, in the same order: a split model gives the whole model's
//! bits. (Splitting `attn_output` and `ffn_down` by their columns, with
//! an AllReduce of partial sums, moves half the data but sums in another
//! order, and the int8 activation codes of quantized matmuls turn that
//! last-bit difference into different greedy tokens at near ties.)
//! Embeddings, norms and the output projection stay whole on every rank,
//! so every rank ends with the same logits.

use std::ops::Range;

use crate::error::ModelError;

/// One rank's part of a tensor-parallel job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// This rank.
    pub rank: usize,
    /// Ranks in the job.
    pub ranks: usize,
}

impl Default for Shard {
    fn default() -> Self {
        Shard::WHOLE
    }
}

impl Shard {
    /// The whole model on one rank.
    pub const WHOLE: Shard = Shard { rank: 0, ranks: 1 };

    /// Whether this is a part of a larger job.
    pub fn is_split(&self) -> bool {
        self.ranks > 1
    }

    /// This rank's part of `count` items taken in units of `unit` (the
    /// first ranks take one unit more when they do not divide evenly).
    /// Every rank gets at least one unit, or it is an error naming `what`.
    pub fn part(&self, count: usize, unit: usize, what: &str) -> Result<Range<usize>, ModelError> {
        let unit = unit.max(1);
        let units = count / unit;
        if self.rank >= self.ranks || !count.is_multiple_of(unit) || units < self.ranks {
            return Err(ModelError::Unsupported(format!(
                "{what}: {count} cannot be split over {} ranks in units of {unit}",
                self.ranks
            )));
        }
        let (base, extra) = (units / self.ranks, units % self.ranks);
        let start = self.rank * base + self.rank.min(extra);
        let len = base + usize::from(self.rank < extra);
        Ok(start * unit..(start + len) * unit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_cover_the_whole_without_overlap() {
        for ranks in 1..=5 {
            let mut next = 0;
            for rank in 0..ranks {
                let p = Shard { rank, ranks }.part(1536, 32, "ffn").unwrap();
                assert_eq!(p.start, next);
                assert!(p.start.is_multiple_of(32) && p.end.is_multiple_of(32));
                next = p.end;
            }
            assert_eq!(next, 1536);
        }
        // 3 KV heads over 2 ranks: 2 and 1.
        assert_eq!(Shard { rank: 0, ranks: 2 }.part(3, 1, "kv").unwrap(), 0..2);
        assert_eq!(Shard { rank: 1, ranks: 2 }.part(3, 1, "kv").unwrap(), 2..3);
        assert!(Shard { rank: 0, ranks: 4 }.part(3, 1, "kv heads").is_err());
        assert!(Shard { rank: 0, ranks: 2 }.part(100, 32, "ffn").is_err());
    }
}
