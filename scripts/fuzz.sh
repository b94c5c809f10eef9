#!/usr/bin/env bash
# Coverage-guided fuzzing with cargo-fuzz (libFuzzer). Not part of CI.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]
#
# Runs each target (default: all of decode_bundle import_bundle server_request client_response)
# for SECONDS (default 600), one after another, niced, one fuzzing process at a time, and
# prints executions, coverage (cov/ft of libFuzzer's last stats line) and crashes per target.
# Corpora are seeded from spec/vectors/*.bundle (fuzz/corpus/<target>/, not committed) plus the
# committed seeds in fuzz/seeds/<target>/ (the regression cases in core/tests/fuzz-cases/ are
# replayed by cargo test instead). Crash inputs land in fuzz/artifacts/<target>/; the logs in
# fuzz/logs/<target>.log.
#
# Environment: FUZZ_ARGS adds libFuzzer flags; FUZZ_FORK=0 stops at the first crash instead of
# running on (-fork=1 -ignore_crashes=1); SYNCLINE_FUZZ_ENDLESS_CURSOR=1 lets client_response
# answer every page with a cursor (finds the unbounded client paging at once).
#
# Reproduce one crash:   cd fuzz && rustup run nightly cargo fuzz run TARGET artifacts/TARGET/crash-...
# Minimize it:           cd fuzz && rustup run nightly cargo fuzz tmin TARGET artifacts/TARGET/crash-...
# Regression cases:      core/tests/fuzz-cases/TARGET/ (cargo test --features net --test fuzz_regressions)
set -euo pipefail

# All in one function, so bash has read the whole script before it runs (editing the file
# during a run cannot break it).
main() {

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root/fuzz"

seconds="${1:-600}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(decode_bundle import_bundle server_request client_response)
fi

if ! rustup run nightly cargo fuzz --version >/dev/null 2>&1; then
  echo "installing cargo-fuzz" >&2
  cargo install cargo-fuzz
fi

# Seeds: every golden bundle in each framing of checks::frame (raw; without checksum; split
# header/body with the harness fixing lengths, fingerprint and checksum).
seed() {
  python3 - "$root/spec/vectors" "$root/fuzz/corpus" "$@" <<'EOF'
import glob, hashlib, os, struct, sys, zlib
vectors, corpus, targets = sys.argv[1], sys.argv[2], sys.argv[3:]

def framings(b):
    out = [b"\x00" + b, b"\x01" + b[:-32]]
    if len(b) >= 16 + 8 + 32 and b[:8] == b"SYNCLINE":
        flags, hlen = struct.unpack(">HI", b[10:16])
        header = b[16:16 + hlen]
        (blen,) = struct.unpack(">Q", b[16 + hlen:24 + hlen])
        body = b[24 + hlen:24 + hlen + blen]
        compressed = flags & 1
        if compressed:
            try:
                body = zlib.decompress(body)
            except zlib.error:
                return out
        if hlen < 65536:
            mode = 3 | (4 if compressed else 0)
            out.append(bytes([mode]) + struct.pack(">H", hlen) + header + body)
            out.append(bytes([mode | 4]) + struct.pack(">H", hlen) + header + body)
    return out

def http(method, path, headers, body=b""):
    h = "".join(f"{k}: {v}\r\n" for k, v in headers)
    return f"{method} {path} HTTP/1.1\r\nHost: fuzz\r\n{h}Content-Length: {len(body)}\r\n\r\n".encode() + body

bundles = [open(p, "rb").read() for p in sorted(glob.glob(os.path.join(vectors, "*.bundle")))]
for t in targets:
    seeds = []
    for b in bundles:
        f = framings(b)
        if t in ("decode_bundle", "import_bundle"):
            seeds += f
        elif t == "client_response":
            seeds += [bytes([flag]) + x for x in f[-2:] for flag in (0, 8, 16)]
        elif t == "server_request":
            seeds += [b"\x01\x00" + x for x in f[-2:]]
            seeds.append(b"\x01\x1cSyncline-Page-Rows: 1\r\nX: y\r\n" + f[-1])
            seeds.append(b"\x00" + http("POST", "/v1/sync", [("Content-Type", "application/vnd.syncline.bundle")], b))
    if t == "server_request":
        seeds += [
            b"\x02",
            b"\x02Authorization: Bearer nope\r\nX: y",
            b"\x02Transfer-Encoding: chunked",
            b"\x01\x1eSyncline-Cursor: 9200a4746f646f",
            b"\x00" + http("GET", "/v1/live", [("Upgrade", "websocket"), ("Connection", "Upgrade"),
                                              ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
                                              ("Sec-WebSocket-Version", "13")]),
            b"\x00POST /v1/sync HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            b"\x00GET /v1/nope HTTP/1.0\r\n\r\n",
        ]
    d = os.path.join(corpus, t)
    os.makedirs(d, exist_ok=True)
    for s in seeds:
        with open(os.path.join(d, "seed-" + hashlib.sha1(s).hexdigest()), "wb") as fh:
            fh.write(s)
EOF
  for t in "$@"; do
    if [ -d "seeds/$t" ]; then cp -n "seeds/$t"/* "corpus/$t/" 2>/dev/null || true; fi
  done
}

seed "${targets[@]}"
nice -n 10 rustup run nightly cargo fuzz build -O >&2

mkdir -p logs
fork=(-fork=1 -ignore_crashes=1)
if [ "${FUZZ_FORK:-1}" = 0 ]; then fork=(-jobs=1 -workers=1); fi
summary=()
for t in "${targets[@]}"; do
  mkdir -p "artifacts/$t"
  before=$(ls "artifacts/$t" | wc -l)
  echo "== $t: ${seconds}s" >&2
  dict=bundle.dict
  [ "$t" = server_request ] && dict=http.dict
  start=$(date +%s)
  # shellcheck disable=SC2086
  nice -n 10 rustup run nightly cargo fuzz run -O "$t" "corpus/$t" -- \
    -max_total_time="$seconds" -timeout=30 -rss_limit_mb=3072 -print_final_stats=1 -dict="$root/fuzz/$dict" "${fork[@]}" ${FUZZ_ARGS:-} \
    >"logs/$t.log" 2>&1 || true
  took=$(( $(date +%s) - start ))
  after=$(ls "artifacts/$t" | wc -l)
  # The last stats line: "#N ... cov: C ft: F ..." (plain mode) or "#N: cov: C ft: F ..." (fork mode).
  last=$(grep -E '^#[0-9]+:?[[:space:]].*cov: [0-9]+ ft: [0-9]+' "logs/$t.log" | tail -1 || true)
  execs=$(grep -E '^stat::number_of_executed_units:' "logs/$t.log" | tail -1 | awk '{print $2}' || true)
  [ -n "$execs" ] || execs=$(echo "$last" | sed -E 's/^#([0-9]+).*/\1/')
  cov=$(echo "$last" | sed -nE 's/.*cov: ([0-9]+).*/\1/p')
  ft=$(echo "$last" | sed -nE 's/.* ft: ([0-9]+).*/\1/p')
  crashes=$(echo "$last" | sed -nE 's/.*oom\/timeout\/crash: ([0-9]+\/[0-9]+\/[0-9]+).*/\1/p')
  summary+=("$(printf '%-16s execs=%-10s cov=%-6s ft=%-7s time=%ss new_artifacts=%s oom/timeout/crash=%s' \
    "$t" "${execs:-?}" "${cov:-?}" "${ft:-?}" "$took" "$((after - before))" "${crashes:-n/a}")")
  echo "   last: $last" >&2
done
printf '%s\n' "${summary[@]}"
}

main "$@"
