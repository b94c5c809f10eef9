#!/usr/bin/env bash
# The hub's load figures (issue 16): `syncline bench-sync` on the embedded backend and on a
# PostgreSQL cluster this script starts in a temporary folder (Unix socket only), for the
# shared data set (100 clients x 100 changes) and for many namespaces (1,000 clients in 1,000
# namespaces, small deltas): as fast as each client can go (a closed loop, where latency is
# the queue of 1,000 clients: clients / throughput), and paced at one sync per client per
# second on a warm hub (an offered load of 1,000 syncs/s, latency counted from when each sync
# was due). Prints syncs/s and latency percentiles for each.
# Usage: bash scripts/bench-hub.sh [path/to/syncline]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cli="${1:-$root/target/release/syncline}"
[ -x "$cli" ] || (cd "$root" && cargo build --release -p syncline-cli)
bin="$(pg_config --bindir 2>/dev/null || echo /usr/lib/postgresql/15/bin)"
[ -x "$bin/initdb" ] || bin=/usr/lib/postgresql/15/bin
pgdir="$(mktemp -d)"
as=()
if [ "$(id -u)" = 0 ]; then chown postgres: "$pgdir"; as=(runuser -u postgres --); fi
"${as[@]}" "$bin/initdb" -D "$pgdir/data" -U syncline --auth=trust -E UTF8 >/dev/null
"${as[@]}" "$bin/pg_ctl" -D "$pgdir/data" -o "-k $pgdir -c listen_addresses='' -p 5432" -l "$pgdir/log" -w start >/dev/null
trap '"${as[@]}" "$bin/pg_ctl" -D "$pgdir/data" -m immediate stop >/dev/null; rm -rf "$pgdir"' EXIT
url="host=$pgdir port=5432 user=syncline dbname=postgres"
ulimit -n 20000 2>/dev/null || true
run() { echo "+ bench-sync $*" | sed "s|$pgdir|PGDIR|"; "$cli" bench-sync "$@"; }
paced=(--clients 1000 --changes 20 --batch 2 --namespaces 1000 --warm --interval-ms 1000)
run --clients 100 --changes 100
run --clients 1000 --changes 10 --batch 5 --namespaces 1000
run "${paced[@]}"
run --clients 100 --changes 100 --postgres "$url"
run --clients 1000 --changes 10 --batch 5 --namespaces 1000 --postgres "$url"
run "${paced[@]}" --postgres "$url"
