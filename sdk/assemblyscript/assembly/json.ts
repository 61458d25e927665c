// A small, strict JSON parser (RFC 8259) for the params `rulewatch_init` receives.
//
// It accepts exactly JSON: objects, arrays, strings (every escape, \u surrogate pairs; lone
// surrogates, control characters and invalid UTF-8 are errors), numbers in JSON's grammar
// (no leading zeros, no `+`, no bare `.`), true, false, null, with whitespace between
// tokens, and nothing after the value. Duplicate keys in one object are an error, and
// nesting is limited to 128 levels. Numbers keep their source text, so that integers are
// read exactly (a u64 beyond 2^53 is not rounded through f64).

/** The type of a JSON value. */
export enum JsonKind {
  /** `null` */
  Null = 0,
  /** `true` or `false` */
  Bool = 1,
  /** a number */
  Number = 2,
  /** a string */
  String = 3,
  /** an array */
  Array = 4,
  /** an object (a TOML table) */
  Object = 5,
}

/** Deepest nesting of arrays and objects the parser accepts. */
export const MAX_JSON_DEPTH: i32 = 128;

/** A parsed JSON value; which members hold it depends on `kind`. */
export class JsonValue {
  /** The type of the value. */
  kind: JsonKind = JsonKind.Null;
  /** The value of a `Bool`. */
  boolean: bool = false;
  /** The decoded value of a `String`, or the source text of a `Number` (e.g. `-1.5e3`). */
  text: string = "";
  /** The items of an `Array`. */
  items: JsonValue[] = [];
  /** The keys of an `Object`, in source order (parallel to `values`). */
  keys: string[] = [];
  /** The values of an `Object`, in source order (parallel to `keys`). */
  values: JsonValue[] = [];

  /** A value of kind `kind` (members left at their defaults). */
  constructor(kind: JsonKind = JsonKind.Null) {
    this.kind = kind;
  }

  /** The member `key` of an object, or null when it has none (or is not an object). */
  get(key: string): JsonValue | null {
    const keys = this.keys;
    for (let i = 0, n = keys.length; i < n; i++) {
      if (keys[i] == key) return this.values[i];
    }
    return null;
  }

  /** Whether a number is written as an integer (no fraction, no exponent). */
  isInteger(): bool {
    if (this.kind != JsonKind.Number) return false;
    const t = this.text;
    for (let i = 0, n = t.length; i < n; i++) {
      const c = t.charCodeAt(i);
      if (c == 0x2e || c == 0x65 || c == 0x45) return false; // . e E
    }
    return true;
  }

  /** A number's value as f64 (the nearest double). */
  toF64(): f64 {
    return parseFloat(this.text);
  }

  /** What the value is, for messages: "a string", "a number", "an array", "a table"... */
  typeName(): string {
    switch (this.kind) {
      case JsonKind.Null: return "null";
      case JsonKind.Bool: return "a boolean";
      case JsonKind.Number: return "a number";
      case JsonKind.String: return "a string";
      case JsonKind.Array: return "an array";
      default: return "a table";
    }
  }
}

/** The outcome of `parseJson`: a value, or why the text is not JSON. */
export class JsonResult {
  /** The parsed value, when the text is JSON. */
  value: JsonValue | null = null;
  /** Why the text is not JSON, ending with the byte offset, e.g. "bad escape `\x` in a string at byte 12". */
  error: string | null = null;
}

/** Parses the `len` bytes of UTF-8 JSON text at `ptr`. */
export function parseJson(ptr: usize, len: usize): JsonResult {
  const parser = new Parser(ptr, len);
  const result = new JsonResult();
  const value = parser.value(0);
  if (value !== null && parser.error === null) {
    parser.ws();
    if (parser.p < parser.end) parser.fail("trailing characters after the JSON value");
  }
  if (parser.error !== null) {
    result.error = parser.error;
  } else {
    result.value = value;
  }
  return result;
}

/** Parses a JSON string (encoded as UTF-8 first): for tests and constants. */
export function parseJsonString(text: string): JsonResult {
  const bytes = String.UTF8.encode(text);
  return parseJson(changetype<usize>(bytes), <usize>bytes.byteLength);
}

function hexDigit(c: u32): i32 {
  if (c - 0x30 < 10) return <i32>(c - 0x30);
  const l = c | 0x20;
  if (l - 0x61 < 6) return <i32>(l - 0x61 + 10);
  return -1;
}

class Parser {
  p: usize;
  start: usize;
  end: usize;
  error: string | null = null;
  /** UTF-16 code units of the string being decoded: never more than the bytes left. */
  scratch: ArrayBuffer;

  constructor(ptr: usize, len: usize) {
    this.p = ptr;
    this.start = ptr;
    this.end = ptr + len;
    this.scratch = new ArrayBuffer(<i32>(len * 2));
  }

  /** Records the first error (with the current offset); always returns null. */
  fail(what: string): JsonValue | null {
    if (this.error === null) {
      this.error = what + " at byte " + (this.p - this.start).toString();
    }
    return null;
  }

  ws(): void {
    let p = this.p;
    const end = this.end;
    while (p < end) {
      const c = load<u8>(p);
      if (c != 0x20 && c != 0x09 && c != 0x0a && c != 0x0d) break;
      p++;
    }
    this.p = p;
  }

  /** The next byte after whitespace, or -1 at the end. */
  peek(): i32 {
    this.ws();
    return this.p < this.end ? <i32>load<u8>(this.p) : -1;
  }

  value(depth: i32): JsonValue | null {
    const c = this.peek();
    if (c == 0x7b) return this.object(depth); // {
    if (c == 0x5b) return this.array(depth); // [
    if (c == 0x22) { // "
      const s = this.string();
      if (s === null) return null;
      const v = new JsonValue(JsonKind.String);
      v.text = s;
      return v;
    }
    if (c == 0x2d || <u32>(c - 0x30) < 10) return this.number();
    if (c == 0x74) return this.literal("true", JsonKind.Bool, true);
    if (c == 0x66) return this.literal("false", JsonKind.Bool, false);
    if (c == 0x6e) return this.literal("null", JsonKind.Null, false);
    if (c == -1) return this.fail("expected a JSON value, found the end of the text");
    return this.fail("expected a JSON value");
  }

  literal(word: string, kind: JsonKind, b: bool): JsonValue | null {
    const n = <usize>word.length;
    if (this.end - this.p < n) return this.fail("invalid literal (expected `" + word + "`)");
    for (let i: usize = 0; i < n; i++) {
      if (<i32>load<u8>(this.p + i) != word.charCodeAt(<i32>i)) {
        return this.fail("invalid literal (expected `" + word + "`)");
      }
    }
    this.p += n;
    const v = new JsonValue(kind);
    v.boolean = b;
    return v;
  }

  digits(): usize {
    let p = this.p;
    const from = p;
    while (p < this.end && <u32>load<u8>(p) - 0x30 < 10) p++;
    this.p = p;
    return p - from;
  }

  number(): JsonValue | null {
    const from = this.p;
    if (load<u8>(this.p) == 0x2d) this.p++; // -
    if (this.p >= this.end || <u32>load<u8>(this.p) - 0x30 >= 10) {
      return this.fail("malformed number (a digit must follow `-`)");
    }
    if (load<u8>(this.p) == 0x30) {
      this.p++;
      if (this.p < this.end && <u32>load<u8>(this.p) - 0x30 < 10) {
        return this.fail("malformed number (leading zero)");
      }
    } else {
      this.digits();
    }
    if (this.p < this.end && load<u8>(this.p) == 0x2e) { // .
      this.p++;
      if (this.digits() == 0) return this.fail("malformed number (a digit must follow `.`)");
    }
    if (this.p < this.end && (load<u8>(this.p) | 0x20) == 0x65) { // e E
      this.p++;
      if (this.p < this.end && (load<u8>(this.p) == 0x2b || load<u8>(this.p) == 0x2d)) this.p++;
      if (this.digits() == 0) return this.fail("malformed number (a digit must follow the exponent)");
    }
    const v = new JsonValue(JsonKind.Number);
    v.text = String.UTF8.decodeUnsafe(from, this.p - from);
    return v;
  }

  hex4(): i32 {
    if (this.end - this.p < 4) {
      this.fail("truncated \\u escape");
      return -1;
    }
    let v = 0;
    for (let i = 0; i < 4; i++) {
      const d = hexDigit(<u32>load<u8>(this.p));
      if (d < 0) {
        this.fail("bad \\u escape (4 hex digits expected)");
        return -1;
      }
      v = (v << 4) | d;
      this.p++;
    }
    return v;
  }

  /** A string; the cursor is on its opening quote. */
  string(): string | null {
    this.p++;
    const out = changetype<usize>(this.scratch);
    let n: usize = 0; // code units written
    const end = this.end;
    while (true) {
      if (this.p >= end) {
        this.fail("unterminated string");
        return null;
      }
      const c = <u32>load<u8>(this.p);
      if (c == 0x22) { // "
        this.p++;
        break;
      }
      if (c < 0x20) {
        this.fail("control character in a string (escape it)");
        return null;
      }
      if (c == 0x5c) { // backslash
        this.p++;
        if (this.p >= end) {
          this.fail("unterminated string");
          return null;
        }
        const e = <u32>load<u8>(this.p);
        let unit: u32 = 0;
        if (e == 0x22 || e == 0x5c || e == 0x2f) unit = e;
        else if (e == 0x62) unit = 0x08; // b
        else if (e == 0x66) unit = 0x0c; // f
        else if (e == 0x6e) unit = 0x0a; // n
        else if (e == 0x72) unit = 0x0d; // r
        else if (e == 0x74) unit = 0x09; // t
        else if (e == 0x75) { // u
          this.p++;
          const hi = this.hex4();
          if (hi < 0) return null;
          if (hi >= 0xdc00 && hi <= 0xdfff) {
            this.fail("lone trailing surrogate in a \\u escape");
            return null;
          }
          if (hi >= 0xd800 && hi <= 0xdbff) {
            if (end - this.p < 2 || load<u8>(this.p) != 0x5c || load<u8>(this.p + 1) != 0x75) {
              this.fail("lone leading surrogate in a \\u escape");
              return null;
            }
            this.p += 2;
            const lo = this.hex4();
            if (lo < 0) return null;
            if (lo < 0xdc00 || lo > 0xdfff) {
              this.fail("lone leading surrogate in a \\u escape");
              return null;
            }
            store<u16>(out + (n << 1), <u16>hi);
            store<u16>(out + (n << 1) + 2, <u16>lo);
            n += 2;
            continue;
          }
          store<u16>(out + (n << 1), <u16>hi);
          n++;
          continue;
        } else {
          this.fail("bad escape `\\" + String.fromCharCode(e) + "` in a string");
          return null;
        }
        this.p++;
        store<u16>(out + (n << 1), <u16>unit);
        n++;
        continue;
      }
      if (c < 0x80) {
        store<u16>(out + (n << 1), <u16>c);
        n++;
        this.p++;
        continue;
      }
      // A multi-byte UTF-8 sequence, strictly: no overlong forms, no surrogates, ≤ U+10FFFF.
      let need = 0;
      let cp: u32 = 0;
      let min: u32 = 0;
      if (c - 0xc2 < 0x1e) { need = 1; cp = c & 0x1f; min = 0x80; }
      else if ((c & 0xf0) == 0xe0) { need = 2; cp = c & 0x0f; min = 0x800; }
      else if (c - 0xf0 < 5) { need = 3; cp = c & 0x07; min = 0x10000; }
      else {
        this.fail("invalid UTF-8 in a string");
        return null;
      }
      if (end - this.p <= <usize>need) {
        this.fail("invalid UTF-8 in a string");
        return null;
      }
      for (let k = 1; k <= need; k++) {
        const b = <u32>load<u8>(this.p + <usize>k);
        if ((b & 0xc0) != 0x80) {
          this.fail("invalid UTF-8 in a string");
          return null;
        }
        cp = (cp << 6) | (b & 0x3f);
      }
      if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
        this.fail("invalid UTF-8 in a string");
        return null;
      }
      this.p += <usize>(need + 1);
      if (cp >= 0x10000) {
        cp -= 0x10000;
        store<u16>(out + (n << 1), <u16>(0xd800 | (cp >> 10)));
        store<u16>(out + (n << 1) + 2, <u16>(0xdc00 | (cp & 0x3ff)));
        n += 2;
      } else {
        store<u16>(out + (n << 1), <u16>cp);
        n++;
      }
    }
    return String.UTF16.decodeUnsafe(out, n << 1);
  }

  array(depth: i32): JsonValue | null {
    if (depth >= MAX_JSON_DEPTH) return this.fail("nested deeper than 128 levels");
    this.p++;
    const v = new JsonValue(JsonKind.Array);
    if (this.peek() == 0x5d) { // ]
      this.p++;
      return v;
    }
    while (true) {
      const item = this.value(depth + 1);
      if (item === null) return null;
      v.items.push(item);
      const c = this.peek();
      if (c == 0x2c) { // ,
        this.p++;
        continue;
      }
      if (c == 0x5d) {
        this.p++;
        return v;
      }
      return this.fail("expected `,` or `]` in an array");
    }
  }

  object(depth: i32): JsonValue | null {
    if (depth >= MAX_JSON_DEPTH) return this.fail("nested deeper than 128 levels");
    this.p++;
    const v = new JsonValue(JsonKind.Object);
    if (this.peek() == 0x7d) { // }
      this.p++;
      return v;
    }
    while (true) {
      if (this.peek() != 0x22) return this.fail("expected a key (a string) in an object");
      const at = this.p;
      const key = this.string();
      if (key === null) return null;
      if (v.get(key) !== null) {
        this.p = at;
        return this.fail("key `" + key + "` is given twice in one object");
      }
      if (this.peek() != 0x3a) return this.fail("expected `:` after a key"); // :
      this.p++;
      const item = this.value(depth + 1);
      if (item === null) return null;
      v.keys.push(key);
      v.values.push(item);
      const c = this.peek();
      if (c == 0x2c) {
        this.p++;
        continue;
      }
      if (c == 0x7d) {
        this.p++;
        return v;
      }
      return this.fail("expected `,` or `}` in an object");
    }
  }
}
