#!/usr/bin/env bash
# Build, pack and test the npm package `syncline` the way a user gets it, on a fresh machine
# (CI=true, no stdin): npm install, release build of the addon, `npm pack`, install of the
# tarball into a scratch project, `tsc --strict` on the typed test, `node --test` against the
# INSTALLED package. Exits non-zero on any failure.
#
# Environment:
#   CARGO_TARGET_DIR  cargo's target folder (default: <repo>/target)
#   SYNCLINE_CLI      the Rust CLI binary for the interop test (default:
#                     $CARGO_TARGET_DIR/release/syncline when it exists; the test fails clearly
#                     when there is none)
# The tests get SYNCLINE_REPO=<repo> (spec/vectors for the golden vectors, scripts/agents/node).
# The addon built here (node/index.js + syncline.<platform>.node) stays in node/ afterwards:
# the interop agent scripts/agents/node uses it.
set -euo pipefail

NODE_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$NODE_DIR/.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$REPO/target}"
export CI="${CI:-true}"
cd "$NODE_DIR"

say() { printf '\n== node: %s\n' "$*"; }

for tool in node npm cargo; do
  command -v "$tool" >/dev/null || { echo "node/test.sh: $tool is not installed" >&2; exit 1; }
done

# better-sqlite3 (a dependency: the engine runs inside its SQLite) has no reachable prebuilt
# binary here: skip its download attempt and build it with node-gyp against the headers of the
# Node.js that runs us, so nothing is downloaded.
NODE_PREFIX="$(dirname "$(dirname "$(node -p process.execPath)")")"
if [ -f "$NODE_PREFIX/include/node/node_api.h" ]; then
  export npm_config_nodedir="$NODE_PREFIX"
else
  echo "node/test.sh: no Node.js headers under $NODE_PREFIX/include/node (install the nodejs package that ships them)" >&2
  exit 1
fi
export npm_config_build_from_source=true
export npm_config_audit=false npm_config_fund=false npm_config_update_notifier=false

say "npm install ($(node --version), npm $(npm --version))"
npm install --no-audit --no-fund

say "build the addon (release, CARGO_TARGET_DIR=$CARGO_TARGET_DIR)"
npm run build

say "npm pack"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/syncline-node-test.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
npm pack --pack-destination "$WORK" >/dev/null
TARBALL="$(ls "$WORK"/syncline-*.tgz)"
LISTING="$(tar tzf "$TARBALL")"
echo "$LISTING" | sed 's/^/  /'
for f in package/index.js package/index.d.ts package/native.js package/native.d.ts package/package.json package/README.md; do
  grep -qx "$f" <<<"$LISTING" || { echo "node/test.sh: $f missing from $TARBALL" >&2; exit 1; }
done
grep -q '^package/syncline\..*\.node$' <<<"$LISTING" || { echo "node/test.sh: no .node binary in $TARBALL" >&2; exit 1; }

say "install the tarball into a scratch project"
SCRATCH="$WORK/app"
mkdir -p "$SCRATCH/test"
cd "$SCRATCH"
cat > package.json <<'EOF'
{ "name": "syncline-consumer", "version": "1.0.0", "private": true }
EOF
ver() { node -p "require('$NODE_DIR/node_modules/$1/package.json').version"; }
# The app's better-sqlite3 is the copy built above (linked, not built a second time): npm sees
# that it satisfies syncline's dependency and installs no other copy, as in an app whose own
# better-sqlite3 matches (one copy of the addon = one SQLite library in the process). No install
# scripts: syncline has none, and the linked better-sqlite3 is built already.
npm install --no-audit --no-fund --ignore-scripts "$TARBALL" "$NODE_DIR/node_modules/better-sqlite3" \
  "typescript@$(ver typescript)" "@types/node@$(ver @types/node)" "@types/better-sqlite3@$(ver @types/better-sqlite3)"
copies="$(find -L node_modules -path '*/build/Release/better_sqlite3.node' | wc -l)"
[ "$copies" = 1 ] || { echo "node/test.sh: expected one better-sqlite3 addon in the scratch project, found $copies" >&2; exit 1; }
cp "$NODE_DIR"/test/*.js "$NODE_DIR"/test/typed.test.ts "$NODE_DIR"/test/tsconfig.json "$SCRATCH/test/"

say "tsc --strict on the typed test (against the installed index.d.ts)"
./node_modules/.bin/tsc --strict -p test/tsconfig.json

if [ -z "${SYNCLINE_CLI:-}" ] && [ -x "$CARGO_TARGET_DIR/release/syncline" ]; then
  export SYNCLINE_CLI="$CARGO_TARGET_DIR/release/syncline"
fi
say "node --test against the installed package (SYNCLINE_CLI=${SYNCLINE_CLI:-unset})"
# The golden vectors (spec/vectors) and the interop agent live in the repository, not in the package.
export SYNCLINE_REPO="$REPO"
export SYNCLINE_EXPECT_INSTALLED="$SCRATCH/node_modules/syncline"
node --test test/*.test.js test/dist/*.test.js
