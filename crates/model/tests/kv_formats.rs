//! Per-layer KV cache formats: the capacity arithmetic, a model that runs
//! with mixed formats, and the error for a layer the model does not have.

mod common;

use exodus_gguf::GgufFile;
use exodus_graph::KvFormat;
use exodus_model::{LoadOptions, Model, ModelConfig};

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
