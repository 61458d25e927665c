// Typed access to the rule's `[params]` (one JSON object, see json.ts).

import { JsonKind, JsonValue } from "./json";

/** Where the first params error of one `init` is kept; shared by a table and its sub-tables. */
class ParamErrors {
  message: string | null = null;
}

/** The most a u64 param can be, as digits, for overflow checks. */
const U64_MAX_TEXT = "18446744073709551615";
/** The magnitude of the most negative i64. */
const I64_MIN_MAGNITUDE: u64 = 0x8000_0000_0000_0000;

/**
 * The rule's `[params]` table, as the host sends it to `rulewatch_init` (TOML → JSON).
 *
 * AssemblyScript has no exceptions, so accessors do not throw: a missing or mistyped param
 * records an error (the first one is kept) and the accessor returns a default (`""`, `0`,
 * `false`, `[]`). When the factory given to `register` returns, the SDK refuses the params
 * with that error: `rulewatch_init` returns non-zero and `rulewatch_error` says, for example,
 * `invalid params: params.threshold must be a non-negative integer, found a string`. The
 * rule object built from defaults is thrown away. Check `ok` before using a value in a way
 * that could itself fail (indexing a list, say).
 *
 * ```ts
 * constructor(params: Params) {
 *   super();
 *   params.only(["keyword", "severities", "threshold"]);   // a typo is an error
 *   this.keyword = Utf8.of(params.string("keyword"));
 *   this.severities = Utf8.all(params.strings("severities"));
 *   this.threshold = params.u64("threshold");
 *   if (this.keyword.length == 0) params.refuse("params.keyword is empty: every event would match");
 * }
 * ```
 */
export class Params {
  /** @internal The JSON object. */
  readonly json: JsonValue;
  /** @internal Name of this table in messages: "params", or "params.sub" for a sub-table. */
  readonly path: string;
  /** @internal Shared with sub-tables. */
  readonly errors: ParamErrors;

  /** @internal Use `Params.from` (the SDK makes the params; tests may too). */
  constructor(json: JsonValue, path: string, errors: ParamErrors) {
    this.json = json;
    this.path = path;
    this.errors = errors;
  }

  /** Params over a parsed JSON object (the root table, named `params` in messages). */
  static from(json: JsonValue): Params {
    return new Params(json, "params", new ParamErrors());
  }

  /** Whether every param read so far was present and of the right type, and nothing refused. */
  get ok(): bool {
    return this.errors.message === null;
  }

  /** The first error recorded, or null. */
  get error(): string | null {
    return this.errors.message;
  }

  /**
   * Refuses the params with `message` (shown as it is, e.g. "params.keyword is empty: every
   * event would match"): `init` fails even if the factory returns a rule. The first error
   * recorded wins.
   */
  refuse(message: string): void {
    if (this.errors.message === null) this.errors.message = message;
  }

  /** The keys present in this table, in the order the JSON gave them. */
  keys(): string[] {
    return this.json.keys.slice(0);
  }

  /** Whether `key` is present. */
  has(key: string): bool {
    return this.json.get(key) !== null;
  }

  /**
   * Refuses any key not in `allowed`: a misspelled param in the TOML is an error instead of a
   * silent default. Message: "invalid params: unknown param `keywrd`, expected one of
   * `keyword`, `severities`, `threshold`".
   */
  only(allowed: string[]): void {
    const keys = this.json.keys;
    for (let i = 0; i < keys.length; i++) {
      if (!allowed.includes(keys[i])) {
        let expected = "";
        for (let k = 0; k < allowed.length; k++) {
          expected += (k == 0 ? "`" : ", `") + allowed[k] + "`";
        }
        const where = this.path == "params" ? "" : this.path.slice(7) + ".";
        this.invalid(
          "unknown param `" + where + keys[i] + "`, " +
          (allowed.length == 0 ? "this table takes none" : "expected one of " + expected),
        );
        return;
      }
    }
  }

  /** The raw JSON value of `key`, or null when it is missing (no error recorded). */
  value(key: string): JsonValue | null {
    return this.json.get(key);
  }

  // ---- strings -------------------------------------------------------------------------

  /** The string param `key` (required). */
  string(key: string): string {
    const v = this.required(key, "a string");
    return v === null ? "" : this.asString(key, v);
  }

  /** The string param `key`, or `fallback` when it is missing. */
  stringOr(key: string, fallback: string): string {
    const v = this.json.get(key);
    return v === null ? fallback : this.asString(key, v);
  }

  /** The array-of-strings param `key` (required; may be empty). */
  strings(key: string): string[] {
    const v = this.required(key, "an array of strings");
    return v === null ? [] : this.asStrings(key, v);
  }

  /** The array-of-strings param `key`, or `fallback` when it is missing. */
  stringsOr(key: string, fallback: string[]): string[] {
    const v = this.json.get(key);
    return v === null ? fallback : this.asStrings(key, v);
  }

  // ---- numbers -------------------------------------------------------------------------

  /** The non-negative integer param `key` (required), exactly (up to 2^64 - 1). */
  u64(key: string): u64 {
    const v = this.required(key, "a non-negative integer");
    return v === null ? 0 : this.asU64(key, v);
  }

  /** The non-negative integer param `key`, or `fallback` when it is missing. */
  u64Or(key: string, fallback: u64): u64 {
    const v = this.json.get(key);
    return v === null ? fallback : this.asU64(key, v);
  }

  /** The integer param `key` (required), exactly (−2^63 to 2^63 − 1). */
  i64(key: string): i64 {
    const v = this.required(key, "an integer");
    return v === null ? 0 : this.asI64(key, v);
  }

  /** The integer param `key`, or `fallback` when it is missing. */
  i64Or(key: string, fallback: i64): i64 {
    const v = this.json.get(key);
    return v === null ? fallback : this.asI64(key, v);
  }

  /** The number param `key` (required; an integer or a float), as f64. */
  f64(key: string): f64 {
    const v = this.required(key, "a number");
    return v === null ? 0 : this.asF64(key, v);
  }

  /** The number param `key`, or `fallback` when it is missing. */
  f64Or(key: string, fallback: f64): f64 {
    const v = this.json.get(key);
    return v === null ? fallback : this.asF64(key, v);
  }

  /** The array-of-numbers param `key` (required; may be empty), as f64. */
  f64s(key: string): f64[] {
    const v = this.required(key, "an array of numbers");
    if (v === null) return [];
    if (v.kind != JsonKind.Array) {
      this.wrongType(key, "an array of numbers", v.typeName());
      return [];
    }
    const out = new Array<f64>(v.items.length);
    for (let i = 0; i < v.items.length; i++) {
      const item = v.items[i];
      if (item.kind != JsonKind.Number) {
        this.wrongType(key + "[" + i.toString() + "]", "a number", item.typeName());
        return [];
      }
      out[i] = item.toF64();
    }
    return out;
  }

  // ---- booleans and tables -------------------------------------------------------------

  /** The boolean param `key` (required). */
  bool(key: string): bool {
    const v = this.required(key, "a boolean");
    return v === null ? false : this.asBool(key, v);
  }

  /** The boolean param `key`, or `fallback` when it is missing. */
  boolOr(key: string, fallback: bool): bool {
    const v = this.json.get(key);
    return v === null ? fallback : this.asBool(key, v);
  }

  /**
   * The sub-table `key` (required), e.g. `[params.limits]`; its errors are named
   * `params.limits.NAME` and count as this table's.
   */
  table(key: string): Params {
    const v = this.required(key, "a table");
    const path = this.path + "." + key;
    if (v !== null && v.kind != JsonKind.Object) this.wrongType(key, "a table", v.typeName());
    const json = v !== null && v.kind == JsonKind.Object ? v : new JsonValue(JsonKind.Object);
    return new Params(json, path, this.errors);
  }

  // ---- internals -----------------------------------------------------------------------

  /** @internal Records "invalid params: " + what, if no error is recorded yet. */
  invalid(what: string): void {
    this.refuse("invalid params: " + what);
  }

  /** @internal */
  name(key: string): string {
    return this.path + "." + key;
  }

  /** @internal */
  wrongType(key: string, want: string, found: string): void {
    this.invalid(this.name(key) + " must be " + want + ", found " + found);
  }

  /** @internal The value of `key`, or null after recording that it is missing. */
  required(key: string, want: string): JsonValue | null {
    const v = this.json.get(key);
    if (v === null) this.invalid(this.name(key) + " is missing; it must be " + want);
    return v;
  }

  /** @internal */
  asString(key: string, v: JsonValue): string {
    if (v.kind == JsonKind.String) return v.text;
    this.wrongType(key, "a string", v.typeName());
    return "";
  }

  /** @internal */
  asStrings(key: string, v: JsonValue): string[] {
    if (v.kind != JsonKind.Array) {
      this.wrongType(key, "an array of strings", v.typeName());
      return [];
    }
    const out = new Array<string>(v.items.length);
    for (let i = 0; i < v.items.length; i++) {
      const item = v.items[i];
      if (item.kind != JsonKind.String) {
        this.wrongType(key + "[" + i.toString() + "]", "a string", item.typeName());
        return [];
      }
      out[i] = item.text;
    }
    return out;
  }

  /** @internal */
  asBool(key: string, v: JsonValue): bool {
    if (v.kind == JsonKind.Bool) return v.boolean;
    this.wrongType(key, "a boolean", v.typeName());
    return false;
  }

  /** @internal */
  asF64(key: string, v: JsonValue): f64 {
    if (v.kind == JsonKind.Number) return v.toF64();
    this.wrongType(key, "a number", v.typeName());
    return 0;
  }

  /** @internal What an integer param was found to be instead, or null if it is one. */
  notInteger(v: JsonValue): string | null {
    if (v.kind != JsonKind.Number) return v.typeName();
    if (!v.isInteger()) return "a float";
    return null;
  }

  /** @internal */
  asU64(key: string, v: JsonValue): u64 {
    const want = "a non-negative integer";
    const not = this.notInteger(v);
    if (not !== null) {
      this.wrongType(key, want, not);
      return 0;
    }
    const t = v.text;
    const negative = t.charCodeAt(0) == 0x2d;
    const digits = negative ? t.slice(1) : t;
    if (negative && digits != "0") {
      this.wrongType(key, want, "a negative integer");
      return 0;
    }
    if (digits.length > U64_MAX_TEXT.length || (digits.length == U64_MAX_TEXT.length && digits > U64_MAX_TEXT)) {
      this.wrongType(key, want, "an integer that is too large");
      return 0;
    }
    return digitsValue(digits);
  }

  /** @internal */
  asI64(key: string, v: JsonValue): i64 {
    const want = "an integer";
    const not = this.notInteger(v);
    if (not !== null) {
      this.wrongType(key, want, not);
      return 0;
    }
    const t = v.text;
    const negative = t.charCodeAt(0) == 0x2d;
    const digits = negative ? t.slice(1) : t;
    const tooBig = digits.length > U64_MAX_TEXT.length ||
      (digits.length == U64_MAX_TEXT.length && digits > U64_MAX_TEXT);
    const magnitude = tooBig ? <u64>-1 : digitsValue(digits);
    if (negative) {
      if (tooBig || magnitude > I64_MIN_MAGNITUDE) {
        this.wrongType(key, want, "an integer that is too small");
        return 0;
      }
      return <i64>(0 - magnitude);
    }
    if (tooBig || magnitude >= I64_MIN_MAGNITUDE) {
      this.wrongType(key, want, "an integer that is too large");
      return 0;
    }
    return <i64>magnitude;
  }
}

/** The value of a run of ASCII digits known to fit in a u64. */
function digitsValue(digits: string): u64 {
  let v: u64 = 0;
  for (let i = 0; i < digits.length; i++) v = v * 10 + <u64>(digits.charCodeAt(i) - 0x30);
  return v;
}
