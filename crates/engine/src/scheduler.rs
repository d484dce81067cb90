//! The continuous-batching scheduler: which tokens of which requests the
//! next model step runs, and what the logits it returns mean for each
//! request. It owns the waiting queue, the running set and the KV
//! [`BlockManager`]; it runs no model and starts no thread (the
//! [`Engine`](crate::Engine) drives it), so every policy below is tested
//! step by step with a fake model.
//!
//! # The policy of one step, and why
//!
//! A step has a budget of `max_batch_tokens` tokens, filled in this order:
//!
//! 1. **Decode first.** Every running request that is generating gets its
//!    one next token. Generation is what users watch (inter-token latency);
//!    a decode token costs the step little (the weights are streamed once
//!    for all rows), so none is ever left out for a prefill. The budget is
//!    checked to exceed `max_running`, so they always fit.
//! 2. **Then the prefills in progress, oldest first,** each as one chunk of
//!    what budget is left (chunked prefill): a 2,000-token prompt runs over
//!    several steps, and the decodes of everyone else go on between them
//!    instead of stalling for the whole prompt. At most `max_prefill_seqs`
//!    prompts share a step, so a burst of long prompts does not split the
//!    budget into slivers and delay all their first tokens; the oldest
//!    prompt finishes first (first come, first served keeps TTFT fair).
//! 3. **Then new requests from the queue,** in arrival order, while there
//!    are budget, a prefill slot, a running slot (`max_running`) and KV
//!    blocks for the whole prompt. A prompt whose leading blocks are in the
//!    prefix cache starts after them (a shared system prompt is computed
//!    once).
//!
//! # When the KV pool runs out
//!
//! A decode token that needs a new block when none is free preempts the
//! most recently admitted running request (the one that has the least
//! invested, as vLLM does): its blocks are freed at once and it goes back to
//! the *front* of the queue with everything it has (prompt and generated
//! tokens), to be recomputed when blocks free up. Its sampler keeps its
//! state, so the text it produces is the one it would have produced
//! without the preemption. Its computed full blocks stay in the prefix
//! cache until evicted, so the recompute is often cheap. A request alone in
//! the pool that still does not fit ends with [`FinishReason::Length`].
//!
//! # Admission control
//!
//! [`Scheduler::submit`] refuses at once, with a typed [`SubmitError`],
//! what could never run (a prompt longer than the context or than the whole
//! pool, an empty prompt, a token outside the vocabulary, bad sampling
//! settings) and what would only pile up: a queue already holding
//! `max_waiting` requests or `max_waiting_tokens` prompt tokens. A client
//! that goes away is [`Scheduler::cancel`]led, and its blocks are freed
//! there and then.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use exodus_model::Sampler;

use crate::kv_blocks::{BlockManager, KvBlockError};
use crate::request::{
    Event, FinishReason, GenerationRequest, RequestId, SubmitError, Timing, TokenLogprobs, Usage,
};

/// Limits of the scheduler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchedulerConfig {
    /// Requests running at once (decoding or prefilling).
    pub max_running: usize,
    /// Requests waiting at most; more are refused.
    pub max_waiting: usize,
    /// Prompt tokens waiting at most (a request arriving at an empty queue
    /// is always taken, however long, if it fits the context).
    pub max_waiting_tokens: usize,
    /// Tokens one step runs at most (decode tokens plus prefill chunks).
    pub max_batch_tokens: usize,
    /// Prompts whose prefill shares one step at most.
    pub max_prefill_seqs: usize,
    /// Positions one sequence may hold (the model's context).
    pub context: usize,
    /// Logits per token (the model's vocabulary).
    pub vocab: usize,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            max_running: 8,
            max_waiting: 64,
            max_waiting_tokens: 64 * 1024,
            max_batch_tokens: 256,
            max_prefill_seqs: 2,
            context: 2048,
            vocab: 0,
        }
    }
}

impl SchedulerConfig {
    /// Checks that the limits can work together.
    pub fn check(&self) -> Result<(), String> {
        let positive = [
            ("max_running", self.max_running),
            ("max_batch_tokens", self.max_batch_tokens),
            ("max_prefill_seqs", self.max_prefill_seqs),
            ("context", self.context),
            ("vocab", self.vocab),
        ];
        if let Some((name, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(format!("{name} must be at least 1"));
        }
        if self.max_batch_tokens <= self.max_running {
            return Err(format!(
                "max_batch_tokens ({}) must exceed max_running ({}): every running request decodes in every step, and prefills need room too",
                self.max_batch_tokens, self.max_running
            ));
        }
        Ok(())
    }
}

/// One request inside the scheduler.
#[derive(Debug)]
struct Seq {
    id: RequestId,
    /// The prompt, then every generated token.
    tokens: Vec<u32>,
    prompt_len: usize,
    /// Leading tokens whose KV is in the cache.
    computed: usize,
    max_new_tokens: usize,
    stop_tokens: Vec<u32>,
    logprobs: Option<usize>,
    sampler: Sampler,
    arrived: Instant,
    first_scheduled: Option<Instant>,
    first_token: Option<Instant>,
    /// Prefix-cache hit of the first admission.
    cached_tokens: Option<usize>,
    preemptions: u32,
}

impl Seq {
    /// Tokens not yet run.
    fn pending(&self) -> usize {
        self.tokens.len() - self.computed
    }

    fn generated(&self) -> usize {
        self.tokens.len() - self.prompt_len
    }

    fn finished(&self, reason: FinishReason, now: Instant) -> Event {
        Event::Finished {
            reason,
            usage: Usage {
                prompt_tokens: self.prompt_len,
                completion_tokens: self.generated(),
                cached_tokens: self.cached_tokens.unwrap_or(0),
            },
            timing: Timing {
                queued: self.first_scheduled.unwrap_or(now) - self.arrived,
                first_token: self.first_token.map(|t| t - self.arrived),
                total: now - self.arrived,
                preemptions: self.preemptions,
            },
        }
    }
}

/// One request's share of a step: its tokens `start..start + len` run at
/// positions `start..`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Work {
    /// The request.
    pub id: RequestId,
    /// Position of the first token.
    pub start: usize,
    /// The tokens to run.
    pub tokens: Vec<u32>,
    /// The request's KV block table (enough blocks for `start +
    /// tokens.len()` positions).
    pub table: Vec<u32>,
}

/// What one step runs: the model returns the last token's logits of each
/// [`Work`], in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StepPlan {
    /// The requests' shares, decodes first.
    pub work: Vec<Work>,
}

impl StepPlan {
    /// Tokens in the step.
    pub fn tokens(&self) -> usize {
        self.work.iter().map(|w| w.tokens.len()).sum()
    }
}

/// Counters since the start (the metrics the server exports).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SchedulerStats {
    /// Requests running.
    pub running: usize,
    /// Requests waiting.
    pub waiting: usize,
    /// Prompt tokens of the waiting requests.
    pub waiting_tokens: usize,
    /// Fraction of KV blocks held by requests (0 to 1).
    pub kv_usage: f64,
    /// KV blocks in the pool.
    pub kv_blocks: usize,
    /// Prompt tokens of admitted requests (first admission only).
    pub prompt_tokens: u64,
    /// Prompt tokens looked up in the prefix cache.
    pub prefix_cache_queries: u64,
    /// Of those, tokens found.
    pub prefix_cache_hits: u64,
    /// Tokens generated.
    pub generation_tokens: u64,
    /// Preemptions (a request's KV freed to be recomputed later).
    pub preemptions: u64,
    /// Requests finished by a stop token or string.
    pub finished_stop: u64,
    /// Requests finished by their length limit or the context's end.
    pub finished_length: u64,
    /// Requests cancelled (clients that went away included).
    pub cancelled: u64,
    /// Requests that failed.
    pub failed: u64,
    /// Model steps run.
    pub steps: u64,
}

/// The scheduler (see the [module docs](self)).
#[derive(Debug)]
pub struct Scheduler {
    config: SchedulerConfig,
    blocks: BlockManager,
    waiting: VecDeque<Seq>,
    /// In admission order.
    running: Vec<Seq>,
    stats: SchedulerStats,
}

impl Scheduler {
    /// A scheduler over `blocks`, the KV pool's bookkeeping (its block ids
    /// are the model's pool blocks).
    pub fn new(config: SchedulerConfig, blocks: BlockManager) -> Result<Scheduler, String> {
        config.check()?;
        Ok(Scheduler {
            config,
            blocks,
            waiting: VecDeque::new(),
            running: Vec::new(),
            stats: SchedulerStats::default(),
        })
    }

    /// The limits.
    pub fn config(&self) -> &SchedulerConfig {
        &self.config
    }

    /// Queues a request, or refuses it at once (nothing kept).
    pub fn submit(
        &mut self,
        id: RequestId,
        req: GenerationRequest,
        now: Instant,
    ) -> Result<(), SubmitError> {
        let n = req.prompt.len();
        if n == 0 {
            return Err(SubmitError::Invalid("the prompt is empty".into()));
        }
        if let Some(&bad) = req
            .prompt
            .iter()
            .find(|&&t| t as usize >= self.config.vocab)
        {
            return Err(SubmitError::Invalid(format!(
                "token id {bad} is outside the vocabulary of {}",
                self.config.vocab
            )));
        }
        if n > self.config.context {
            return Err(SubmitError::PromptTooLong {
                prompt: n,
                context: self.config.context,
            });
        }
        let needed = n.div_ceil(self.blocks.block_tokens());
        if needed > self.blocks.num_blocks() {
            return Err(SubmitError::TooLargeForPool {
                needed,
                pool: self.blocks.num_blocks(),
            });
        }
        if self.running.iter().chain(&self.waiting).any(|s| s.id == id) {
            return Err(SubmitError::Invalid(format!("request id {id} is in use")));
        }
        let queued_tokens = self.waiting_tokens();
        if self.waiting.len() >= self.config.max_waiting
            || (!self.waiting.is_empty() && queued_tokens + n > self.config.max_waiting_tokens)
        {
            return Err(SubmitError::QueueFull {
                waiting: self.waiting.len(),
                queued_tokens,
                retry_after: Duration::from_secs(1),
            });
        }
        let mut sampler = Sampler::new(req.sampler).map_err(SubmitError::Invalid)?;
        sampler.observe(&req.prompt);
        self.waiting.push_back(Seq {
            id,
            tokens: req.prompt,
            prompt_len: n,
            computed: 0,
            max_new_tokens: req.max_new_tokens,
            stop_tokens: req.stop_tokens,
            logprobs: req.logprobs,
            sampler,
            arrived: now,
            first_scheduled: None,
            first_token: None,
            cached_tokens: None,
            preemptions: 0,
        });
        Ok(())
    }

    /// Ends request `id` wherever it is, freeing its KV blocks now; returns
    /// its `Finished` event (`None`: unknown or already finished).
    pub fn cancel(&mut self, id: RequestId, now: Instant) -> Option<Event> {
        let seq = if let Some(i) = self.waiting.iter().position(|s| s.id == id) {
            self.waiting.remove(i)?
        } else {
            let i = self.running.iter().position(|s| s.id == id)?;
            let seq = self.running.remove(i);
            self.release(id);
            seq
        };
        self.stats.cancelled += 1;
        Some(seq.finished(FinishReason::Cancelled, now))
    }

    /// Whether nothing is waiting or running.
    pub fn is_idle(&self) -> bool {
        self.waiting.is_empty() && self.running.is_empty()
    }

    /// The counters and gauges now.
    pub fn stats(&self) -> SchedulerStats {
        SchedulerStats {
            running: self.running.len(),
            waiting: self.waiting.len(),
            waiting_tokens: self.waiting_tokens(),
            kv_usage: self.blocks.usage(),
            kv_blocks: self.blocks.num_blocks(),
            prefix_cache_queries: self.blocks.prefix_cache_queries(),
            prefix_cache_hits: self.blocks.prefix_cache_hits(),
            ..self.stats
        }
    }

    /// KV blocks held by requests now.
    pub fn used_blocks(&self) -> usize {
        self.blocks.used_blocks()
    }

    fn waiting_tokens(&self) -> usize {
        self.waiting.iter().map(Seq::pending).sum()
    }

    /// Plans the next step (see the [module docs](self) for the policy).
    /// Requests that can no longer run end here; their events go to
    /// `events`. An empty plan means there is nothing to run.
    pub fn schedule(&mut self, now: Instant, events: &mut Vec<(RequestId, Event)>) -> StepPlan {
        let mut budget = self.config.max_batch_tokens;
        let mut plan = StepPlan::default();

        // 1. One token for every generating request, preempting from the
        //    newest when a token needs a block that is not there.
        let mut preempted = false;
        let mut i = 0;
        while i < self.running.len() {
            if self.running[i].pending() != 1 {
                i += 1;
                continue;
            }
            let (id, tokens_len) = (self.running[i].id, self.running[i].tokens.len());
            let have = self.blocks.num_tokens(id).unwrap_or(0);
            let missing = self.running[i].tokens[have..tokens_len].to_vec();
            match self.blocks.append_tokens(id, &missing) {
                Ok(()) => {
                    plan.work.push(self.work(i, 1));
                    budget -= 1;
                    i += 1;
                }
                Err(KvBlockError::OutOfBlocks { .. }) if self.running.len() > 1 => {
                    let victim = self.running.len() - 1;
                    self.preempt(victim);
                    preempted = true;
                }
                Err(_) => {
                    // Alone in the pool and still out of blocks (or a
                    // bookkeeping error): it cannot go on.
                    let seq = self.running.remove(i);
                    self.release(seq.id);
                    self.stats.finished_length += 1;
                    events.push((seq.id, seq.finished(FinishReason::Length, now)));
                }
            }
        }

        // 2. Prefills in progress, oldest first, one chunk each.
        let mut prefills = 0;
        for i in 0..self.running.len() {
            if budget == 0 || prefills == self.config.max_prefill_seqs {
                break;
            }
            let pending = self.running[i].pending();
            if pending > 1 {
                let n = pending.min(budget);
                plan.work.push(self.work(i, n));
                budget -= n;
                prefills += 1;
            }
        }

        // 3. New requests, in arrival order (not in a step that had to
        //    preempt: the blocks just freed are for the running ones).
        while !preempted
            && budget > 0
            && prefills < self.config.max_prefill_seqs
            && self.running.len() < self.config.max_running
        {
            let Some(seq) = self.waiting.front() else {
                break;
            };
            match self.blocks.admit(seq.id, &seq.tokens) {
                Ok(admission) => {
                    let mut seq = self.waiting.pop_front().expect("front exists");
                    seq.computed = admission.cached_tokens;
                    seq.first_scheduled.get_or_insert(now);
                    if seq.cached_tokens.is_none() {
                        seq.cached_tokens = Some(admission.cached_tokens);
                        self.stats.prompt_tokens += seq.prompt_len as u64;
                    }
                    self.running.push(seq);
                    let i = self.running.len() - 1;
                    let n = self.running[i].pending().min(budget);
                    plan.work.push(self.work(i, n));
                    budget -= n;
                    prefills += 1;
                }
                Err(KvBlockError::OutOfBlocks { .. }) if !self.running.is_empty() => break,
                Err(_) => {
                    // Nothing runs and it still does not fit: it never will.
                    let seq = self.waiting.pop_front().expect("front exists");
                    self.stats.finished_length += 1;
                    events.push((seq.id, seq.finished(FinishReason::Length, now)));
                }
            }
        }
        if !plan.work.is_empty() {
            self.stats.steps += 1;
        }
        plan
    }

    /// The next `n` tokens of running request `i`.
    fn work(&self, i: usize, n: usize) -> Work {
        let s = &self.running[i];
        Work {
            id: s.id,
            start: s.computed,
            tokens: s.tokens[s.computed..s.computed + n].to_vec(),
            table: self.blocks.table(s.id).unwrap_or_default().to_vec(),
        }
    }

    /// Frees running request `i`'s blocks and puts it at the front of the
    /// queue, to be recomputed.
    fn preempt(&mut self, i: usize) {
        let mut seq = self.running.remove(i);
        self.release(seq.id);
        seq.computed = 0;
        seq.preemptions += 1;
        self.stats.preemptions += 1;
        self.waiting.push_front(seq);
    }

    fn release(&mut self, id: RequestId) {
        // Only ids the manager admitted reach here; an unknown one has
        // nothing to free.
        let _ = self.blocks.free(id);
    }

    /// Takes the step's result: `logits` holds `vocab` values per
    /// [`Work`] of `plan`, in order (or the step's error). Requests whose
    /// pending tokens are all run get their next token; requests cancelled
    /// since the plan was made are skipped. Returns the events.
    pub fn complete(
        &mut self,
        plan: &StepPlan,
        logits: Result<&[f32], String>,
        now: Instant,
    ) -> Vec<(RequestId, Event)> {
        let vocab = self.config.vocab;
        let mut events = Vec::new();
        let logits = match logits {
            Ok(l) if l.len() == vocab * plan.work.len() => l,
            Ok(l) => {
                let msg = format!(
                    "the model returned {} logits for {} requests of {vocab}",
                    l.len(),
                    plan.work.len()
                );
                return self.fail_all(plan, msg, now);
            }
            Err(msg) => return self.fail_all(plan, msg, now),
        };
        for (w, row) in plan.work.iter().zip(logits.chunks_exact(vocab)) {
            let Some(i) = self.running.iter().position(|s| s.id == w.id) else {
                continue; // cancelled during the step
            };
            let s = &mut self.running[i];
            if s.computed != w.start {
                continue; // preempted and re-admitted: not this plan's work
            }
            s.computed += w.tokens.len();
            let computed = s.computed;
            let _ = self.blocks.mark_computed(w.id, computed);
            let s = &mut self.running[i];
            if s.pending() > 0 {
                continue; // a prefill chunk: more of the prompt to come
            }
            let token = s.sampler.sample(row);
            s.first_token.get_or_insert(now);
            let finish = if s.stop_tokens.contains(&token) {
                Some(FinishReason::Stop)
            } else {
                let logprobs = s.logprobs.map(|top| token_logprobs(row, token, top));
                s.tokens.push(token);
                self.stats.generation_tokens += 1;
                events.push((w.id, Event::Token { token, logprobs }));
                (s.generated() >= s.max_new_tokens || s.tokens.len() > self.config.context)
                    .then_some(FinishReason::Length)
            };
            if let Some(reason) = finish {
                let seq = self.running.remove(i);
                self.release(seq.id);
                match reason {
                    FinishReason::Stop => self.stats.finished_stop += 1,
                    _ => self.stats.finished_length += 1,
                }
                events.push((seq.id, seq.finished(reason, now)));
            }
        }
        events
    }

    /// Ends every request of a failed step with the error.
    fn fail_all(&mut self, plan: &StepPlan, msg: String, now: Instant) -> Vec<(RequestId, Event)> {
        let mut events = Vec::new();
        for w in &plan.work {
            if let Some(i) = self.running.iter().position(|s| s.id == w.id) {
                let seq = self.running.remove(i);
                self.release(seq.id);
                self.stats.failed += 1;
                events.push((seq.id, seq.finished(FinishReason::Error(msg.clone()), now)));
            }
        }
        events
    }
}

/// Log-softmax of `row` at `token`, and the `top` most likely tokens.
fn token_logprobs(row: &[f32], token: u32, top: usize) -> TokenLogprobs {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let log_sum = row
        .iter()
        .map(|&l| ((l - max) as f64).exp())
        .sum::<f64>()
        .ln() as f32
        + max;
    let mut best: Vec<(u32, f32)> = Vec::with_capacity(top + 1);
    for (t, &l) in row.iter().enumerate() {
        if best.len() < top || best.last().is_some_and(|&(_, b)| l > b) {
            let at = best.partition_point(|&(_, b)| b >= l);
            best.insert(at, (t as u32, l));
            best.truncate(top);
        }
    }
    TokenLogprobs {
        logprob: row
            .get(token as usize)
            .map_or(f32::NEG_INFINITY, |&l| l - log_sum),
        top: best.into_iter().map(|(t, l)| (t, l - log_sum)).collect(),
    }
}
