#!/usr/bin/env bash
# Runs every test suite of every language, installing what is missing first. One failing suite
# does not hide the others: all run, and the exit code is non-zero if any failed.
# Usage: bash scripts/test-all.sh
set -uo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
export CARGO_TERM_COLOR=never
failed=()

step() { echo; echo "==== $* ===="; }

need_apt() {
  local missing=()
  for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
  if [ ${#missing[@]} -gt 0 ]; then
    step "apt-get install ${missing[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}
need_apt sqlite3

step "Rust: formatting and lints"
cargo fmt --all --check 2>&1 || failed+=("rustfmt")
cargo clippy --all-targets --features syncline/net -- -D warnings 2>&1 || failed+=("clippy")
# the build the bindings and the extension use: no SQLite of its own (core/src/host)
cargo clippy -p syncline -p syncline-sqlite --no-default-features --features syncline/host-sqlite,syncline/net --all-targets -- -D warnings 2>&1 \
  || failed+=("clippy-host")

step "Rust: core and CLI"
cargo test -p syncline -p syncline-cli 2>&1 || failed+=("rust")
cargo test -p syncline --no-default-features --features host-sqlite --test host 2>&1 || failed+=("rust-host")

step "CLI binary (used by the cross-language tests)"
if cargo build --release -p syncline-cli 2>&1; then
  export SYNCLINE_CLI="$root/target/release/syncline"
else
  failed+=("cli-build")
fi

for suite in ext python node bindings; do
  if [ -x "$suite/test.sh" ]; then
    step "$suite"
    bash "$suite/test.sh" || failed+=("$suite")
  fi
done

step "interop matrix: five languages, identical bundles, one state hash"
python3 scripts/interop-matrix.py || failed+=("interop")

step "network interop: Python, Node and the CLI converge through one server (killed and restarted)"
python3 scripts/net-interop.py || failed+=("net-interop")

step "hub admin page in headless Chromium (playwright-core)"
bash scripts/admin-page/test.sh || failed+=("admin-page")

echo
if [ ${#failed[@]} -gt 0 ]; then
  echo "FAILED suites: ${failed[*]}"
  exit 1
fi
echo "all suites passed"
