#!/usr/bin/env bash
# Build an Android AAR of the Syncline Kotlin bindings: libsyncline_ffi.so for each ABI (16 KB page
# aligned, as Android 15+ requires), the generated Kotlin sources and the idiomatic layer.
#
# Usage: kotlin/android/build-aar.sh [OUT_DIR]        (default OUT_DIR: <repo>/target/android)
# Needs: the Android NDK (ANDROID_NDK_HOME or ANDROID_NDK_ROOT, r27+ recommended), rustup targets
# for the ABIs below, and cargo-ndk (`cargo install cargo-ndk`). Environment:
#   SYNCLINE_ANDROID_ABIS   ABIs to build (default: "arm64-v8a armeabi-v7a x86_64")
#   SYNCLINE_ANDROID_API    minimum API level (default 24)
#   CARGO_TARGET_DIR        as everywhere in the repo (default <repo>/target)
# It does not run on the CI machine (no NDK there) and fails with a clear message when the NDK is
# absent. See kotlin/README.md §Android.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
out="${1:-$repo/target/android}"
abis="${SYNCLINE_ANDROID_ABIS:-arm64-v8a armeabi-v7a x86_64}"
api="${SYNCLINE_ANDROID_API:-24}"

die() { echo "build-aar: error: $*" >&2; exit 1; }

ndk="${ANDROID_NDK_HOME:-${ANDROID_NDK_ROOT:-}}"
[ -n "$ndk" ] || die "the Android NDK is not installed: set ANDROID_NDK_HOME (or ANDROID_NDK_ROOT) to an NDK (r27+), e.g. from \`sdkmanager 'ndk;27.2.12479018'\`"
[ -d "$ndk/toolchains/llvm/prebuilt" ] || die "ANDROID_NDK_HOME=$ndk does not look like an NDK (no toolchains/llvm/prebuilt)"
command -v cargo-ndk >/dev/null 2>&1 || die "cargo-ndk is missing: cargo install cargo-ndk"
command -v zip >/dev/null 2>&1 || die "zip is missing"

declare -A triple=([arm64-v8a]=aarch64-linux-android [armeabi-v7a]=armv7-linux-androideabi
                   [x86_64]=x86_64-linux-android [x86]=i686-linux-android)
for abi in $abis; do
  [ -n "${triple[$abi]:-}" ] || die "unknown ABI $abi (known: ${!triple[*]})"
  rustup target list --installed | grep -qx "${triple[$abi]}" || rustup target add "${triple[$abi]}"
done

cd "$repo"
stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/jni" "$stage/src" "$out"

# 1. One .so per ABI. 16 KB pages: NDK r27+ aligns by default; the flag makes it explicit for
#    older NDKs (the linker flag must reach the cdylib link, hence RUSTFLAGS).
for abi in $abis; do
  echo "build-aar: $abi (${triple[$abi]}, API $api)"
  RUSTFLAGS="${RUSTFLAGS:-} -C link-arg=-Wl,-z,max-page-size=16384" \
    cargo ndk --target "$abi" --platform "$api" --output-dir "$stage/jni" \
    build --release -p syncline-ffi
  # check the alignment of every LOAD segment (2**14 = 16384)
  if command -v llvm-readelf >/dev/null 2>&1 || [ -x "$ndk/toolchains/llvm/prebuilt/linux-x86_64/bin/llvm-readelf" ]; then
    readelf="$(command -v llvm-readelf || echo "$ndk/toolchains/llvm/prebuilt/linux-x86_64/bin/llvm-readelf")"
    if "$readelf" -lW "$stage/jni/$abi/libsyncline_ffi.so" | awk '$1 == "LOAD" && $NF != "0x4000" { bad = 1 } END { exit bad }'; then
      echo "build-aar: $abi: LOAD segments aligned to 16 KB"
    else
      die "$abi: libsyncline_ffi.so is not 16 KB aligned"
    fi
  fi
done

# 2. Kotlin sources: the committed generated bindings (same for the JVM and Android; UniFFI picks
#    the Android cleaner at run time) and the idiomatic layer. Compile them into classes.jar with
#    your Android build (Gradle `android-library` module: put these under src/main/kotlin and the
#    jni/ folder under src/main/jniLibs), or ship them as sources in the AAR as done here.
cp -r kotlin/generated/. "$stage/src/"
cp -r kotlin/src/main/kotlin/. "$stage/src/"

# 3. A minimal AAR: manifest, jni/<abi>/libsyncline_ffi.so, sources jar.
cat >"$stage/AndroidManifest.xml" <<EOF
<?xml version="1.0" encoding="utf-8"?>
<manifest xmlns:android="http://schemas.android.com/apk/res/android" package="dev.syncline">
    <uses-sdk android:minSdkVersion="$api" />
</manifest>
EOF
(cd "$stage/src" && zip -qr "$stage/sources.jar" .)
mkdir -p "$stage/aar" && cp -r "$stage/jni" "$stage/AndroidManifest.xml" "$stage/aar/"
mkdir -p "$stage/aar/libs" && cp "$stage/sources.jar" "$stage/aar/libs/syncline-sources.jar"
(cd "$stage/aar" && zip -qr "$out/syncline.aar" .)
echo "build-aar: wrote $out/syncline.aar (ABIs: $abis)"
echo "build-aar: depend on net.java.dev.jna:jna:5.19.1@aar and org.jetbrains.kotlinx:kotlinx-coroutines-core in the app"
