//! Block manager of the paged KV cache: pure bookkeeping, no tensors.
//!
//! The KV cache is one pool of `n` blocks of `block_tokens` tokens each,
//! shared by all sequences (not split into per-slot regions), so memory goes
//! to whichever sequences need it. Each sequence owns a *block table*: its
//! logical block `i` (tokens `i*block_tokens ..`) lives in pool block
//! `table[i]`.
//!
//! # Prefix caching
//!
//! A *full* block whose KV has been written ([`BlockManager::mark_computed`])
//! is entered in a cache under a chained hash: `hash(parent hash, the
//! block's token ids)`, where the parent is the previous block of the same
//! sequence. Equal prefixes therefore give equal hashes, and a hash names a
//! whole prefix, not just one block's tokens. [`BlockManager::admit`] walks a
//! new prompt block by block and reuses the cached blocks of the longest
//! matching prefix (a repeated system prompt is computed once).
//!
//! The hasher is keyed at random per manager, so a client cannot craft two
//! prompts whose hashes collide on purpose; on top of that a lookup compares
//! the block's stored tokens and parent hash, so an accidental 64-bit
//! collision would also need the parent hashes of two different prefixes to
//! collide.
//!
//! # Sharing only full blocks (the copy-on-write rule)
//!
//! A block shared by several sequences must never be written, or one
//! sequence would change the KV another one reads. Paged-attention stacks
//! that share partially filled blocks need copy-on-write for the first
//! append into them. This manager avoids the case instead:
//!
//! - only full blocks enter the cache, so only full blocks are shared;
//! - an admission reuses at most the full blocks within the first
//!   `prompt.len() - 1` tokens, so at least one prompt token is left to
//!   compute (its logits start the generation) and it lands in a block the
//!   sequence owns alone;
//! - appends go after the last token, so they only ever write a partially
//!   filled last block, which by the two rules above is private. A full last
//!   block (possibly shared) is never written: new tokens get a new block.
//!
//! [`BlockManager::append_tokens`] asserts the resulting invariant (a
//! partially filled last block has reference count 1) rather than copying.
//!
//! # Eviction
//!
//! A block whose last reference goes is either returned to the free list
//! (never cached) or kept in the cache, unreferenced, for later reuse.
//! Allocation takes never-cached free blocks first and evicts cached ones
//! only when none are left, least recently released first (LRU). Referenced
//! blocks are never evicted. [`BlockManager::free`] releases a sequence's
//! blocks from last to first, so the tail of a sequence is evicted before
//! its head: heads are the most widely shared prefixes (system prompts),
//! and evicting a head block would make the blocks after it unreachable
//! anyway (the lookup stops at the first miss).
//!
//! # Out of blocks
//!
//! [`BlockManager::admit`] and [`BlockManager::append_tokens`] either succeed
//! whole or return [`KvBlockError::OutOfBlocks`] with no state changed
//! (counters included), so the scheduler can preempt a sequence (free it and
//! recompute it later) and retry.

use std::collections::hash_map::RandomState;
use std::collections::{BTreeSet, HashMap};
use std::hash::{BuildHasher, Hash, Hasher};

/// Index of a block in the pool, `0..num_blocks`.
pub type BlockId = u32;

/// Identifier of a sequence (one request), chosen by the caller.
pub type SeqId = u64;

/// Chained hash of a full block: it identifies the block's tokens and every
/// token before them in the sequence.
pub type BlockHash = u64;

/// Errors of the block manager.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KvBlockError {
    /// The pool has too few free blocks; nothing was changed.
    #[error("out of KV cache blocks: {needed} needed, {free} free")]
    OutOfBlocks {
        /// Blocks the operation would take from the free pool (including
        /// unreferenced cached blocks it would reuse).
        needed: usize,
        /// Free blocks ([`BlockManager::free_blocks`]) at the time.
        free: usize,
    },
    /// The sequence was never admitted or was already freed.
    #[error("unknown sequence {0}")]
    UnknownSequence(SeqId),
    /// The sequence is already admitted.
    #[error("sequence {0} is already admitted")]
    DuplicateSequence(SeqId),
    /// More tokens marked computed than the sequence holds.
    #[error("sequence {seq}: {up_to} tokens marked computed, but it holds {len}")]
    ComputedBeyondEnd {
        /// The sequence.
        seq: SeqId,
        /// The requested count.
        up_to: usize,
        /// The sequence's length in tokens.
        len: usize,
    },
    /// A block must hold at least one token.
    #[error("a KV block must hold at least one token")]
    ZeroBlockTokens,
}

/// Result of [`BlockManager::admit`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admission {
    /// Leading prompt tokens whose KV is already in the cache (a multiple of
    /// the block size, less than the prompt length); the prefill starts
    /// after them.
    pub cached_tokens: usize,
    /// The sequence's block table: `table[i]` holds tokens
    /// `i*block_tokens .. (i+1)*block_tokens` of the prompt.
    pub table: Vec<BlockId>,
}

/// What a cached block is findable by.
#[derive(Debug)]
struct CacheKey {
    hash: BlockHash,
    parent: Option<BlockHash>,
    tokens: Box<[u32]>,
}

/// One pool block.
#[derive(Debug, Default)]
struct Block {
    /// Number of block tables holding this block.
    refs: u32,
    /// Set while the block is in the prefix cache.
    key: Option<CacheKey>,
    /// Tick of the last release to zero references (LRU order).
    released_at: u64,
}

/// One sequence's bookkeeping.
#[derive(Debug)]
struct Sequence {
    tokens: Vec<u32>,
    table: Vec<BlockId>,
    /// Leading tokens whose KV is written.
    computed: usize,
    /// Chained hashes of the leading full, computed blocks.
    hashes: Vec<BlockHash>,
}

/// The paged KV cache's block manager: a shared pool of fixed-size blocks,
/// block tables per sequence, reference counts, prefix cache and LRU
/// eviction (see the [module docs](self)).
#[derive(Debug)]
pub struct BlockManager {
    block_tokens: usize,
    blocks: Vec<Block>,
    /// Unreferenced blocks not in the cache; popped from the end.
    fresh: Vec<BlockId>,
    /// Unreferenced cached blocks by `(released_at, id)`: LRU first.
    idle: BTreeSet<(u64, BlockId)>,
    cache: HashMap<BlockHash, BlockId>,
    seqs: HashMap<SeqId, Sequence>,
    hasher: RandomState,
    clock: u64,
    query_tokens: u64,
    hit_tokens: u64,
}

impl BlockManager {
    /// A pool of `num_blocks` empty blocks of `block_tokens` tokens each.
    pub fn new(num_blocks: u32, block_tokens: usize) -> Result<Self, KvBlockError> {
        if block_tokens == 0 {
            return Err(KvBlockError::ZeroBlockTokens);
        }
        Ok(Self {
            block_tokens,
            blocks: (0..num_blocks).map(|_| Block::default()).collect(),
            fresh: (0..num_blocks).rev().collect(),
            idle: BTreeSet::new(),
            cache: HashMap::new(),
            seqs: HashMap::new(),
            hasher: RandomState::new(),
            clock: 0,
            query_tokens: 0,
            hit_tokens: 0,
        })
    }

    /// Tokens per block.
    pub fn block_tokens(&self) -> usize {
        self.block_tokens
    }

    /// Blocks in the pool.
    pub fn num_blocks(&self) -> usize {
        self.blocks.len()
    }

    /// Admits sequence `seq` with its prompt: reuses the cached blocks of the
    /// longest cached prefix and allocates the rest, all or nothing.
    pub fn admit(&mut self, seq: SeqId, prompt: &[u32]) -> Result<Admission, KvBlockError> {
        if self.seqs.contains_key(&seq) {
            return Err(KvBlockError::DuplicateSequence(seq));
        }
        let (matched, hashes) = self.longest_cached_prefix(prompt);
        let revived = matched.iter().filter(|&&b| self.block(b).refs == 0).count();
        let new = self.blocks_for(prompt.len()) - matched.len();
        self.ensure_free(revived + new)?;

        // Pin the matched blocks first so that allocating cannot evict them.
        for &b in &matched {
            self.pin(b);
        }
        let mut table = matched;
        table.extend((0..new).map(|_| self.allocate()));

        let cached_tokens = hashes.len() * self.block_tokens;
        self.query_tokens += prompt.len() as u64;
        self.hit_tokens += cached_tokens as u64;
        self.seqs.insert(
            seq,
            Sequence {
                tokens: prompt.to_vec(),
                table: table.clone(),
                computed: cached_tokens,
                hashes,
            },
        );
        Ok(Admission {
            cached_tokens,
            table,
        })
    }

    /// Appends `tokens` to sequence `seq`, allocating blocks as needed, all
    /// or nothing. Their KV is not yet computed.
    pub fn append_tokens(&mut self, seq: SeqId, tokens: &[u32]) -> Result<(), KvBlockError> {
        let s = self.seq(seq)?;
        let len = s.tokens.len();
        let needed = self.blocks_for(len + tokens.len()) - s.table.len();
        if len % self.block_tokens != 0 && !tokens.is_empty() {
            let last = *s.table.last().expect("a non-empty sequence has blocks");
            assert_eq!(
                self.block(last).refs,
                1,
                "a partially filled block is never shared (see the module docs)"
            );
        }
        self.ensure_free(needed)?;
        let new: Vec<BlockId> = (0..needed).map(|_| self.allocate()).collect();
        let s = self.seq_mut(seq)?;
        s.tokens.extend_from_slice(tokens);
        s.table.extend(new);
        Ok(())
    }

    /// Records that the KV of the first `up_to_tokens` tokens of `seq` is
    /// written; full blocks among them become findable in the prefix cache.
    /// A smaller count than an earlier one changes nothing.
    pub fn mark_computed(&mut self, seq: SeqId, up_to_tokens: usize) -> Result<(), KvBlockError> {
        let bt = self.block_tokens;
        let hasher = &self.hasher;
        let s = self
            .seqs
            .get_mut(&seq)
            .ok_or(KvBlockError::UnknownSequence(seq))?;
        if up_to_tokens > s.tokens.len() {
            return Err(KvBlockError::ComputedBeyondEnd {
                seq,
                up_to: up_to_tokens,
                len: s.tokens.len(),
            });
        }
        s.computed = s.computed.max(up_to_tokens);
        let mut newly_full = Vec::new();
        for i in s.hashes.len()..s.computed / bt {
            let parent = s.hashes.last().copied();
            let tokens = &s.tokens[i * bt..(i + 1) * bt];
            let hash = chain_hash(hasher, parent, tokens);
            s.hashes.push(hash);
            let key = CacheKey {
                hash,
                parent,
                tokens: tokens.into(),
            };
            newly_full.push((s.table[i], key));
        }
        for (block, key) in newly_full {
            self.register(block, key);
        }
        Ok(())
    }

    /// Releases all blocks of `seq` at once (finished, cancelled or
    /// preempted). Cached blocks stay findable until evicted.
    pub fn free(&mut self, seq: SeqId) -> Result<(), KvBlockError> {
        let s = self
            .seqs
            .remove(&seq)
            .ok_or(KvBlockError::UnknownSequence(seq))?;
        // Tail first: see "Eviction" in the module docs.
        for &b in s.table.iter().rev() {
            self.release(b);
        }
        Ok(())
    }

    /// The block table of `seq`, if admitted.
    pub fn table(&self, seq: SeqId) -> Option<&[BlockId]> {
        self.seqs.get(&seq).map(|s| s.table.as_slice())
    }

    /// Tokens held by `seq`, if admitted.
    pub fn num_tokens(&self, seq: SeqId) -> Option<usize> {
        self.seqs.get(&seq).map(|s| s.tokens.len())
    }

    /// Leading tokens of `seq` whose KV is written, if admitted.
    pub fn computed_tokens(&self, seq: SeqId) -> Option<usize> {
        self.seqs.get(&seq).map(|s| s.computed)
    }

    /// Admitted sequences.
    pub fn num_sequences(&self) -> usize {
        self.seqs.len()
    }

    /// Block tables holding `block` (0 for an unknown id).
    pub fn ref_count(&self, block: BlockId) -> u32 {
        self.blocks.get(block as usize).map_or(0, |b| b.refs)
    }

    /// Whether `block` is in the prefix cache (findable by its hash).
    pub fn is_cached(&self, block: BlockId) -> bool {
        self.blocks
            .get(block as usize)
            .is_some_and(|b| b.key.is_some())
    }

    /// Blocks that no sequence holds: never-cached ones plus unreferenced
    /// cached ones (evictable).
    pub fn free_blocks(&self) -> usize {
        self.fresh.len() + self.idle.len()
    }

    /// Blocks held by at least one sequence; `free + used = num_blocks`.
    pub fn used_blocks(&self) -> usize {
        self.num_blocks() - self.free_blocks()
    }

    /// Blocks in the prefix cache, referenced or not.
    pub fn cached_blocks(&self) -> usize {
        self.cache.len()
    }

    /// Fraction of the pool in use, `0.0..=1.0` (the `kv_cache_usage_perc`
    /// gauge); 0 for an empty pool.
    pub fn usage(&self) -> f64 {
        if self.blocks.is_empty() {
            0.0
        } else {
            self.used_blocks() as f64 / self.num_blocks() as f64
        }
    }

    /// Prompt tokens looked up in the prefix cache by successful admissions.
    pub fn prefix_cache_queries(&self) -> u64 {
        self.query_tokens
    }

    /// Prompt tokens found in the prefix cache by successful admissions.
    pub fn prefix_cache_hits(&self) -> u64 {
        self.hit_tokens
    }

    /// Blocks needed to hold `tokens` tokens.
    fn blocks_for(&self, tokens: usize) -> usize {
        tokens.div_ceil(self.block_tokens)
    }

    fn block(&self, id: BlockId) -> &Block {
        &self.blocks[id as usize]
    }

    fn block_mut(&mut self, id: BlockId) -> &mut Block {
        &mut self.blocks[id as usize]
    }

    fn seq(&self, seq: SeqId) -> Result<&Sequence, KvBlockError> {
        self.seqs
            .get(&seq)
            .ok_or(KvBlockError::UnknownSequence(seq))
    }

    fn seq_mut(&mut self, seq: SeqId) -> Result<&mut Sequence, KvBlockError> {
        self.seqs
            .get_mut(&seq)
            .ok_or(KvBlockError::UnknownSequence(seq))
    }

    /// Fails with `OutOfBlocks` unless `needed` blocks are free.
    fn ensure_free(&self, needed: usize) -> Result<(), KvBlockError> {
        let free = self.free_blocks();
        if needed > free {
            return Err(KvBlockError::OutOfBlocks { needed, free });
        }
        Ok(())
    }

    /// The cached blocks (and their hashes) of the longest cached prefix of
    /// `prompt`, among the full blocks before its last token.
    fn longest_cached_prefix(&self, prompt: &[u32]) -> (Vec<BlockId>, Vec<BlockHash>) {
        let matchable = prompt.len().saturating_sub(1) / self.block_tokens;
        let mut blocks = Vec::new();
        let mut hashes: Vec<BlockHash> = Vec::new();
        for tokens in prompt.chunks_exact(self.block_tokens).take(matchable) {
            let parent = hashes.last().copied();
            let hash = chain_hash(&self.hasher, parent, tokens);
            match self.lookup(hash, parent, tokens) {
                Some(b) => {
                    blocks.push(b);
                    hashes.push(hash);
                }
                None => break,
            }
        }
        (blocks, hashes)
    }

    /// The cached block with this hash, if its parent and tokens match too.
    fn lookup(
        &self,
        hash: BlockHash,
        parent: Option<BlockHash>,
        tokens: &[u32],
    ) -> Option<BlockId> {
        let &b = self.cache.get(&hash)?;
        let key = self.block(b).key.as_ref()?;
        (key.parent == parent && *key.tokens == *tokens).then_some(b)
    }

    /// Enters a full, computed, private block in the cache, unless an equal
    /// block is there already (two sequences computed the same prefix at the
    /// same time); then this one stays private and is freed as uncached.
    fn register(&mut self, block: BlockId, key: CacheKey) {
        debug_assert!(self.block(block).key.is_none());
        if self.cache.contains_key(&key.hash) {
            return;
        }
        self.cache.insert(key.hash, block);
        self.block_mut(block).key = Some(key);
    }

    /// Takes a reference on a cached block, reviving it if idle.
    fn pin(&mut self, block: BlockId) {
        let b = self.block(block);
        if b.refs == 0 {
            self.idle.remove(&(b.released_at, block));
        }
        self.block_mut(block).refs += 1;
    }

    /// Drops a reference; the last one sends the block to the idle LRU set
    /// (cached) or the free list (never cached).
    fn release(&mut self, block: BlockId) {
        let b = self.block_mut(block);
        b.refs -= 1;
        if b.refs > 0 {
            return;
        }
        if b.key.is_some() {
            self.clock += 1;
            self.block_mut(block).released_at = self.clock;
            self.idle.insert((self.clock, block));
        } else {
            self.fresh.push(block);
        }
    }

    /// A block with one reference: a never-cached free one if any, else the
    /// least recently released cached one, evicted. The caller has checked
    /// with [`Self::ensure_free`].
    fn allocate(&mut self) -> BlockId {
        let block = match self.fresh.pop() {
            Some(b) => b,
            None => {
                let (_, b) = self.idle.pop_first().expect("checked by ensure_free");
                self.evict(b);
                b
            }
        };
        self.block_mut(block).refs = 1;
        block
    }

    /// Removes an unreferenced block from the prefix cache.
    fn evict(&mut self, block: BlockId) {
        if let Some(key) = self.block_mut(block).key.take() {
            self.cache.remove(&key.hash);
        }
    }
}

/// The chained hash of a block: its parent's hash and its tokens, keyed by
/// the manager's random state.
fn chain_hash(state: &RandomState, parent: Option<BlockHash>, tokens: &[u32]) -> BlockHash {
    let mut h = state.build_hasher();
    parent.hash(&mut h);
    tokens.hash(&mut h);
    h.finish()
}
