#!/bin/sh
# Builds crash_ts.wasm, a rulewatch rule module, from assembly/index.ts with AssemblyScript
# (Node.js 20+ and npm). Usage: ./build.sh [OUT_DIR]   (default: this folder)
# Runs `npm ci` first when node_modules is missing (assemblyscript from the npm registry, or
# npm's cache, and the SDK from ../../../sdk/assemblyscript).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
out_dir=${1:-$here}

if ! command -v npm >/dev/null 2>&1; then
    echo "build.sh: npm not found; install Node.js 20 or later with npm (https://nodejs.org)" >&2
    exit 1
fi

mkdir -p "$out_dir"
out_dir=$(cd "$out_dir" && pwd)
cd "$here"
if [ ! -x node_modules/.bin/asc ]; then
    npm ci --no-audit --no-fund
fi
# asconfig.json, target release: -O3, --converge, the incremental runtime. See README.md.
npm run --silent build -- --outFile "$out_dir/crash_ts.wasm"
echo "built $out_dir/crash_ts.wasm ($(wc -c < "$out_dir/crash_ts.wasm") bytes)"
