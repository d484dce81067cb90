//! Causal grouped-query attention over a paged KV cache. (Being built.)
