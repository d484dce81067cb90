//! The tokenizer of a GGUF model, built from the file's metadata
//! (`tokenizer.ggml.*`) and behaving as llama.cpp's does: the same ids for
//! the same text, the same special-token handling, the same pieces.
//!
//! Two tokenizer models are read (`tokenizer.ggml.model`):
//!
//! - `gpt2`: byte-level BPE (SmolLM2, Llama 3, Qwen, DeepSeek). The text is
//!   split by the pre-tokenizer regexes llama.cpp uses for
//!   `tokenizer.ggml.pre` (each applied to the pieces of the one before, the
//!   unmatched stretches kept as pieces of their own), each piece's bytes are
//!   mapped to GPT-2's byte alphabet, and `tokenizer.ggml.merges` are applied
//!   by rank.
//! - `llama`: SentencePiece BPE (Llama 2, Mistral). Spaces become `▁`, a
//!   space is put in front of the text and after every special token
//!   (`tokenizer.ggml.add_space_prefix`, on by default), pairs merge by the
//!   score of the token they form (`tokenizer.ggml.scores`), and characters
//!   outside the vocabulary fall back to their bytes (`<0xXX>` tokens).
//!
//! The BPE itself is the `tokenizers` crate's (`BPE` with byte fallback,
//! `Split` and `ByteLevel` pre-tokenizers, built in code, not from a
//! `tokenizer.json`); for `llama` files the merge list is derived from the
//! scores: every split of a token into two tokens is a merge, ranked by the
//! token's score.
//!
//! Special tokens: tokens of type control (3), user-defined (4) or unknown
//! (2) in `tokenizer.ggml.token_type` are cut out of the text whole before
//! the BPE sees it, longest first, as llama.cpp's `parse_special` does:
//! user-defined ones always, control and unknown ones only when the caller
//! asks to parse special tokens. Tokens llama.cpp recognises by their text
//! (`<|im_end|>`, `<|eot_id|>`, `<|endoftext|>`, FIM markers, ...) are
//! treated as control tokens and, where llama.cpp says so, end generation
//! ([`Tokenizer::is_eog`]).
//!
//! Decoding concatenates each token's piece: the bytes a normal token
//! stands for, the text of a special token (when not skipped), the byte of a
//! `<0xXX>` token. It is lossless: unlike llama.cpp's `llama_detokenize`,
//! no `clean_up_tokenization_spaces` pass is applied (it would break
//! round trips and streaming), which only matters for the few pre-tokenizers
//! that ask for it (not SmolLM2's `smollm`). Bytes that are not valid UTF-8
//! become U+FFFD. [`StreamDecoder`] gives the same text one token at a time,
//! never splitting a character.
//!
//! Not supported (refused with [`ModelError::Tokenizer`]): other tokenizer
//! models (`bert`, `t5`, `rwkv`, ...) and the pre-tokenizers not listed in
//! [`SUPPORTED_PRE_TOKENIZERS`]. Not reproduced: llama.cpp's per-model
//! strip attributes (phi-3, jina, modern-bert), and, for `llama` files, its
//! tie-break between two different pairs of equal score (leftmost first
//! there, merge-list order here), which real SentencePiece vocabularies,
//! whose scores differ, do not hit.

use std::collections::{HashMap, HashSet};

use exodus_gguf::{Gguf, Metadata};
use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::SplitDelimiterBehavior;

use crate::error::ModelError;

const KEY_MODEL: &str = "tokenizer.ggml.model";
const KEY_PRE: &str = "tokenizer.ggml.pre";
const KEY_TOKENS: &str = "tokenizer.ggml.tokens";
const KEY_TYPES: &str = "tokenizer.ggml.token_type";
const KEY_SCORES: &str = "tokenizer.ggml.scores";
const KEY_MERGES: &str = "tokenizer.ggml.merges";

/// What a token is, from `tokenizer.ggml.token_type` (adjusted as llama.cpp
/// adjusts it: tokens it knows by their text become control tokens).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TokenKind {
    /// Ordinary text (type 1).
    Normal,
    /// The unknown token (type 2).
    Unknown,
    /// A control token such as `<s>` or `<|im_end|>` (type 3): matched in
    /// text only when special tokens are parsed, rendered only when special
    /// tokens are not skipped.
    Control,
    /// A user-defined token (type 4): always matched whole in text, always
    /// rendered as its text.
    UserDefined,
    /// A reserved, unused token (type 5): renders as nothing.
    Unused,
    /// A byte-fallback token `<0xXX>` (type 6): renders as that byte.
    Byte,
    /// A token type outside the GGUF convention (type 0 or other values):
    /// renders as nothing.
    Undefined,
}

impl TokenKind {
    fn from_type(t: i32) -> TokenKind {
        match t {
            1 => TokenKind::Normal,
            2 => TokenKind::Unknown,
            3 => TokenKind::Control,
            4 => TokenKind::UserDefined,
            5 => TokenKind::Unused,
            6 => TokenKind::Byte,
            _ => TokenKind::Undefined,
        }
    }

    /// Cut out of the text before the BPE sees it (when allowed).
    fn is_special(self) -> bool {
        matches!(
            self,
            TokenKind::Control | TokenKind::UserDefined | TokenKind::Unknown
        )
    }

    /// Rendered only when special tokens are not skipped.
    fn is_skippable(self) -> bool {
        matches!(self, TokenKind::Control | TokenKind::Unknown)
    }
}

/// The two tokenizer models a file can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenizerModel {
    /// `gpt2`: byte-level BPE with a merge list.
    Bpe,
    /// `llama`: SentencePiece BPE with scores and byte fallback.
    SentencePiece,
}

/// The `tokenizer.ggml.pre` names this crate splits text for (the groups
/// share one set of regexes, as in llama.cpp).
pub const SUPPORTED_PRE_TOKENIZERS: &[&str] = &[
    // GPT-2's regex
    "gpt-2",
    "gpt2",
    "phi-2",
    "mpt",
    "olmo",
    "jais",
    "trillion",
    "granite-docling",
    "exaone4",
    "mellum",
    "gigachat",
    "a.x-4.0",
    "modern-bert",
    "jina-es",
    "jina-de",
    "jina-v2-es",
    "jina-v2-de",
    // digits one by one, then GPT-2's regex
    "smollm",
    "starcoder",
    "refact",
    "command-r",
    "codeshell",
    "exaone",
    "minerva-7b",
    "mellum2",
    // Llama 3
    "llama3",
    "llama-v3",
    "llama-bpe",
    "falcon3",
    "falcon-h1",
    "pixtral",
    "midm-2.0",
    "lfm2",
    "jina-v5-nano",
    "dbrx",
    "smaug-bpe",
    // Qwen 2
    "qwen2",
    "deepseek-r1-qwen",
    "kormo",
    "f2llmv2",
    "stablelm2",
    "hunyuan",
    "solar-open",
    "megrez",
    // DeepSeek V3
    "deepseek-v3",
    // others
    "falcon",
    "default",
];

const RE_GPT2: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";
const RE_LLAMA3: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const RE_QWEN2: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const RE_DEEPSEEK3_CJK: &str = r"[一-龥぀-ゟ゠-ヿ]+";
const RE_DEEPSEEK3: &str = r##"[!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"##;

/// How a pre-tokenizer splits text, and the defaults it brings.
struct PreTokenizerSpec {
    regexes: &'static [&'static str],
    /// A word that is a token as a whole is that token (no merges).
    ignore_merges: bool,
    /// BOS is added by default (before `tokenizer.ggml.add_bos_token`).
    add_bos: bool,
}

fn pre_tokenizer_spec(name: &str) -> Option<PreTokenizerSpec> {
    let spec = |regexes, ignore_merges, add_bos| {
        Some(PreTokenizerSpec {
            regexes,
            ignore_merges,
            add_bos,
        })
    };
    match name {
        "gpt-2" | "gpt2" | "phi-2" | "mpt" | "olmo" | "jais" | "trillion" | "granite-docling"
        | "exaone4" | "mellum" | "gigachat" | "a.x-4.0" | "modern-bert" | "jina-es" | "jina-de"
        | "jina-v2-es" | "jina-v2-de" => spec(&[RE_GPT2], false, false),
        "smollm" | "starcoder" | "refact" | "command-r" | "codeshell" | "exaone" | "minerva-7b"
        | "mellum2" => spec(&[r"\p{N}", RE_GPT2], false, false),
        "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "falcon-h1" | "pixtral" | "midm-2.0"
        | "lfm2" | "jina-v5-nano" => spec(&[RE_LLAMA3], true, true),
        "dbrx" | "smaug-bpe" => spec(&[RE_LLAMA3], false, false),
        "qwen2" | "deepseek-r1-qwen" | "kormo" | "f2llmv2" | "stablelm2" | "hunyuan"
        | "solar-open" | "megrez" => spec(&[RE_QWEN2], false, false),
        "deepseek-v3" => spec(
            &[r"\p{N}{1,3}", RE_DEEPSEEK3_CJK, RE_DEEPSEEK3],
            false,
            false,
        ),
        "falcon" => spec(
            &[r"[\p{P}\$\+<=>\^~\|`]+", RE_GPT2, "[0-9][0-9][0-9]"],
            false,
            false,
        ),
        "default" => spec(
            &[
                r"[\p{P}\$\+<=>\^~\|]+",
                RE_GPT2,
                r"\p{N}+",
                "[0-9][0-9][0-9]",
            ],
            false,
            false,
        ),
        _ => None,
    }
}

/// Texts llama.cpp takes for end-of-generation tokens (and makes control
/// tokens), whatever their type in the file.
const EOG_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<|return|>",
    "<|call|>",
    "<|flush|>",
    "<|calls|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "</s>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "[EOS]",
    "<|end_of_text|>",
    "<end_of_utterance>",
    "<eos>",
    "<turn|>",
    "<|tool_response>",
    "<｜end▁of▁sentence｜>",
    "[e~[",
];

/// End-of-turn texts (for the EOT id when the file does not give one).
const EOT_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|end_of_text|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "<｜end▁of▁sentence｜>",
    "<end_of_utterance>",
];

/// Fill-in-the-middle markers: (metadata key, texts, ends generation).
const FIM_TOKENS: &[(&str, &[&str], bool)] = &[
    (
        "tokenizer.ggml.fim_pre_token_id",
        &[
            "<|fim_prefix|>",
            "<fim-prefix>",
            "<fim_prefix>",
            "<｜fim▁begin｜>",
            "<PRE>",
            "▁<PRE>",
            "<|code_prefix|>",
            "<|prefix|>",
        ],
        false,
    ),
    (
        "tokenizer.ggml.fim_suf_token_id",
        &[
            "<|fim_suffix|>",
            "<fim-suffix>",
            "<fim_suffix>",
            "<｜fim▁hole｜>",
            "<SUF>",
            "▁<SUF>",
            "<|code_suffix|>",
            "<|suffix|>",
        ],
        false,
    ),
    (
        "tokenizer.ggml.fim_mid_token_id",
        &[
            "<|fim_middle|>",
            "<fim-middle>",
            "<fim_middle>",
            "<｜fim▁end｜>",
            "<MID>",
            "▁<MID>",
            "<|code_middle|>",
            "<|middle|>",
        ],
        false,
    ),
    (
        "tokenizer.ggml.fim_pad_token_id",
        &["<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"],
        true,
    ),
    (
        "tokenizer.ggml.fim_rep_token_id",
        &[
            "<|fim_repo|>",
            "<|repo_name|>",
            "<fim-repo>",
            "<REPO>",
            "<reponame>",
        ],
        true,
    ),
    ("tokenizer.ggml.fim_sep_token_id", &["<|file_sep|>"], true),
];

/// A GGUF model's tokenizer: text to token ids and back.
pub struct Tokenizer {
    model: TokenizerModel,
    pre: Option<String>,
    bpe: tokenizers::Tokenizer,
    tokens: Vec<String>,
    kinds: Vec<TokenKind>,
    /// What each token renders as when special tokens are shown.
    pieces: Vec<Box<[u8]>>,
    /// Tokens cut out of text whole, longest text first.
    special: Vec<u32>,
    bos: Option<u32>,
    eos: Option<u32>,
    eot: Option<u32>,
    eom: Option<u32>,
    unk: Option<u32>,
    pad: Option<u32>,
    add_bos: bool,
    add_eos: bool,
    add_space_prefix: bool,
    eog: HashSet<u32>,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("model", &self.model)
            .field("pre", &self.pre)
            .field("vocab_size", &self.tokens.len())
            .field("bos", &self.bos)
            .field("eos", &self.eos)
            .field("add_bos", &self.add_bos)
            .field("add_eos", &self.add_eos)
            .finish_non_exhaustive()
    }
}

fn bad(key: &str, reason: impl Into<String>) -> ModelError {
    ModelError::Tokenizer {
        key: key.to_string(),
        reason: reason.into(),
    }
}

/// An optional token id from `key` (any integer type); ids outside the
/// vocabulary, negative ones included, are ignored (the default stays), as
/// llama.cpp does. A value that is not an integer is an error.
fn read_id(
    meta: &Metadata,
    key: &str,
    n: usize,
    default: Option<u32>,
) -> Result<Option<u32>, ModelError> {
    let default = default.filter(|&d| (d as usize) < n);
    let Some(value) = meta.get(key) else {
        return Ok(default);
    };
    // -1 (some converters' "none") and ids past the vocabulary: the default
    let v = match value.as_integer() {
        Some(v) => v,
        // not an integer: the reader's typed error naming the key
        None => {
            meta.get_count(key)?;
            return Ok(default);
        }
    };
    Ok(if (0..n as i128).contains(&v) {
        Some(v as u32)
    } else {
        default
    })
}

fn read_bool(meta: &Metadata, key: &str, default: bool) -> Result<bool, ModelError> {
    if meta.contains(key) {
        Ok(meta.get_bool(key)?)
    } else {
        Ok(default)
    }
}

/// GPT-2's byte alphabet: byte `b` is written as char `BYTE_CHARS[b]`.
fn byte_chars() -> [char; 256] {
    let mut table = ['\0'; 256];
    let mut next = 256u32;
    for (b, slot) in table.iter_mut().enumerate() {
        let printable = matches!(b, 0x21..=0x7e | 0xa1..=0xac | 0xae..=0xff);
        let code = if printable {
            b as u32
        } else {
            next += 1;
            next - 1
        };
        *slot = char::from_u32(code).unwrap_or('\u{fffd}');
    }
    table
}

/// `<0xXX>` to its byte.
fn byte_token(text: &str) -> Option<u8> {
    let hex = text.strip_prefix("<0x")?.strip_suffix('>')?;
    if hex.len() != 2 {
        return None;
    }
    u8::from_str_radix(hex, 16).ok()
}

impl Tokenizer {
    /// Builds the tokenizer described by `file`'s metadata. Missing or
    /// mistyped keys are [`ModelError::Gguf`] errors naming the key;
    /// inconsistent or unsupported contents are [`ModelError::Tokenizer`].
    pub fn from_gguf<B: AsRef<[u8]>>(file: &Gguf<B>) -> Result<Tokenizer, ModelError> {
        Tokenizer::from_metadata(file.metadata())
    }

    /// [`Tokenizer::from_gguf`] on metadata alone.
    pub fn from_metadata(meta: &Metadata) -> Result<Tokenizer, ModelError> {
        let model_name = meta.get_str(KEY_MODEL)?;
        let model = match model_name {
            "gpt2" => TokenizerModel::Bpe,
            "llama" => TokenizerModel::SentencePiece,
            other => {
                return Err(bad(
                    KEY_MODEL,
                    format!("tokenizer model '{other}' is not supported (supported: gpt2, llama)"),
                ))
            }
        };

        // the vocabulary
        let raw_tokens = meta.get_slice::<String>(KEY_TOKENS)?;
        let n = raw_tokens.len();
        if n == 0 {
            return Err(bad(KEY_TOKENS, "the vocabulary is empty"));
        }
        if n > u32::MAX as usize {
            return Err(bad(KEY_TOKENS, format!("{n} tokens do not fit u32 ids")));
        }
        let tokens: Vec<String> = raw_tokens
            .iter()
            .enumerate()
            .map(|(i, t)| {
                if t.is_empty() {
                    format!("[EMPTY_{i}]")
                } else {
                    t.clone()
                }
            })
            .collect();
        let mut ids: HashMap<&str, u32> = HashMap::with_capacity(n);
        for (i, t) in tokens.iter().enumerate() {
            if let Some(first) = ids.insert(t.as_str(), i as u32) {
                return Err(bad(
                    KEY_TOKENS,
                    format!("token {t:?} appears twice (ids {first} and {i})"),
                ));
            }
        }

        let mut kinds = if meta.contains(KEY_TYPES) {
            let types = meta.get_slice::<i32>(KEY_TYPES)?;
            if types.len() != n {
                return Err(bad(
                    KEY_TYPES,
                    format!("{} token types for {n} tokens", types.len()),
                ));
            }
            types.iter().map(|&t| TokenKind::from_type(t)).collect()
        } else {
            vec![TokenKind::Normal; n]
        };

        let scores: Vec<f32> = match meta.get(KEY_SCORES) {
            None => vec![0.0; n],
            Some(_) => {
                let s: Vec<f32> = match meta.get_slice::<f32>(KEY_SCORES) {
                    Ok(s) => s.to_vec(),
                    Err(_) => meta
                        .get_slice::<i32>(KEY_SCORES)?
                        .iter()
                        .map(|&v| v as f32)
                        .collect(),
                };
                if s.len() != n {
                    return Err(bad(
                        KEY_SCORES,
                        format!("{} scores for {n} tokens", s.len()),
                    ));
                }
                s
            }
        };

        // flags and defaults by model and pre-tokenizer
        let (spec, pre) = match model {
            TokenizerModel::Bpe => {
                let pre = if meta.contains(KEY_PRE) {
                    meta.get_str(KEY_PRE)?.to_string()
                } else {
                    // llama.cpp warns and uses its default regexes
                    "default".to_string()
                };
                let spec = pre_tokenizer_spec(&pre).ok_or_else(|| {
                    bad(
                        KEY_PRE,
                        format!(
                            "pre-tokenizer '{pre}' is not supported (supported: {})",
                            SUPPORTED_PRE_TOKENIZERS.join(", ")
                        ),
                    )
                })?;
                (Some(spec), Some(pre))
            }
            TokenizerModel::SentencePiece => (None, None),
        };
        let (default_bos, default_eos, default_unk) = match model {
            TokenizerModel::SentencePiece => (Some(1), Some(2), Some(0)),
            TokenizerModel::Bpe => (Some(11), Some(11), None),
        };
        let bos = read_id(meta, "tokenizer.ggml.bos_token_id", n, default_bos)?;
        let eos = read_id(meta, "tokenizer.ggml.eos_token_id", n, default_eos)?;
        let mut eot = read_id(meta, "tokenizer.ggml.eot_token_id", n, None)?;
        let mut eom = read_id(meta, "tokenizer.ggml.eom_token_id", n, None)?;
        let unk = read_id(meta, "tokenizer.ggml.unknown_token_id", n, default_unk)?;
        let pad = read_id(meta, "tokenizer.ggml.padding_token_id", n, None)?;
        let add_space_prefix = read_bool(
            meta,
            "tokenizer.ggml.add_space_prefix",
            model == TokenizerModel::SentencePiece,
        )?;
        let add_bos = read_bool(
            meta,
            "tokenizer.ggml.add_bos_token",
            match &spec {
                Some(s) => s.add_bos,
                None => true,
            },
        )?;
        let add_eos = read_bool(meta, "tokenizer.ggml.add_eos_token", false)?;
        if add_bos && bos.is_none() {
            return Err(bad(
                "tokenizer.ggml.add_bos_token",
                "is true, but there is no BOS token (tokenizer.ggml.bos_token_id)",
            ));
        }
        if add_eos && eos.is_none() {
            return Err(bad(
                "tokenizer.ggml.add_eos_token",
                "is true, but there is no EOS token (tokenizer.ggml.eos_token_id)",
            ));
        }

        // tokens recognised by their text, as llama.cpp recognises them
        // the first text of the list that the vocabulary has
        let find =
            |texts: &[&str]| -> Option<u32> { texts.iter().find_map(|t| ids.get(t).copied()) };
        let mut make_control = Vec::new();
        if eot.is_none() {
            eot = find(EOT_TEXTS);
            make_control.extend(eot);
        }
        if eom.is_none() {
            eom = find(&["<|eom_id|>"]);
            make_control.extend(eom);
        }
        let mut eog = HashSet::new();
        for &(key, texts, ends) in FIM_TOKENS {
            let mut id = read_id(meta, key, n, None)?;
            if id.is_none() {
                id = find(texts);
                make_control.extend(id);
            }
            if ends {
                eog.extend(id);
            }
        }
        for t in EOG_TEXTS {
            if let Some(&id) = ids.get(t) {
                eog.insert(id);
                make_control.push(id);
            }
        }
        for id in make_control {
            kinds[id as usize] = TokenKind::Control;
        }
        // gpt-oss: these are always rendered
        for t in ["<|channel|>", "<|message|>", "<|start|>", "<|constrain|>"] {
            if let Some(&id) = ids.get(t) {
                kinds[id as usize] = TokenKind::UserDefined;
            }
        }
        eog.extend(eos);
        eog.extend(eot);
        eog.extend(eom);
        // o200k-harmony and solar-open: <|end|> ends a message, not generation
        let has = |eog: &HashSet<u32>, t: &str| ids.get(t).is_some_and(|id| eog.contains(id));
        if let Some(&end) = ids.get("<|end|>") {
            if (has(&eog, "<|return|>") && has(&eog, "<|call|>"))
                || (has(&eog, "<|calls|>") && has(&eog, "<|flush|>"))
            {
                eog.remove(&end);
                kinds[end as usize] = TokenKind::UserDefined;
            }
        }
        // gemma 4: </s> is not an end of generation there
        if has(&eog, "<|tool_response>") {
            if let Some(&s) = ids.get("</s>") {
                eog.remove(&s);
                kinds[s as usize] = TokenKind::Normal;
            }
        }

        // the BPE model
        let vocab: Vocab = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), i as u32))
            .collect();
        let mut builder = BPE::builder();
        let bpe = match model {
            TokenizerModel::Bpe => {
                let merges = bpe_merges(meta, &ids)?;
                builder = builder
                    .vocab_and_merges(vocab, merges)
                    .ignore_merges(spec.as_ref().is_some_and(|s| s.ignore_merges));
                builder.build()
            }
            TokenizerModel::SentencePiece => {
                let merges = spm_merges(&tokens, &scores, &ids);
                builder = builder.vocab_and_merges(vocab, merges).byte_fallback(true);
                if let Some(u) = unk {
                    builder = builder.unk_token(tokens[u as usize].clone());
                }
                builder.build()
            }
        }
        .map_err(|e| bad(KEY_MERGES, format!("the BPE model cannot be built: {e}")))?;
        let mut hf = tokenizers::Tokenizer::new(bpe);
        if let Some(spec) = &spec {
            let mut steps = Vec::with_capacity(spec.regexes.len() + 1);
            for re in spec.regexes {
                let split = Split::new(
                    SplitPattern::Regex(re.to_string()),
                    SplitDelimiterBehavior::Isolated,
                    false,
                )
                .map_err(|e| bad(KEY_PRE, format!("regex {re:?} does not compile: {e}")))?;
                steps.push(PreTokenizerWrapper::Split(split));
            }
            steps.push(PreTokenizerWrapper::ByteLevel(ByteLevel::new(
                false, false, false,
            )));
            hf.with_pre_tokenizer(Some(PreTokenizerWrapper::Sequence(Sequence::new(steps))));
        }

        // pieces
        let alphabet = byte_chars();
        let mut byte_of: HashMap<char, u8> = HashMap::with_capacity(256);
        for (b, c) in alphabet.iter().enumerate() {
            byte_of.insert(*c, b as u8);
        }
        let mut pieces = Vec::with_capacity(n);
        for (i, (t, kind)) in tokens.iter().zip(&kinds).enumerate() {
            let piece: Vec<u8> = match kind {
                TokenKind::Control | TokenKind::Unknown | TokenKind::UserDefined => {
                    t.as_bytes().to_vec()
                }
                TokenKind::Normal => match model {
                    TokenizerModel::SentencePiece => t.replace('▁', " ").into_bytes(),
                    TokenizerModel::Bpe => {
                        let mut out = Vec::with_capacity(t.len());
                        for c in t.chars() {
                            match byte_of.get(&c) {
                                Some(&b) => out.push(b),
                                // not in the byte alphabet: the character
                                // itself (llama.cpp writes a marker)
                                None => {
                                    out.extend_from_slice(c.encode_utf8(&mut [0u8; 4]).as_bytes())
                                }
                            }
                        }
                        out
                    }
                },
                TokenKind::Byte => vec![byte_token(t).ok_or_else(|| {
                    bad(
                        KEY_TYPES,
                        format!("token {i} ({t:?}) is a byte token but is not written <0xXX>"),
                    )
                })?],
                TokenKind::Unused | TokenKind::Undefined => Vec::new(),
            };
            pieces.push(piece.into_boxed_slice());
        }

        // special tokens, longest first (ties by id)
        let mut special: Vec<u32> = (0..n as u32)
            .filter(|&i| kinds[i as usize].is_special())
            .collect();
        special.sort_by(|&a, &b| {
            tokens[b as usize]
                .len()
                .cmp(&tokens[a as usize].len())
                .then(a.cmp(&b))
        });

        Ok(Tokenizer {
            model,
            pre,
            bpe: hf,
            tokens,
            kinds,
            pieces,
            special,
            bos,
            eos,
            eot,
            eom,
            unk,
            pad,
            add_bos,
            add_eos,
            add_space_prefix,
            eog,
        })
    }

    /// The token ids of `text`. `add_special` adds BOS/EOS where the model
    /// asks for them (`tokenizer.ggml.add_bos_token`, `add_eos_token`);
    /// `parse_special` matches control tokens written in the text (such as
    /// `<|im_start|>`) as those tokens instead of as plain text.
    /// User-defined tokens are matched either way.
    pub fn encode(
        &self,
        text: &str,
        add_special: bool,
        parse_special: bool,
    ) -> Result<Vec<u32>, ModelError> {
        let mut out = Vec::with_capacity(text.len() / 3 + 2);
        if add_special && self.add_bos {
            out.extend(self.bos);
        }
        // a space goes in front of SentencePiece text at the start and after
        // a special token
        let mut after_special = true;
        for fragment in self.partition(text, parse_special) {
            match fragment {
                Fragment::Token(id) => {
                    out.push(id);
                    after_special = true;
                }
                Fragment::Text(range) => {
                    let piece = &text[range];
                    match self.model {
                        TokenizerModel::Bpe => self.bpe_encode(piece, &mut out)?,
                        TokenizerModel::SentencePiece => {
                            let mut s = String::with_capacity(piece.len() + 4);
                            if self.add_space_prefix && after_special {
                                s.push(' ');
                            }
                            s.push_str(piece);
                            self.bpe_encode(&s.replace(' ', "▁"), &mut out)?;
                        }
                    }
                    after_special = false;
                }
            }
        }
        if add_special && self.add_eos {
            out.extend(self.eos);
        }
        Ok(out)
    }

    fn bpe_encode(&self, text: &str, out: &mut Vec<u32>) -> Result<(), ModelError> {
        if text.is_empty() {
            return Ok(());
        }
        let enc = self
            .bpe
            .encode_fast(text, false)
            .map_err(|e| bad(KEY_MODEL, format!("encoding failed: {e}")))?;
        out.extend_from_slice(enc.get_ids());
        Ok(())
    }

    /// Cuts the special tokens out of `text`, longest first, as llama.cpp's
    /// `tokenizer_st_partition` does.
    fn partition(&self, text: &str, parse_special: bool) -> Vec<Fragment> {
        let mut fragments = Vec::new();
        if text.is_empty() {
            return fragments;
        }
        fragments.push(Fragment::Text(0..text.len()));
        for &id in &self.special {
            let kind = self.kinds[id as usize];
            if !parse_special && kind.is_skippable() {
                continue;
            }
            let pattern = self.tokens[id as usize].as_str();
            if !text.contains(pattern) {
                continue;
            }
            let mut next = Vec::with_capacity(fragments.len() + 2);
            for fragment in fragments {
                let Fragment::Text(range) = fragment else {
                    next.push(fragment);
                    continue;
                };
                let mut start = range.start;
                while let Some(at) = text[start..range.end].find(pattern) {
                    let at = start + at;
                    if at > start {
                        next.push(Fragment::Text(start..at));
                    }
                    next.push(Fragment::Token(id));
                    start = at + pattern.len();
                }
                if start < range.end {
                    next.push(Fragment::Text(start..range.end));
                }
            }
            fragments = next;
        }
        fragments
    }

    /// The text of `ids`. `skip_special` leaves out control and unknown
    /// tokens (and the BOS/EOS the model adds) as llama.cpp's
    /// `llama_detokenize(remove_special, !unparse_special)` does; bytes that
    /// are not UTF-8 become U+FFFD.
    pub fn decode(&self, ids: &[u32], skip_special: bool) -> Result<String, ModelError> {
        let mut stream = self.stream_decoder(skip_special);
        let mut bytes = Vec::new();
        for &id in ids {
            bytes.extend_from_slice(stream.piece(self, id)?);
        }
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// A decoder that turns ids into text one at a time (see
    /// [`StreamDecoder`]); `skip_special` as for [`Tokenizer::decode`].
    pub fn stream_decoder(&self, skip_special: bool) -> StreamDecoder {
        StreamDecoder {
            skip_special,
            pending: Vec::new(),
            started: false,
        }
    }

    /// What token `id` renders as (special tokens as their text), or an
    /// error for an id outside the vocabulary.
    pub fn piece(&self, id: u32) -> Result<&[u8], ModelError> {
        self.pieces
            .get(id as usize)
            .map(|p| &p[..])
            .ok_or_else(|| self.out_of_range(id))
    }

    fn out_of_range(&self, id: u32) -> ModelError {
        ModelError::Request(format!(
            "token id {id} is outside the vocabulary of {} tokens",
            self.tokens.len()
        ))
    }

    /// The token's text as the vocabulary writes it (`Ġhello`, `▁hello`,
    /// `<|im_end|>`, `<0x0A>`).
    pub fn token_text(&self, id: u32) -> Option<&str> {
        self.tokens.get(id as usize).map(String::as_str)
    }

    /// The id of the token whose vocabulary text is `text`.
    pub fn token_id(&self, text: &str) -> Option<u32> {
        self.bpe.token_to_id(text)
    }

    /// What kind of token `id` is.
    pub fn token_kind(&self, id: u32) -> Option<TokenKind> {
        self.kinds.get(id as usize).copied()
    }

    /// Number of tokens.
    pub fn vocab_size(&self) -> usize {
        self.tokens.len()
    }

    /// The tokenizer model.
    pub fn model(&self) -> TokenizerModel {
        self.model
    }

    /// The pre-tokenizer name (`tokenizer.ggml.pre`) of a BPE tokenizer.
    pub fn pre_tokenizer(&self) -> Option<&str> {
        self.pre.as_deref()
    }

    /// The beginning-of-sequence token.
    pub fn bos(&self) -> Option<u32> {
        self.bos
    }

    /// The end-of-sequence token.
    pub fn eos(&self) -> Option<u32> {
        self.eos
    }

    /// The end-of-turn token (`<|im_end|>`, `<|eot_id|>`, ...), from the
    /// file or found by its text.
    pub fn eot(&self) -> Option<u32> {
        self.eot
    }

    /// The end-of-message token (`<|eom_id|>`).
    pub fn eom(&self) -> Option<u32> {
        self.eom
    }

    /// The unknown token.
    pub fn unk(&self) -> Option<u32> {
        self.unk
    }

    /// The padding token.
    pub fn pad(&self) -> Option<u32> {
        self.pad
    }

    /// Whether [`Tokenizer::encode`] with `add_special` puts BOS first.
    pub fn add_bos(&self) -> bool {
        self.add_bos
    }

    /// Whether [`Tokenizer::encode`] with `add_special` puts EOS last.
    pub fn add_eos(&self) -> bool {
        self.add_eos
    }

    /// Whether generating `id` ends generation: EOS, EOT, EOM and the
    /// tokens llama.cpp recognises as such by their text (`<|im_end|>`,
    /// `<|endoftext|>`, `<|eot_id|>`, FIM pad/repo/separator markers...).
    pub fn is_eog(&self, id: u32) -> bool {
        self.eog.contains(&id)
    }

    /// The end-of-generation tokens, ascending.
    pub fn eog_ids(&self) -> Vec<u32> {
        let mut ids: Vec<u32> = self.eog.iter().copied().collect();
        ids.sort_unstable();
        ids
    }
}

enum Fragment {
    Text(std::ops::Range<usize>),
    Token(u32),
}

/// Turns token ids into text one id at a time, for streaming generated
/// tokens: [`StreamDecoder::push`] returns the text completed by that id
/// and holds back the bytes of a character not complete yet (a multi-byte
/// character split over byte-fallback or byte-level tokens comes out whole,
/// once). The concatenation of everything pushed, followed by
/// [`StreamDecoder::finish`], is [`Tokenizer::decode`] of the same ids.
///
/// The decoder does not borrow the tokenizer (it can live in a request's
/// state); pass the tokenizer it was made from to each call.
#[derive(Debug, Clone)]
pub struct StreamDecoder {
    skip_special: bool,
    pending: Vec<u8>,
    started: bool,
}

impl StreamDecoder {
    /// The bytes `id` adds, following llama.cpp's detokenizer: with
    /// `skip_special`, a leading BOS the model adds and control tokens
    /// render as nothing; a SentencePiece model that prefixes a space drops
    /// the first token's leading space (unless a skipped BOS came first).
    fn piece<'t>(&mut self, tok: &'t Tokenizer, id: u32) -> Result<&'t [u8], ModelError> {
        let mut piece = tok.piece(id)?;
        let first = !self.started;
        self.started = true;
        if self.skip_special {
            if first && tok.add_bos && Some(id) == tok.bos {
                return Ok(&[]);
            }
            if tok.kinds[id as usize].is_skippable() {
                // a skipped special token still counts as the first one
                return Ok(&[]);
            }
        }
        if first && tok.add_space_prefix {
            piece = piece.strip_prefix(b" ").unwrap_or(piece);
        }
        Ok(piece)
    }

    /// Adds token `id`; returns the text it completes (possibly empty).
    pub fn push(&mut self, tokenizer: &Tokenizer, id: u32) -> Result<String, ModelError> {
        let piece = self.piece(tokenizer, id)?;
        self.pending.extend_from_slice(piece);
        let mut out = String::new();
        let mut rest: &[u8] = &self.pending;
        loop {
            match std::str::from_utf8(rest) {
                Ok(s) => {
                    out.push_str(s);
                    rest = &[];
                    break;
                }
                Err(e) => {
                    let (valid, after) = rest.split_at(e.valid_up_to());
                    // valid_up_to is a character boundary
                    out.push_str(std::str::from_utf8(valid).unwrap_or_default());
                    match e.error_len() {
                        // an invalid sequence: replaced, as decode does
                        Some(len) => {
                            out.push('\u{fffd}');
                            rest = &after[len..];
                        }
                        // a character not complete yet: held back
                        None => {
                            rest = after;
                            break;
                        }
                    }
                }
            }
        }
        let keep = rest.len();
        let start = self.pending.len() - keep;
        self.pending.drain(..start);
        Ok(out)
    }

    /// The text still held back (an incomplete character at the end of the
    /// sequence, as U+FFFD), and a reset for the next sequence.
    pub fn finish(&mut self) -> String {
        let out = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        self.started = false;
        out
    }

    /// Bytes held back waiting for the rest of a character.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }
}

/// The merges of a byte-level BPE file, first occurrence of a pair kept,
/// each checked against the vocabulary.
fn bpe_merges(
    meta: &Metadata,
    ids: &HashMap<&str, u32>,
) -> Result<Vec<(String, String)>, ModelError> {
    let raw = meta.get_slice::<String>(KEY_MERGES)?;
    let mut seen = HashSet::with_capacity(raw.len());
    let mut merges = Vec::with_capacity(raw.len());
    for (i, m) in raw.iter().enumerate() {
        // the first space after the first byte separates the two tokens
        let split = m
            .bytes()
            .skip(1)
            .position(|b| b == b' ')
            .map(|p| p + 1)
            .ok_or_else(|| {
                bad(
                    KEY_MERGES,
                    format!("merge {i} ({m:?}) is not two tokens separated by a space"),
                )
            })?;
        let (a, b) = (&m[..split], &m[split + 1..]);
        for part in [a, b] {
            if !ids.contains_key(part) {
                return Err(bad(
                    KEY_MERGES,
                    format!("merge {i} ({m:?}) names {part:?}, which is not in the vocabulary"),
                ));
            }
        }
        let joined = format!("{a}{b}");
        if !ids.contains_key(joined.as_str()) {
            return Err(bad(
                KEY_MERGES,
                format!("merge {i} ({m:?}) makes {joined:?}, which is not in the vocabulary"),
            ));
        }
        if seen.insert((a, b)) {
            merges.push((a.to_string(), b.to_string()));
        }
    }
    Ok(merges)
}

/// A SentencePiece vocabulary's merges: every split of a token into two
/// tokens, ranked by the token's score (higher first), then by id and
/// split point.
fn spm_merges(
    tokens: &[String],
    scores: &[f32],
    ids: &HashMap<&str, u32>,
) -> Vec<(String, String)> {
    let mut candidates: Vec<(f32, u32, usize)> = Vec::new();
    for (id, t) in tokens.iter().enumerate() {
        for (at, _) in t.char_indices().skip(1) {
            if ids.contains_key(&t[..at]) && ids.contains_key(&t[at..]) {
                candidates.push((scores[id], id as u32, at));
            }
        }
    }
    candidates.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
    let mut seen = HashSet::with_capacity(candidates.len());
    candidates
        .into_iter()
        .filter_map(|(_, id, at)| {
            let t = &tokens[id as usize];
            let pair = (t[..at].to_string(), t[at..].to_string());
            seen.insert(pair.clone()).then_some(pair)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use exodus_gguf::writer::GgufWriter;
    use exodus_gguf::Gguf;

    fn build(w: &GgufWriter) -> Result<Tokenizer, ModelError> {
        let bytes = w.to_bytes();
        let file = Gguf::parse(&bytes[..]).unwrap();
        Tokenizer::from_gguf(&file)
    }

    /// A byte-level BPE vocabulary: the 256 byte characters, a few merges,
    /// and special tokens.
    fn gpt2_writer(extra: impl FnOnce(&mut GgufWriter)) -> GgufWriter {
        let alphabet = byte_chars();
        let mut tokens: Vec<String> = vec![
            "<|endoftext|>".into(),
            "<|im_start|>".into(),
            "<|im_end|>".into(),
            "<tool>".into(),
        ];
        let mut types = vec![3i32, 3, 3, 4];
        for c in alphabet {
            tokens.push(c.to_string());
            types.push(1);
        }
        let merges = [
            "h e", "l l", "he ll", "hell o", "Ġ w", "o r", "Ġw or", "l d", "Ġwor ld", "Ġ Ġ",
        ];
        for m in merges {
            tokens.push(m.replace(' ', ""));
            types.push(1);
        }
        let mut w = GgufWriter::new();
        w.set("tokenizer.ggml.model", "gpt2").unwrap();
        w.set("tokenizer.ggml.pre", "smollm").unwrap();
        w.set(
            "tokenizer.ggml.tokens",
            Vec::from_iter(tokens.iter().map(String::as_str)),
        )
        .unwrap();
        w.set("tokenizer.ggml.token_type", types).unwrap();
        w.set("tokenizer.ggml.merges", merges.to_vec()).unwrap();
        w.set("tokenizer.ggml.bos_token_id", 1u32).unwrap();
        w.set("tokenizer.ggml.eos_token_id", 2u32).unwrap();
        extra(&mut w);
        w
    }

    fn id(t: &Tokenizer, text: &str) -> u32 {
        t.token_id(text)
            .unwrap_or_else(|| panic!("{text:?} not in vocab"))
    }

    #[test]
    fn bpe_merges_apply_by_rank() {
        let t = build(&gpt2_writer(|_| {})).unwrap();
        let ids = t.encode("hello world", false, false).unwrap();
        assert_eq!(ids, [id(&t, "hello"), id(&t, "Ġworld")]);
        // "hel" has no merge of its own: he + l
        assert_eq!(
            t.encode("hel", false, false).unwrap(),
            [id(&t, "he"), id(&t, "l")]
        );
        // digits are split one by one (smollm), spaces byte-mapped
        assert_eq!(
            t.encode("12  x", false, false).unwrap(),
            [
                id(&t, "1"),
                id(&t, "2"),
                id(&t, "Ġ"),
                id(&t, "Ġ"),
                id(&t, "x")
            ]
        );
        assert_eq!(
            t.decode(&t.encode("hello  world\n", false, false).unwrap(), false)
                .unwrap(),
            "hello  world\n"
        );
        assert_eq!(t.vocab_size(), 4 + 256 + 10);
        assert_eq!(t.model(), TokenizerModel::Bpe);
        assert_eq!(t.pre_tokenizer(), Some("smollm"));
    }

    #[test]
    fn special_tokens_are_matched_whole() {
        let t = build(&gpt2_writer(|_| {})).unwrap();
        let text = "<|im_start|>hello<|im_end|><tool>";
        let on = t.encode(text, false, true).unwrap();
        assert_eq!(on, [1, id(&t, "hello"), 2, 3]);
        // control tokens are plain text without parse_special; the
        // user-defined <tool> is matched either way
        let off = t.encode(text, false, false).unwrap();
        assert_eq!(off.last(), Some(&3));
        assert!(!off.contains(&1) && !off.contains(&2));
        assert_eq!(t.decode(&off, false).unwrap(), text);
        assert_eq!(t.decode(&on, false).unwrap(), text);
        assert_eq!(t.decode(&on, true).unwrap(), "hello<tool>");
        // end of generation: eos and the texts llama.cpp knows
        assert!(t.is_eog(2) && t.is_eog(0) && !t.is_eog(1) && !t.is_eog(3));
        assert_eq!(t.eot(), Some(2));
        assert_eq!(t.token_kind(3), Some(TokenKind::UserDefined));
        // no BOS unless the file asks for it; then encode adds it
        assert_eq!(t.encode("x", true, false).unwrap(), [id(&t, "x")]);
        let t = build(&gpt2_writer(|w| {
            w.set("tokenizer.ggml.add_bos_token", true).unwrap();
        }))
        .unwrap();
        assert_eq!(t.encode("x", true, false).unwrap(), [1, id(&t, "x")]);
        assert_eq!(t.decode(&[1, id(&t, "x")], true).unwrap(), "x");
    }

    /// A SentencePiece vocabulary with byte fallback tokens.
    fn spm_writer(extra: impl FnOnce(&mut GgufWriter)) -> GgufWriter {
        let mut tokens: Vec<String> = vec!["<unk>".into(), "<s>".into(), "</s>".into()];
        let mut types = vec![2i32, 3, 3];
        let mut scores = vec![0f32, 0.0, 0.0];
        for b in 0..=255u8 {
            tokens.push(format!("<0x{b:02X}>"));
            types.push(6);
            scores.push(0.0);
        }
        for (i, t) in [
            "▁", "h", "e", "l", "o", "w", "r", "d", "he", "ll", "hell", "hello", "▁hello", "▁w",
            "or", "▁wor", "ld", "▁world", "é",
        ]
        .iter()
        .enumerate()
        {
            tokens.push(t.to_string());
            types.push(1);
            scores.push(-(i as f32));
        }
        let mut w = GgufWriter::new();
        w.set("tokenizer.ggml.model", "llama").unwrap();
        w.set(
            "tokenizer.ggml.tokens",
            Vec::from_iter(tokens.iter().map(String::as_str)),
        )
        .unwrap();
        w.set("tokenizer.ggml.token_type", types).unwrap();
        w.set("tokenizer.ggml.scores", scores).unwrap();
        extra(&mut w);
        w
    }

    #[test]
    fn sentencepiece_with_byte_fallback() {
        let t = build(&spm_writer(|_| {})).unwrap();
        assert_eq!(t.model(), TokenizerModel::SentencePiece);
        assert_eq!((t.bos(), t.eos(), t.unk()), (Some(1), Some(2), Some(0)));
        // BOS by default, space prefix, merges by score
        let ids = t.encode("hello world", true, false).unwrap();
        assert_eq!(ids, [1, id(&t, "▁hello"), id(&t, "▁world")]);
        // characters outside the vocabulary fall back to their UTF-8 bytes
        let ids = t.encode("h€é", false, false).unwrap();
        assert_eq!(
            ids,
            [
                id(&t, "▁"),
                id(&t, "h"),
                id(&t, "<0xE2>"),
                id(&t, "<0x82>"),
                id(&t, "<0xAC>"),
                id(&t, "é")
            ]
        );
        assert_eq!(t.decode(&ids, false).unwrap(), "h€é");
        // the leading space comes off when decoding; BOS is skipped
        assert_eq!(
            t.decode(&t.encode("hello world", true, false).unwrap(), true)
                .unwrap(),
            " hello world"
        );
        assert_eq!(
            t.decode(&t.encode("hello world", false, false).unwrap(), true)
                .unwrap(),
            "hello world"
        );
        // streaming: the euro sign arrives whole with its third byte
        let mut s = t.stream_decoder(false);
        let parts: Vec<String> = ids.iter().map(|&i| s.push(&t, i).unwrap()).collect();
        assert_eq!(parts, ["", "h", "", "", "€", "é"]);
        assert_eq!(s.finish(), "");
        // a special token in text, then a space prefix after it
        let ids = t.encode("<s>hello", false, true).unwrap();
        assert_eq!(ids, [1, id(&t, "▁hello")]);
    }

    #[test]
    fn stream_decoder_replaces_invalid_bytes_as_decode_does() {
        let t = build(&spm_writer(|_| {})).unwrap();
        let b = |x: u8| id(&t, &format!("<0x{x:02X}>"));
        // a lone continuation byte, a truncated character, then a complete one
        let ids = [
            b(0x80),
            b(0xE2),
            b(0x82),
            b(0x41),
            b(0xC3),
            b(0xA9),
            b(0xE2),
        ];
        let whole = t.decode(&ids, false).unwrap();
        let mut s = t.stream_decoder(false);
        let mut streamed = String::new();
        for &i in &ids {
            streamed.push_str(&s.push(&t, i).unwrap());
        }
        assert_eq!(s.pending(), 1);
        streamed.push_str(&s.finish());
        assert_eq!(streamed, whole);
        assert_eq!(whole, "\u{fffd}\u{fffd}Aé\u{fffd}");
    }

    #[test]
    fn typed_errors_for_bad_metadata() {
        // token types of another length
        let mut w = GgufWriter::new();
        w.set("tokenizer.ggml.model", "gpt2").unwrap();
        w.set("tokenizer.ggml.pre", "gpt-2").unwrap();
        w.set("tokenizer.ggml.tokens", vec!["a", "b"]).unwrap();
        w.set("tokenizer.ggml.token_type", vec![1i32]).unwrap();
        w.set("tokenizer.ggml.merges", Vec::<&str>::new()).unwrap();
        let err = build(&w).unwrap_err();
        assert!(
            matches!(&err, ModelError::Tokenizer { key, .. } if key == KEY_TYPES),
            "{err}"
        );
        assert_eq!(
            err.to_string(),
            "tokenizer metadata `tokenizer.ggml.token_type`: 1 token types for 2 tokens"
        );

        // merges naming tokens outside the vocabulary
        let mut w = GgufWriter::new();
        w.set("tokenizer.ggml.model", "gpt2").unwrap();
        w.set("tokenizer.ggml.pre", "gpt-2").unwrap();
        w.set("tokenizer.ggml.tokens", vec!["a", "b", "ab"])
            .unwrap();
        w.set("tokenizer.ggml.merges", vec!["a b", "ab c"]).unwrap();
        let err = build(&w).unwrap_err();
        assert!(
            matches!(&err, ModelError::Tokenizer { key, reason } if key == KEY_MERGES && reason.contains("\"c\"")),
            "{err}"
        );
        let mut w = GgufWriter::new();
        w.set("tokenizer.ggml.model", "gpt2").unwrap();
        w.set("tokenizer.ggml.pre", "gpt-2").unwrap();
        w.set("tokenizer.ggml.tokens", vec!["a", "b"]).unwrap();
        w.set("tokenizer.ggml.merges", vec!["a b"]).unwrap();
        let err = build(&w).unwrap_err();
        assert!(err.to_string().contains("makes \"ab\""), "{err}");
        let mut w = GgufWriter::new();
        w.set("tokenizer.ggml.model", "gpt2").unwrap();
        w.set("tokenizer.ggml.tokens", vec!["a", "b"]).unwrap();
        w.set("tokenizer.ggml.merges", vec!["ab"]).unwrap();
        assert!(matches!(build(&w), Err(ModelError::Tokenizer { .. })));

        // unknown tokenizer model and pre-tokenizer
        let mut w = GgufWriter::new();
        w.set("tokenizer.ggml.model", "bert").unwrap();
        w.set("tokenizer.ggml.tokens", vec!["a"]).unwrap();
        let err = build(&w).unwrap_err();
        assert!(err.to_string().contains("'bert' is not supported"), "{err}");
        let mut w = GgufWriter::new();
        w.set("tokenizer.ggml.model", "gpt2").unwrap();
        w.set("tokenizer.ggml.pre", "tekken").unwrap();
        w.set("tokenizer.ggml.tokens", vec!["a"]).unwrap();
        w.set("tokenizer.ggml.merges", Vec::<&str>::new()).unwrap();
        let err = build(&w).unwrap_err();
        assert!(
            matches!(&err, ModelError::Tokenizer { key, .. } if key == KEY_PRE),
            "{err}"
        );

        // missing keys are the reader's typed errors
        let mut w = GgufWriter::new();
        w.set("tokenizer.ggml.model", "gpt2").unwrap();
        w.set("tokenizer.ggml.tokens", vec!["a"]).unwrap();
        let err = build(&w).unwrap_err();
        assert_eq!(
            err.to_string(),
            "metadata key `tokenizer.ggml.merges` is missing"
        );
        let w = GgufWriter::new();
        assert!(matches!(build(&w), Err(ModelError::Gguf(_))));

        // a byte token not written <0xXX>, duplicates, BOS asked for but absent
        let mut w = GgufWriter::new();
        w.set("tokenizer.ggml.model", "llama").unwrap();
        w.set(
            "tokenizer.ggml.tokens",
            vec!["<unk>", "<s>", "</s>", "<0x4>"],
        )
        .unwrap();
        w.set("tokenizer.ggml.token_type", vec![2i32, 3, 3, 6])
            .unwrap();
        assert!(build(&w).unwrap_err().to_string().contains("<0xXX>"));
        let mut w = GgufWriter::new();
        w.set("tokenizer.ggml.model", "llama").unwrap();
        w.set("tokenizer.ggml.tokens", vec!["<unk>", "<s>", "<s>"])
            .unwrap();
        assert!(build(&w).unwrap_err().to_string().contains("appears twice"));
        let mut w = GgufWriter::new();
        w.set("tokenizer.ggml.model", "gpt2").unwrap();
        w.set("tokenizer.ggml.tokens", vec!["a"]).unwrap();
        w.set("tokenizer.ggml.merges", Vec::<&str>::new()).unwrap();
        w.set("tokenizer.ggml.add_bos_token", true).unwrap();
        assert!(build(&w).unwrap_err().to_string().contains("no BOS token"));

        // special ids: -1 or past the vocabulary means none, a string is an error
        let t = build(&gpt2_writer(|w| {
            w.set("tokenizer.ggml.padding_token_id", -1i32).unwrap();
            w.set("tokenizer.ggml.unknown_token_id", 100_000u32)
                .unwrap();
        }))
        .unwrap();
        assert_eq!((t.pad(), t.unk()), (None, None));
        let err = build(&gpt2_writer(|w| {
            w.set("tokenizer.ggml.padding_token_id", "2").unwrap();
        }))
        .unwrap_err();
        assert!(matches!(err, ModelError::Gguf(_)), "{err}");
    }

    #[test]
    fn every_supported_pre_tokenizer_compiles_and_splits() {
        for &pre in SUPPORTED_PRE_TOKENIZERS {
            let mut w = GgufWriter::new();
            let alphabet = byte_chars();
            let tokens: Vec<String> = alphabet.iter().map(|c| c.to_string()).collect();
            w.set("tokenizer.ggml.model", "gpt2").unwrap();
            w.set("tokenizer.ggml.pre", pre).unwrap();
            w.set(
                "tokenizer.ggml.tokens",
                Vec::from_iter(tokens.iter().map(String::as_str)),
            )
            .unwrap();
            w.set("tokenizer.ggml.merges", Vec::<&str>::new()).unwrap();
            w.set("tokenizer.ggml.bos_token_id", 0u32).unwrap();
            let t = build(&w).unwrap_or_else(|e| panic!("{pre}: {e}"));
            let text = "It's 1234 日本語 ok!\n\n  x";
            let ids = t.encode(text, false, false).unwrap();
            assert_eq!(ids.len(), text.len(), "{pre}");
            assert_eq!(t.decode(&ids, false).unwrap(), text, "{pre}");
        }
    }
}
