//! SmolLM2-135M-Instruct's chat template and a probe template of Hugging
//! Face features, rendered by exodus and compared with Python's jinja2
//! (golden file written by `bench/golden/model_tokenizer.py`).

mod common;

use exodus_gguf::GgufFile;
use exodus_model::{ChatTemplate, Message, ModelError, Tokenizer};
use serde_json::Value;

fn golden() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/golden/smollm2_chat.json"
    );
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap()
}

fn messages(v: &Value) -> Vec<Message> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|m| Message::new(m["role"].as_str().unwrap(), m["content"].as_str().unwrap()))
        .collect()
}

fn check_renders(template: &ChatTemplate, g: &Value, name: &str) {
    let renders = g["templates"][name]["renders"].as_object().unwrap();
    let conversations = g["conversations"].as_object().unwrap();
    assert_eq!(renders.len(), 2 * conversations.len());
    for (conv, msgs) in conversations {
        let msgs = messages(msgs);
        for gen in [false, true] {
            let key = if gen {
                format!("{conv}+gen")
            } else {
                conv.clone()
            };
            let want = renders[&key].as_str().unwrap();
            let got = template.render(&msgs, gen).unwrap();
            assert_eq!(got, want, "{name} template, {key}");
        }
    }
}

#[test]
fn model_template_matches_jinja2() {
    let g = golden();
    let file = GgufFile::open(common::default_model_path()).unwrap();
    let template = ChatTemplate::from_gguf(&file).unwrap();
    assert!(!template.is_fallback());
    assert_eq!(
        template.source(),
        g["templates"]["model"]["source"].as_str().unwrap()
    );
    assert_eq!(template.bos_token(), g["bos_token"].as_str().unwrap());
    assert_eq!(template.eos_token(), g["eos_token"].as_str().unwrap());
    check_renders(&template, &g, "model");

    // the prompt tokenizes into the model's control tokens and back
    let tok = Tokenizer::from_gguf(&file).unwrap();
    let prompt = template.render(&[Message::user("Hi")], true).unwrap();
    let ids = tok.encode(&prompt, true, true).unwrap();
    let (start, end) = (
        tok.token_id("<|im_start|>").unwrap(),
        tok.token_id("<|im_end|>").unwrap(),
    );
    assert_eq!(ids.iter().filter(|&&i| i == start).count(), 3);
    assert_eq!(ids.iter().filter(|&&i| i == end).count(), 2);
    assert_eq!(tok.decode(&ids, false).unwrap(), prompt);
    assert!(tok.is_eog(end));
}

#[test]
fn probe_template_matches_jinja2() {
    let g = golden();
    let source = g["templates"]["probe"]["source"].as_str().unwrap();
    let template = ChatTemplate::new(
        source,
        g["bos_token"].as_str().unwrap(),
        g["eos_token"].as_str().unwrap(),
    )
    .unwrap();
    check_renders(&template, &g, "probe");

    let bad = &g["probe_error"];
    match template.render(&messages(&bad["messages"]), true) {
        Err(ModelError::TemplateRaised(msg)) => {
            assert_eq!(msg, bad["message"].as_str().unwrap())
        }
        other => panic!("expected raise_exception, got {other:?}"),
    }
}
