//! Per-layer KV cache formats: the capacity arithmetic, a model that runs
//! with mixed formats, and the error for a layer the model does not have.

mod common;

use exodus_gguf::GgufFile;
use exodus_graph::KvFormat;
use exodus_model::centering::{calibrate, offsets_key, read_offsets, write_offsets, KvOffsets};
use exodus_model::{LoadOptions, Model, ModelConfig, Tokenizer};

#[test]
fn layers_can_keep_their_own_kv_format() {
    let file = GgufFile::open(common::default_model_path()).unwrap();
    let config = ModelConfig::from_gguf(&file).unwrap();
    let opts = LoadOptions {
        max_tokens: 64,
        kv_format: KvFormat::Fp8E4M3,
        kv_layer_formats: vec![(0, KvFormat::F16), (1, KvFormat::MxFp4)],
        ..LoadOptions::default()
    };
    assert_eq!(opts.kv_format_of(0), KvFormat::F16);
    assert_eq!(opts.kv_format_of(1), KvFormat::MxFp4);
    assert_eq!(opts.kv_format_of(2), KvFormat::Fp8E4M3);
    // Per layer: 3 KV heads x (K + V) x 64 values.
    let per_layer = |bytes_per_row: usize| 3 * 2 * bytes_per_row;
    let want = per_layer(128) + per_layer(34) + (config.layers - 2) * per_layer(64);
    assert_eq!(opts.kv_bytes_per_token(&config).unwrap(), want);
    let mixed = Model::load(&file, &opts).unwrap();
    let all_f16 = Model::load(
        &file,
        &LoadOptions {
            max_tokens: 64,
            ..LoadOptions::default()
        },
    )
    .unwrap();
    let prompt = [504, 3575, 282, 4649, 314];
    let a = mixed.forward(&prompt, 0, false).unwrap();
    let b = all_f16.forward(&prompt, 0, false).unwrap();
    assert!(a.iter().all(|x| x.is_finite()));
    assert_ne!(a, b, "the fp8 and mxfp4 layers changed nothing");
    // Every layer overridden to f16: exactly the all-f16 model.
    let overridden = LoadOptions {
        kv_layer_formats: (0..config.layers).map(|l| (l, KvFormat::F16)).collect(),
        ..opts.clone()
    };
    let c = Model::load(&file, &overridden)
        .unwrap()
        .forward(&prompt, 0, false)
        .unwrap();
    assert_eq!(c, b, "overrides of every layer are not applied");

    let bad = LoadOptions {
        kv_layer_formats: vec![(config.layers, KvFormat::F16)],
        ..opts
    };
    let err = Model::load(&file, &bad).unwrap_err().to_string();
    assert!(err.contains(&format!("layer {}", config.layers)), "{err}");
}

/// Mean over the rows of KL(softmax(want) || softmax(got)), rows of
/// `vocab` logits: how far a cache format moves the next-token
/// distributions.
fn mean_kl(got: &[f32], want: &[f32], vocab: usize) -> f64 {
    let log_softmax = |row: &[f32]| {
        let m = row.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)) as f64;
        let z: f64 = row.iter().map(|&x| (x as f64 - m).exp()).sum();
        row.iter()
            .map(|&x| x as f64 - m - z.ln())
            .collect::<Vec<f64>>()
    };
    let rows = want.len() / vocab;
    let mut total = 0.0;
    for (g, w) in got.chunks_exact(vocab).zip(want.chunks_exact(vocab)) {
        let (lg, lw) = (log_softmax(g), log_softmax(w));
        total += lw
            .iter()
            .zip(&lg)
            .map(|(a, b)| a.exp() * (a - b))
            .sum::<f64>();
    }
    total / rows as f64
}

#[test]
fn centering_brings_coarse_caches_closer_to_f16() {
    let file = GgufFile::open(common::default_model_path()).unwrap();
    let config = ModelConfig::from_gguf(&file).unwrap();
    let offsets = calibrate(&file, &config, &LoadOptions::default()).unwrap();
    assert_eq!(offsets.k_mean.len(), config.layers);
    assert_eq!(offsets.v_mean.len(), config.layers);
    assert!(
        offsets.tokens > 1000,
        "{} calibration tokens",
        offsets.tokens
    );
    // SmolLM2's keys sit on large per-channel offsets in every layer but
    // the first few (that is what centering is for).
    let width = config.kv_heads * config.head_dim;
    let big = offsets
        .k_mean
        .iter()
        .filter(|m| m.len() == width && m.iter().any(|x| x.abs() > 5.0))
        .count();
    assert!(
        big > config.layers / 2,
        "{big} layers with a key offset > 5"
    );

    let tokenizer = Tokenizer::from_gguf(&file).unwrap();
    let golden = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/gpl-3.txt");
    let text = std::fs::read_to_string(golden).unwrap();
    let prompt = tokenizer.encode(&text[..1200], true, false).unwrap();
    let run = |kv_format, kv_centering| {
        let opts = LoadOptions {
            max_tokens: prompt.len(),
            kv_format,
            kv_centering,
            ..LoadOptions::default()
        };
        Model::load(&file, &opts)
            .unwrap()
            .forward(&prompt, 0, true)
            .unwrap()
    };
    let f16 = run(KvFormat::F16, true);
    assert_eq!(
        f16,
        run(KvFormat::F16, false),
        "16-bit caches are not centered"
    );
    for format in [KvFormat::Fp8E4M3, KvFormat::MxFp4] {
        let plain = mean_kl(&run(format, false), &f16, config.vocab);
        let centered = mean_kl(&run(format, true), &f16, config.vocab);
        println!("{format}: mean KL from the f16 cache's distributions: plain {plain:.5}, centered {centered:.5}");
        // measured: E4M3 0.0307 -> 0.0213, MXFP4 0.416 -> 0.260
        assert!(
            centered < 0.8 * plain,
            "{format}: centered {centered} vs plain {plain}"
        );
    }
}

#[test]
fn cached_offsets_round_trip_and_bad_files_are_refused() {
    let file = GgufFile::open(common::default_model_path()).unwrap();
    let config = ModelConfig::from_gguf(&file).unwrap();
    let width = config.kv_heads * config.head_dim;
    let offsets = KvOffsets {
        k_mean: (0..config.layers)
            .map(|l| {
                (0..width)
                    .map(|i| (l * width + i) as f32 * 0.5 - 7.0)
                    .collect()
            })
            .collect(),
        v_mean: (0..config.layers)
            .map(|l| (0..width).map(|i| (l + i) as f32 / 64.0).collect())
            .collect(),
        tokens: 1234,
    };
    let dir = std::env::temp_dir().join(format!("exodus-kv-offsets-{}", std::process::id()));
    let path = dir.join("nested").join("offsets.bin");
    write_offsets(&path, &offsets).unwrap();
    assert_eq!(read_offsets(&path, &config).unwrap(), offsets);

    let good = std::fs::read(&path).unwrap();
    let mut nan = good.clone();
    nan[20..24].copy_from_slice(&f32::NAN.to_le_bytes());
    let mut magic = good.clone();
    magic[0] ^= 1;
    let other_shape = ModelConfig {
        layers: config.layers + 1,
        ..config.clone()
    };
    for (what, bytes, config) in [
        ("truncated", good[..good.len() - 4].to_vec(), &config),
        ("a NaN", nan, &config),
        ("a wrong magic", magic, &config),
        ("another model's shape", good.clone(), &other_shape),
    ] {
        std::fs::write(&path, &bytes).unwrap();
        assert!(read_offsets(&path, config).is_err(), "{what} was read");
    }
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(
        read_offsets(&path, &config).is_err(),
        "a missing file was read"
    );
}

#[test]
fn the_offsets_key_follows_the_weights() {
    let bytes = std::fs::read(common::default_model_path()).unwrap();
    let file = exodus_gguf::Gguf::parse(bytes.clone()).unwrap();
    let key = offsets_key(&file);
    assert_eq!(key.len(), 64);
    assert_eq!(
        key,
        offsets_key(&exodus_gguf::Gguf::parse(bytes.clone()).unwrap())
    );
    // One changed byte at the start of a layer's key weights.
    let t = file.require_tensor("blk.7.attn_k.weight").unwrap();
    let mut changed = bytes;
    changed[t.file_offset() as usize] ^= 0x10;
    let other = exodus_gguf::Gguf::parse(changed).unwrap();
    assert_ne!(key, offsets_key(&other));
}
