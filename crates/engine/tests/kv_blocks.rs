//! Tests of the paged KV cache's block manager: growth, freeing, prefix
//! sharing, LRU eviction, all-or-nothing failures, and a randomized test
//! against a reference model.

use std::collections::{BTreeMap, HashMap};

use exodus_engine::{BlockId, BlockManager, KvBlockError, SeqId};

/// Everything observable about a manager, to compare before and after a
/// failed operation.
#[derive(Debug, PartialEq)]
struct Snapshot {
    free: usize,
    used: usize,
    cached: usize,
    queries: u64,
    hits: u64,
    seqs: Vec<(SeqId, Vec<BlockId>, usize, usize)>,
    refs: Vec<u32>,
    cached_flags: Vec<bool>,
}

fn snapshot(kv: &BlockManager, seqs: &[SeqId]) -> Snapshot {
    let blocks = 0..kv.num_blocks() as BlockId;
    Snapshot {
        free: kv.free_blocks(),
        used: kv.used_blocks(),
        cached: kv.cached_blocks(),
        queries: kv.prefix_cache_queries(),
        hits: kv.prefix_cache_hits(),
        seqs: seqs
            .iter()
            .map(|&s| {
                (
                    s,
                    kv.table(s).unwrap().to_vec(),
                    kv.num_tokens(s).unwrap(),
                    kv.computed_tokens(s).unwrap(),
                )
            })
            .collect(),
        refs: blocks.clone().map(|b| kv.ref_count(b)).collect(),
        cached_flags: blocks.map(|b| kv.is_cached(b)).collect(),
    }
}

fn seq_tokens(start: u32, n: usize) -> Vec<u32> {
    (start..start + n as u32).collect()
}

#[test]
fn grows_across_block_boundaries() {
    let mut kv = BlockManager::new(8, 4).unwrap();
    let a = kv.admit(1, &[1, 2, 3]).unwrap();
    assert_eq!(a.cached_tokens, 0);
    assert_eq!(a.table.len(), 1);
    kv.append_tokens(1, &[4]).unwrap(); // fills block 0
    assert_eq!(kv.table(1).unwrap().len(), 1);
    kv.append_tokens(1, &[5]).unwrap(); // crosses into block 1
    assert_eq!(kv.table(1).unwrap().len(), 2);
    kv.append_tokens(1, &seq_tokens(6, 8)).unwrap(); // 13 tokens
    assert_eq!(kv.num_tokens(1), Some(13));
    assert_eq!(kv.table(1).unwrap().len(), 4);
    assert_eq!(kv.used_blocks(), 4);
    assert_eq!(kv.free_blocks(), 4);
    assert!((kv.usage() - 0.5).abs() < 1e-12);
    kv.append_tokens(1, &[]).unwrap();
    assert_eq!(kv.table(1).unwrap().len(), 4);
}

#[test]
fn free_returns_blocks() {
    let mut kv = BlockManager::new(6, 2).unwrap();
    kv.admit(1, &seq_tokens(0, 5)).unwrap();
    kv.admit(2, &seq_tokens(100, 4)).unwrap();
    assert_eq!(kv.used_blocks(), 5);
    kv.free(1).unwrap();
    assert_eq!(kv.used_blocks(), 2);
    assert_eq!(kv.free_blocks(), 4);
    assert_eq!(kv.table(1), None);
    kv.free(2).unwrap();
    assert_eq!(kv.used_blocks(), 0);
    assert_eq!(kv.usage(), 0.0);
    assert_eq!(kv.free(2), Err(KvBlockError::UnknownSequence(2)));
}

#[test]
fn same_prompt_shares_full_prefix_blocks() {
    let mut kv = BlockManager::new(16, 4).unwrap();
    let prompt = seq_tokens(1, 10);
    let a = kv.admit(1, &prompt).unwrap();
    kv.mark_computed(1, 10).unwrap();
    assert_eq!(kv.cached_blocks(), 2);
    let b = kv.admit(2, &prompt).unwrap();
    assert_eq!(b.cached_tokens, 8);
    assert_eq!(b.table[..2], a.table[..2]);
    assert_ne!(b.table[2], a.table[2]);
    assert_eq!(kv.computed_tokens(2), Some(8));
    for &blk in &a.table[..2] {
        assert_eq!(kv.ref_count(blk), 2);
    }
    assert_eq!(kv.ref_count(a.table[2]), 1);
    assert_eq!(kv.ref_count(b.table[2]), 1);
    assert_eq!(kv.used_blocks(), 4);
    assert_eq!(kv.prefix_cache_queries(), 20);
    assert_eq!(kv.prefix_cache_hits(), 8);

    // The shared blocks outlive the first sequence.
    kv.free(1).unwrap();
    for &blk in &a.table[..2] {
        assert_eq!(kv.ref_count(blk), 1);
        assert!(kv.is_cached(blk));
    }
    kv.free(2).unwrap();
    assert_eq!(kv.used_blocks(), 0);
    assert_eq!(kv.cached_blocks(), 2); // kept for reuse
    let c = kv.admit(3, &prompt).unwrap();
    assert_eq!(c.cached_tokens, 8);
    assert_eq!(c.table[..2], a.table[..2]);
}

#[test]
fn only_computed_blocks_are_served() {
    let mut kv = BlockManager::new(16, 4).unwrap();
    let prompt = seq_tokens(1, 10);
    kv.admit(1, &prompt).unwrap();
    assert_eq!(kv.admit(2, &prompt).unwrap().cached_tokens, 0);
    kv.mark_computed(1, 6).unwrap(); // block 0 written, block 1 half
    assert_eq!(kv.cached_blocks(), 1);
    assert_eq!(kv.admit(3, &prompt).unwrap().cached_tokens, 4);
}

#[test]
fn partial_last_block_never_shared() {
    let mut kv = BlockManager::new(16, 4).unwrap();
    let a = kv.admit(1, &seq_tokens(1, 10)).unwrap();
    kv.mark_computed(1, 10).unwrap();
    assert!(!kv.is_cached(a.table[2]), "a partial block is not cached");

    // A prompt of exactly two full blocks reuses only the first: its last
    // token must be computed, in a block of its own.
    let b = kv.admit(2, &seq_tokens(1, 8)).unwrap();
    assert_eq!(b.cached_tokens, 4);
    assert_ne!(b.table[1], a.table[1]);
    assert_eq!(kv.ref_count(b.table[1]), 1);

    // Once the partial block fills and is written, it is cached.
    kv.append_tokens(1, &[11, 12]).unwrap();
    kv.mark_computed(1, 12).unwrap();
    assert!(kv.is_cached(a.table[2]));
    let c = kv.admit(3, &seq_tokens(1, 13)).unwrap();
    assert_eq!(c.cached_tokens, 12);
    assert_eq!(c.table[..3], a.table[..]);
    // Appending after a full shared block takes a new block.
    kv.append_tokens(1, &[13]).unwrap();
    assert_eq!(kv.table(1).unwrap().len(), 4);
    assert_eq!(kv.ref_count(a.table[2]), 2);
}

#[test]
fn prefix_hash_is_chained() {
    let mut kv = BlockManager::new(16, 2).unwrap();
    kv.admit(1, &[1, 2, 3, 4, 5]).unwrap();
    kv.mark_computed(1, 5).unwrap();
    // Same second block, different first block: no hit at all.
    assert_eq!(kv.admit(2, &[9, 9, 3, 4, 5]).unwrap().cached_tokens, 0);
    // Sequence 1's second block as a first block: no hit.
    assert_eq!(kv.admit(3, &[3, 4, 5]).unwrap().cached_tokens, 0);
    // Diverging in the second block: the first still hits.
    assert_eq!(kv.admit(4, &[1, 2, 3, 9, 5]).unwrap().cached_tokens, 2);
}

#[test]
fn concurrent_equal_prefixes_do_not_leak() {
    let mut kv = BlockManager::new(8, 2).unwrap();
    let a = kv.admit(1, &[1, 2, 3]).unwrap();
    let b = kv.admit(2, &[1, 2, 3]).unwrap();
    assert_eq!(b.cached_tokens, 0);
    kv.mark_computed(1, 3).unwrap();
    kv.mark_computed(2, 3).unwrap();
    assert_eq!(kv.cached_blocks(), 1);
    assert!(kv.is_cached(a.table[0]));
    assert!(!kv.is_cached(b.table[0]), "the duplicate stays private");
    kv.free(1).unwrap();
    kv.free(2).unwrap();
    assert_eq!(kv.used_blocks(), 0);
    assert_eq!(kv.free_blocks(), 8);
    assert_eq!(kv.cached_blocks(), 1);
}

/// Admits a prompt `[first, first+1, 99]` (one full block of 2 tokens and
/// one partial), computes it and frees it: its first block stays cached.
fn cache_one_block(kv: &mut BlockManager, seq: SeqId, first: u32) -> BlockId {
    let adm = kv.admit(seq, &[first, first + 1, 99]).unwrap();
    kv.mark_computed(seq, 3).unwrap();
    kv.free(seq).unwrap();
    assert!(kv.is_cached(adm.table[0]));
    adm.table[0]
}

fn hits_for(kv: &mut BlockManager, seq: SeqId, first: u32) -> usize {
    let hit = kv
        .admit(seq, &[first, first + 1, 99])
        .unwrap()
        .cached_tokens;
    kv.free(seq).unwrap();
    hit
}

#[test]
fn eviction_is_lru_and_prefers_never_cached_blocks() {
    let mut kv = BlockManager::new(4, 2).unwrap();
    let oldest = cache_one_block(&mut kv, 1, 10);
    let newer = cache_one_block(&mut kv, 2, 20);
    assert_eq!((kv.cached_blocks(), kv.free_blocks()), (2, 4));

    // Two never-cached blocks are free: they go first, nothing is evicted.
    kv.admit(3, &seq_tokens(50, 4)).unwrap();
    assert_eq!(kv.cached_blocks(), 2);
    kv.free(3).unwrap();

    // Three blocks: the two never-cached ones, then the least recently
    // released cached one.
    kv.admit(4, &seq_tokens(50, 6)).unwrap();
    assert!(!kv.is_cached(oldest));
    assert!(kv.is_cached(newer));
    assert_eq!(kv.table(4).unwrap()[2], oldest);
    kv.free(4).unwrap();
    assert_eq!(hits_for(&mut kv, 5, 10), 0);
    assert_eq!(hits_for(&mut kv, 6, 20), 2);
}

#[test]
fn reuse_refreshes_recency() {
    let mut kv = BlockManager::new(4, 2).unwrap();
    let a = cache_one_block(&mut kv, 1, 10);
    let b = cache_one_block(&mut kv, 2, 20);
    assert_eq!(hits_for(&mut kv, 3, 10), 2); // `a` is now the most recent
    kv.admit(4, &seq_tokens(50, 6)).unwrap(); // evicts one cached block
    assert!(kv.is_cached(a));
    assert!(!kv.is_cached(b));
}

#[test]
fn free_releases_tail_before_head() {
    let mut kv = BlockManager::new(4, 2).unwrap();
    let adm = kv.admit(1, &[1, 2, 3, 4, 5]).unwrap();
    kv.mark_computed(1, 5).unwrap();
    kv.free(1).unwrap();
    // Two cached blocks; the never-cached partial block is free; allocate
    // three blocks: the tail block (released first) is evicted before the
    // head.
    kv.admit(2, &seq_tokens(50, 6)).unwrap();
    assert!(kv.is_cached(adm.table[0]));
    assert!(!kv.is_cached(adm.table[1]));
}

#[test]
fn referenced_cached_blocks_are_never_evicted() {
    let mut kv = BlockManager::new(3, 2).unwrap();
    let a = kv.admit(1, &[1, 2, 3]).unwrap();
    kv.mark_computed(1, 3).unwrap();
    assert!(kv.is_cached(a.table[0]));
    kv.admit(2, &[7, 8]).unwrap(); // the last free block
    let before = snapshot(&kv, &[1, 2]);
    let err = kv.admit(3, &[5, 6]).unwrap_err();
    assert_eq!(err, KvBlockError::OutOfBlocks { needed: 1, free: 0 });
    assert_eq!(snapshot(&kv, &[1, 2]), before);
    assert!(kv.is_cached(a.table[0]));
    assert_eq!(kv.ref_count(a.table[0]), 1);
}

#[test]
fn out_of_blocks_changes_nothing() {
    let mut kv = BlockManager::new(5, 2).unwrap();
    let prompt = seq_tokens(1, 5);
    kv.admit(1, &prompt).unwrap();
    kv.mark_computed(1, 5).unwrap();
    kv.free(1).unwrap(); // blocks 0 and 1 cached and idle
    kv.admit(2, &seq_tokens(100, 3)).unwrap(); // takes 2 never-cached blocks
    let seqs = [2];

    // Admission: reusing the 2 idle cached blocks plus 2 new ones needs 4
    // of the 3 free blocks.
    let before = snapshot(&kv, &seqs);
    let err = kv
        .admit(3, &[prompt.as_slice(), &[6, 7, 8]].concat())
        .unwrap_err();
    assert_eq!(err, KvBlockError::OutOfBlocks { needed: 4, free: 3 });
    assert_eq!(snapshot(&kv, &seqs), before);
    assert_eq!(kv.table(3), None);

    // Append: 3 tokens + 8 = 11 need 6 blocks, 4 more than held.
    let err = kv.append_tokens(2, &seq_tokens(200, 8)).unwrap_err();
    assert_eq!(err, KvBlockError::OutOfBlocks { needed: 4, free: 3 });
    assert_eq!(snapshot(&kv, &seqs), before);

    // After preempting sequence 2 the admission fits and hits the cache.
    kv.free(2).unwrap();
    let adm = kv
        .admit(3, &[prompt.as_slice(), &[6, 7, 8]].concat())
        .unwrap();
    assert_eq!(adm.cached_tokens, 4);
    assert_eq!(kv.free_blocks(), 1);
}

#[test]
fn errors_are_typed() {
    assert_eq!(
        BlockManager::new(4, 0).unwrap_err(),
        KvBlockError::ZeroBlockTokens
    );
    let mut kv = BlockManager::new(4, 2).unwrap();
    kv.admit(1, &[1, 2, 3]).unwrap();
    assert_eq!(
        kv.admit(1, &[1]).unwrap_err(),
        KvBlockError::DuplicateSequence(1)
    );
    assert_eq!(
        kv.append_tokens(9, &[1]).unwrap_err(),
        KvBlockError::UnknownSequence(9)
    );
    assert_eq!(
        kv.mark_computed(9, 0).unwrap_err(),
        KvBlockError::UnknownSequence(9)
    );
    assert_eq!(
        kv.mark_computed(1, 4).unwrap_err(),
        KvBlockError::ComputedBeyondEnd {
            seq: 1,
            up_to: 4,
            len: 3
        }
    );
    kv.mark_computed(1, 3).unwrap();
    kv.mark_computed(1, 1).unwrap(); // going back is a no-op
    assert_eq!(kv.computed_tokens(1), Some(3));
    let empty = BlockManager::new(0, 2).unwrap();
    assert_eq!(empty.usage(), 0.0);
}

#[test]
fn empty_prompt_is_admitted() {
    let mut kv = BlockManager::new(2, 2).unwrap();
    let adm = kv.admit(1, &[]).unwrap();
    assert_eq!(adm.cached_tokens, 0);
    assert!(adm.table.is_empty());
    kv.append_tokens(1, &[1, 2, 3]).unwrap();
    assert_eq!(kv.table(1).unwrap().len(), 2);
}

/// splitmix64: a small deterministic generator for the randomized test.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// The reference model: what each live sequence holds, and what each cached
/// block was seen to contain.
#[derive(Default)]
struct Model {
    tokens: BTreeMap<SeqId, Vec<u32>>,
    computed: BTreeMap<SeqId, usize>,
    content: HashMap<BlockId, Vec<u32>>,
    queries: u64,
    hits: u64,
    /// Checks that saw a block shared by several sequences.
    shared_seen: usize,
}

impl Model {
    fn live(&self) -> Vec<SeqId> {
        self.tokens.keys().copied().collect()
    }

    /// Cached tokens an admission of `prompt` must at least find: the
    /// leading cached, computed blocks of a live sequence that match it.
    fn min_hit(&self, kv: &BlockManager, prompt: &[u32]) -> usize {
        let bt = kv.block_tokens();
        let matchable = prompt.len().saturating_sub(1) / bt;
        let mut best = 0;
        for (&s, toks) in &self.tokens {
            let table = kv.table(s).unwrap();
            let full = self.computed[&s] / bt;
            let n = (0..matchable.min(full))
                .take_while(|&i| {
                    kv.is_cached(table[i])
                        && toks[i * bt..(i + 1) * bt] == prompt[i * bt..(i + 1) * bt]
                })
                .count();
            best = best.max(n);
        }
        best * bt
    }

    /// Checks every invariant of the manager against the model.
    fn check(&mut self, kv: &BlockManager) {
        let n = kv.num_blocks();
        let bt = kv.block_tokens();
        assert_eq!(kv.free_blocks() + kv.used_blocks(), n);
        assert_eq!(kv.num_sequences(), self.tokens.len());
        assert_eq!(kv.prefix_cache_queries(), self.queries);
        assert_eq!(kv.prefix_cache_hits(), self.hits);

        // Holders of each block: (sequence, logical index).
        let mut holders: HashMap<BlockId, Vec<(SeqId, usize)>> = HashMap::new();
        for (&s, toks) in &self.tokens {
            let table = kv.table(s).unwrap();
            assert_eq!(kv.num_tokens(s), Some(toks.len()));
            assert_eq!(kv.computed_tokens(s), Some(self.computed[&s]));
            assert_eq!(table.len(), toks.len().div_ceil(bt));
            for (i, &b) in table.iter().enumerate() {
                assert!((b as usize) < n);
                holders.entry(b).or_default().push((s, i));
            }
        }
        assert_eq!(kv.used_blocks(), holders.len());
        for b in 0..n as BlockId {
            let hs = holders.get(&b).map_or(&[][..], |v| v.as_slice());
            assert_eq!(kv.ref_count(b) as usize, hs.len(), "block {b}");
            if hs.len() > 1 {
                self.shared_seen += 1;
                assert!(kv.is_cached(b), "shared block {b} is cached");
                let (s0, i0) = hs[0];
                let first = &self.tokens[&s0][i0 * bt..(i0 + 1) * bt];
                for &(s, i) in hs {
                    assert_eq!(i, i0, "a shared block sits at one depth");
                    let toks = &self.tokens[&s];
                    assert!(toks.len() >= (i + 1) * bt, "shared block {b} is full");
                    assert_eq!(&toks[i * bt..(i + 1) * bt], first);
                }
            }
        }

        // Cached blocks held by a sequence are full and computed there, and
        // keep the content they were first seen with while cached.
        self.content.retain(|&b, _| kv.is_cached(b));
        for (&s, toks) in &self.tokens {
            let table = kv.table(s).unwrap();
            for (i, &b) in table.iter().enumerate() {
                if !kv.is_cached(b) {
                    continue;
                }
                assert!(
                    (i + 1) * bt <= self.computed[&s],
                    "cached block {b} computed"
                );
                let block = toks[i * bt..(i + 1) * bt].to_vec();
                let seen = self.content.entry(b).or_insert_with(|| block.clone());
                assert_eq!(*seen, block, "cached block {b} content");
            }
        }
        assert!(kv.cached_blocks() <= n);
    }
}

fn random_prompt(rng: &mut Rng) -> Vec<u32> {
    // A few shared "system prompts", cut at random, plus a random tail from
    // a small alphabet so that tails also repeat sometimes.
    let system = rng.below(3) as u32;
    let keep = rng.below(14);
    let mut p: Vec<u32> = (0..keep as u32).map(|t| 1000 * system + t).collect();
    let tail = rng.below(8);
    p.extend((0..tail).map(|_| rng.below(3) as u32));
    p
}

fn run_random_ops(seed: u64, num_blocks: u32, block_tokens: usize, ops: usize) {
    let mut rng = Rng(seed);
    let mut kv = BlockManager::new(num_blocks, block_tokens).unwrap();
    let mut model = Model::default();
    let mut next_seq: SeqId = 0;
    let mut out_of_blocks = 0;
    for _ in 0..ops {
        let live = model.live();
        let pick = |rng: &mut Rng| live[rng.below(live.len())];
        let op = rng.below(100);
        let before = snapshot(&kv, &live);
        let result = if op < 30 || live.is_empty() {
            let prompt = random_prompt(&mut rng);
            let min = model.min_hit(&kv, &prompt);
            next_seq += 1;
            kv.admit(next_seq, &prompt).map(|adm| {
                assert_eq!(adm.cached_tokens % block_tokens, 0);
                assert!(adm.cached_tokens >= min, "longest prefix found");
                assert!(adm.cached_tokens < prompt.len().max(1));
                assert_eq!(adm.table.as_slice(), kv.table(next_seq).unwrap());
                model.queries += prompt.len() as u64;
                model.hits += adm.cached_tokens as u64;
                model.computed.insert(next_seq, adm.cached_tokens);
                model.tokens.insert(next_seq, prompt);
            })
        } else if op < 60 {
            let s = pick(&mut rng);
            let extra: Vec<u32> = (0..1 + rng.below(6)).map(|_| rng.below(3) as u32).collect();
            kv.append_tokens(s, &extra)
                .map(|()| model.tokens.get_mut(&s).unwrap().extend(extra))
        } else if op < 85 {
            let s = pick(&mut rng);
            let len = model.tokens[&s].len();
            let up_to = if rng.below(4) == 0 {
                rng.below(len + 1)
            } else {
                len
            };
            kv.mark_computed(s, up_to).map(|()| {
                let c = model.computed.get_mut(&s).unwrap();
                *c = (*c).max(up_to);
            })
        } else {
            let s = pick(&mut rng);
            kv.free(s).map(|()| {
                model.tokens.remove(&s);
                model.computed.remove(&s);
            })
        };
        match result {
            Ok(()) => {}
            Err(KvBlockError::OutOfBlocks { needed, free }) => {
                out_of_blocks += 1;
                assert!(needed > free);
                assert_eq!(snapshot(&kv, &live), before, "all or nothing");
            }
            Err(e) => panic!("unexpected error {e}"),
        }
        model.check(&kv);
    }
    assert!(out_of_blocks > 0, "the pool ran out at least once");
    assert!(kv.prefix_cache_hits() > 0, "the prefix cache was hit");
    assert!(model.shared_seen > 0, "blocks were shared");
    for s in model.live() {
        kv.free(s).unwrap();
        model.tokens.remove(&s);
        model.computed.remove(&s);
        model.check(&kv);
    }
    assert_eq!(kv.used_blocks(), 0);
    assert_eq!(kv.free_blocks(), num_blocks as usize);
    assert_eq!(kv.num_sequences(), 0);
}

#[test]
fn random_operations_match_the_reference_model() {
    for seed in 0..8 {
        run_random_ops(seed, 24, 4, 3000);
    }
    run_random_ops(99, 10, 1, 2000);
    run_random_ops(7, 16, 3, 2000);
}
