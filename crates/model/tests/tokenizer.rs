//! The tokenizer of SmolLM2-135M-Instruct against llama.cpp: token ids of
//! tricky strings, detokenization, special and end-of-generation tokens,
//! every token's piece, from golden files written by
//! `bench/golden/model_tokenizer.py` (llama-cpp-python).

mod common;

use exodus_gguf::GgufFile;
use exodus_model::{TokenKind, Tokenizer};
use serde_json::Value;

fn golden() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/golden/smollm2_tokenizer.json"
    );
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap()
}

fn tokenizer() -> Tokenizer {
    let file = GgufFile::open(common::default_model_path()).unwrap();
    Tokenizer::from_gguf(&file).unwrap()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

fn cases(g: &Value) -> &Vec<Value> {
    g["cases"].as_array().unwrap()
}

/// FNV-1a 64 over items, each preceded by its length (u32 LE), as the
/// golden script hashes them.
fn fnv1a64<'a>(items: impl IntoIterator<Item = &'a [u8]>) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for item in items {
        for &b in (item.len() as u32).to_le_bytes().iter().chain(item) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    format!("{h:016x}")
}

#[test]
fn token_ids_match_llama_cpp() {
    let g = golden();
    let t = tokenizer();
    let mut failures = Vec::new();
    for case in cases(&g) {
        let text = case["text"].as_str().unwrap();
        for (key, add_special, parse_special) in [
            ("ids", false, false),
            ("ids_parse_special", false, true),
            ("ids_add_special", true, true),
        ] {
            let want = ids(&case[key]);
            let got = t.encode(text, add_special, parse_special).unwrap();
            if got != want {
                failures.push(format!(
                    "{text:?} ({key}):\n  exodus    {got:?}\n  llama.cpp {want:?}"
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} encodings differ:\n{}",
        failures.len(),
        3 * cases(&g).len(),
        failures.join("\n")
    );
}

#[test]
fn decode_matches_llama_cpp_and_round_trips() {
    let g = golden();
    let t = tokenizer();
    for case in cases(&g) {
        let text = case["text"].as_str().unwrap();
        let special = ids(&case["ids_parse_special"]);
        assert_eq!(
            t.decode(&special, false).unwrap(),
            case["decoded_special"].as_str().unwrap(),
            "{text:?}"
        );
        assert_eq!(
            t.decode(&special, true).unwrap(),
            case["decoded_plain"].as_str().unwrap(),
            "{text:?}"
        );
        for parse_special in [false, true] {
            let ids = t.encode(text, false, parse_special).unwrap();
            assert_eq!(t.decode(&ids, false).unwrap(), text, "{text:?}");
        }
    }
}

#[test]
fn streaming_gives_the_same_text_as_decode() {
    let g = golden();
    let t = tokenizer();
    for case in cases(&g) {
        let text = case["text"].as_str().unwrap();
        for key in ["ids", "ids_parse_special"] {
            let ids = ids(&case[key]);
            for skip_special in [false, true] {
                let whole = t.decode(&ids, skip_special).unwrap();
                let mut stream = t.stream_decoder(skip_special);
                let mut streamed = String::new();
                for &id in &ids {
                    let part = stream.push(&t, id).unwrap();
                    // a character is never split: the text holds no
                    // replacement character that decode does not have
                    assert!(
                        !part.contains('\u{fffd}') || whole.contains('\u{fffd}'),
                        "{text:?}: {part:?}"
                    );
                    streamed.push_str(&part);
                }
                assert_eq!(stream.pending(), 0, "{text:?}");
                streamed.push_str(&stream.finish());
                assert_eq!(
                    streamed, whole,
                    "{text:?} {key} skip_special={skip_special}"
                );
            }
        }
    }
}

#[test]
fn special_tokens_match_llama_cpp() {
    let g = golden();
    let t = tokenizer();
    assert_eq!(t.vocab_size() as u64, g["vocab_size"].as_u64().unwrap());
    assert_eq!(t.bos().map(u64::from), g["bos"].as_u64());
    assert_eq!(t.eos().map(u64::from), g["eos"].as_u64());
    assert_eq!(t.add_bos(), g["add_bos"].as_bool().unwrap());
    assert_eq!(t.pre_tokenizer(), g["tokenizer_pre"].as_str());
    assert_eq!(t.eog_ids(), ids(&g["eog_ids"]));
    let n = t.vocab_size() as u32;
    let of_kind =
        |k: TokenKind| -> Vec<u32> { (0..n).filter(|&i| t.token_kind(i) == Some(k)).collect() };
    assert_eq!(of_kind(TokenKind::Control), ids(&g["control_ids"]));
    assert_eq!(of_kind(TokenKind::UserDefined), ids(&g["user_defined_ids"]));
    assert_eq!(t.token_text(2), Some("<|im_end|>"));
    assert!(t.is_eog(2) && !t.is_eog(1));
    assert!(t.token_text(n).is_none() && t.piece(n).is_err());
    assert!(t.decode(&[n], false).is_err());
}

#[test]
fn every_token_matches_llama_cpp() {
    let g = golden();
    let t = tokenizer();
    let chunk = g["chunk"].as_u64().unwrap() as u32;
    let n = t.vocab_size() as u32;
    let want = |key: &str| -> Vec<String> {
        g[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h.as_str().unwrap().to_string())
            .collect()
    };
    let (mut special, mut plain, mut retok) = (Vec::new(), Vec::new(), Vec::new());
    for start in (0..n).step_by(chunk as usize) {
        let range = start..n.min(start + chunk);
        let pieces: Vec<&[u8]> = range.clone().map(|i| t.piece(i).unwrap()).collect();
        special.push(fnv1a64(pieces.iter().copied()));
        let hidden = |i: u32| {
            matches!(
                t.token_kind(i),
                Some(TokenKind::Control | TokenKind::Unknown)
            )
        };
        plain.push(fnv1a64(range.clone().zip(&pieces).map(|(i, p)| {
            if hidden(i) {
                &[][..]
            } else {
                *p
            }
        })));
        let encoded: Vec<Vec<u8>> = pieces
            .iter()
            .map(|p| {
                let text = String::from_utf8_lossy(p);
                t.encode(&text, false, true)
                    .unwrap()
                    .iter()
                    .flat_map(|i| i.to_le_bytes())
                    .collect()
            })
            .collect();
        retok.push(fnv1a64(encoded.iter().map(Vec::as_slice)));
    }
    for (key, got) in [
        ("piece_hashes_special", special),
        ("piece_hashes_plain", plain),
        ("retokenize_hashes", retok),
    ] {
        let want = want(key);
        let bad: Vec<String> = got
            .iter()
            .zip(&want)
            .enumerate()
            .filter(|(_, (a, b))| a != b)
            .map(|(i, _)| format!("tokens {}..{}", i as u32 * chunk, (i as u32 + 1) * chunk))
            .collect();
        assert_eq!(got.len(), want.len(), "{key}");
        assert!(bad.is_empty(), "{key} differs for {}", bad.join(", "));
    }
}
