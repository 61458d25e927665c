#!/usr/bin/env node
// rulewatch-as-test: runs the tests of AssemblyScript test modules in Node, without rulewatch.
//
//   rulewatch-as-test build/rule.test.wasm [more.wasm ...] [--filter TEXT] [--verbose]
//
// Every exported function whose name starts with `test_` is a test. Each runs in a fresh
// instance of its module (after `_initialize`/`_start` if exported, i.e. with asc's
// --exportStart), so one test's abort cannot disturb another. A test passes when it returns;
// when it called `expectAbort(part)` (rulewatch-sdk/assembly/testing), it passes only if it
// then aborts with a message containing `part`. Prints one line per test and a summary;
// exits 1 if a test failed or no test was found, 2 on a usage error.
//
// Imports provided: env.abort (AssemblyScript's: message, file, line, column), env.trace,
// env.seed, env.console.log, rtrace.* (asc --use ASC_RTRACE=1: allocations are counted for
// filterAllocations) and rulewatch_test.* (the testing module's hooks).

import { readFileSync } from "node:fs";
import process from "node:process";

const args = process.argv.slice(2);
let filter = null;
let verbose = false;
const files = [];
for (let i = 0; i < args.length; i++) {
  if (args[i] === "--filter") filter = args[++i] ?? "";
  else if (args[i] === "--verbose" || args[i] === "-v") verbose = true;
  else if (args[i] === "--help" || args[i] === "-h") {
    console.log("usage: rulewatch-as-test MODULE.wasm... [--filter TEXT] [--verbose]");
    process.exit(0);
  } else files.push(args[i]);
}
if (files.length === 0) {
  console.error("usage: rulewatch-as-test MODULE.wasm... [--filter TEXT] [--verbose]");
  process.exit(2);
}

class Abort extends Error {}

/** An AssemblyScript string (UTF-16LE, its byte length as u32 at ptr - 4). */
function readString(memory, ptr) {
  if (!memory) return "(message unavailable: the module has no memory yet)";
  if (ptr === 0) return null;
  const view = new DataView(memory.buffer);
  const len = view.getUint32(ptr - 4, true);
  return Buffer.from(memory.buffer, ptr, len).toString("utf16le");
}

function makeImports(module, state) {
  const mem = () => state.memory;
  const provided = {
    env: {
      abort(message, file, line, column) {
        const m = readString(mem(), message) ?? "(no message)";
        const f = readString(mem(), file);
        throw new Abort(f ? `${m} at ${f}:${line}:${column}` : m);
      },
      trace(message, n, ...values) {
        console.log(`  trace: ${readString(mem(), message)} ${values.slice(0, n).join(", ")}`);
      },
      seed: () => Date.now(),
      "console.log": (ptr) => console.log(`  ${readString(mem(), ptr)}`),
    },
    rtrace: {
      onalloc: () => { state.allocations++; },
      onresize: () => { state.allocations++; },
      onvisit: () => 1,
      onstore: (ptr) => ptr,
      onload: (ptr) => ptr,
    },
    rulewatch_test: {
      expect_abort: (ptr) => { state.expectAbort = readString(mem(), ptr) ?? ""; },
      allocations: () => state.allocations,
    },
  };
  const imports = {};
  for (const imp of WebAssembly.Module.imports(module)) {
    let value = provided[imp.module]?.[imp.name];
    if (value === undefined && imp.module === "rtrace" && imp.kind === "function") value = () => 0;
    if (value === undefined) {
      throw new Error(`the module imports ${imp.module}.${imp.name}, which rulewatch-as-test does not provide`);
    }
    (imports[imp.module] ??= {})[imp.name] = value;
  }
  return imports;
}

function describe(error) {
  if (error instanceof Abort) return `aborted: ${error.message}`;
  if (error instanceof WebAssembly.RuntimeError) return `trapped: ${error.message}`;
  return String(error?.stack ?? error);
}

let passed = 0;
let failed = 0;
for (const file of files) {
  let module;
  try {
    module = new WebAssembly.Module(readFileSync(file));
  } catch (e) {
    console.log(`FAIL ${file}: cannot load: ${e.message}`);
    failed++;
    continue;
  }
  const tests = WebAssembly.Module.exports(module)
    .filter((e) => e.kind === "function" && e.name.startsWith("test_"))
    .map((e) => e.name)
    .filter((name) => filter === null || name.includes(filter));
  console.log(`${file}: ${tests.length} test${tests.length === 1 ? "" : "s"}`);
  for (const name of tests) {
    const state = { memory: null, allocations: 0, expectAbort: null };
    let outcome = null; // null: returned normally; else the error
    const started = performance.now();
    try {
      const instance = new WebAssembly.Instance(module, makeImports(module, state));
      state.memory = instance.exports.memory;
      const start = instance.exports._initialize ?? instance.exports._start;
      if (typeof start === "function") start();
      instance.exports[name]();
    } catch (e) {
      outcome = e;
    }
    const ms = (performance.now() - started).toFixed(1);
    let ok;
    let why = "";
    if (state.expectAbort !== null) {
      ok = outcome instanceof Abort && outcome.message.includes(state.expectAbort);
      if (!ok) {
        why = outcome === null
          ? `expected an abort containing "${state.expectAbort}", but it returned`
          : `expected an abort containing "${state.expectAbort}", but it ${describe(outcome)}`;
      } else {
        why = `aborted as expected: ${outcome.message}`;
      }
    } else {
      ok = outcome === null;
      if (!ok) why = describe(outcome);
    }
    if (ok) {
      passed++;
      console.log(`  ok   ${name} (${ms} ms)${verbose && why ? `: ${why}` : ""}`);
    } else {
      failed++;
      console.log(`  FAIL ${name} (${ms} ms): ${why}`);
    }
  }
}
const total = passed + failed;
console.log(`${passed} passed, ${failed} failed`);
if (total === 0) {
  console.log("no tests found: export functions named test_* from the test module");
  process.exit(1);
}
process.exit(failed > 0 ? 1 : 0);
