#!/usr/bin/env bash
# Runs every test, browser tests included, after installing what a fresh
# Debian machine lacks (Chromium, ChromeDriver, a Java runtime for the Nu HTML
# Checker, and the npm packages vnu-jar and axe-core). Nothing is skipped.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/browser-deps.sh

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --all-targets --locked -- -D warnings
echo "== cargo test"
cargo test --locked -- --test-threads=4
