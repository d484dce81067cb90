//! Every family the graph builder knows (llama, Qwen2 with q/k/v biases,
//! Qwen3 with per-head q/k norms; tied and separate output projections)
//! on tiny random f32 models written as GGUF files, against a float64
//! reference of the same model written here from the architectures'
//! definitions, in eager and graph mode, prefill then decode steps; and
//! the same models split over 2 ranks (tensor parallelism: KV heads with
//! their query heads, MLP units, the rows of the output projections, and
//! gathers between them), which must meet the same reference.

mod common;

use exodus_gguf::writer::GgufWriter;
use exodus_gguf::{GgmlType, Gguf};
use exodus_model::{LoadOptions, Mode, Model, Shard};

const HIDDEN: usize = 32;
const HEADS: usize = 4;
const KV_HEADS: usize = 2;
const HEAD_DIM: usize = 8;
const FFN: usize = 48;
const VOCAB: usize = 40;
const LAYERS: usize = 2;
const EPS: f64 = 1e-5;
const THETA: f64 = 10_000.0;

struct Family {
    arch: &'static str,
    bias: bool,
    qk_norm: bool,
    tied: bool,
}

/// Deterministic pseudo-random values in [-scale, scale).
fn values(n: usize, seed: u64, scale: f32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
        })
        .collect()
}

/// The tiny model's tensors: name, rows, row length, values.
fn tensors(f: &Family) -> Vec<(String, usize, usize, Vec<f32>)> {
    let mut t = Vec::new();
    let mut seed = 1;
    let mut add = |name: String, rows: usize, cols: usize, scale: f32, base: f32| {
        seed += 1;
        let v: Vec<f32> = values(rows * cols, seed, scale)
            .into_iter()
            .map(|x| x + base)
            .collect();
        t.push((name, rows, cols, v));
    };
    add("token_embd.weight".into(), VOCAB, HIDDEN, 1.0, 0.0);
    for l in 0..LAYERS {
        let p = |s: &str| format!("blk.{l}.{s}");
        add(p("attn_norm.weight"), 1, HIDDEN, 0.2, 1.0);
        add(p("attn_q.weight"), HEADS * HEAD_DIM, HIDDEN, 0.3, 0.0);
        add(p("attn_k.weight"), KV_HEADS * HEAD_DIM, HIDDEN, 0.3, 0.0);
        add(p("attn_v.weight"), KV_HEADS * HEAD_DIM, HIDDEN, 0.3, 0.0);
        if f.bias {
            add(p("attn_q.bias"), 1, HEADS * HEAD_DIM, 0.5, 0.0);
            add(p("attn_k.bias"), 1, KV_HEADS * HEAD_DIM, 0.5, 0.0);
            add(p("attn_v.bias"), 1, KV_HEADS * HEAD_DIM, 0.5, 0.0);
        }
        if f.qk_norm {
            add(p("attn_q_norm.weight"), 1, HEAD_DIM, 0.2, 1.0);
            add(p("attn_k_norm.weight"), 1, HEAD_DIM, 0.2, 1.0);
        }
        add(p("attn_output.weight"), HIDDEN, HEADS * HEAD_DIM, 0.3, 0.0);
        add(p("ffn_norm.weight"), 1, HIDDEN, 0.2, 1.0);
        add(p("ffn_gate.weight"), FFN, HIDDEN, 0.3, 0.0);
        add(p("ffn_up.weight"), FFN, HIDDEN, 0.3, 0.0);
        add(p("ffn_down.weight"), HIDDEN, FFN, 0.3, 0.0);
    }
    add("output_norm.weight".into(), 1, HIDDEN, 0.2, 1.0);
    if !f.tied {
        add("output.weight".into(), VOCAB, HIDDEN, 0.3, 0.0);
    }
    t
}

fn gguf(f: &Family) -> Vec<u8> {
    let mut w = GgufWriter::new();
    let a = f.arch;
    w.set("general.architecture", a).unwrap();
    w.set(format!("{a}.block_count"), LAYERS as u32).unwrap();
    w.set(format!("{a}.embedding_length"), HIDDEN as u32)
        .unwrap();
    w.set(format!("{a}.feed_forward_length"), FFN as u32)
        .unwrap();
    w.set(format!("{a}.attention.head_count"), HEADS as u32)
        .unwrap();
    w.set(format!("{a}.attention.head_count_kv"), KV_HEADS as u32)
        .unwrap();
    w.set(format!("{a}.context_length"), 64u32).unwrap();
    w.set(format!("{a}.attention.layer_norm_rms_epsilon"), EPS as f32)
        .unwrap();
    w.set(format!("{a}.rope.freq_base"), THETA as f32).unwrap();
    for (name, rows, cols, v) in tensors(f) {
        let dims: Vec<u64> = if rows == 1 {
            vec![cols as u64]
        } else {
            vec![cols as u64, rows as u64]
        };
        let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        w.add_tensor(name, GgmlType::F32, &dims, bytes).unwrap();
    }
    w.to_bytes()
}

/// The model in float64, straight from the definitions: logits of every
/// position of `ids`.
fn reference(f: &Family, ids: &[u32]) -> Vec<Vec<f64>> {
    let t: std::collections::HashMap<String, Vec<f64>> = tensors(f)
        .into_iter()
        .map(|(n, _, _, v)| (n, v.into_iter().map(f64::from).collect()))
        .collect();
    let w = |n: &str| &t[n];
    let matvec = |m: &[f64], x: &[f64], rows: usize| -> Vec<f64> {
        let cols = x.len();
        (0..rows)
            .map(|r| (0..cols).map(|c| m[r * cols + c] * x[c]).sum())
            .collect()
    };
    let rms = |x: &[f64], g: &[f64]| -> Vec<f64> {
        let ms = x.iter().map(|v| v * v).sum::<f64>() / x.len() as f64;
        let inv = 1.0 / (ms + EPS).sqrt();
        x.iter().zip(g).map(|(v, g)| v * inv * g).collect()
    };
    let neox = f.arch != "llama";
    let rope = |x: &mut [f64], pos: usize| {
        for h in x.chunks_mut(HEAD_DIM) {
            for i in 0..HEAD_DIM / 2 {
                let ang = pos as f64 * THETA.powf(-2.0 * i as f64 / HEAD_DIM as f64);
                let (a, b) = if neox {
                    (i, i + HEAD_DIM / 2)
                } else {
                    (2 * i, 2 * i + 1)
                };
                let (xa, xb) = (h[a], h[b]);
                h[a] = xa * ang.cos() - xb * ang.sin();
                h[b] = xa * ang.sin() + xb * ang.cos();
            }
        }
    };
    let n = ids.len();
    let mut x: Vec<Vec<f64>> = ids
        .iter()
        .map(|&i| w("token_embd.weight")[i as usize * HIDDEN..(i as usize + 1) * HIDDEN].to_vec())
        .collect();
    for l in 0..LAYERS {
        let p = |s: &str| format!("blk.{l}.{s}");
        let (mut qs, mut ks, mut vs) = (Vec::new(), Vec::new(), Vec::new());
        for (pos, xi) in x.iter().enumerate() {
            let h = rms(xi, w(&p("attn_norm.weight")));
            let proj = |name: &str, rows: usize| {
                let mut y = matvec(w(&p(&format!("{name}.weight"))), &h, rows);
                if f.bias {
                    y.iter_mut()
                        .zip(w(&p(&format!("{name}.bias"))))
                        .for_each(|(y, b)| *y += b);
                }
                y
            };
            let (mut q, mut k, v) = (
                proj("attn_q", HEADS * HEAD_DIM),
                proj("attn_k", KV_HEADS * HEAD_DIM),
                proj("attn_v", KV_HEADS * HEAD_DIM),
            );
            if f.qk_norm {
                for (y, name) in [
                    (&mut q, "attn_q_norm.weight"),
                    (&mut k, "attn_k_norm.weight"),
                ] {
                    *y = y
                        .chunks(HEAD_DIM)
                        .flat_map(|h| rms(h, w(&p(name))))
                        .collect();
                }
            }
            rope(&mut q, pos);
            rope(&mut k, pos);
            qs.push(q);
            ks.push(k);
            vs.push(v);
        }
        for i in 0..n {
            let mut att = vec![0.0; HEADS * HEAD_DIM];
            for h in 0..HEADS {
                let kh = h / (HEADS / KV_HEADS);
                let q = &qs[i][h * HEAD_DIM..(h + 1) * HEAD_DIM];
                let s: Vec<f64> = (0..=i)
                    .map(|j| {
                        let k = &ks[j][kh * HEAD_DIM..(kh + 1) * HEAD_DIM];
                        q.iter().zip(k).map(|(a, b)| a * b).sum::<f64>() / (HEAD_DIM as f64).sqrt()
                    })
                    .collect();
                let m = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let e: Vec<f64> = s.iter().map(|v| (v - m).exp()).collect();
                let z: f64 = e.iter().sum();
                for (j, ej) in e.iter().enumerate() {
                    let v = &vs[j][kh * HEAD_DIM..(kh + 1) * HEAD_DIM];
                    for d in 0..HEAD_DIM {
                        att[h * HEAD_DIM + d] += ej / z * v[d];
                    }
                }
            }
            let o = matvec(w(&p("attn_output.weight")), &att, HIDDEN);
            x[i].iter_mut().zip(&o).for_each(|(x, o)| *x += o);
            let h = rms(&x[i], w(&p("ffn_norm.weight")));
            let g = matvec(w(&p("ffn_gate.weight")), &h, FFN);
            let u = matvec(w(&p("ffn_up.weight")), &h, FFN);
            let a: Vec<f64> = g
                .iter()
                .zip(&u)
                .map(|(g, u)| g / (1.0 + (-g).exp()) * u)
                .collect();
            let d = matvec(w(&p("ffn_down.weight")), &a, HIDDEN);
            x[i].iter_mut().zip(&d).for_each(|(x, d)| *x += d);
        }
    }
    let out = if f.tied {
        w("token_embd.weight")
    } else {
        w("output.weight")
    };
    x.iter()
        .map(|xi| matvec(out, &rms(xi, w("output_norm.weight")), VOCAB))
        .collect()
}

fn families() -> [Family; 4] {
    [
        Family {
            arch: "llama",
            bias: false,
            qk_norm: false,
            tied: true,
        },
        Family {
            arch: "llama",
            bias: false,
            qk_norm: false,
            tied: false,
        },
        Family {
            arch: "qwen2",
            bias: true,
            qk_norm: false,
            tied: false,
        },
        Family {
            arch: "qwen3",
            bias: false,
            qk_norm: true,
            tied: true,
        },
    ]
}

/// The test's steps on `model`: a prefill of four tokens (every row),
/// then a decode step per remaining token; the logits row by row.
fn run_steps(model: &Model, ids: &[u32]) -> Vec<f32> {
    let mut rows = model.forward(&ids[..4], 0, true).unwrap();
    for (p, &t) in ids.iter().enumerate().skip(4) {
        rows.extend(model.forward(&[t], p, false).unwrap());
    }
    rows
}

/// Every row of `rows` within 2e-3 of the largest value of its float64
/// row in `want` (f32 kernels, the KV cache in f16: about 5e-4 seen).
fn assert_near(what: &str, rows: &[f32], want: &[Vec<f64>]) {
    for (i, row) in rows.chunks(VOCAB).enumerate() {
        let worst = row
            .iter()
            .zip(&want[i])
            .map(|(a, b)| (*a as f64 - b).abs())
            .fold(0.0, f64::max);
        let scale = want[i].iter().map(|v| v.abs()).fold(0.0, f64::max);
        println!("{what} position {i}: worst {worst:.2e} of scale {scale:.2}");
        assert!(
            worst <= 2e-3 * scale.max(1.0),
            "{what} position {i}: {worst:.2e} (scale {scale:.2})"
        );
    }
}

#[test]
fn every_family_matches_its_float64_definition() {
    let families = families();
    let ids = [3u32, 17, 5, 39, 0, 22, 8];
    for f in &families {
        let bytes = gguf(f);
        let file = Gguf::parse(&bytes[..]).unwrap();
        let want = reference(f, &ids);
        let mut results = Vec::new();
        for mode in [Mode::Eager, Mode::Graph] {
            let model = Model::load(
                &file,
                &LoadOptions {
                    mode,
                    max_tokens: 32,
                    ..Default::default()
                },
            )
            .unwrap();
            let cfg = model.config();
            assert_eq!(
                (cfg.qkv_bias, cfg.qk_norm, cfg.tied_embeddings),
                (f.bias, f.qk_norm, f.tied)
            );
            let rows = run_steps(&model, &ids);
            assert_near(&format!("{} {mode:?}", f.arch), &rows, &want);
            results.push(rows);
        }
        assert_eq!(
            results[0], results[1],
            "{}: eager and graph mode differ",
            f.arch
        );
    }
}

#[test]
fn every_family_split_over_two_ranks_matches_its_float64_definition() {
    let ids = [3u32, 17, 5, 39, 0, 22, 8];
    for f in &families() {
        let bytes = gguf(f);
        let file = Gguf::parse(&bytes[..]).unwrap();
        let want = reference(f, &ids);
        for mode in [Mode::Eager, Mode::Graph] {
            let ranks = 2;
            let shards: Vec<Model> = common::threads::job(ranks)
                .into_iter()
                .enumerate()
                .map(|(rank, handle)| {
                    let mut m = Model::load(
                        &file,
                        &LoadOptions {
                            mode,
                            max_tokens: 32,
                            shard: Shard { rank, ranks },
                            ..Default::default()
                        },
                    )
                    .unwrap();
                    m.set_collective(handle);
                    m
                })
                .collect();
            // Every rank runs the same steps in its own thread.
            let results: Vec<Vec<f32>> = std::thread::scope(|s| {
                let runs: Vec<_> = shards
                    .iter()
                    .map(|m| s.spawn(move || run_steps(m, &ids)))
                    .collect();
                runs.into_iter().map(|r| r.join().unwrap()).collect()
            });
            assert_eq!(
                results[0], results[1],
                "{} {mode:?}: the ranks disagree",
                f.arch
            );
            let what = format!("{} {mode:?} split over {ranks} ranks", f.arch);
            assert_near(&what, &results[0], &want);
        }
    }
}
