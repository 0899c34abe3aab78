#!/usr/bin/env bash
# Builds the Debian package target/debian/ndmpd_*.deb: the release binary, the man pages and
# shell completions it generates from its own command line, then `cargo deb` (installed from
# crates.io when missing). Prints the package's path last.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo-deb >/dev/null || cargo install cargo-deb --locked
cargo build --release --bin ndmpd
rm -rf target/assets
target/release/ndmpd generate-assets target/assets >/dev/null
cargo deb --no-build --strip 2>&1 | tail -1
