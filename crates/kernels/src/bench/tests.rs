//! Every case builds and runs (a few small ones end to end, and the whole
//! list's names, shapes and costs checked without running).

use std::collections::HashSet;
use std::sync::Arc;

use exodus_numerics::cpu;

use super::{cases, measure, Options};
use crate::pool::ThreadPool;

fn opts(filter: &str) -> Options {
    Options {
        quick: true,
        filter: filter.to_string(),
        pool: Arc::new(ThreadPool::new(2)),
        level: cpu::active(),
    }
}

#[test]
fn every_case_is_named_once_with_positive_costs() {
    let all = cases(&opts(""));
    let names: HashSet<&str> = all.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names.len(), all.len(), "duplicate case names");
    for c in &all {
        assert!(c.flops > 0.0 && c.bytes > 0.0, "{}", c.name);
        assert!(c.model == "smollm2-135m" || c.model == "7b");
    }
    for needle in [
        "matmul.q4_1",
        "matmul.q4_k",
        "matmul.q8_0",
        "matmul.mxfp4",
        "matmul.fp8",
        "lm_head",
        "rope",
        "swiglu",
        "embedding",
        "argmax",
        "top_k",
        "attention.bf16",
        "attention.fp8",
    ] {
        assert!(
            all.iter().any(|c| c.name.contains(needle)),
            "no {needle} case"
        );
    }
}

#[test]
fn small_cases_run() {
    let mut ran = 0;
    for filter in [
        "smollm2.matmul.q4_1.k_v",
        "smollm2.matmul.f32.q_o.m64",
        "smollm2.rms_norm",
        "smollm2.rope",
        "smollm2.swiglu",
        "smollm2.softmax.scores512",
        "smollm2.embedding",
        "smollm2.argmax",
        "smollm2.top_k",
        "smollm2.attention",
    ] {
        for case in cases(&opts(filter)) {
            let mut run = (case.setup)().unwrap_or_else(|e| panic!("{}: {e}", case.name));
            let m = measure(&mut run, 1).unwrap_or_else(|e| panic!("{}: {e}", case.name));
            assert!(m.samples >= 1 && m.min <= m.median);
            ran += 1;
        }
    }
    assert!(ran >= 15, "only {ran} cases ran");
}

#[test]
fn filter_selects_by_substring() {
    // bf16, fp8-e4m3 and centered fp8-e4m3, at two contexts.
    let some = cases(&opts("7b.attention"));
    assert_eq!(some.len(), 6);
    assert!(cases(&opts("no such case")).is_empty());
}
