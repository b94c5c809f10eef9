#!/usr/bin/env bash
# The loadable extension from the sqlite3 shell: builds libsyncline.so (release) and runs
# ext/test.py against it, with the CLI ($SYNCLINE_CLI, default target/release/syncline) serving
# the network case. Prints `ext: N passed, M failed`; exits non-zero on any failure.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
target="${CARGO_TARGET_DIR:-$repo/target}"
command -v sqlite3 >/dev/null || { echo "ext/test.sh: the sqlite3 shell is not installed" >&2; exit 1; }
cargo build --release -p syncline-sqlite
cli="${SYNCLINE_CLI:-$target/release/syncline}"
[ -x "$cli" ] || cargo build --release -p syncline-cli
python3 ext/test.py "$target/release/libsyncline.so" "$cli"
