#!/usr/bin/env bash
# Kotlin/JVM test toolchain for Syncline's UniFFI Kotlin bindings: a JDK and Maven (Maven Central
# brings kotlin-maven-plugin, the Kotlin stdlib, JNA and JUnit 5; they are cached in ~/.m2).
#
# Usage:
#   scripts/kotlin-env.sh          # idempotent: install java/maven via apt if missing, print KEY=VALUE paths
#   scripts/kotlin-env.sh check    # same, then prove Maven Central + kotlin-maven-plugin + JNA + JUnit 5 work:
#                                  # a throwaway Maven project in /tmp compiles and runs one Kotlin JUnit 5
#                                  # test that loads a native library through JNA (-Djna.library.path)
#   source scripts/kotlin-env.sh   # exports JAVA_HOME, SYNCLINE_MVN, SYNCLINE_M2_REPO and the versions below
#
# Versions proven together (Maven 3.8.7 from Debian 12, OpenJDK 17); override through the environment:
#   SYNCLINE_KOTLIN_VERSION    kotlin-maven-plugin and kotlin-stdlib   (2.4.21)
#   SYNCLINE_JNA_VERSION       net.java.dev.jna:jna                    (5.19.1)
#   SYNCLINE_JUNIT_VERSION     org.junit.jupiter:junit-jupiter         (5.14.4)
#   SYNCLINE_SUREFIRE_VERSION  maven-surefire-plugin                   (3.6.1)

: "${SYNCLINE_KOTLIN_VERSION:=2.4.21}"
: "${SYNCLINE_JNA_VERSION:=5.19.1}"
: "${SYNCLINE_JUNIT_VERSION:=5.14.4}"
: "${SYNCLINE_SUREFIRE_VERSION:=3.6.1}"
_kotlin_env_script="$(readlink -f "${BASH_SOURCE[0]}")"

_kotlin_env_log() { echo "kotlin-env: $*" >&2; }

_kotlin_env_apt_install() {
  local apt_get="apt-get"
  [ "$(id -u)" = 0 ] || apt_get="sudo apt-get"
  export DEBIAN_FRONTEND=noninteractive
  if ! ls /var/lib/apt/lists/*_Packages* >/dev/null 2>&1; then
    $apt_get update -q </dev/null || return 1
  fi
  $apt_get install -y -q "$@" </dev/null && return 0
  $apt_get update -q </dev/null && $apt_get install -y -q "$@" </dev/null
}

kotlin_env_ensure() {
  if ! command -v java >/dev/null 2>&1; then
    _kotlin_env_log "installing a JDK (default-jdk-headless)"
    _kotlin_env_apt_install default-jdk-headless >&2 || { _kotlin_env_log "error: cannot install java"; return 1; }
  fi
  if ! command -v mvn >/dev/null 2>&1; then
    _kotlin_env_log "installing maven"
    _kotlin_env_apt_install maven >&2 || { _kotlin_env_log "error: cannot install maven"; return 1; }
  fi
  JAVA_HOME="${JAVA_HOME:-$(dirname "$(dirname "$(readlink -f "$(command -v java)")")")}"
  SYNCLINE_MVN="$(command -v mvn)"
  SYNCLINE_M2_REPO="${SYNCLINE_M2_REPO:-$HOME/.m2/repository}"
  export JAVA_HOME SYNCLINE_MVN SYNCLINE_M2_REPO
  export SYNCLINE_KOTLIN_VERSION SYNCLINE_JNA_VERSION SYNCLINE_JUNIT_VERSION SYNCLINE_SUREFIRE_VERSION
}

kotlin_env_print() {
  echo "JAVA_HOME=$JAVA_HOME"
  echo "JAVA=$(command -v java)"
  echo "JAVA_VERSION=$(java -version 2>&1 | head -n1 | sed 's/.*version "\([^"]*\)".*/\1/')"
  echo "SYNCLINE_MVN=$SYNCLINE_MVN"
  echo "MAVEN_VERSION=$("$SYNCLINE_MVN" -v 2>/dev/null | head -n1 | sed 's/\x1b\[[0-9;]*m//g; s/^Apache Maven //; s/ .*//')"
  echo "SYNCLINE_M2_REPO=$SYNCLINE_M2_REPO"
  echo "SYNCLINE_KOTLIN_VERSION=$SYNCLINE_KOTLIN_VERSION"
  echo "SYNCLINE_JNA_VERSION=$SYNCLINE_JNA_VERSION"
  echo "SYNCLINE_JUNIT_VERSION=$SYNCLINE_JUNIT_VERSION"
  echo "SYNCLINE_SUREFIRE_VERSION=$SYNCLINE_SUREFIRE_VERSION"
}

# Throwaway project: Kotlin JUnit 5 test calling a C function through JNA. With a C compiler the
# library is a tiny .so found only through -Djna.library.path (as the UniFFI .so will be); without
# one, libc's abs() is used.
kotlin_env_check() {
  kotlin_env_ensure || return 1
  local dir rc=0 lib="c" sig="fun abs(a: Int): Int" call="lib.abs(-5)" want=5
  dir="$(mktemp -d /tmp/syncline-kotlin-check.XXXXXX)" || return 1
  mkdir -p "$dir/native" "$dir/src/test/kotlin"
  if command -v cc >/dev/null 2>&1; then
    printf 'int syncline_check_add(int a, int b) { return a + b; }\n' >"$dir/native/check.c"
    if cc -shared -fPIC -o "$dir/native/libsynclinecheck.so" "$dir/native/check.c"; then
      lib="synclinecheck"; sig="fun syncline_check_add(a: Int, b: Int): Int"; call="lib.syncline_check_add(2, 3)"
    fi
  fi
  cat >"$dir/pom.xml" <<EOF
<?xml version="1.0" encoding="UTF-8"?>
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>dev.syncline.check</groupId>
  <artifactId>kotlin-env-check</artifactId>
  <version>0</version>
  <properties>
    <project.build.sourceEncoding>UTF-8</project.build.sourceEncoding>
    <kotlin.compiler.jvmTarget>17</kotlin.compiler.jvmTarget>
  </properties>
  <dependencies>
    <dependency><groupId>org.jetbrains.kotlin</groupId><artifactId>kotlin-stdlib</artifactId><version>$SYNCLINE_KOTLIN_VERSION</version></dependency>
    <dependency><groupId>net.java.dev.jna</groupId><artifactId>jna</artifactId><version>$SYNCLINE_JNA_VERSION</version></dependency>
    <dependency><groupId>org.junit.jupiter</groupId><artifactId>junit-jupiter</artifactId><version>$SYNCLINE_JUNIT_VERSION</version><scope>test</scope></dependency>
  </dependencies>
  <build>
    <plugins>
      <plugin>
        <groupId>org.jetbrains.kotlin</groupId><artifactId>kotlin-maven-plugin</artifactId><version>$SYNCLINE_KOTLIN_VERSION</version>
        <executions>
          <execution><id>test-compile</id><goals><goal>test-compile</goal></goals>
            <configuration><sourceDirs><sourceDir>\${project.basedir}/src/test/kotlin</sourceDir></sourceDirs></configuration>
          </execution>
        </executions>
      </plugin>
      <plugin>
        <groupId>org.apache.maven.plugins</groupId><artifactId>maven-surefire-plugin</artifactId><version>$SYNCLINE_SUREFIRE_VERSION</version>
        <configuration><argLine>-Djna.library.path=\${project.basedir}/native</argLine></configuration>
      </plugin>
    </plugins>
  </build>
</project>
EOF
  cat >"$dir/src/test/kotlin/JnaCheckTest.kt" <<EOF
import com.sun.jna.Library
import com.sun.jna.Native
import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Test

interface CheckLib : Library { $sig }

class JnaCheckTest {
    @Test
    fun callsNativeThroughJna() {
        val lib = Native.load("$lib", CheckLib::class.java)
        assertEquals($want, $call)
    }
}
EOF
  _kotlin_env_log "checking Maven Central + Kotlin $SYNCLINE_KOTLIN_VERSION + JNA $SYNCLINE_JNA_VERSION + JUnit $SYNCLINE_JUNIT_VERSION in $dir"
  (cd "$dir" && "$SYNCLINE_MVN" -B -ntp test </dev/null) >"$dir/mvn.log" 2>&1 || rc=$?
  if [ "$rc" = 0 ] && grep -q 'Tests run: 1, Failures: 0, Errors: 0' "$dir/mvn.log"; then
    _kotlin_env_log "ok: Kotlin JUnit 5 test called lib$lib through JNA"
    rm -rf "$dir"
    return 0
  fi
  tail -n 40 "$dir/mvn.log" >&2
  _kotlin_env_log "error: Maven check failed (rc=$rc); log kept in $dir/mvn.log"
  return 1
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  set -uo pipefail
  case "${1:-}" in
    "")    kotlin_env_ensure && kotlin_env_print ;;
    check) kotlin_env_check && kotlin_env_print ;;
    *) sed -n '2,/^$/s/^# \{0,1\}//p' "$_kotlin_env_script" >&2; exit 2 ;;
  esac
  exit $?
else
  kotlin_env_ensure
fi
