// The JSON parser: values, escapes, surrogates, UTF-8, numbers, and every kind of error.

import { JsonKind, JsonValue, parseJson, parseJsonString } from "../assembly/index";
import { expectContains, expectEqual, expectTrue } from "../assembly/testing";

function ok(text: string): JsonValue {
  const r = parseJsonString(text);
  if (r.value === null) throw new Error("parse " + text + ": " + changetype<string>(r.error));
  return changetype<JsonValue>(r.value);
}

function err(text: string): string {
  const r = parseJsonString(text);
  if (r.value !== null) throw new Error("parse " + text + ": accepted, expected an error");
  return changetype<string>(r.error);
}

/** Parses raw bytes (for invalid UTF-8). */
function errBytes(bytes: u8[]): string {
  const b = new ArrayBuffer(bytes.length);
  for (let i = 0; i < bytes.length; i++) store<u8>(changetype<usize>(b) + <usize>i, bytes[i]);
  const r = parseJson(changetype<usize>(b), <usize>b.byteLength);
  if (r.value !== null) throw new Error("raw bytes accepted, expected an error");
  return changetype<string>(r.error);
}

function str(text: string): string {
  const v = ok(text);
  expectEqual(v.kind, JsonKind.String, text);
  return v.text;
}

export function test_json_values(): void {
  const v = ok(` { "a" : [1, -2.5e3, true, false, null, "x", {}, []] , "b": {"c": 0} } `);
  expectEqual(v.kind, JsonKind.Object);
  expectEqual(v.keys.length, 2);
  const a = changetype<JsonValue>(v.get("a"));
  expectEqual(a.items.length, 8);
  expectEqual(a.items[0].text, "1");
  expectEqual(a.items[1].text, "-2.5e3");
  expectEqual(a.items[1].toF64(), -2500.0);
  expectTrue(a.items[0].isInteger());
  expectTrue(!a.items[1].isInteger());
  expectEqual(a.items[2].boolean, true);
  expectEqual(a.items[3].kind, JsonKind.Bool);
  expectEqual(a.items[4].kind, JsonKind.Null);
  expectEqual(a.items[6].kind, JsonKind.Object);
  expectEqual(a.items[7].kind, JsonKind.Array);
  expectEqual(changetype<JsonValue>(changetype<JsonValue>(v.get("b")).get("c")).text, "0");
  expectTrue(v.get("z") === null);
  expectEqual(ok("\t\n\r 42 \n").text, "42");
  expectEqual(ok("0.5").toF64(), 0.5);
  expectEqual(ok("-0").toF64(), -0.0);
  expectEqual(ok("1E+2").toF64(), 100.0);
  expectEqual(ok("1e-2").toF64(), 0.01);
  expectEqual(ok("0.1").toF64(), 0.1);
  expectEqual(ok("1.7976931348623157e308").toF64(), f64.MAX_VALUE);
  expectEqual(ok("18446744073709551615").text, "18446744073709551615");
}

export function test_json_string_escapes(): void {
  expectEqual(str(`"plain"`), "plain");
  expectEqual(str(`""`), "");
  expectEqual(str(`"a\\"b\\\\c\\/d\\be\\ff\\ng\\rh\\ti"`), "a\"b\\c/d\be\ff\ng\rh\ti");
  expectEqual(str(`"\\u0041\\u00e9\\u00E9\\u4e2d"`), "Aéé中");
  expectEqual(str(`"\\u0000"`), "\0");
  expectEqual(str(`"\\ud83d\\ude00 \\uD83D\\uDE00"`), "😀 😀");
  expectEqual(str(`"raw é 中 😀"`), "raw é 中 😀");
  expectEqual(str(`"\\u2028\\u2029"`), "\u2028\u2029");
  expectEqual(str(`"\x7f"`), "\x7f");
}

export function test_json_surrogate_errors(): void {
  expectContains(err(`"\\ud83d"`), "lone leading surrogate");
  expectContains(err(`"\\ud83dx"`), "lone leading surrogate");
  expectContains(err(`"\\ud83d\\u0041"`), "lone leading surrogate");
  expectContains(err(`"\\ude00"`), "lone trailing surrogate");
  expectContains(err(`"\\ude00\\ud83d"`), "lone trailing surrogate");
}

export function test_json_string_errors(): void {
  expectEqual(err(`"abc`), "unterminated string at byte 4");
  expectContains(err(`"abc\\`), "unterminated string");
  expectEqual(err(`"a\\x"`), "bad escape `\\x` in a string at byte 3");
  expectContains(err(`"a\\u12"`), "truncated \\u escape");
  expectContains(err(`"a\\u12g4"`), "bad \\u escape");
  expectContains(err("\"a\nb\""), "control character in a string");
  expectContains(err("\"a\tb\""), "control character in a string");
  expectContains(errBytes([0x22, 0xff, 0x22]), "invalid UTF-8");
  expectContains(errBytes([0x22, 0xc3, 0x22]), "invalid UTF-8"); // truncated sequence
  expectContains(errBytes([0x22, 0xc0, 0xaf, 0x22]), "invalid UTF-8"); // overlong "/"
  expectContains(errBytes([0x22, 0xe0, 0x80, 0xaf, 0x22]), "invalid UTF-8"); // overlong
  expectContains(errBytes([0x22, 0xed, 0xa0, 0x80, 0x22]), "invalid UTF-8"); // a surrogate
  expectContains(errBytes([0x22, 0xf4, 0x90, 0x80, 0x80, 0x22]), "invalid UTF-8"); // > U+10FFFF
  expectContains(errBytes([0x22, 0x80, 0x22]), "invalid UTF-8"); // a lone continuation
}

export function test_json_number_errors(): void {
  expectEqual(err("01"), "malformed number (leading zero) at byte 1");
  expectContains(err("-"), "a digit must follow `-`");
  expectContains(err("-a"), "a digit must follow `-`");
  expectContains(err("1."), "a digit must follow `.`");
  expectContains(err("1.e3"), "a digit must follow `.`");
  expectContains(err("1e"), "a digit must follow the exponent");
  expectContains(err("1e+"), "a digit must follow the exponent");
  expectContains(err("+1"), "expected a JSON value");
  expectContains(err(".5"), "expected a JSON value");
  expectContains(err("NaN"), "expected a JSON value");
  expectContains(err("1 2"), "trailing characters after the JSON value at byte 2");
}

export function test_json_structure_errors(): void {
  expectEqual(err(""), "expected a JSON value, found the end of the text at byte 0");
  expectEqual(err("   "), "expected a JSON value, found the end of the text at byte 3");
  expectContains(err("tru"), "invalid literal (expected `true`)");
  expectContains(err("nul"), "invalid literal (expected `null`)");
  expectContains(err("falsy"), "invalid literal (expected `false`)");
  expectContains(err("[1,]"), "expected a JSON value");
  expectContains(err("[1 2]"), "expected `,` or `]` in an array");
  expectContains(err("[1"), "expected `,` or `]` in an array");
  expectContains(err(`{"a" 1}`), "expected `:` after a key");
  expectContains(err(`{"a":1,}`), "expected a key (a string) in an object");
  expectContains(err(`{a:1}`), "expected a key (a string) in an object");
  expectContains(err(`{"a":1 "b":2}`), "expected `,` or `}` in an object");
  expectEqual(err(`{"a":1,"a":2}`), "key `a` is given twice in one object at byte 7");
  expectContains(err("{} {}"), "trailing characters");
}

export function test_json_depth(): void {
  let deep = "";
  for (let i = 0; i < 128; i++) deep += "[";
  for (let i = 0; i < 128; i++) deep += "]";
  ok(deep);
  expectContains(err("[" + deep + "]"), "nested deeper than 128 levels");
  let objects = "";
  for (let i = 0; i < 200; i++) objects += `{"a":`;
  expectContains(err(objects), "nested deeper than 128 levels");
}
