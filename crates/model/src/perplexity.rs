//! Perplexity the way llama.cpp's `perplexity` tool measures it, so the
//! numbers compare: the text is cut into non-overlapping windows of `ctx`
//! tokens, each window is run from position 0 (its first token replaced by
//! BOS when the model adds one), and only the second half of each window is
//! scored: the logits at position `j` (for `ctx / 2 <= j < ctx - 1`) against
//! token `j + 1`. The result is `exp` of the mean negative log-likelihood.

use crate::error::ModelError;
use crate::model::Model;

/// What a perplexity run measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Perplexity {
    /// `exp(mean negative log-likelihood)`.
    pub ppl: f64,
    /// Mean negative log-likelihood per scored token (nats).
    pub nll: f64,
    /// Tokens scored.
    pub scored: usize,
    /// Windows run.
    pub chunks: usize,
}

/// `-log softmax(logits)[target]`, in f64.
pub fn token_nll(logits: &[f32], target: u32) -> f64 {
    let max = logits.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v)) as f64;
    let sum: f64 = logits.iter().map(|&v| (v as f64 - max).exp()).sum();
    let l = logits
        .get(target as usize)
        .copied()
        .unwrap_or(f32::NEG_INFINITY) as f64;
    (max + sum.ln()) - l
}

/// Runs the windows of `tokens` through `model` and scores them; `bos`
/// replaces each window's first token when the model adds one;
/// `progress(chunk, chunks, ppl so far)` is called after each window.
pub fn perplexity(
    model: &Model,
    tokens: &[u32],
    ctx: usize,
    bos: Option<u32>,
    mut progress: impl FnMut(usize, usize, f64),
) -> Result<Perplexity, ModelError> {
    if ctx < 4 {
        return Err(ModelError::Request(format!(
            "context {ctx} is too small (at least 4)"
        )));
    }
    let chunks = tokens.len() / ctx;
    if chunks == 0 {
        return Err(ModelError::Request(format!(
            "{} tokens are fewer than one window of {ctx}",
            tokens.len()
        )));
    }
    let vocab = model.config().vocab;
    let first = ctx / 2;
    let (mut nll, mut scored) = (0.0f64, 0usize);
    for c in 0..chunks {
        let mut window = tokens[c * ctx..(c + 1) * ctx].to_vec();
        if let Some(b) = bos {
            window[0] = b;
        }
        let logits = model.forward(&window, 0, true)?;
        for j in first..ctx - 1 {
            let row = &logits[j * vocab..(j + 1) * vocab];
            nll += token_nll(row, tokens[c * ctx + j + 1]);
            scored += 1;
        }
        progress(c + 1, chunks, (nll / scored as f64).exp());
    }
    let mean = nll / scored as f64;
    Ok(Perplexity {
        ppl: mean.exp(),
        nll: mean,
        scored,
        chunks,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_nll_is_the_log_softmax() {
        let logits = [1.0f32, 2.0, 3.0];
        let z: f64 = logits.iter().map(|&v| (v as f64).exp()).sum();
        for t in 0..3 {
            let want = -((logits[t] as f64).exp() / z).ln();
            assert!((token_nll(&logits, t as u32) - want).abs() < 1e-12);
        }
        // Uniform over 4: ln 4.
        assert!((token_nll(&[0.5; 4], 2) - 4f64.ln()).abs() < 1e-12);
    }
}
