//! Choosing the next token from logits: penalties on tokens already seen
//! (repetition, frequency, presence), then greedy (temperature 0) or
//! sampling from the softmax at a temperature restricted by top-k, top-p
//! and min-p, with a seeded generator so the same seed gives the same text.
//!
//! The order is llama.cpp's default chain: penalties, top-k, top-p, min-p,
//! temperature, then a draw.

/// The draw's generator: SplitMix64 (a 64-bit counter through a mixing
/// function), enough for sampling and reproducible from its seed.
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// Sampling settings (the OpenAI / llama.cpp names).
#[derive(Debug, Clone, PartialEq)]
pub struct SamplerConfig {
    /// 0 picks the most likely token (greedy).
    pub temperature: f32,
    /// Keep the `top_k` most likely tokens (0: all).
    pub top_k: usize,
    /// Keep the most likely tokens whose probabilities sum to `top_p`
    /// (1: all).
    pub top_p: f32,
    /// Drop tokens less likely than `min_p` times the most likely one (0:
    /// none).
    pub min_p: f32,
    /// Divide positive logits (multiply negative ones) of tokens seen in
    /// the last `penalty_window` tokens by this (1: off).
    pub repetition_penalty: f32,
    /// Subtract this times a seen token's count (0: off).
    pub frequency_penalty: f32,
    /// Subtract this once from every seen token (0: off).
    pub presence_penalty: f32,
    /// How many recent tokens the penalties look at.
    pub penalty_window: usize,
    /// Seed of the draw.
    pub seed: u64,
}

impl Default for SamplerConfig {
    fn default() -> Self {
        SamplerConfig {
            temperature: 0.0,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            repetition_penalty: 1.0,
            frequency_penalty: 0.0,
            presence_penalty: 0.0,
            penalty_window: 64,
            seed: 0,
        }
    }
}

impl SamplerConfig {
    /// Checks the settings' ranges, naming the first bad one.
    pub fn check(&self) -> Result<(), String> {
        let finite_in = |v: f32, lo: f32, hi: f32| v.is_finite() && v >= lo && v <= hi;
        if !finite_in(self.temperature, 0.0, 100.0) {
            return Err(format!("temperature {} (0 to 100)", self.temperature));
        }
        if !finite_in(self.top_p, 0.0, 1.0) || self.top_p == 0.0 {
            return Err(format!("top_p {} (above 0, at most 1)", self.top_p));
        }
        if !finite_in(self.min_p, 0.0, 1.0) {
            return Err(format!("min_p {} (0 to 1)", self.min_p));
        }
        if !finite_in(self.repetition_penalty, 0.0, 100.0) || self.repetition_penalty == 0.0 {
            return Err(format!("repetition_penalty {}", self.repetition_penalty));
        }
        for (name, v) in [
            ("frequency_penalty", self.frequency_penalty),
            ("presence_penalty", self.presence_penalty),
        ] {
            if !finite_in(v, -2.0, 2.0) {
                return Err(format!("{name} {v} (-2 to 2)"));
            }
        }
        Ok(())
    }
}

/// A sampler: the settings, the generator's state and the tokens seen.
#[derive(Debug, Clone)]
pub struct Sampler {
    config: SamplerConfig,
    rng: Rng,
    seen: Vec<u32>,
}

impl Sampler {
    /// A sampler with `config` (checked) and no history.
    pub fn new(config: SamplerConfig) -> Result<Sampler, String> {
        config.check()?;
        Ok(Sampler {
            rng: Rng(config.seed),
            config,
            seen: Vec::new(),
        })
    }

    /// Records tokens the penalties should see (the prompt, say).
    pub fn observe(&mut self, tokens: &[u32]) {
        self.seen.extend_from_slice(tokens);
    }

    /// Picks the next token from `logits` (one per vocabulary entry) and
    /// records it.
    pub fn sample(&mut self, logits: &[f32]) -> u32 {
        let mut logits = logits.to_vec();
        self.penalize(&mut logits);
        let token = if self.config.temperature == 0.0 {
            argmax(&logits)
        } else {
            self.draw(&logits)
        };
        self.seen.push(token);
        token
    }

    fn penalize(&self, logits: &mut [f32]) {
        let c = &self.config;
        if c.repetition_penalty == 1.0 && c.frequency_penalty == 0.0 && c.presence_penalty == 0.0 {
            return;
        }
        let window = &self.seen[self.seen.len().saturating_sub(c.penalty_window)..];
        let mut counts: Vec<(u32, usize)> = Vec::new();
        for &t in window {
            match counts.iter_mut().find(|(u, _)| *u == t) {
                Some((_, n)) => *n += 1,
                None => counts.push((t, 1)),
            }
        }
        for (t, n) in counts {
            let Some(l) = logits.get_mut(t as usize) else {
                continue;
            };
            if *l > 0.0 {
                *l /= c.repetition_penalty;
            } else {
                *l *= c.repetition_penalty;
            }
            *l -= c.frequency_penalty * n as f32 + c.presence_penalty;
        }
    }

    /// Top-k, top-p, min-p, temperature, then a draw from what is left.
    fn draw(&mut self, logits: &[f32]) -> u32 {
        let c = &self.config;
        let mut order: Vec<usize> = (0..logits.len())
            .filter(|&i| logits[i].is_finite())
            .collect();
        if order.is_empty() {
            return 0;
        }
        order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]).then(a.cmp(&b)));
        if c.top_k > 0 {
            order.truncate(c.top_k);
        }
        // Probabilities at temperature 1 for the cuts, as llama.cpp does.
        let probs = |order: &[usize], temp: f32| -> Vec<f64> {
            let top = logits[order[0]] as f64;
            let e: Vec<f64> = order
                .iter()
                .map(|&i| ((logits[i] as f64 - top) / temp as f64).exp())
                .collect();
            let sum: f64 = e.iter().sum();
            e.into_iter().map(|v| v / sum).collect()
        };
        let p = probs(&order, 1.0);
        if c.top_p < 1.0 {
            let mut acc = 0.0;
            let keep = p
                .iter()
                .position(|&q| {
                    acc += q;
                    acc >= c.top_p as f64
                })
                .map_or(order.len(), |i| i + 1);
            order.truncate(keep);
        }
        if c.min_p > 0.0 {
            let floor = p[0] * c.min_p as f64;
            let keep = p
                .iter()
                .take(order.len())
                .take_while(|&&q| q >= floor)
                .count();
            order.truncate(keep.max(1));
        }
        let p = probs(&order, c.temperature);
        let u = (self.rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        let mut acc = 0.0;
        for (q, &i) in p.iter().zip(&order) {
            acc += q;
            if u < acc {
                return i as u32;
            }
        }
        order[order.len() - 1] as u32
    }
}

/// Index of the largest logit (the first on a tie).
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &l) in logits.iter().enumerate() {
        if l > logits[best] {
            best = i;
        }
    }
    best as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sampler(f: impl FnOnce(&mut SamplerConfig)) -> Sampler {
        let mut c = SamplerConfig::default();
        f(&mut c);
        Sampler::new(c).unwrap()
    }

    #[test]
    fn greedy_takes_the_largest_and_penalties_move_it() {
        let logits = [1.0, 3.0, 2.0];
        assert_eq!(sampler(|_| {}).sample(&logits), 1);
        let mut s = sampler(|c| c.repetition_penalty = 2.0);
        s.observe(&[1]);
        // 3 / 2 = 1.5 < 2: token 2 wins.
        assert_eq!(s.sample(&logits), 2);
        let mut s = sampler(|c| c.presence_penalty = 1.5);
        s.observe(&[1]);
        assert_eq!(s.sample(&logits), 2);
        let mut s = sampler(|c| c.frequency_penalty = 0.6);
        s.observe(&[1, 1]);
        assert_eq!(s.sample(&logits), 2);
    }

    #[test]
    fn the_same_seed_gives_the_same_draws_and_cuts_hold() {
        let logits: Vec<f32> = (0..100).map(|i| ((i * 37) % 101) as f32 * 0.05).collect();
        let draw = |seed| {
            let mut s = sampler(|c| {
                c.temperature = 0.8;
                c.seed = seed;
            });
            (0..50).map(|_| s.sample(&logits)).collect::<Vec<_>>()
        };
        assert_eq!(draw(7), draw(7));
        assert_ne!(draw(7), draw(8));
        // top_k = 1 is greedy whatever the temperature.
        let mut s = sampler(|c| {
            c.temperature = 5.0;
            c.top_k = 1;
        });
        assert!((0..20).all(|_| s.sample(&logits) == argmax(&logits)));
        // min_p = 1 keeps only the best.
        let mut s = sampler(|c| {
            c.temperature = 5.0;
            c.top_k = 0;
            c.min_p = 1.0;
        });
        assert!((0..20).all(|_| s.sample(&logits) == argmax(&logits)));
        // A draw follows the distribution: two tokens at 0 and ln 3 come
        // out about 1:3.
        let two = [0.0, 3f32.ln()];
        let mut s = sampler(|c| {
            c.temperature = 1.0;
            c.top_k = 0;
            c.top_p = 1.0;
            c.min_p = 0.0;
        });
        let ones = (0..4000).filter(|_| s.sample(&two) == 1).count();
        assert!((2800..3200).contains(&ones), "{ones}");
    }

    #[test]
    fn bad_settings_are_named() {
        for (f, want) in [
            (
                Box::new(|c: &mut SamplerConfig| c.temperature = -1.0)
                    as Box<dyn Fn(&mut SamplerConfig)>,
                "temperature",
            ),
            (Box::new(|c: &mut SamplerConfig| c.top_p = 0.0), "top_p"),
            (
                Box::new(|c: &mut SamplerConfig| c.min_p = f32::NAN),
                "min_p",
            ),
            (
                Box::new(|c: &mut SamplerConfig| c.presence_penalty = 3.0),
                "presence_penalty",
            ),
        ] {
            let mut c = SamplerConfig::default();
            f(&mut c);
            assert!(Sampler::new(c).unwrap_err().contains(want));
        }
    }
}
