#!/usr/bin/env bash
# Run the library crates' tests as aarch64 binaries under qemu-user, so the
# NEON kernels are checked against the scalar reference on an x86_64 host.
# Installs what it needs (rustup target, cross linker, qemu-user); exits 0
# with a SKIPPED line when those cannot be installed, non-zero when a test fails.
set -uo pipefail
cd "$(dirname "$0")/.."
skip() { echo "aarch64/NEON tests: SKIPPED ($*)"; exit 0; }
rustup target list --installed 2>/dev/null | grep -q aarch64-unknown-linux-gnu ||
  rustup target add aarch64-unknown-linux-gnu >/dev/null 2>&1 || skip "rustup cannot add the aarch64 target"
if ! command -v qemu-aarch64 >/dev/null || ! command -v aarch64-linux-gnu-gcc >/dev/null; then
  command -v apt-get >/dev/null || skip "no apt-get to install qemu-user and the cross linker"
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
      qemu-user gcc-aarch64-linux-gnu libc6-dev-arm64-cross; } >/dev/null 2>&1 ||
    skip "cannot install qemu-user / gcc-aarch64-linux-gnu"
fi
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64 -L /usr/aarch64-linux-gnu"
set -e
cargo test --release -p exodus-numerics -p exodus-kernels -p exodus-runtime -p exodus-trace -p exodus-graph \
  --target aarch64-unknown-linux-gnu
