//! The scheduler and the engine against a fake model whose KV cache is real
//! bookkeeping: each step writes its tokens into pool slots through the
//! block tables, and the logits of a token are a hash of the whole history
//! read back through the table. A wrong table, a shared block written by
//! another sequence, a lost or recomputed-wrong token all change the
//! logits, so every request's greedy output must equal the one computed
//! alone from its prompt.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use exodus_engine::{
    BlockManager, Engine, Event, FinishReason, GenerationRequest, RequestId, Scheduler,
    SchedulerConfig, Shutdown, StepModel, SubmitError, Work,
};
use exodus_model::SamplerConfig;

const VOCAB: usize = 97;
const BLOCK: usize = 4;

/// Logits of the token after `history`: pseudo-random, a function of the
/// whole history only.
fn logits_after(history: &[u32]) -> Vec<f32> {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &t in history {
        h = (h ^ t as u64).wrapping_mul(0x0100_0000_01b3);
    }
    (0..VOCAB as u64)
        .map(|t| {
            let mut z = h ^ t.wrapping_mul(0x9e37_79b9_7f4a_7c15);
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            (z >> 40) as f32 / (1u64 << 24) as f32
        })
        .collect()
}

/// The greedy continuation of `prompt`, computed directly.
fn reference(prompt: &[u32], max_new: usize, stop: Option<u32>) -> Vec<u32> {
    let mut history = prompt.to_vec();
    let mut out = Vec::new();
    while out.len() < max_new {
        let l = logits_after(&history);
        let t = exodus_model::sample::argmax(&l);
        if Some(t) == stop {
            break;
        }
        out.push(t);
        history.push(t);
    }
    out
}

/// A model with a paged "KV cache" of token ids.
struct FakeModel {
    slots: Mutex<Vec<Option<u32>>>,
    /// Steps seen: (tokens per work item).
    steps: Mutex<Vec<Vec<(u64, usize)>>>,
    fail_when_token: Option<u32>,
    /// Time each step takes (so a client can act between steps).
    step_delay: Duration,
}

impl FakeModel {
    fn new(blocks: usize) -> FakeModel {
        FakeModel {
            slots: Mutex::new(vec![None; blocks * BLOCK]),
            steps: Mutex::new(Vec::new()),
            fail_when_token: None,
            step_delay: Duration::ZERO,
        }
    }
}

impl StepModel for FakeModel {
    fn run_step(&self, work: &[Work]) -> Result<Vec<f32>, String> {
        std::thread::sleep(self.step_delay);
        if let Some(bad) = self.fail_when_token {
            // A prompt that starts with two `bad` tokens fails its steps.
            if work
                .iter()
                .any(|w| w.start == 0 && w.tokens.starts_with(&[bad, bad]))
            {
                return Err("injected failure".into());
            }
        }
        let mut slots = self.slots.lock().unwrap();
        let slot = |table: &[u32], p: usize| table[p / BLOCK] as usize * BLOCK + p % BLOCK;
        let mut out = Vec::new();
        for w in work {
            for (k, &t) in w.tokens.iter().enumerate() {
                slots[slot(&w.table, w.start + k)] = Some(t);
            }
            let end = w.start + w.tokens.len();
            let history: Option<Vec<u32>> = (0..end).map(|p| slots[slot(&w.table, p)]).collect();
            let history = history.ok_or("a position with no KV written")?;
            out.extend(logits_after(&history));
        }
        self.steps
            .lock()
            .unwrap()
            .push(work.iter().map(|w| (w.id, w.tokens.len())).collect());
        Ok(out)
    }
}

fn config() -> SchedulerConfig {
    SchedulerConfig {
        max_running: 4,
        max_waiting: 100,
        max_waiting_tokens: 100_000,
        max_batch_tokens: 16,
        max_prefill_seqs: 2,
        context: 96,
        vocab: VOCAB,
    }
}

fn request(prompt: Vec<u32>, max_new: usize) -> GenerationRequest {
    GenerationRequest {
        prompt,
        sampler: SamplerConfig::default(),
        max_new_tokens: max_new,
        stop_tokens: vec![],
        logprobs: None,
    }
}

/// Runs the scheduler with `model` until idle; returns each request's
/// tokens and finish reason.
fn drive(
    sched: &mut Scheduler,
    model: &FakeModel,
) -> HashMap<RequestId, (Vec<u32>, Option<FinishReason>)> {
    let mut out = HashMap::new();
    drive_steps(sched, model, &mut out, 10_000);
    assert!(sched.is_idle(), "the scheduler did not finish");
    out
}

/// [`drive`] for at most `steps` steps, into `out`.
fn drive_steps(
    sched: &mut Scheduler,
    model: &FakeModel,
    out: &mut HashMap<RequestId, (Vec<u32>, Option<FinishReason>)>,
    steps: usize,
) {
    let mut take = |events: Vec<(RequestId, Event)>| {
        for (id, e) in events {
            let entry = out.entry(id).or_default();
            assert!(entry.1.is_none(), "request {id}: an event after Finished");
            match e {
                Event::Token { token, .. } => entry.0.push(token),
                Event::Finished { reason, usage, .. } => {
                    assert_eq!(usage.completion_tokens, entry.0.len());
                    entry.1 = Some(reason);
                }
            }
        }
    };
    for _ in 0..steps {
        let mut events = Vec::new();
        let plan = sched.schedule(Instant::now(), &mut events);
        take(events);
        if plan.work.is_empty() {
            assert!(sched.is_idle(), "nothing planned but requests remain");
            return;
        }
        assert!(plan.tokens() <= sched.config().max_batch_tokens);
        let logits = model.run_step(&plan.work);
        take(sched.complete(
            &plan,
            logits.as_deref().map_err(Clone::clone),
            Instant::now(),
        ));
    }
}

/// Prompts with shared prefixes (a "system prompt" of 9 tokens) and
/// various lengths.
fn prompts(n: usize) -> Vec<Vec<u32>> {
    let system: Vec<u32> = (0..9).map(|i| 50 + i).collect();
    (0..n)
        .map(|i| {
            let own = (0..(i * 7) % 23 + 1).map(|j| ((i * 13 + j * 5) % VOCAB) as u32);
            if i % 2 == 0 {
                system.iter().copied().chain(own).collect()
            } else {
                own.collect()
            }
        })
        .collect()
}

#[test]
fn every_request_gets_its_own_greedy_text_under_batching_chunking_and_preemption() {
    // 14 blocks of 4 tokens for up to 4 sequences of up to ~50 tokens: the
    // pool runs out and forces preemptions.
    let blocks = 14;
    let model = FakeModel::new(blocks);
    let mut sched =
        Scheduler::new(config(), BlockManager::new(blocks as u32, BLOCK).unwrap()).unwrap();
    let ps = prompts(12);
    for (i, p) in ps.iter().enumerate() {
        sched
            .submit(i as u64, request(p.clone(), 5 + i % 9), Instant::now())
            .unwrap();
    }
    let out = drive(&mut sched, &model);
    for (i, p) in ps.iter().enumerate() {
        let (tokens, reason) = &out[&(i as u64)];
        assert_eq!(tokens, &reference(p, 5 + i % 9, None), "request {i}");
        assert_eq!(reason, &Some(FinishReason::Length));
    }
    let stats = sched.stats();
    assert!(stats.preemptions > 0, "the small pool forced no preemption");
    assert!(
        stats.prefix_cache_hits > 0,
        "the shared prefix was never reused"
    );
    assert_eq!(sched.used_blocks(), 0, "blocks leaked");
    assert_eq!(stats.finished_length, 12);
    assert_eq!(
        stats.generation_tokens,
        (0..12).map(|i| 5 + i % 9).sum::<usize>() as u64
    );
}

#[test]
fn a_long_prefill_is_chunked_and_never_stalls_the_decodes() {
    let model = FakeModel::new(64);
    let mut sched = Scheduler::new(config(), BlockManager::new(64, BLOCK).unwrap()).unwrap();
    sched
        .submit(1, request(vec![3, 4, 5], 40), Instant::now())
        .unwrap();
    // Let request 1 start decoding.
    let mut out = HashMap::new();
    drive_steps(&mut sched, &model, &mut out, 2);
    let long: Vec<u32> = (0..90).map(|i| (i * 7 % VOCAB) as u32).collect();
    sched
        .submit(2, request(long.clone(), 3), Instant::now())
        .unwrap();
    drive_steps(&mut sched, &model, &mut out, 10_000);
    assert!(sched.is_idle());
    assert_eq!(out[&1].0, reference(&[3, 4, 5], 40, None));
    let steps = model.steps.lock().unwrap();
    // Every step while request 2 prefills also decodes request 1.
    let prefill_steps: Vec<_> = steps
        .iter()
        .filter(|s| s.iter().any(|&(id, n)| id == 2 && n > 1))
        .collect();
    assert!(
        prefill_steps.len() >= 90 / 16,
        "the 90-token prompt was not chunked"
    );
    for s in &prefill_steps {
        assert!(
            s.contains(&(1, 1)),
            "a prefill step without request 1's decode: {s:?}"
        );
    }
    assert_eq!(out[&2].0, reference(&long, 3, None));
}

#[test]
fn stop_tokens_end_a_request_without_sending_them() {
    let model = FakeModel::new(32);
    let mut sched = Scheduler::new(config(), BlockManager::new(32, BLOCK).unwrap()).unwrap();
    let prompt = vec![1, 2, 3];
    let free_run = reference(&prompt, 10, None);
    let stop = free_run[4];
    let mut req = request(prompt.clone(), 10);
    req.stop_tokens = vec![stop];
    sched.submit(7, req, Instant::now()).unwrap();
    let out = drive(&mut sched, &model);
    let first_stop = free_run.iter().position(|&t| t == stop).unwrap();
    assert_eq!(out[&7].0, free_run[..first_stop]);
    assert_eq!(out[&7].1, Some(FinishReason::Stop));
}

#[test]
fn admission_refuses_what_cannot_run_or_would_pile_up() {
    let mut cfg = config();
    cfg.max_waiting = 2;
    cfg.max_waiting_tokens = 20;
    let mut sched = Scheduler::new(cfg, BlockManager::new(10, BLOCK).unwrap()).unwrap();
    let now = Instant::now();
    assert!(matches!(
        sched.submit(1, request(vec![], 1), now),
        Err(SubmitError::Invalid(_))
    ));
    assert!(matches!(
        sched.submit(1, request(vec![VOCAB as u32], 1), now),
        Err(SubmitError::Invalid(_))
    ));
    assert_eq!(
        sched.submit(1, request(vec![1; 97], 1), now),
        Err(SubmitError::PromptTooLong {
            prompt: 97,
            context: 96
        })
    );
    assert_eq!(
        sched.submit(1, request(vec![1; 41], 1), now),
        Err(SubmitError::TooLargeForPool {
            needed: 11,
            pool: 10
        })
    );
    let mut bad = request(vec![1], 1);
    bad.sampler.top_p = 0.0;
    assert!(matches!(
        sched.submit(1, bad, now),
        Err(SubmitError::Invalid(_))
    ));
    // By queued tokens: 15 + 6 > 20.
    sched.submit(1, request(vec![1; 15], 1), now).unwrap();
    assert!(matches!(
        sched.submit(2, request(vec![1; 6], 1), now),
        Err(SubmitError::QueueFull {
            waiting: 1,
            queued_tokens: 15,
            ..
        })
    ));
    // By requests.
    sched.submit(2, request(vec![1; 5], 1), now).unwrap();
    assert!(matches!(
        sched.submit(3, request(vec![1], 1), now),
        Err(SubmitError::QueueFull { waiting: 2, .. })
    ));
    assert_eq!(sched.stats().waiting, 2);
}

#[test]
fn cancelling_frees_the_blocks_at_once() {
    let model = FakeModel::new(32);
    let mut sched = Scheduler::new(config(), BlockManager::new(32, BLOCK).unwrap()).unwrap();
    sched
        .submit(1, request((0..30).collect(), 50), Instant::now())
        .unwrap();
    sched
        .submit(2, request(vec![5; 3], 50), Instant::now())
        .unwrap();
    let mut events = Vec::new();
    let plan = sched.schedule(Instant::now(), &mut events);
    assert!(sched.used_blocks() > 0);
    // Cancelled while its step runs: the step's result for it is dropped.
    let e = sched.cancel(1, Instant::now()).unwrap();
    assert!(matches!(
        e,
        Event::Finished {
            reason: FinishReason::Cancelled,
            ..
        }
    ));
    let logits = model.run_step(&plan.work).unwrap();
    let events = sched.complete(&plan, Ok(&logits), Instant::now());
    assert!(events.iter().all(|(id, _)| *id != 1));
    assert!(sched.cancel(2, Instant::now()).is_some());
    assert_eq!(sched.used_blocks(), 0);
    assert!(sched.cancel(2, Instant::now()).is_none());
    assert_eq!(sched.stats().cancelled, 2);
}

fn collect(stream: &mut exodus_engine::RequestStream) -> (Vec<u32>, FinishReason) {
    let mut tokens = Vec::new();
    while let Some(e) = stream.blocking_next() {
        match e {
            Event::Token { token, .. } => tokens.push(token),
            Event::Finished { reason, .. } => return (tokens, reason),
        }
    }
    panic!("the stream ended without Finished");
}

#[test]
fn the_engine_serves_concurrent_clients_and_survives_dropped_ones_and_failed_steps() {
    let blocks = 40;
    let mut model = FakeModel::new(blocks);
    model.fail_when_token = Some(96);
    // 80 tokens take 80 ms or more: the client below leaves long before.
    model.step_delay = Duration::from_millis(1);
    let sched = Scheduler::new(config(), BlockManager::new(blocks as u32, BLOCK).unwrap()).unwrap();
    let engine = Arc::new(Engine::start(model, sched).unwrap());
    let ps = prompts(8);
    let handles: Vec<_> = ps
        .iter()
        .cloned()
        .map(|p| {
            let engine = Arc::clone(&engine);
            std::thread::spawn(move || {
                let mut s = engine.submit(request(p.clone(), 12)).unwrap();
                (p, collect(&mut s))
            })
        })
        .collect();
    // A client that goes away after two tokens.
    let mut gone = engine.submit(request(vec![9, 9, 9], 80)).unwrap();
    for _ in 0..2 {
        assert!(matches!(gone.blocking_next(), Some(Event::Token { .. })));
    }
    drop(gone);
    // A request whose step fails.
    let mut failing = engine.submit(request(vec![96, 96, 1], 5)).unwrap();
    assert!(matches!(collect(&mut failing).1, FinishReason::Error(_)));
    for h in handles {
        let (p, (tokens, reason)) = h.join().unwrap();
        assert_eq!(tokens, reference(&p, 12, None));
        assert_eq!(reason, FinishReason::Length);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while engine.stats().running + engine.stats().waiting > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    let stats = engine.stats();
    assert_eq!(stats.cancelled, 1);
    assert_eq!(stats.failed, 1);
    assert_eq!(stats.kv_usage, 0.0);
    engine.shutdown(Shutdown::Drain);
    assert_eq!(
        engine.submit(request(vec![1], 1)).unwrap_err(),
        SubmitError::ShuttingDown
    );
}
