// Native tests of a rule, without rulewatch: build events and window counts, encode them as
// the host does (the ABI's batch layout) and run them through the same decoding and loops as
// the module's exports. Compile a test file with asc and run it with `rulewatch-as-test`
// (run-tests.mjs), which calls every exported `test_*` function:
//
//   import "./index";   // the rule: its top-level register(...) runs
//   import { initRule, testEvent, filterEvents, expectBools } from "rulewatch-sdk/assembly/testing";
//
//   export function test_counts_crashes(): void {
//     const rule = initRule(`{"keyword":"crash","severities":["High"],"threshold":2}`);
//     expectBools(filterEvents(rule, [
//       testEvent(0, "u", [["severity", "High"], ["content", "App CRASH"]]),
//       testEvent(0, "u", [["severity", "Low"], ["content", "App crash"]]),
//     ]), [true, false]);
//   }
//
// Helpers that take `fields` or `factory` use the registered ones when given null.

import {
  EVENT_FIXED_COLUMNS, EVENT_KEY, EVENT_TIME, KIND_I64, KIND_STR, WINDOW_COUNT, WINDOW_END, WINDOW_KEY,
  WINDOW_START, packedLen, packedPtr,
} from "./abi";
import { Runner, bitAt, initFrom, lastError, registered, registeredFactoryOrFail } from "./guest";
import { Params } from "./params";
import { Field, FieldType, Rule, WindowCount } from "./rule";

// @ts-ignore: decorator
@external("rulewatch_test", "expect_abort")
declare function hostExpectAbort(part: string): void;

// @ts-ignore: decorator
@external("rulewatch_test", "allocations")
declare function hostAllocations(): f64;

// The column kinds, for BatchWriter.
export { KIND_F64, KIND_I64, KIND_STR } from "./abi";

// ---- encoding -----------------------------------------------------------------------------

/** Builds a batch in the ABI's layout, column by column, as the host does. */
export class BatchWriter {
  /** Rows ended so far. */
  rows: u32 = 0;
  /** @internal Column kinds. */
  kinds: u32[] = [];
  /** @internal Per column: i64/f64 values, or string end offsets. */
  fixed: Array<u8[]> = [];
  /** @internal Per column: string bytes. */
  bytes: Array<u8[]> = [];

  /** A writer for columns of these kinds (`KIND_I64`, `KIND_F64`, `KIND_STR`). */
  constructor(kinds: u32[]) {
    this.kinds = kinds.slice(0);
    for (let c = 0; c < kinds.length; c++) {
      const fixed = new Array<u8>();
      if (kinds[c] == KIND_STR) pushU32(fixed, 0);
      this.fixed.push(fixed);
      this.bytes.push(new Array<u8>());
    }
  }

  /** Appends an i64 to column `c`. */
  pushI64(c: i32, v: i64): void {
    const f = this.fixed[c];
    for (let i = 0; i < 8; i++) f.push(<u8>(v >>> (i * 8)));
  }

  /** Appends an f64 to column `c`. */
  pushF64(c: i32, v: f64): void {
    this.pushI64(c, reinterpret<i64>(v));
  }

  /** Appends a string (as UTF-8) to column `c`. */
  pushStr(c: i32, v: string): void {
    const encoded = Uint8Array.wrap(String.UTF8.encode(v));
    const b = this.bytes[c];
    for (let i = 0; i < encoded.length; i++) b.push(encoded[i]);
    pushU32(this.fixed[c], <u32>b.length);
  }

  /** Ends a row (every column must have had one value pushed). */
  endRow(): void {
    this.rows++;
  }

  /** The finished batch. */
  finish(): ArrayBuffer {
    const ncols = this.kinds.length;
    let total = 8 + 12 * ncols;
    for (let c = 0; c < ncols; c++) total += this.fixed[c].length + this.bytes[c].length;
    const out = new ArrayBuffer(total);
    const p = changetype<usize>(out);
    store<u32>(p, this.rows, 0, 1);
    store<u32>(p + 4, <u32>ncols, 0, 1);
    let offset = 8 + 12 * ncols;
    for (let c = 0; c < ncols; c++) {
      const len = this.fixed[c].length + this.bytes[c].length;
      const h = p + 8 + <usize>(12 * c);
      store<u32>(h, this.kinds[c], 0, 1);
      store<u32>(h + 4, <u32>offset, 0, 1);
      store<u32>(h + 8, <u32>len, 0, 1);
      const fixed = this.fixed[c];
      for (let i = 0; i < fixed.length; i++) store<u8>(p + <usize>(offset + i), fixed[i]);
      offset += fixed.length;
      const bytes = this.bytes[c];
      for (let i = 0; i < bytes.length; i++) store<u8>(p + <usize>(offset + i), bytes[i]);
      offset += bytes.length;
    }
    return out;
  }
}

function pushU32(a: u8[], v: u32): void {
  for (let i: u32 = 0; i < 4; i++) a.push(<u8>(v >>> (i * 8)));
}

/** An event as the host would decode it: time, key and field values. */
export class TestEvent {
  /** Event time, ms since the Unix epoch. */
  time: i64;
  /** The key value. */
  key: string;
  /** @internal Field names, in the order given. */
  names: string[] = [];
  /** @internal String values (parallel to `names`; "" for numbers). */
  strs: string[] = [];
  /** @internal Number values (parallel to `names`; 0 for strings). */
  nums: f64[] = [];
  /** @internal Whether each field is a number. */
  isNum: bool[] = [];

  /** An event at `time` with key `key` and no fields yet. */
  constructor(time: i64, key: string) {
    this.time = time;
    this.key = key;
  }

  /** Adds the string field `name`; returns this event. */
  str(name: string, value: string): TestEvent {
    this.names.push(name);
    this.strs.push(value);
    this.nums.push(0);
    this.isNum.push(false);
    return this;
  }

  /** Adds the number field `name`; returns this event. */
  num(name: string, value: f64): TestEvent {
    this.names.push(name);
    this.strs.push("");
    this.nums.push(value);
    this.isNum.push(true);
    return this;
  }
}

/**
 * An event: `testEvent(0, "alice", [["severity", "High"], ["content", "App crash"]])`, with
 * string fields as [name, value] pairs; add number fields with `.num("latency", 12.5)`.
 */
export function testEvent(time: i64, key: string, fields: string[][] = []): TestEvent {
  const e = new TestEvent(time, key);
  for (let i = 0; i < fields.length; i++) {
    const pair = fields[i];
    if (pair.length != 2) {
      throw new Error("testEvent: field " + i.toString() + " is not a [name, value] pair");
    }
    e.str(pair[0], pair[1]);
  }
  return e;
}

/** A window count: `testWindow(0, 10_000, "alice", 3)`. */
export function testWindow(startMs: i64, endMs: i64, key: string, count: u64): WindowCount {
  return new WindowCount(startMs, endMs, key, count);
}

/**
 * Encodes `events` as an event batch for `fields` (time, key, then the fields), as the host
 * would. Aborts if an event lacks a declared field or has it with another type: the host
 * would have rejected that event as bad input.
 */
export function encodeEvents(fields: Field[], events: TestEvent[]): ArrayBuffer {
  const kinds: u32[] = [KIND_I64, KIND_STR];
  for (let i = 0; i < fields.length; i++) kinds.push(fields[i].kind);
  const w = new BatchWriter(kinds);
  for (let r = 0; r < events.length; r++) {
    const e = events[r];
    w.pushI64(EVENT_TIME, e.time);
    w.pushStr(EVENT_KEY, e.key);
    for (let i = 0; i < fields.length; i++) {
      const f = fields[i];
      const at = e.names.indexOf(f.name);
      const isNum = f.type == FieldType.Num;
      if (at < 0 || e.isNum[at] != isNum) {
        throw new Error(
          "test event " + r.toString() + " lacks " + f.typeName + " field `" + f.name +
          "`, which the rule declares (the host would reject it as bad input)",
        );
      }
      if (isNum) w.pushF64(EVENT_FIXED_COLUMNS + i, e.nums[at]);
      else w.pushStr(EVENT_FIXED_COLUMNS + i, e.strs[at]);
    }
    w.endRow();
  }
  return w.finish();
}

/** Encodes `windows` as a window batch (start, end, key, count). */
export function encodeWindows(windows: WindowCount[]): ArrayBuffer {
  const w = new BatchWriter([KIND_I64, KIND_I64, KIND_STR, KIND_I64]);
  for (let r = 0; r < windows.length; r++) {
    const x = windows[r];
    w.pushI64(WINDOW_START, x.startMs);
    w.pushI64(WINDOW_END, x.endMs);
    w.pushStr(WINDOW_KEY, x.key);
    w.pushI64(WINDOW_COUNT, <i64>x.count);
    w.endRow();
  }
  return w.finish();
}

/** The first `rows` bits of the bitmap a packed pointer/length points at. */
export function readBitmap(packed: u64, rows: i32): bool[] {
  const ptr = packedPtr(packed);
  const len = packedLen(packed);
  if (len != <u32>((rows + 7) >> 3)) {
    throw new Error("the bitmap has " + len.toString() + " bytes for " + rows.toString() + " rows");
  }
  const out = new Array<bool>(rows);
  for (let i = 0; i < rows; i++) out[i] = bitAt(ptr, <u32>i);
  return out;
}

// ---- running a rule -------------------------------------------------------------------------

function runnerFor(fields: Field[] | null): Runner {
  return fields === null ? registered() : new Runner(fields);
}

function factoryOr(factory: ((params: Params) => Rule) | null): (params: Params) => Rule {
  return factory === null ? registeredFactoryOrFail() : factory;
}

/**
 * Builds a rule from params JSON exactly as `rulewatch_init` does; aborts with the error if
 * the params are refused. `factory`: the registered one when null.
 */
export function initRule(paramsJson: string, factory: ((params: Params) => Rule) | null = null): Rule {
  const json = String.UTF8.encode(paramsJson);
  const rule = initFrom(factoryOr(factory), changetype<usize>(json), <u32>json.byteLength);
  if (rule === null) throw new Error("init refused the params: " + lastError());
  return rule;
}

/**
 * The message with which `rulewatch_init` refuses these params; aborts if they are accepted.
 * `factory`: the registered one when null.
 */
export function initError(paramsJson: string, factory: ((params: Params) => Rule) | null = null): string {
  const json = String.UTF8.encode(paramsJson);
  const rule = initFrom(factoryOr(factory), changetype<usize>(json), <u32>json.byteLength);
  if (rule !== null) throw new Error("init accepted the params " + paramsJson + ", expected a refusal");
  return lastError();
}

/**
 * Runs `rule.filter` over `events` as one event batch, through the module's decoding and
 * loop; the selection, one bool per event. `fields`: the registered ones when null.
 */
export function filterEvents(rule: Rule, events: TestEvent[], fields: Field[] | null = null): bool[] {
  const runner = runnerFor(fields);
  const batch = encodeEvents(runner.fields, events);
  const packed = runner.filter(rule, changetype<usize>(batch), <u32>batch.byteLength);
  return readBitmap(packed, events.length);
}

/** Runs `rule.alert` over `windows` as one window batch; one bool per window. */
export function alertWindows(rule: Rule, windows: WindowCount[]): bool[] {
  const runner = new Runner([]);
  const batch = encodeWindows(windows);
  const packed = runner.alert(rule, changetype<usize>(batch), <u32>batch.byteLength);
  return readBitmap(packed, windows.length);
}

/**
 * How many heap allocations one `filter` call over `events` (as one batch) makes, after a
 * first call over the same batch (which may set up lazily built state). The test module must
 * be compiled with `--use ASC_RTRACE=1` (the `test` target of the scaffold's asconfig.json
 * does) and run by `rulewatch-as-test`, which counts the allocator's calls.
 */
export function filterAllocations(rule: Rule, events: TestEvent[], fields: Field[] | null = null): i32 {
  if (!isDefined(ASC_RTRACE)) {
    throw new Error("filterAllocations needs the test module compiled with --use ASC_RTRACE=1");
  }
  const runner = runnerFor(fields);
  const batch = encodeEvents(runner.fields, events);
  const ptr = changetype<usize>(batch);
  const len = <u32>batch.byteLength;
  runner.filter(rule, ptr, len);
  const before = hostAllocations();
  runner.filter(rule, ptr, len);
  return <i32>(hostAllocations() - before);
}

// ---- assertions -----------------------------------------------------------------------------

function label(what: string): string {
  return what.length == 0 ? "" : what + ": ";
}

function showBools(a: bool[]): string {
  let s = "[";
  for (let i = 0; i < a.length; i++) s += (i == 0 ? "" : ", ") + (a[i] ? "true" : "false");
  return s + "]";
}

/** Aborts unless `actual == expected` (numbers, booleans, strings). */
export function expectEqual<T>(actual: T, expected: T, what: string = ""): void {
  if (actual != expected) {
    let a: string, e: string;
    if (isString<T>()) {
      a = "\"" + changetype<string>(actual) + "\"";
      e = "\"" + changetype<string>(expected) + "\"";
    } else {
      // @ts-ignore: numbers and booleans have toString
      a = actual.toString();
      // @ts-ignore
      e = expected.toString();
    }
    throw new Error(label(what) + "expected " + e + ", got " + a);
  }
}

/** Aborts unless the two lists of booleans are equal (for `filterEvents`/`alertWindows`). */
export function expectBools(actual: bool[], expected: bool[], what: string = ""): void {
  let same = actual.length == expected.length;
  for (let i = 0; same && i < actual.length; i++) same = actual[i] == expected[i];
  if (!same) {
    throw new Error(label(what) + "expected " + showBools(expected) + ", got " + showBools(actual));
  }
}

/** Aborts unless `condition` holds. */
export function expectTrue(condition: bool, what: string = ""): void {
  if (!condition) throw new Error(label(what) + "expected true, got false");
}

/** Aborts if `condition` holds. */
export function expectFalse(condition: bool, what: string = ""): void {
  if (condition) throw new Error(label(what) + "expected false, got true");
}

/** Aborts unless `text` contains `part`. */
export function expectContains(text: string, part: string, what: string = ""): void {
  if (!text.includes(part)) {
    throw new Error(label(what) + "expected a text containing \"" + part + "\", got \"" + text + "\"");
  }
}

/**
 * Declares that the current test must abort with a message containing `part` (for example
 * "malformed batch"): the test passes only if it then aborts so. Needs `rulewatch-as-test`.
 */
export function expectAbort(part: string): void {
  hostExpectAbort(part);
}

/** Aborts unless filtering `events` allocates nothing (see `filterAllocations`). */
export function expectNoAllocations(rule: Rule, events: TestEvent[], fields: Field[] | null = null): void {
  const n = filterAllocations(rule, events, fields);
  if (n != 0) {
    throw new Error("filter allocated " + n.toString() + " times over " + events.length.toString() + " events; expected none");
  }
}
