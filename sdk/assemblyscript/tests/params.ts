// Params: the typed accessors, their messages, unknown keys, refusals, and init as a whole.

import { Event, JsonValue, Params, Rule, WindowCount, parseJsonString } from "../assembly/index";
import { expectEqual, expectFalse, expectTrue, initError, initRule } from "../assembly/testing";
import { PARAMS, Probe } from "./rule";

function params(json: string): Params {
  const r = parseJsonString(json);
  if (r.value === null) throw new Error("bad test JSON: " + json);
  return Params.from(changetype<JsonValue>(r.value));
}

function errorOf(p: Params): string {
  const e = p.error;
  return e === null ? "(none)" : e;
}

export function test_params_values(): void {
  const p = params(`{"s":"x\\n","l":["a","b"],"u":18446744073709551615,"i":-9223372036854775808,
    "j":9223372036854775807,"f":1.5,"n":3,"b":true,"t":{"k":"v"},"e":[],"z":-0,"fs":[1,2.5]}`);
  expectEqual(p.string("s"), "x\n");
  expectEqual(p.strings("l").join(","), "a,b");
  expectEqual(p.u64("u"), u64.MAX_VALUE);
  expectEqual(p.i64("i"), i64.MIN_VALUE);
  expectEqual(p.i64("j"), i64.MAX_VALUE);
  expectEqual(p.f64("f"), 1.5);
  expectEqual(p.f64("n"), 3.0);
  expectEqual(p.u64("n"), <u64>3);
  expectEqual(p.u64("z"), <u64>0);
  expectEqual(p.bool("b"), true);
  expectEqual(p.table("t").string("k"), "v");
  expectEqual(p.strings("e").length, 0);
  expectEqual(p.f64s("fs")[1], 2.5);
  expectEqual(p.stringOr("missing", "d"), "d");
  expectEqual(p.u64Or("missing", 7), <u64>7);
  expectEqual(p.i64Or("missing", -7), <i64>-7);
  expectEqual(p.f64Or("missing", 0.5), 0.5);
  expectEqual(p.boolOr("missing", true), true);
  expectEqual(p.stringsOr("missing", ["x"]).join(","), "x");
  expectTrue(p.has("s"));
  expectFalse(p.has("missing"));
  expectTrue(p.ok, errorOf(p));
  expectEqual(p.keys().length, 12);
}

function firstError(json: string, read: (p: Params) => void): string {
  const p = params(json);
  read(p);
  return errorOf(p);
}

export function test_params_type_errors(): void {
  expectEqual(firstError(`{"threshold":"2"}`, (p: Params): void => { p.u64("threshold"); }),
    "invalid params: params.threshold must be a non-negative integer, found a string");
  expectEqual(firstError(`{"threshold":-1}`, (p: Params): void => { p.u64("threshold"); }),
    "invalid params: params.threshold must be a non-negative integer, found a negative integer");
  expectEqual(firstError(`{"threshold":2.0}`, (p: Params): void => { p.u64("threshold"); }),
    "invalid params: params.threshold must be a non-negative integer, found a float");
  expectEqual(firstError(`{"threshold":1e3}`, (p: Params): void => { p.u64("threshold"); }),
    "invalid params: params.threshold must be a non-negative integer, found a float");
  expectEqual(firstError(`{"threshold":18446744073709551616}`, (p: Params): void => { p.u64("threshold"); }),
    "invalid params: params.threshold must be a non-negative integer, found an integer that is too large");
  expectEqual(firstError(`{"threshold":null}`, (p: Params): void => { p.u64("threshold"); }),
    "invalid params: params.threshold must be a non-negative integer, found null");
  expectEqual(firstError(`{"n":9223372036854775808}`, (p: Params): void => { p.i64("n"); }),
    "invalid params: params.n must be an integer, found an integer that is too large");
  expectEqual(firstError(`{"n":-9223372036854775809}`, (p: Params): void => { p.i64("n"); }),
    "invalid params: params.n must be an integer, found an integer that is too small");
  expectEqual(firstError(`{"keyword":3}`, (p: Params): void => { p.string("keyword"); }),
    "invalid params: params.keyword must be a string, found a number");
  expectEqual(firstError(`{"keyword":["a"]}`, (p: Params): void => { p.stringOr("keyword", ""); }),
    "invalid params: params.keyword must be a string, found an array");
  expectEqual(firstError(`{"s":"High"}`, (p: Params): void => { p.strings("s"); }),
    "invalid params: params.s must be an array of strings, found a string");
  expectEqual(firstError(`{"s":["High",2]}`, (p: Params): void => { p.strings("s"); }),
    "invalid params: params.s[1] must be a string, found a number");
  expectEqual(firstError(`{"f":"1"}`, (p: Params): void => { p.f64("f"); }),
    "invalid params: params.f must be a number, found a string");
  expectEqual(firstError(`{"f":[1,true]}`, (p: Params): void => { p.f64s("f"); }),
    "invalid params: params.f[1] must be a number, found a boolean");
  expectEqual(firstError(`{"b":"yes"}`, (p: Params): void => { p.bool("b"); }),
    "invalid params: params.b must be a boolean, found a string");
  expectEqual(firstError(`{"t":1}`, (p: Params): void => { p.table("t"); }),
    "invalid params: params.t must be a table, found a number");
  expectEqual(firstError(`{"t":{"x":{}}}`, (p: Params): void => { p.table("t").u64("x"); }),
    "invalid params: params.t.x must be a non-negative integer, found a table");
}

export function test_params_missing_and_unknown(): void {
  expectEqual(firstError(`{}`, (p: Params): void => { p.string("keyword"); }),
    "invalid params: params.keyword is missing; it must be a string");
  expectEqual(firstError(`{}`, (p: Params): void => { p.table("t").string("k"); }),
    "invalid params: params.t is missing; it must be a table");
  expectEqual(firstError(`{"t":{}}`, (p: Params): void => { p.table("t").string("k"); }),
    "invalid params: params.t.k is missing; it must be a string");
  expectEqual(firstError(`{"keyword":"a","keywrd":"b"}`, (p: Params): void => { p.only(["keyword", "threshold"]); }),
    "invalid params: unknown param `keywrd`, expected one of `keyword`, `threshold`");
  expectEqual(firstError(`{"t":{"a":1,"b":2}}`, (p: Params): void => { p.table("t").only(["a"]); }),
    "invalid params: unknown param `t.b`, expected one of `a`");
  expectEqual(firstError(`{"a":1}`, (p: Params): void => { p.only([]); }),
    "invalid params: unknown param `a`, this table takes none");
  expectEqual(firstError(`{"a":1}`, (p: Params): void => { p.only(["a"]); }), "(none)");
}

export function test_params_first_error_wins(): void {
  expectEqual(firstError(`{"a":1,"b":2}`, (p: Params): void => {
    p.string("a");
    p.string("b");
    p.refuse("later");
  }), "invalid params: params.a must be a string, found a number");
  expectEqual(firstError(`{"a":"x"}`, (p: Params): void => {
    p.refuse("params.a is no good");
    p.u64("a");
  }), "params.a is no good");
}

export function test_init_accepts_and_refuses(): void {
  const rule = initRule(PARAMS);
  expectEqual((<Probe>rule).threshold, <u64>2);
  expectEqual(initError(`{"keyword":"crash","severities":["High"],"threshold":"2"}`),
    "invalid params: params.threshold must be a non-negative integer, found a string");
  expectEqual(initError(`{"keyword":"crash","severities":["High"],"threshold":2,"colour":"red"}`),
    "invalid params: unknown param `colour`, expected one of `keyword`, `severities`, `threshold`, `min_latency`");
  expectEqual(initError(`{"keyword":"","severities":["High"],"threshold":2}`),
    "params.keyword is empty: every event would match");
  expectEqual(initError(`{"keyword":"crash","severities":[],"threshold":2}`),
    "params.severities is empty: no event could match");
  expectEqual(initError(`{"severities":["High"],"threshold":2}`),
    "invalid params: params.keyword is missing; it must be a string");
  expectEqual(initError(`[1]`), "invalid params: expected a table of params, found an array");
  expectEqual(initError(`{"keyword":"crash",}`),
    "invalid params: expected a key (a string) in an object at byte 19 of the params JSON");
  expectEqual(initError(``), "invalid params: expected a JSON value, found the end of the text at byte 0 of the params JSON");
}

class Nothing extends Rule {
  filter(e: Event): bool { return true; }
  alert(w: WindowCount): bool { return true; }
}

export function test_init_with_another_factory(): void {
  initRule("{}", (p: Params): Rule => new Nothing());
  expectEqual(initError(`{"x":1}`, (p: Params): Rule => {
    p.only([]);
    return new Nothing();
  }), "invalid params: unknown param `x`, this table takes none");
}
