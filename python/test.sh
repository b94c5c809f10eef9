#!/usr/bin/env bash
# Build, install and test the Python package from a fresh machine:
#   1. a tool venv (python/.venv) with maturin, pytest and mypy;
#   2. `maturin build --release` -> python/dist/*.whl (abi3, CPython >= 3.9, manylinux_2_34),
#      checked with `auditwheel show`, no libsqlite3 in DT_NEEDED, sqlite3_syncline_init exported;
#   3. a FRESH venv (python/.venv-test, recreated every run) with only the wheel + pytest + mypy,
#      so the packaging itself is tested (not `maturin develop`);
#   4. mypy --strict on the package, the tests and bench.py; stubtest of syncline._native
#      against the installed module (the .pyi must match the real module);
#   5. pytest against the installed wheel.
# Exits non-zero on any failure. Needs no stdin (CI=true is fine).
#
# Environment: PYTHON (default python3), CARGO_TARGET_DIR (default <repo>/target),
# SYNCLINE_CLI (the `syncline` command whose `serve` the network tests start; default: the
# console script of the wheel just installed, i.e. the Rust CLI built from this checkout).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"
PYTHON="${PYTHON:-python3}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$REPO/target}"
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1

TOOLS="$HERE/.venv"

FRESH="$HERE/.venv-test"
DIST="$HERE/dist"

step() { printf '\n== %s\n' "$*"; }

step "tool venv ($TOOLS)"
if [ ! -x "$TOOLS/bin/python" ]; then
    "$PYTHON" -m venv "$TOOLS"
fi
"$TOOLS/bin/python" -m pip install --quiet 'maturin>=1.9.4,<2' pytest mypy auditwheel

step "build the wheel (CARGO_TARGET_DIR=$CARGO_TARGET_DIR)"
rm -rf "$DIST"
"$TOOLS/bin/maturin" build --release --manifest-path "$HERE/Cargo.toml" --out "$DIST"
WHEEL="$(ls "$DIST"/syncline-*.whl)"
echo "built $WHEEL"

step "publishable: a manylinux wheel that links no SQLite"
"$TOOLS/bin/auditwheel" show "$WHEEL" | tee "$DIST/auditwheel.txt"
tr -s ' \n' ' ' < "$DIST/auditwheel.txt" | grep -q 'is consistent with the following platform tag: "manylinux_' \
  || { echo "auditwheel: the wheel is not a manylinux wheel" >&2; exit 1; }
case "$(basename "$WHEEL")" in *manylinux*) ;; *) echo "the wheel is not tagged manylinux: $WHEEL" >&2; exit 1 ;; esac
NATIVE="$(mktemp -d)"
(cd "$NATIVE" && "$TOOLS/bin/python" -m zipfile -e "$WHEEL" .)
SO="$(ls "$NATIVE"/syncline/_native*.so)"
if readelf -d "$SO" | grep NEEDED | grep -qi sqlite; then
  echo "the extension links a SQLite library (it must run on the sqlite3 module's):" >&2; readelf -d "$SO" | grep NEEDED >&2; exit 1
fi
nm -D --defined-only "$SO" | grep -qw sqlite3_syncline_init \
  || { echo "the extension does not export sqlite3_syncline_init (the load_extension route needs it)" >&2; exit 1; }
rm -rf "$NATIVE"
echo "no libsqlite3 in DT_NEEDED; sqlite3_syncline_init exported"

step "install it into a fresh venv ($FRESH)"
rm -rf "$FRESH"
"$PYTHON" -m venv "$FRESH"
"$FRESH/bin/python" -m pip install --quiet "$WHEEL" pytest mypy

step "mypy --strict (package, tests, bench)"
(cd "$HERE" && "$TOOLS/bin/mypy" --strict syncline tests bench.py)

# Run from outside the source tree so `import syncline` is the installed wheel.
step "stubtest: _native.pyi against the installed module"
(cd "$FRESH" && "$FRESH/bin/python" -m mypy.stubtest syncline._native)

export SYNCLINE_CLI="${SYNCLINE_CLI:-$FRESH/bin/syncline}"
step "pytest against the installed wheel (SYNCLINE_CLI=$SYNCLINE_CLI)"
(cd "$HERE/tests" && SYNCLINE_REQUIRE_INSTALLED=1 "$FRESH/bin/python" -m pytest -p no:cacheprovider -q -rxs .)

step "python: all checks passed"
