#!/usr/bin/env bash
# The deployment fault simulation at scale (issue 12, core/tests/simulation.rs): a server and
# 2-5 clients through random schedules of writes, faulty syncs, re-deliveries, restarts and
# clock skew, then the invariants (convergence, no lost write, nothing hostile applied).
# Prints the number of schedules, divergences and lost writes; exits non-zero on any failure.
#
# Usage: scripts/simulate.sh [CASES]        (default 10000, honest clients only)
# Environment: SYNCLINE_SIM_HOSTILE=1 adds the hostile-client simulation (same count),
#   SYNCLINE_SIM_ATTACKS=1,2,7,14,0 limits its attacks to those issue items,
#   SYNCLINE_SIM_SEED=N another seed, SYNCLINE_SIM_JOBS=N parallel workers (default: cores),
#   SYNCLINE_SIM_PROFILE=debug to skip the release build.
set -uo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
export SYNCLINE_SIM_CASES="${1:-10000}"
export SYNCLINE_SIM_HOSTILE="${SYNCLINE_SIM_HOSTILE:-0}"
export SYNCLINE_SIM_JOBS="${SYNCLINE_SIM_JOBS:-$(nproc 2>/dev/null || echo 2)}"
profile=(--release)
[ "${SYNCLINE_SIM_PROFILE:-release}" = "debug" ] && profile=()
log="$(mktemp -t syncline-sim.XXXXXX)"
start=$(date +%s)
# One test at a time: each already uses SYNCLINE_SIM_JOBS workers.
cargo test "${profile[@]}" -p syncline --features net --test simulation -- --nocapture --test-threads 1 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
echo
echo "==== simulation summary ($(( $(date +%s) - start )) s, full log: $log) ===="
grep -E '^(simulation \(|failed schedules:|  +[0-9]+ schedules:)' "$log" || echo "no summary: the build or the run failed"
exit "$status"
