#!/usr/bin/env bash
# The hub's admin page in headless Chromium: installs Debian's chromium and playwright-core if
# missing, then runs test.js against the release CLI ($SYNCLINE_CLI, else target/release).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cli="${SYNCLINE_CLI:-$root/target/release/syncline}"
[ -x "$cli" ] || (cd "$root" && cargo build --release -p syncline-cli)
if ! command -v chromium >/dev/null; then
  echo "installing chromium (Debian package)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
command -v sqlite3 >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq sqlite3 >/dev/null; }
cd "$here"
[ -d node_modules/playwright-core ] || npm install --no-audit --no-fund --silent
node test.js "$cli" "$(command -v chromium)"
