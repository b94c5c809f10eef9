#!/usr/bin/env bash
# Swift toolchain for Syncline: a Debian trixie chroot with `swiftlang` (6.0.x).
#
# The host (Debian 12) has no Swift and its glibc is too old for trixie's swiftlang, so Swift runs in
# a minbase chroot kept OUTSIDE the repo. Rust is built on the host; the host-built .so loads fine
# inside the chroot.
#
# Usage:
#   scripts/swift-env.sh setup                 # idempotent: create + provision the chroot (skipped if stamped)
#   scripts/swift-env.sh run DIR CMD [ARGS...] # setup if needed, then run CMD in DIR inside the chroot
#   scripts/swift-env.sh status                # print root, stamp, swift version, live mounts
#   scripts/swift-env.sh umount                # unmount anything left mounted under the chroot
#   scripts/swift-env.sh destroy               # unmount, verify nothing is mounted, then delete the chroot
#   scripts/swift-env.sh root                  # print the chroot path
#   source scripts/swift-env.sh                # defines swift_env_setup / swift_env_run / ... functions
#
# DIR must lie inside the bind-mounted project folder. The project folder is the parent of this
# script's folder, or $SYNCLINE_PROJECT_DIR. It is bind-mounted at the SAME absolute path inside the
# chroot, so absolute paths (e.g. -L/-rpath to target/release) are valid on both sides.
#
# Environment:
#   SYNCLINE_SWIFT_ROOT   chroot location (default /var/cache/syncline/swift-trixie)
#   SYNCLINE_PROJECT_DIR  folder to bind-mount (default: the repo containing this script)
#   SYNCLINE_DEBIAN_MIRROR  mirror for debootstrap (default: the host's configured Debian mirror)
#
# Commands run with a clean environment: env -i PATH=/usr/bin:/bin HOME=/root LANG=C.UTF-8.
# The exit code of `run` is the command's exit code. Mounts are always removed afterwards (trap), and
# when possible they are made in a private mount namespace (unshare -m), so even a SIGKILLed run
# cannot leave a bind mount of the project or /dev behind on the host.

_swift_env_script="$(readlink -f "${BASH_SOURCE[0]}")"
SYNCLINE_SWIFT_ROOT="${SYNCLINE_SWIFT_ROOT:-/var/cache/syncline/swift-trixie}"
SYNCLINE_PROJECT_DIR="${SYNCLINE_PROJECT_DIR:-$(dirname "$(dirname "$_swift_env_script")")}"
SWIFT_ENV_SUITE="${SWIFT_ENV_SUITE:-trixie}"
# libsqlite3-dev: the sqlite3.h of the system-library target CSQLite (swift/Package.swift), the SQLite
# C API a second client in the test process uses (what GRDB and SQLite.swift sit on).
SWIFT_ENV_PACKAGES="${SWIFT_ENV_PACKAGES:-swiftlang libsqlite3-dev}"

_swift_env_log() { echo "swift-env: $*" >&2; }
_swift_env_die() { echo "swift-env: error: $*" >&2; return 1; }

_swift_env_stamp()      { echo "$SYNCLINE_SWIFT_ROOT/.syncline-swift-ready"; }
_swift_env_boot_stamp() { echo "$SYNCLINE_SWIFT_ROOT/.syncline-debootstrap-ok"; }

# Mount points currently under the chroot (deepest first), as seen from this mount namespace.
_swift_env_mounts() {
  local root
  root="$(readlink -f "$SYNCLINE_SWIFT_ROOT" 2>/dev/null || echo "$SYNCLINE_SWIFT_ROOT")"
  awk -v r="$root" '{ p=$5; gsub(/\\040/, " ", p); if (p == r || index(p, r "/") == 1) print p }' \
    /proc/self/mountinfo | sort -r
}

swift_env_umount() {
  local m
  for m in $(_swift_env_mounts); do
    umount -R "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
  done
  if [ -n "$(_swift_env_mounts)" ]; then
    _swift_env_die "still mounted under $SYNCLINE_SWIFT_ROOT: $(_swift_env_mounts | tr '\n' ' ')"
    return 1
  fi
  return 0
}

# The host's Debian mirror (deb822 .sources or one-line .list), skipping the security archive.
_swift_env_mirror() {
  if [ -n "${SYNCLINE_DEBIAN_MIRROR:-}" ]; then echo "$SYNCLINE_DEBIAN_MIRROR"; return; fi
  local f u
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    u="$(awk '/^URIs:/ { for (i = 2; i <= NF; i++) print $i }' "$f" \
         | grep -E '/debian/?$' | grep -v security | head -n1)"
    [ -n "$u" ] && { echo "${u%/}"; return; }
  done
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    u="$(awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^(https?|file):/) { print $i; break } }' "$f" \
         | grep -E '/debian/?$' | grep -v security | head -n1)"
    [ -n "$u" ] && { echo "${u%/}"; return; }
  done
  echo "http://deb.debian.org/debian"
}

_swift_env_ensure_debootstrap() {
  command -v debootstrap >/dev/null 2>&1 && return 0
  export DEBIAN_FRONTEND=noninteractive
  if ! ls /var/lib/apt/lists/*_Packages* >/dev/null 2>&1; then
    apt-get update -q </dev/null || return 1
  fi
  if ! apt-get install -y -q debootstrap </dev/null; then
    apt-get update -q </dev/null && apt-get install -y -q debootstrap </dev/null || return 1
  fi
}

# Mount proc, bind /dev (non-recursive, so no host submount can be touched) and, if given, a host
# folder at the same path inside the chroot.
_swift_env_mount() {
  local bind_dir="${1:-}" r="$SYNCLINE_SWIFT_ROOT"
  mkdir -p "$r/proc" "$r/dev"
  mountpoint -q "$r/proc" || mount -t proc proc "$r/proc" || return 1
  mountpoint -q "$r/dev"  || mount --bind /dev "$r/dev"   || return 1
  if [ -n "$bind_dir" ]; then
    mkdir -p "$r$bind_dir"
    mountpoint -q "$r$bind_dir" || mount --bind "$bind_dir" "$r$bind_dir" || return 1
  fi
  cp -fL /etc/resolv.conf "$r/etc/resolv.conf" 2>/dev/null || true
}

_swift_env_chroot() { # CMD... with a clean environment, stdin kept
  env -i PATH=/usr/bin:/bin HOME=/root LANG=C.UTF-8 ${SWIFT_ENV_EXTRA_ENV:-} \
    "$(command -v chroot)" "$SYNCLINE_SWIFT_ROOT" "$@"
}

_swift_env_provision() { # runs with mounts in place
  local r="$SYNCLINE_SWIFT_ROOT" mirror
  mirror="$(_swift_env_mirror)"
  if [ ! -f "$(_swift_env_boot_stamp)" ]; then
    if [ -e "$r" ] && [ -n "$(ls -A "$r" 2>/dev/null)" ]; then
      # A half-made chroot from an interrupted run: delete it safely (nothing may be mounted in it).
      _swift_env_log "removing incomplete chroot $r"
      swift_env_umount || return 1
      rm -rf --one-file-system "$r" || return 1
    fi
    mkdir -p "$r"
    _swift_env_log "debootstrap --variant=minbase $SWIFT_ENV_SUITE $r $mirror"
    debootstrap --variant=minbase "$SWIFT_ENV_SUITE" "$r" "$mirror" </dev/null || return 1
    touch "$(_swift_env_boot_stamp)"
  fi
  # No daemons may start inside the chroot.
  printf '#!/bin/sh\nexit 101\n' >"$r/usr/sbin/policy-rc.d" && chmod 755 "$r/usr/sbin/policy-rc.d"
  _swift_env_mount "" || return 1
  _swift_env_log "apt-get install $SWIFT_ENV_PACKAGES (with recommends: libc6-dev is one)"
  SWIFT_ENV_EXTRA_ENV="DEBIAN_FRONTEND=noninteractive" _swift_env_chroot /bin/sh -ec "
    export PATH=/usr/sbin:/usr/bin:/sbin:/bin
    apt-get update -q
    apt-get install -y -q $SWIFT_ENV_PACKAGES
    apt-get clean
    swift --version" </dev/null || return 1
  { _swift_env_chroot /usr/bin/swift --version 2>/dev/null | head -n1; echo "packages: $SWIFT_ENV_PACKAGES"; } \
    >"$(_swift_env_stamp)"
}

# Ready: provisioned with the packages asked for now (a chroot made with fewer gets the rest).
_swift_env_ready() {
  [ -f "$(_swift_env_stamp)" ] && grep -qxF "packages: $SWIFT_ENV_PACKAGES" "$(_swift_env_stamp)"
}

swift_env_setup() {
  [ "$(id -u)" = 0 ] || { _swift_env_die "must run as root (chroot, mount)"; return 1; }
  if _swift_env_ready; then return 0; fi
  _swift_env_ensure_debootstrap || { _swift_env_die "cannot install debootstrap"; return 1; }
  mkdir -p "$(dirname "$SYNCLINE_SWIFT_ROOT")"
  local t0=$SECONDS rc=0
  (
    exec 9>"$SYNCLINE_SWIFT_ROOT.lock"
    flock 9
    _swift_env_ready && exit 0 # made by a concurrent run while we waited
    trap 'swift_env_umount' EXIT
    trap 'exit 130' INT TERM HUP
    _swift_env_provision
  ) || rc=$?
  if [ "$rc" = 0 ]; then
    _swift_env_log "chroot ready in $((SECONDS - t0)) s: $(cat "$(_swift_env_stamp)")"
  else
    _swift_env_die "setup failed (rc=$rc); rerun to resume"
  fi
  return "$rc"
}

# run DIR CMD...: DIR must be inside $SYNCLINE_PROJECT_DIR (the folder bind-mounted into the chroot).
swift_env_run() {
  [ $# -ge 2 ] || { _swift_env_die "usage: run DIR CMD [ARGS...]"; return 2; }
  local dir proj
  dir="$(readlink -f "$1")" || return 2
  shift
  proj="$(readlink -f "$SYNCLINE_PROJECT_DIR")"
  [ -d "$dir" ] || { _swift_env_die "no such folder: $dir"; return 2; }
  case "$dir/" in
    "$proj"/*) ;;
    *) _swift_env_die "$dir is not inside the project folder $proj (set SYNCLINE_PROJECT_DIR)"; return 2 ;;
  esac
  swift_env_setup || return 1
  local rc=0
  if [ -z "${_SWIFT_ENV_IN_NS:-}" ] && unshare --mount --propagation private true 2>/dev/null; then
    # Private mount namespace: the mounts vanish with the process even if it is killed.
    _SWIFT_ENV_IN_NS=1 SYNCLINE_SWIFT_ROOT="$SYNCLINE_SWIFT_ROOT" SYNCLINE_PROJECT_DIR="$proj" \
      unshare --mount --propagation private "$_swift_env_script" run "$dir" "$@" || rc=$?
    return "$rc"
  fi
  (
    exec 9>"$SYNCLINE_SWIFT_ROOT.lock"
    flock -s 9 # shared: runs may overlap each other, not a setup/destroy
    trap 'swift_env_umount' EXIT
    trap 'exit 130' INT TERM HUP
    _swift_env_mount "$proj" || exit 1
    _swift_env_chroot /bin/sh -c 'cd "$1" && shift && exec "$@"' sh "$dir" "$@"
  ) || rc=$?
  return "$rc"
}

swift_env_status() {
  echo "root:    $SYNCLINE_SWIFT_ROOT"
  echo "project: $SYNCLINE_PROJECT_DIR"
  echo "mirror:  $(_swift_env_mirror)"
  if [ -f "$(_swift_env_stamp)" ]; then echo "ready:   $(cat "$(_swift_env_stamp)")"; else echo "ready:   no"; fi
  echo "mounts:  $(_swift_env_mounts | tr '\n' ' ')"
}

swift_env_destroy() {
  [ -e "$SYNCLINE_SWIFT_ROOT" ] || return 0
  (
    exec 9>"$SYNCLINE_SWIFT_ROOT.lock"
    flock 9
    swift_env_umount || exit 1 # never rm -rf through a live bind mount
    rm -rf --one-file-system "$SYNCLINE_SWIFT_ROOT"
  ) || return 1
  rm -f "$SYNCLINE_SWIFT_ROOT.lock"
}

_swift_env_main() {
  set -uo pipefail
  local cmd="${1:-}"
  [ $# -gt 0 ] && shift
  case "$cmd" in
    setup)   swift_env_setup ;;
    run)     swift_env_run "$@" ;;
    status)  swift_env_status ;;
    umount|unmount) swift_env_umount ;;
    destroy) swift_env_destroy ;;
    root)    echo "$SYNCLINE_SWIFT_ROOT" ;;
    *) sed -n '2,/^$/s/^# \{0,1\}//p' "$_swift_env_script" >&2; return 2 ;;
  esac
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  _swift_env_main "$@"
  exit $?
fi
