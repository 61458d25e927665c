// Native tests of the crash rule: `npm test` compiles this file with asc (asconfig.json,
// target test) and rulewatch-as-test runs every exported test_* function in Node. The events
// go through the same batch encoding, decoding and loop as in the real module.

import "./index"; // the rule: its register(...) runs
import { WindowCount } from "rulewatch-sdk/assembly";
import {
  TestEvent, alertWindows, expectBools, expectEqual, expectNoAllocations, filterEvents, initError, initRule,
  testEvent, testWindow,
} from "rulewatch-sdk/assembly/testing";

const PARAMS = `{"keyword":"crash","severities":["High","Critical"],"threshold":2}`;

function e(severity: string, content: string): TestEvent {
  return testEvent(0, "u", [["severity", severity], ["content", content]]);
}

export function test_counts_high_and_critical_crashes_in_any_case(): void {
  const events = [
    e("High", "App crash on startup"),
    e("Critical", "CRASH in renderer"),
    e("Critical", "crashed while saving"),
    e("Medium", "App crash on startup"),
    e("high", "App crash"),
    e("High", "Settings saved"),
  ];
  expectBools(filterEvents(initRule(PARAMS), events), [true, true, true, false, false, false]);
}

export function test_alerts_above_the_threshold(): void {
  const w = (count: u64): WindowCount => testWindow(0, 10_000, "u", count);
  expectBools(alertWindows(initRule(PARAMS), [w(2), w(3), w(0)]), [false, true, false]);
}

export function test_rejects_empty_params(): void {
  expectEqual(initError(`{"keyword":"","severities":["High"],"threshold":2}`),
    "params.keyword is empty: every event would match");
  expectEqual(initError(`{"keyword":"crash","severities":[],"threshold":2}`),
    "params.severities is empty: no event could match");
}

export function test_rejects_unknown_missing_and_mistyped_params(): void {
  expectEqual(initError(`{"keyword":"crash","severities":["High"],"threshold":2,"treshold":3}`),
    "invalid params: unknown param `treshold`, expected one of `keyword`, `severities`, `threshold`");
  expectEqual(initError(`{"keyword":"crash","severities":["High"]}`),
    "invalid params: params.threshold is missing; it must be a non-negative integer");
  expectEqual(initError(`{"keyword":"crash","severities":["High"],"threshold":"2"}`),
    "invalid params: params.threshold must be a non-negative integer, found a string");
  expectEqual(initError(`{"keyword":"crash","severities":"High","threshold":2}`),
    "invalid params: params.severities must be an array of strings, found a string");
}

export function test_filter_allocates_nothing(): void {
  const events: TestEvent[] = [];
  for (let i = 0; i < 500; i++) events.push(e(i % 2 == 0 ? "High" : "Low", "line " + i.toString() + " CRASH"));
  expectNoAllocations(initRule(PARAMS), events);
}
