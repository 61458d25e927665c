// Batches: encoding round trips, bitmaps, malformed batches, undeclared fields, allocations.

import { KIND_F64, KIND_I64, KIND_STR } from "../assembly/abi";
import { Runner } from "../assembly/guest";
import { Event, Field, Rule, Utf8, WindowCount } from "../assembly/index";
import {
  BatchWriter, TestEvent, alertWindows, encodeEvents, expectAbort, expectBools, expectEqual, expectNoAllocations,
  expectTrue, filterAllocations, filterEvents, initRule, testEvent, testWindow,
} from "../assembly/testing";
import { FIELDS, PARAMS } from "./rule";

/** Records what it is shown (allocating: tests only). */
class Recorder extends Rule {
  times: i64[] = [];
  keys: string[] = [];
  contents: string[] = [];
  latencies: f64[] = [];
  starts: i64[] = [];
  ends: i64[] = [];
  counts: u64[] = [];

  filter(e: Event): bool {
    this.times.push(e.time());
    this.keys.push(e.key());
    this.contents.push(e.str("content"));
    this.latencies.push(e.num("latency"));
    return this.times.length % 3 == 1;
  }

  alert(w: WindowCount): bool {
    this.starts.push(w.startMs);
    this.ends.push(w.endMs);
    this.keys.push(w.key);
    this.counts.push(w.count);
    return w.count > 1;
  }
}

function ev(time: i64, key: string, severity: string, content: string, latency: f64 = 0): TestEvent {
  return testEvent(time, key, [["severity", severity], ["content", content]]).num("latency", latency);
}

export function test_event_batch_round_trip(): void {
  const r = new Recorder();
  const got = filterEvents(r, [
    ev(5, "a", "High", "x", 1.5),
    ev(-7, "", "", "", -0.25),
    ev(9_000_000_000_000, "héllo", "Critical", "naïve 😀 text", 1e300),
    ev(i64.MIN_VALUE, "k", "s", "c", NaN),
  ]);
  expectBools(got, [true, false, false, true], "bitmap");
  expectEqual(r.times[0], <i64>5);
  expectEqual(r.times[1], <i64>-7);
  expectEqual(r.times[2], <i64>9_000_000_000_000);
  expectEqual(r.times[3], i64.MIN_VALUE);
  expectEqual(r.keys[0], "a");
  expectEqual(r.keys[1], "");
  expectEqual(r.keys[2], "héllo");
  expectEqual(r.contents[2], "naïve 😀 text");
  expectEqual(r.contents[1], "");
  expectEqual(r.latencies[0], 1.5);
  expectEqual(r.latencies[1], -0.25);
  expectEqual(r.latencies[2], 1e300);
  expectTrue(isNaN(r.latencies[3]), "NaN survives");
}

export function test_window_batch_round_trip(): void {
  const r = new Recorder();
  const got = alertWindows(r, [
    testWindow(0, 10_000, "alice", 2),
    testWindow(-10_000, 0, "bøb", 3),
    testWindow(10_000, 20_000, "", 0),
  ]);
  expectBools(got, [true, true, false]);
  expectEqual(r.starts[1], <i64>-10_000);
  expectEqual(r.ends[0], <i64>10_000);
  expectEqual(r.keys[1], "bøb");
  expectEqual(r.keys[2], "");
  expectEqual(r.counts[0], <u64>2);
}

export function test_negative_counts_read_as_zero(): void {
  const w = new BatchWriter([KIND_I64, KIND_I64, KIND_STR, KIND_I64]);
  w.pushI64(0, 0); w.pushI64(1, 1); w.pushStr(2, "k"); w.pushI64(3, -5); w.endRow();
  const batch = w.finish();
  const r = new Recorder();
  new Runner([]).alert(r, changetype<usize>(batch), batch.byteLength);
  expectEqual(r.counts[0], <u64>0);
}

export function test_bitmaps_of_every_length(): void {
  const rule = initRule(PARAMS);
  for (let n = 1; n <= 70; n++) {
    const events = new Array<TestEvent>(0);
    const expected = new Array<bool>(0);
    for (let i = 0; i < n; i++) {
      const hit = (i * 7 + n) % 3 == 0;
      events.push(ev(i, "u" + i.toString(), hit ? "High" : "Low", "a crash"));
      expected.push(hit);
    }
    expectBools(filterEvents(rule, events), expected, "rows " + n.toString());
  }
}

export function test_a_full_batch_of_4096_rows(): void {
  const rule = initRule(PARAMS);
  const events = new Array<TestEvent>(0);
  const expected = new Array<bool>(0);
  for (let i = 0; i < 4096; i++) {
    const hit = i % 5 == 0 || i % 7 == 0;
    events.push(ev(i, "user", "Critical", hit ? "CRASH #" + i.toString() : "ok #" + i.toString()));
    expected.push(hit);
  }
  expectBools(filterEvents(rule, events), expected);
}

export function test_extra_columns_are_ignored(): void {
  // A batch may carry more columns than the rule declares; they are checked, not read.
  const w = new BatchWriter([KIND_I64, KIND_STR, KIND_STR, KIND_STR, KIND_F64, KIND_STR]);
  w.pushI64(0, 1); w.pushStr(1, "k"); w.pushStr(2, "High"); w.pushStr(3, "crash"); w.pushF64(4, 1); w.pushStr(5, "extra");
  w.endRow();
  const batch = w.finish();
  const rule = initRule(PARAMS);
  const packed = new Runner(FIELDS).filter(rule, changetype<usize>(batch), batch.byteLength);
  expectEqual(<u32>packed, <u32>1, "bitmap length");
  expectEqual(load<u8>(<usize>(packed >>> 32)), <u8>1, "bitmap");
}

// ---- malformed batches ---------------------------------------------------------------------

/** A valid two-row event batch for FIELDS, to break. */
function good(): ArrayBuffer {
  return encodeEvents(FIELDS, [ev(1, "ab", "High", "crash", 1), ev(2, "c", "Low", "fine", 2)]);
}

function run(batch: ArrayBuffer, len: i32 = -1): void {
  const rule = initRule(PARAMS);
  new Runner(FIELDS).filter(rule, changetype<usize>(batch), len < 0 ? batch.byteLength : len);
}

function setU32(b: ArrayBuffer, at: i32, v: u32): void {
  store<u32>(changetype<usize>(b) + <usize>at, v, 0, 1);
}

function getU32(b: ArrayBuffer, at: i32): u32 {
  return load<u32>(changetype<usize>(b) + <usize>at, 0, 1);
}

/** Byte offset of column `c`'s header entry. */
function header(c: i32): i32 {
  return 8 + 12 * c;
}

export function test_good_batch_passes(): void {
  run(good());
}

export function test_malformed_short_header(): void {
  expectAbort("malformed batch: truncated (7 bytes)");
  run(good(), 7);
}

export function test_malformed_too_few_columns(): void {
  expectAbort("malformed batch: 4 columns, expected at least 5");
  const b = good();
  setU32(b, 4, 4);
  run(b);
}

export function test_malformed_header_past_the_end(): void {
  expectAbort("malformed batch: truncated (the header of 5 columns");
  run(good(), 8 + 12 * 5 - 1);
}

export function test_malformed_column_outside(): void {
  expectAbort("malformed batch: column 4 outside the batch");
  const b = good();
  run(b, b.byteLength - 1);
}

export function test_malformed_huge_offset(): void {
  expectAbort("malformed batch: column 2 outside the batch");
  const b = good();
  setU32(b, header(2) + 4, 0xffff_fff0);
  run(b);
}

export function test_malformed_fixed_length(): void {
  expectAbort("malformed batch: fixed column 0 of the wrong length");
  const b = good();
  setU32(b, 0, 3); // rows
  run(b);
}

export function test_malformed_string_offsets_truncated(): void {
  expectAbort("malformed batch: string offsets of column 1 truncated");
  const b = good();
  setU32(b, header(1) + 8, 8); // length < (rows + 1) * 4
  run(b);
}

export function test_malformed_string_bytes_length(): void {
  expectAbort("malformed batch: string bytes of column 1 of the wrong length");
  const b = good();
  const off = <i32>getU32(b, header(1) + 4);
  setU32(b, off + 8, 2); // last end offset: 2 instead of 3
  run(b);
}

export function test_malformed_string_first_offset(): void {
  expectAbort("malformed batch: string column 2 does not start at offset 0");
  const b = good();
  const off = <i32>getU32(b, header(2) + 4);
  setU32(b, off, 1);
  run(b);
}

export function test_malformed_string_offsets_out_of_order(): void {
  expectAbort("malformed batch: string offsets of column 3 out of order");
  const b = good();
  const off = <i32>getU32(b, header(3) + 4);
  // "crash" then "fine": ends 0, 5, 9; make the middle one 10.
  setU32(b, off + 4, 10);
  run(b);
}

export function test_malformed_unknown_kind(): void {
  expectAbort("malformed batch: unknown kind 9 of column 1");
  const b = good();
  setU32(b, header(1), 9);
  run(b);
}

export function test_malformed_wrong_kind(): void {
  expectAbort("malformed batch: column 4 is str, expected f64");
  const b = encodeEvents([Field.str("severity"), Field.str("content"), Field.str("latency")], [
    testEvent(1, "k", [["severity", "High"], ["content", "crash"], ["latency", "slow"]]),
  ]);
  run(b);
}

// ---- fields -------------------------------------------------------------------------------

class ReadsUndeclared extends Rule {
  filter(e: Event): bool {
    return e.text("contnt").length > 0;
  }
  alert(w: WindowCount): bool {
    return false;
  }
}

class ReadsNumAsText extends Rule {
  filter(e: Event): bool {
    return e.text("latency").length > 0;
  }
  alert(w: WindowCount): bool {
    return false;
  }
}

export function test_undeclared_field_aborts(): void {
  expectAbort("field `contnt` is not declared as Field.str(\"contnt\") in register(...)");
  filterEvents(new ReadsUndeclared(), [ev(1, "k", "High", "crash")]);
}

export function test_field_of_another_type_aborts(): void {
  expectAbort("field `latency` is not declared as Field.str(\"latency\")");
  filterEvents(new ReadsNumAsText(), [ev(1, "k", "High", "crash")]);
}

export function test_test_event_missing_a_field_aborts(): void {
  expectAbort("test event 0 lacks num field `latency`");
  filterEvents(initRule(PARAMS), [testEvent(1, "k", [["severity", "High"], ["content", "crash"]])]);
}

// ---- allocations --------------------------------------------------------------------------

class Allocates extends Rule {
  filter(e: Event): bool {
    return e.str("content").length > 3;
  }
  alert(w: WindowCount): bool {
    return false;
  }
}

function manyEvents(n: i32): TestEvent[] {
  const events = new Array<TestEvent>(0);
  for (let i = 0; i < n; i++) {
    events.push(ev(i, "user_" + i.toString(), i % 2 == 0 ? "High" : "Low", "App crash number " + i.toString(), i));
  }
  return events;
}

export function test_filter_path_allocates_nothing(): void {
  expectNoAllocations(initRule(PARAMS), manyEvents(1000));
  // With min_latency the num() path is taken too.
  expectNoAllocations(initRule(`{"keyword":"crash","severities":["High"],"threshold":2,"min_latency":10}`), manyEvents(1000));
}

export function test_allocation_counter_sees_allocations(): void {
  // The measurement itself works: a rule that makes a string per event allocates.
  const n = filterAllocations(new Allocates(), manyEvents(100));
  expectTrue(n >= 100, "allocations counted: " + n.toString());
}

export function test_garbage_is_collected(): void {
  // A rule that allocates per event runs for a long time in bounded memory: the incremental
  // collector reclaims the strings of earlier batches.
  const rule = new Allocates();
  const runner = new Runner(FIELDS);
  const batch = encodeEvents(FIELDS, manyEvents(1000));
  let pagesAfterWarmup: i32 = 0;
  for (let i = 0; i < 300; i++) {
    runner.filter(rule, changetype<usize>(batch), batch.byteLength);
    if (i == 20) pagesAfterWarmup = memory.size();
  }
  // 300 batches × 1000 strings of ~40 bytes would be ~12 MB (190 pages) if never freed.
  expectTrue(memory.size() <= pagesAfterWarmup + 8, "pages " + pagesAfterWarmup.toString() + " -> " + memory.size().toString());
}

export function test_utf8_constants_are_encoded_once(): void {
  const u = Utf8.of("CrAsH");
  expectEqual(u.length, 5);
  expectEqual(u.toString(), "CrAsH");
  expectEqual(load<u8>(changetype<usize>(u.folded)), <u8>0x63);
}
