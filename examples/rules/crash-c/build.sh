#!/bin/sh
# Builds crash-c.wasm, a rulewatch rule module, from crash_c.c with clang and wasm-ld
# (Debian: apt-get install clang lld). Usage: ./build.sh [OUT_DIR]   (default: this folder)
set -eu

here=$(cd "$(dirname "$0")" && pwd)
out_dir=${1:-$here}
CC=${CC:-clang}

if ! command -v "$CC" >/dev/null 2>&1; then
    echo "build.sh: $CC not found; install it with: apt-get install clang lld" >&2
    exit 1
fi
# clang links wasm with wasm-ld (Debian package lld); ask clang where it would find it.
ld=$("$CC" --target=wasm32-unknown-unknown -print-prog-name=wasm-ld)
if [ ! -x "$ld" ] && ! command -v "$ld" >/dev/null 2>&1; then
    echo "build.sh: wasm-ld not found (clang needs it to link wasm); install it with: apt-get install clang lld" >&2
    exit 1
fi

mkdir -p "$out_dir"
# See README.md for why each flag is there.
"$CC" --target=wasm32-unknown-unknown -O2 -std=c11 -Wall -Wextra \
    -nostdlib -ffreestanding \
    -Wl,--no-entry -Wl,--stack-first -Wl,--strip-all \
    -o "$out_dir/crash-c.wasm" "$here/crash_c.c"
echo "built $out_dir/crash-c.wasm ($(wc -c < "$out_dir/crash-c.wasm") bytes)"
