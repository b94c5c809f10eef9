#!/usr/bin/env bash
# Swift and Kotlin bindings (UniFFI 0.32), end to end on Linux:
#   1. build the cdylib (release) and the generator, run the binding crate's unit tests, and check
#      with nm that the library holds no SQLite (core feature host-sqlite: it runs inside the app's
#      own SQLite) and exports the extension entry point sqlite3_syncline_init;
#   2. regenerate the Swift and Kotlin sources and FAIL if they differ from the committed ones;
#   3. `swift test` inside the Debian trixie chroot (scripts/swift-env.sh, cached under /var/cache),
#      SqliteWiringTests included (a second client on the system SQLite's C API, same process);
#   4. the Kotlin/JVM suite with Maven (JUnit 5), SqliteJdbcTest included (sqlite-jdbc, same JVM);
#   5. interop: the bundle the Swift suite wrote imports in Kotlin and in the Rust CLI
#      ($SYNCLINE_CLI, built here if unset) with the very same table;
#   6. the interop agents (scripts/agents/swift, scripts/agents/kotlin) agree on interop.json.
# Before the Swift step it starts a sync server (`$SYNCLINE_CLI serve`, 127.0.0.1, a free port, a
# random token) for the network tests of both suites (NetworkTests / NetworkTest): they get it as
# SYNCLINE_NET_URL and SYNCLINE_NET_TOKEN (the Swift chroot shares the host's network), with
# SYNCLINE_NET_REQUIRED=1 so they fail instead of skipping without it. It is stopped on exit.
# Both suites also run every golden vector of spec/vectors/ (VectorsTests / VectorsTest).
# Prints `swift: N passed, M failed` and `kotlin: N passed, M failed`; exits non-zero on any failure.
# Needs root (chroot, mounts) and the registries (crates.io, Debian, Maven Central). No stdin.
# Honours CARGO_TARGET_DIR (default: <repo>/target).
set -uo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
cd "$repo"
target="${CARGO_TARGET_DIR:-$repo/target}"
case "$target" in /*) ;; *) target="$repo/$target" ;; esac
export CARGO_TARGET_DIR="$target"
export CARGO_TERM_COLOR=never
lib="$target/release/libsyncline_ffi.so"
bindgen="$target/release/uniffi-bindgen"
bindgen_swift="$target/release/uniffi-bindgen-swift"
interop="$here/.interop"
generated=(swift/Sources/SynclineFFI swift/Sources/Syncline/Syncline.swift kotlin/generated)

failed=()
timings=()
t_start=$SECONDS
step() { echo; echo "==== bindings: $* ===="; }
timed() { # NAME CMD...: run, record the time, return the status
  local name="$1" t0=$SECONDS rc=0
  shift
  "$@" || rc=$?
  timings+=("$(printf '%-28s %4ds%s' "$name" $((SECONDS - t0)) "$([ $rc = 0 ] || echo "  (FAILED rc=$rc)")")")
  return $rc
}
finish() {
  echo
  echo "==== bindings: timings ===="
  printf '  %s\n' "${timings[@]}"
  printf '  %-28s %4ds\n' "total" $((SECONDS - t_start))
  [ -n "${swift_summary:-}" ] && echo "$swift_summary"
  [ -n "${kotlin_summary:-}" ] && echo "$kotlin_summary"
  if [ ${#failed[@]} -gt 0 ]; then
    echo "bindings: FAILED: ${failed[*]}"
    exit 1
  fi
  echo "bindings: all passed"
  exit 0
}

# ---------------------------------------------------------------------------------------------
step "cargo build --release -p syncline-ffi / -p uniffi-bindgen (target: $target)"
# Separate invocations: one package selection each, so features never unify differently.
if ! timed "build cdylib" cargo build --release -p syncline-ffi; then failed+=("build-ffi"); finish; fi
if ! timed "build generator" cargo build --release -p uniffi-bindgen; then failed+=("build-bindgen"); finish; fi
timed "rust unit tests (ffi)" cargo test --release -p syncline-ffi --lib || failed+=("ffi-unit-tests")
# One SQLite per process: the library must hold no SQLite of its own (core feature host-sqlite)
# and export the extension entry point that drivers load (sqlite-jdbc, Room's bundled driver).
check_no_sqlite() {
  local defined
  defined="$(nm -D --defined-only "$lib" | awk '$3 ~ /^sqlite3_/ { print $3 }' | sort)"
  if [ "$defined" != "sqlite3_syncline_init" ]; then
    echo "libsyncline_ffi.so must define exactly one sqlite3_* symbol, sqlite3_syncline_init; it defines:"
    echo "${defined:-(none)}" | sed 's/^/  /'
    return 1
  fi
  if nm -D --undefined-only "$lib" | grep -q ' sqlite3_'; then
    echo "libsyncline_ffi.so links SQLite functions it should reach through the bound library:"
    nm -D --undefined-only "$lib" | grep ' sqlite3_' | head
    return 1
  fi
  echo "libsyncline_ffi.so holds no SQLite and exports sqlite3_syncline_init"
}
timed "no SQLite in the library" check_no_sqlite || failed+=("ffi-holds-sqlite")

# ---------------------------------------------------------------------------------------------
step "regenerate Swift and Kotlin sources; compare with the committed ones"
generate() {
  rm -rf swift/Sources/SynclineFFI swift/Sources/Syncline/Syncline.swift kotlin/generated
  # library mode reads bindings/uniffi.toml (a link to the top-level uniffi.toml)
  "$bindgen" generate --no-format --library "$lib" --language kotlin --out-dir kotlin/generated &&
  "$bindgen_swift" --headers --modulemap --module-name SynclineFFI --modulemap-filename module.modulemap \
      "$lib" swift/Sources/SynclineFFI &&
  "$bindgen_swift" --swift-sources "$lib" swift/Sources/Syncline
}
if ! timed "generate" generate; then failed+=("generate"); finish; fi
check_generated() {
  if ! git -C "$repo" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    echo "not a git checkout: cannot compare the generated sources (skipped)"
    return 0
  fi
  local rc=0 untracked
  git -C "$repo" --no-pager diff --stat --exit-code -- "${generated[@]}" || rc=1
  untracked="$(git -C "$repo" ls-files --others --exclude-standard -- "${generated[@]}")"
  if [ -n "$untracked" ]; then
    echo "generated files not in git:"
    echo "$untracked" | sed 's/^/  /'
    if [ "${CI:-}" = "true" ]; then rc=1; else echo "(not committed yet: an error under CI=true)"; fi
  fi
  if [ $rc != 0 ]; then
    echo "ERROR: the committed generated bindings are stale: run bindings/test.sh (or the generate step) and commit ${generated[*]}"
  else
    echo "generated sources match the tree"
  fi
  return $rc
}
timed "generated code up to date" check_generated || failed+=("generated-code-stale")

# The library is copied (not linked) into gitignored folders the packages know: SwiftPM runs
# inside the chroot, which sees the project at the same path but not necessarily $target.
mkdir -p swift/.lib kotlin/.lib
cp -f "$lib" swift/.lib/ && cp -f "$lib" kotlin/.lib/
rm -rf "$interop" && mkdir -p "$interop"

# ---------------------------------------------------------------------------------------------
step "sync server for the network tests (\$SYNCLINE_CLI serve on 127.0.0.1)"
if [ -z "${SYNCLINE_CLI:-}" ]; then
  echo "SYNCLINE_CLI is not set: building the CLI (network tests, interop check)"
  if timed "build CLI" cargo build --release -p syncline-cli; then
    export SYNCLINE_CLI="$target/release/syncline"
  else
    failed+=("build-cli")
  fi
fi
export SYNCLINE_CLI
# the schema of the suites' `todos` table (todosSchema / TODOS)
net_schema="CREATE TABLE IF NOT EXISTS todos(id TEXT PRIMARY KEY, title TEXT, done INTEGER NOT NULL DEFAULT 0, n INTEGER, r REAL, data BLOB)"
server_pid=""
stop_server() {
  if [ -n "$server_pid" ]; then
    kill "$server_pid" 2>/dev/null
    wait "$server_pid" 2>/dev/null
    server_pid=""
  fi
}
trap stop_server EXIT
start_server() {
  local db="$interop/server.db" log="$interop/server.log" i
  [ -x "${SYNCLINE_CLI:-}" ] || { echo "no CLI to serve with"; return 1; }
  rm -f "$db" "$db-wal" "$db-shm"
  python3 -c 'import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); c.executescript(sys.argv[2]); c.close()' \
      "$db" "$net_schema" 2>/dev/null || sqlite3 "$db" "$net_schema" || { echo "cannot create $db (python3 or sqlite3 needed)"; return 1; }
  "$SYNCLINE_CLI" init "$db" --table todos </dev/null || return 1
  SYNCLINE_NET_TOKEN="bindings-$(od -An -N8 -tx8 /dev/urandom | tr -d ' ')"
  "$SYNCLINE_CLI" serve "$db" --port 0 --token "$SYNCLINE_NET_TOKEN" >"$log" 2>&1 </dev/null &
  server_pid=$!
  SYNCLINE_NET_URL=""
  for i in $(seq 200); do
    SYNCLINE_NET_URL="$(grep -m1 -oE 'http://127\.0\.0\.1:[0-9]+' "$log")" && break
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.1
  done
  if [ -z "$SYNCLINE_NET_URL" ]; then
    echo "the server did not start:"; cat "$log"; stop_server; return 1
  fi
  export SYNCLINE_NET_URL SYNCLINE_NET_TOKEN SYNCLINE_NET_REQUIRED=1
  echo "serving $db at $SYNCLINE_NET_URL (pid $server_pid)"
}
timed "start sync server" start_server || failed+=("sync-server")

# ---------------------------------------------------------------------------------------------
step "Swift: swift test in the trixie chroot"
swift_log="$interop/swift-test.log"
run_swift() {
  # the chroot starts with a clean environment: pass the server in explicitly
  "$repo/scripts/swift-env.sh" run "$repo/swift" \
    env SYNCLINE_INTEROP_DIR="$interop" SYNCLINE_NET_URL="${SYNCLINE_NET_URL:-}" \
      SYNCLINE_NET_TOKEN="${SYNCLINE_NET_TOKEN:-}" SYNCLINE_NET_REQUIRED=1 \
      swift test </dev/null 2>&1 | tee "$swift_log"
  return "${PIPESTATUS[0]}"
}
timed "swift chroot setup" "$repo/scripts/swift-env.sh" setup </dev/null || true
if timed "swift test" run_swift; then swift_rc=0; else swift_rc=1; failed+=("swift"); fi
# XCTest's last summary: "Executed 16 tests, with 1 failure (0 unexpected) in ..." or
# "Executed 16 tests, with 2 tests skipped and 1 failure (0 unexpected) in ..."
summary_line="$(grep -E 'Executed [0-9]+ tests?, with ([0-9]+ tests? skipped and )?[0-9]+ failures?' "$swift_log" | tail -n1)"
if [ -n "$summary_line" ]; then
  s_total="$(sed -E 's/.*Executed ([0-9]+) tests?.*/\1/' <<<"$summary_line")"
  s_failed="$(sed -E 's/.* ([0-9]+) failures?.*/\1/' <<<"$summary_line")"
  s_skipped="$(sed -nE 's/.* ([0-9]+) tests? skipped.*/\1/p' <<<"$summary_line")"
  s_skipped="${s_skipped:-0}"
  swift_summary="swift: $((s_total - s_failed - s_skipped)) passed, $s_failed failed$([ "$s_skipped" = 0 ] || echo ", $s_skipped skipped")"
else
  swift_summary="swift: 0 passed, 1 failed (no XCTest summary: the build or the run failed)"
  [ $swift_rc = 0 ] && failed+=("swift")
fi
echo "$swift_summary"

# ---------------------------------------------------------------------------------------------
step "Kotlin: mvn -B -ntp test (JUnit 5, JNA)"
# shellcheck source=/dev/null
source "$repo/scripts/kotlin-env.sh" >/dev/null || { failed+=("kotlin-env"); finish; }
run_kotlin() {
  rm -rf kotlin/target/surefire-reports
  # SYNCLINE_NET_URL/TOKEN/REQUIRED (the server above) are exported
  (cd kotlin && SYNCLINE_INTEROP_DIR="$interop" SYNCLINE_INTEROP_REQUIRED=1 \
    "$SYNCLINE_MVN" -B -ntp test -Dnative.lib.dir="$repo/kotlin/.lib" </dev/null)
}
timed "kotlin mvn test" run_kotlin || failed+=("kotlin")
k_tests=0 k_fail=0 k_skip=0
for f in kotlin/target/surefire-reports/TEST-*.xml; do
  [ -f "$f" ] || continue
  head="$(grep -m1 -o '<testsuite [^>]*>' "$f")"
  attr() { sed -nE "s/.* $1=\"([0-9]+)\".*/\1/p" <<<"$head"; }
  k_tests=$((k_tests + $(attr tests)))
  k_fail=$((k_fail + $(attr failures) + $(attr errors)))
  k_skip=$((k_skip + $(attr skipped)))
done
if [ "$k_tests" = 0 ]; then
  kotlin_summary="kotlin: 0 passed, 1 failed (no surefire reports: the build or the run failed)"
else
  kotlin_summary="kotlin: $((k_tests - k_fail - k_skip)) passed, $k_fail failed$([ "$k_skip" = 0 ] || echo ", $k_skip skipped")"
fi
echo "$kotlin_summary"
# the interop tests must have run (not skipped) for the interop check to count
grep -q 'testcase name="swiftBundleImportsInTheRustCliWithTheSameTable"' kotlin/target/surefire-reports/TEST-dev.syncline.InteropTest.xml 2>/dev/null &&
  ! grep -q '<skipped' kotlin/target/surefire-reports/TEST-dev.syncline.InteropTest.xml ||
  failed+=("interop")

# ---------------------------------------------------------------------------------------------
step "interop agents (scripts/agents/swift, scripts/agents/kotlin) on spec/vectors/interop.json"
# Each agent exports the writer's edits (the bundles must be byte-identical) and imports the other
# agent's bundle; all four state hashes must be equal (scripts/interop-matrix.py adds the others).
check_agents() {
  local spec="$repo/spec/vectors/interop.json" h rc=0 hashes=()
  for lang in swift kotlin; do
    h="$("$repo/scripts/agents/$lang" export "$spec" "$interop/agent-$lang.bundle" </dev/null)" || { echo "$lang export failed"; return 1; }
    echo "$lang export: $h"
    hashes+=("$h")
  done
  cmp "$interop/agent-swift.bundle" "$interop/agent-kotlin.bundle" || { echo "the agents' bundles differ"; rc=1; }
  for pair in "swift kotlin" "kotlin swift"; do
    set -- $pair
    h="$("$repo/scripts/agents/$1" import "$spec" "$interop/agent-$2.bundle" </dev/null)" || { echo "$1 import failed"; return 1; }
    echo "$1 import of the $2 bundle: $h"
    hashes+=("$h")
  done
  if [ "$(printf '%s\n' "${hashes[@]}" | sort -u | wc -l)" != 1 ]; then echo "the agents' state hashes differ"; rc=1; fi
  [ $rc = 0 ] && echo "agents agree: byte-identical bundles, one state hash"
  return $rc
}
timed "interop agents" check_agents || failed+=("agents")
stop_server

finish
