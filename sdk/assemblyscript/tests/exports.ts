// The ABI exports themselves, called as the host calls them: input buffer, init, filter,
// alert, error.

import {
  rulewatch_abi_version, rulewatch_alert, rulewatch_error, rulewatch_fields, rulewatch_filter,
  rulewatch_init, rulewatch_input,
} from "../assembly/exports";
import { EVENT_FIXED_COLUMNS } from "../assembly/abi";
import {
  encodeEvents, encodeWindows, expectAbort, expectBools, expectEqual, expectTrue, readBitmap, testEvent, testWindow,
} from "../assembly/testing";
import { FIELDS, PARAMS } from "./rule";

/** The UTF-8 text at a packed pointer/length. */
function packedText(packed: u64): string {
  return String.UTF8.decodeUnsafe(<usize>(packed >>> 32), <usize>(<u32>packed));
}

/** Writes `bytes` into the input buffer as the host does; returns the length. */
function send(bytes: ArrayBuffer): u32 {
  const len = <u32>bytes.byteLength;
  const ptr = rulewatch_input(len);
  memory.copy(<usize>ptr, changetype<usize>(bytes), <usize>len);
  return len;
}

function sendText(text: string): u32 {
  return send(String.UTF8.encode(text));
}

function init(params: string): u32 {
  return rulewatch_init(sendText(params));
}

export function test_exports_version_and_fields(): void {
  expectEqual(rulewatch_abi_version(), <u32>1);
  expectEqual(packedText(rulewatch_fields()), "str severity\nstr content\nnum latency\n");
  expectEqual(EVENT_FIXED_COLUMNS + FIELDS.length, 5);
}

export function test_exports_init_filter_alert(): void {
  expectEqual(init(PARAMS), <u32>0, packedText(rulewatch_error()));
  const events = encodeEvents(FIELDS, [
    testEvent(1, "u1", [["severity", "High"], ["content", "App crash on startup"]]).num("latency", 1),
    testEvent(2, "u1", [["severity", "Critical"], ["content", "CRASH in renderer"]]).num("latency", 1),
    testEvent(3, "u2", [["severity", "Medium"], ["content", "App crash on startup"]]).num("latency", 1),
    testEvent(4, "u2", [["severity", "high"], ["content", "App crash"]]).num("latency", 1),
    testEvent(5, "u3", [["severity", "High"], ["content", "Settings saved"]]).num("latency", 1),
    testEvent(6, "u3", [["severity", "Critical"], ["content", "crashed while saving"]]).num("latency", 1),
    testEvent(7, "u3", [["severity", "Critical"], ["content", "x"]]).num("latency", 1),
    testEvent(8, "u3", [["severity", "Critical"], ["content", "... crash"]]).num("latency", 1),
    testEvent(9, "u3", [["severity", "Critical"], ["content", "crash!"]]).num("latency", 1),
  ]);
  const bits = rulewatch_filter(send(events));
  expectEqual(<u32>bits, <u32>2, "bitmap bytes");
  expectBools(readBitmap(bits, 9), [true, true, false, false, false, true, false, true, true]);
  const windows = encodeWindows([testWindow(0, 10_000, "u1", 2), testWindow(0, 10_000, "u3", 3)]);
  const alerts = rulewatch_alert(send(windows));
  expectBools(readBitmap(alerts, 2), [false, true]);
}

export function test_exports_refusal_message(): void {
  expectEqual(init(`{"keyword":"crash","severities":["High"],"threshold":"2"}`), <u32>1);
  expectEqual(packedText(rulewatch_error()),
    "invalid params: params.threshold must be a non-negative integer, found a string");
  expectEqual(init(`{"keyword":"crash","severities":["High"],"threshold":2,"extra":1}`), <u32>1);
  expectEqual(packedText(rulewatch_error()),
    "invalid params: unknown param `extra`, expected one of `keyword`, `severities`, `threshold`, `min_latency`");
}

export function test_exports_filter_after_refused_init_aborts(): void {
  expectEqual(init(`{}`), <u32>1);
  expectAbort("rulewatch_init was not called, or refused the params");
  rulewatch_filter(send(encodeEvents(FIELDS, [])));
}

export function test_exports_filter_before_init_aborts(): void {
  expectAbort("rulewatch_init was not called");
  rulewatch_filter(send(encodeEvents(FIELDS, [])));
}

export function test_exports_length_beyond_the_input_buffer_aborts(): void {
  expectEqual(init(PARAMS), <u32>0);
  const len = send(encodeEvents(FIELDS, []));
  expectAbort("more than rulewatch_input was asked for");
  rulewatch_filter(len + 1_000_000);
}

export function test_exports_malformed_batch_sets_the_error(): void {
  expectEqual(init(PARAMS), <u32>0);
  expectAbort("malformed batch: truncated");
  rulewatch_filter(sendText("abc"));
}

export function test_exports_input_grows_and_keeps_contents_usable(): void {
  const a = rulewatch_input(10);
  expectTrue(a != 0);
  expectEqual(rulewatch_input(5), a, "a smaller request reuses the buffer");
  const big = rulewatch_input(5_000_000);
  // The whole buffer is writable.
  memory.fill(<usize>big, 0x61, 5_000_000);
  expectTrue(memory.size() * 65536 >= <i32>big + 5_000_000);
  // Large events pass through.
  expectEqual(init(PARAMS), <u32>0);
  let content = "";
  for (let i = 0; i < 1000; i++) content += "long line ";
  content += "CRASH";
  const events = encodeEvents(FIELDS, [testEvent(1, "u", [["severity", "High"], ["content", content]]).num("latency", 0)]);
  expectBools(readBitmap(rulewatch_filter(send(events)), 1), [true]);
}

export function test_exports_error_before_anything(): void {
  expectEqual(<u32>rulewatch_error(), <u32>0, "no message yet");
}
