//! Corrupted copies of the real default model: every one is refused with a
//! typed error (by the GGUF reader, or by the model loader when the file
//! still parses but no longer describes a model that fits together), and
//! nothing panics.

mod common;

use exodus_gguf::{Gguf, GgufError};
use exodus_model::{LoadOptions, Mode, Model, ModelError};

/// Replaces the first occurrence of `key`'s value bytes after the key
/// name: the u32 value of a u32 key, or the text of a string key.
fn set_u32(bytes: &mut [u8], key: &str, value: u32) {
    let at = find(bytes, key.as_bytes()) + key.len();
    // Value type (u32 = 4), then the value.
    assert_eq!(
        u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()),
        4,
        "{key} is not u32"
    );
    bytes[at + 4..at + 8].copy_from_slice(&value.to_le_bytes());
}

fn find(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len())
        .position(|w| w == needle)
        .unwrap_or_else(|| panic!("{:?} not in the file", String::from_utf8_lossy(needle)))
}

fn load(bytes: &[u8]) -> Result<Model, ModelError> {
    let file = Gguf::parse(bytes)?;
    let opts = LoadOptions {
        mode: Mode::Eager,
        max_tokens: 64,
        ..Default::default()
    };
    Model::load(&file, &opts)
}

#[test]
fn corrupted_copies_of_the_default_model_are_refused_with_typed_errors() {
    let path = common::default_model_path();
    let good = std::fs::read(&path).unwrap();
    let data_start = Gguf::parse(&good[..]).unwrap().data_offset() as usize;

    // Cut short anywhere: the header, the metadata, the tensor infos, the
    // data.
    for cut in [
        0,
        3,
        8,
        23,
        1000,
        data_start - 1,
        data_start + 1,
        good.len() / 2,
        good.len() - 1,
    ] {
        let err = Gguf::parse(&good[..cut]).map(|_| ()).unwrap_err();
        assert!(
            matches!(
                err,
                GgufError::Truncated { .. }
                    | GgufError::DataPastEnd { .. }
                    | GgufError::AbsurdCount { .. }
                    | GgufError::BadMagic { .. }
            ),
            "cut at {cut}: {err}"
        );
    }

    let mut bad = good.clone();
    bad[0] = b'X';
    let err = Gguf::parse(&bad[..]).map(|_| ()).unwrap_err();
    assert!(matches!(err, GgufError::BadMagic { .. }), "{err}");

    // Still GGUF, no longer the model it says.
    type Corrupt = Box<dyn Fn(&mut Vec<u8>)>;
    let cases: Vec<(Corrupt, &str)> = vec![
        (Box::new(|b| set_u32(b, "llama.block_count", 31)), "blk.30"),
        (
            Box::new(|b| set_u32(b, "llama.attention.head_count", 7)),
            "KV heads",
        ),
        (
            Box::new(|b| set_u32(b, "llama.embedding_length", 512)),
            "shape",
        ),
        (
            Box::new(|b| {
                let at = find(b, b"general.architecture") + "general.architecture".len() + 4 + 8;
                b[at..at + 5].copy_from_slice(b"llamb");
            }),
            "architecture 'llamb'",
        ),
    ];
    for (corrupt, want) in cases {
        let mut bad = good.clone();
        corrupt(&mut bad);
        let err = load(&bad).unwrap_err().to_string();
        assert!(err.contains(want), "expected {want:?} in: {err}");
    }
    // And the good file loads.
    assert!(load(&good).is_ok());
}
