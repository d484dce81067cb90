//! What the binary's end-to-end tests share: running `exodus` as a real
//! process.

#![allow(dead_code)]

use std::io::Write;
use std::process::{Command, Output, Stdio};

/// Runs the `exodus` binary with `args`, feeding it `stdin` (if any), and
/// returns its exit status and output.
pub fn exodus(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_exodus"))
        .args(args)
        .env("RUST_BACKTRACE", "0")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("exodus starts");
    let mut input = child.stdin.take().expect("stdin");
    if let Some(bytes) = stdin {
        // A command that fails fast (bad arguments) may exit before reading.
        match input.write_all(bytes) {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
            other => other.expect("write stdin"),
        }
    }
    drop(input);
    child.wait_with_output().expect("exodus runs")
}

/// The stdout and stderr of a run that must have succeeded (the test
/// fails with both shown otherwise).
pub fn ok(out: &Output) -> (String, String) {
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    (stdout, stderr)
}
