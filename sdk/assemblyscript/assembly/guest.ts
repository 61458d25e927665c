// The module side of the ABI: buffers, batch decoding, the per-batch loops, registration and
// init. The exports (exports.ts) and the test helpers (testing.ts) both go through here.

import {
  EVENT_FIXED_COLUMNS, EVENT_KEY, EVENT_TIME, KIND_F64, KIND_I64, KIND_STR, MAX_FIELDS,
  MAX_FIELD_NAME_BYTES, WINDOW_COUNT, WINDOW_END, WINDOW_KEY, WINDOW_START,
  kindName, loadI64, loadU32, pack,
} from "./abi";
import { JsonKind, parseJson } from "./json";
import { Params } from "./params";
import { Event, Field, Rule, WindowCount } from "./rule";
import { Text } from "./text";

// ---- the last error ---------------------------------------------------------------------

let errorText: string = "";
let errorBytes: ArrayBuffer | null = null;

/** Sets the message `rulewatch_error` returns. */
export function setError(message: string): void {
  errorText = message;
  errorBytes = String.UTF8.encode(message);
}

/** The message `rulewatch_error` returns. */
export function lastError(): string {
  return errorText;
}

/** `rulewatch_error`: packed pointer/length of the last error message (UTF-8). */
export function errorPacked(): u64 {
  const b = errorBytes;
  return b === null ? 0 : pack(changetype<usize>(b), <u32>b.byteLength);
}

/**
 * Stops the call with `message`: keeps it for `rulewatch_error`, then aborts (the host
 * reports env.abort's message, file and line and quarantines the rule).
 */
export function fail(message: string): void {
  setError(message);
  throw new Error(message);
}

// ---- the input buffer -------------------------------------------------------------------

let input: ArrayBuffer | null = null;

/** `rulewatch_input`: a buffer of at least `len` bytes, kept alive by this global. */
export function inputBuffer(len: u32): usize {
  let buf = input;
  if (buf === null || <u32>buf.byteLength < len) {
    // Grow by half at least, in 64 KiB steps, so that slowly growing batches do not
    // reallocate each time; the old buffer is garbage for the collector.
    let cap: u64 = buf === null ? 0 : <u64>buf.byteLength;
    cap = max<u64>(<u64>len, cap + (cap >> 1));
    cap = (cap + 0xffff) & ~(<u64>0xffff);
    if (cap > 0x3fff_0000) cap = max<u64>(<u64>len, 0x3fff_0000);
    buf = new ArrayBuffer(<i32>cap);
    input = buf;
  }
  return changetype<usize>(buf);
}

/** Checks that `len` bytes of input were asked for with `rulewatch_input`; returns the buffer. */
function inputOf(len: u32, what: string): usize {
  const buf = input;
  if (buf === null || <u32>buf.byteLength < len) {
    fail(what + ": " + len.toString() + " bytes of input, more than rulewatch_input was asked for");
    return 0;
  }
  return changetype<usize>(buf);
}

// ---- the answer bitmap ------------------------------------------------------------------

// Room for a full event batch (4096 rows) from the start: filtering never allocates.
let bits: ArrayBuffer = new ArrayBuffer(512);

/** A zeroed bitmap for `rows` rows, in the reused answer buffer. */
function bitmap(rows: u32): usize {
  const n = <i32>((rows + 7) >> 3);
  if (bits.byteLength < n) bits = new ArrayBuffer(n);
  const ptr = changetype<usize>(bits);
  memory.fill(ptr, 0, <usize>n);
  return ptr;
}

// ---- the batch being answered -----------------------------------------------------------

// The column table: kind, data (values, or string end offsets), string bytes, byte count,
// 16 bytes per column. Static memory, so decoding a batch allocates nothing.
const MAX_COLUMNS: i32 = MAX_FIELDS + EVENT_FIXED_COLUMNS;
const COLUMNS: usize = memory.data(MAX_COLUMNS * 16, 16);

/** @internal Data of column `c` of the current batch: i64/f64 values, or string end offsets. */
// @ts-ignore: decorator
@inline
export function columnData(c: i32): usize {
  return load<usize>(COLUMNS + (<usize>c << 4), 4);
}

/** @internal Points `t` at row `row` of string column `c` of the current batch. */
// @ts-ignore: decorator
@inline
export function rowText(c: i32, row: u32, t: Text): void {
  const entry = COLUMNS + (<usize>c << 4);
  const ends = load<usize>(entry, 4) + (<usize>row << 2);
  const start = loadU32(ends);
  t.dataStart = load<usize>(entry, 8) + <usize>start;
  t.byteLength = <i32>(loadU32(ends + 4) - start);
}

function malformed(what: string): void {
  fail("malformed batch: " + what);
}

/**
 * Checks the batch of `len` bytes at `ptr` against the ABI's layout: the header, every
 * column inside the batch with `rows` values, string end offsets starting at 0, never
 * decreasing and ending at the bytes' length, and at least `kinds.length` columns whose
 * first kinds are `kinds`. Fills the column table; returns the number of rows. Aborts with
 * "malformed batch: ..." (a host bug, or a foreign host) otherwise.
 */
export function readBatch(ptr: usize, len: u32, kinds: StaticArray<u32>): u32 {
  const want = kinds.length;
  if (len < 8) {
    malformed("truncated (" + len.toString() + " bytes)");
    return 0;
  }
  const rows = <u64>loadU32(ptr);
  const ncols = <u64>loadU32(ptr + 4);
  if (ncols < <u64>want) {
    malformed(ncols.toString() + " columns, expected at least " + want.toString());
    return 0;
  }
  if (8 + 12 * ncols > <u64>len) {
    malformed("truncated (the header of " + ncols.toString() + " columns does not fit)");
    return 0;
  }
  for (let c: u64 = 0; c < ncols; c++) {
    const h = ptr + 8 + <usize>(12 * c);
    const kind = loadU32(h);
    const off = <u64>loadU32(h + 4);
    const clen = <u64>loadU32(h + 8);
    if (off + clen > <u64>len) {
      malformed("column " + c.toString() + " outside the batch");
      return 0;
    }
    const data = ptr + <usize>off;
    let bytes: usize = 0;
    let nbytes: u64 = 0;
    if (kind == KIND_I64 || kind == KIND_F64) {
      if (clen != rows * 8) {
        malformed("fixed column " + c.toString() + " of the wrong length");
        return 0;
      }
    } else if (kind == KIND_STR) {
      const fixed = (rows + 1) * 4;
      if (clen < fixed) {
        malformed("string offsets of column " + c.toString() + " truncated");
        return 0;
      }
      nbytes = clen - fixed;
      bytes = data + <usize>fixed;
      if (loadU32(data) != 0) {
        malformed("string column " + c.toString() + " does not start at offset 0");
        return 0;
      }
      let prev: u32 = 0;
      for (let r: u64 = 1; r <= rows; r++) {
        const end = loadU32(data + <usize>(r << 2));
        if (end < prev) {
          malformed("string offsets of column " + c.toString() + " out of order");
          return 0;
        }
        prev = end;
      }
      if (<u64>prev != nbytes) {
        malformed("string bytes of column " + c.toString() + " of the wrong length");
        return 0;
      }
    } else {
      malformed("unknown kind " + kind.toString() + " of column " + c.toString());
      return 0;
    }
    if (c < <u64>want) {
      const expected = unchecked(kinds[<i32>c]);
      if (kind != expected) {
        malformed("column " + c.toString() + " is " + kindName(kind) + ", expected " + kindName(expected));
        return 0;
      }
      const entry = COLUMNS + (<usize>c << 4);
      store<u32>(entry, kind);
      store<usize>(entry, data, 4);
      store<usize>(entry, bytes, 8);
      store<u32>(entry, <u32>nbytes, 12);
    }
  }
  // Every batch read here starts with an i64 column, which bounds rows by len / 8.
  return <u32>rows;
}

// ---- the loops --------------------------------------------------------------------------

const WINDOW_KINDS: StaticArray<u32> = [KIND_I64, KIND_I64, KIND_STR, KIND_I64];

/**
 * @internal Answers event and window batches for one rule's declared fields; holds the
 * reused `Event` and `WindowCount`, so that answering a batch allocates nothing itself.
 */
export class Runner {
  /** The declared fields. */
  fields: Field[];
  /** The column kinds of an event batch: time, key, then the fields. */
  eventKinds: StaticArray<u32>;
  /** The event view handed to `filter`. */
  event: Event;
  /** The window view handed to `alert`. */
  window: WindowCount;

  constructor(fields: Field[]) {
    this.fields = fields;
    const kinds = new StaticArray<u32>(EVENT_FIXED_COLUMNS + fields.length);
    kinds[EVENT_TIME] = KIND_I64;
    kinds[EVENT_KEY] = KIND_STR;
    for (let i = 0; i < fields.length; i++) kinds[EVENT_FIXED_COLUMNS + i] = fields[i].kind;
    this.eventKinds = kinds;
    this.event = new Event(fields);
    this.window = new WindowCount();
  }

  /** Runs `rule.filter` over the event batch at `ptr`; packed pointer/length of the bitmap. */
  filter(rule: Rule, ptr: usize, len: u32): u64 {
    const rows = readBatch(ptr, len, this.eventKinds);
    const out = bitmap(rows);
    const event = this.event;
    for (let row: u32 = 0; row < rows; row++) {
      event.row = row;
      if (rule.filter(event)) {
        const at = out + <usize>(row >> 3);
        store<u8>(at, load<u8>(at) | <u8>((<u32>1) << (row & 7)));
      }
    }
    return pack(out, (rows + 7) >> 3);
  }

  /** Runs `rule.alert` over the window batch at `ptr`; packed pointer/length of the bitmap. */
  alert(rule: Rule, ptr: usize, len: u32): u64 {
    const rows = readBatch(ptr, len, WINDOW_KINDS);
    const out = bitmap(rows);
    const w = this.window;
    const starts = columnData(WINDOW_START);
    const ends = columnData(WINDOW_END);
    const counts = columnData(WINDOW_COUNT);
    for (let row: u32 = 0; row < rows; row++) {
      const at8 = <usize>row << 3;
      w.setRow(loadI64(starts + at8), loadI64(ends + at8), WINDOW_KEY, row, loadI64(counts + at8));
      if (rule.alert(w)) {
        const at = out + <usize>(row >> 3);
        store<u8>(at, load<u8>(at) | <u8>((<u32>1) << (row & 7)));
      }
    }
    return pack(out, (rows + 7) >> 3);
  }
}

// ---- registration -----------------------------------------------------------------------

let registeredRunner: Runner | null = null;
let registeredFactory: ((params: Params) => Rule) | null = null;
let declaration: ArrayBuffer | null = null;
let current: Rule | null = null;

function checkName(name: string): string | null {
  const bytes = String.UTF8.byteLength(name);
  if (bytes == 0) return "a field name is empty";
  if (bytes > MAX_FIELD_NAME_BYTES) {
    return "field name `" + name + "` is " + bytes.toString() + " bytes long, more than " + MAX_FIELD_NAME_BYTES.toString();
  }
  for (let i = 0; i < name.length; i++) {
    const c = name.charCodeAt(i);
    if (c < 0x20 || (c >= 0x7f && c < 0xa0)) {
      return "field name `" + name + "` has a control character";
    }
  }
  return null;
}

/**
 * Declares the rule: the event fields it reads, and how to build it from its params.
 * Call it once, at the top level of the rule's entry file (it runs when the module is
 * instantiated). Aborts, refusing the module, on more than 256 fields, an empty, too long
 * (over 256 bytes) or repeated name, or a name with a control character.
 *
 * ```ts
 * register([Field.str("severity"), Field.str("content")], (p: Params): Rule => new Crash(p));
 * ```
 */
export function register(fields: Field[], factory: (params: Params) => Rule): void {
  if (registeredRunner !== null) {
    fail("register(...) is called twice: a module holds one rule");
    return;
  }
  if (fields.length > MAX_FIELDS) {
    fail("register(...): " + fields.length.toString() + " fields, more than " + MAX_FIELDS.toString());
    return;
  }
  let text = "";
  for (let i = 0; i < fields.length; i++) {
    const f = fields[i];
    const problem = checkName(f.name);
    if (problem !== null) {
      fail("register(...): " + problem);
      return;
    }
    for (let k = 0; k < i; k++) {
      if (fields[k].name == f.name) {
        fail("register(...): field `" + f.name + "` is declared twice");
        return;
      }
    }
    text += f.toString() + "\n";
  }
  declaration = String.UTF8.encode(text);
  registeredFactory = factory;
  registeredRunner = new Runner(fields);
}

/** @internal The runner of the registered rule; aborts if `register` was not called. */
export function registered(): Runner {
  const r = registeredRunner;
  if (r === null) {
    fail("register(fields, factory) was not called: the rule's entry file must call it at top level");
    return changetype<Runner>(0);
  }
  return r;
}

/** @internal The registered factory; aborts if `register` was not called. */
export function registeredFactoryOrFail(): (params: Params) => Rule {
  registered();
  return changetype<(params: Params) => Rule>(registeredFactory);
}

/** @internal `rulewatch_fields`: the declaration, `str severity\nstr content\n`. */
export function fieldsPacked(): u64 {
  registered();
  const d = changetype<ArrayBuffer>(declaration);
  return pack(changetype<usize>(d), <u32>d.byteLength);
}

// ---- init, filter, alert ----------------------------------------------------------------

/**
 * @internal Builds a rule from the params JSON (`len` bytes at `ptr`) with `factory`, or
 * returns null after setting the error: the JSON is not an object, or an accessor or the
 * rule refused.
 */
export function initFrom(factory: (params: Params) => Rule, ptr: usize, len: u32): Rule | null {
  const parsed = parseJson(ptr, len);
  const json = parsed.value;
  if (json === null) {
    setError("invalid params: " + changetype<string>(parsed.error) + " of the params JSON");
    return null;
  }
  if (json.kind != JsonKind.Object) {
    setError("invalid params: expected a table of params, found " + json.typeName());
    return null;
  }
  const params = Params.from(json);
  const rule = factory(params);
  const error = params.error;
  if (error !== null) {
    setError(error);
    return null;
  }
  setError("");
  return rule;
}

/** `rulewatch_init`: 0 when the rule accepts its params, 1 (with a message) when not. */
export function init(len: u32): u32 {
  const factory = registeredFactoryOrFail();
  current = null;
  const ptr = inputOf(len, "rulewatch_init");
  const rule = initFrom(factory, ptr, len);
  if (rule === null) return 1;
  current = rule;
  return 0;
}

function currentRule(): Rule {
  const rule = current;
  if (rule === null) {
    fail("rulewatch_init was not called, or refused the params");
    return changetype<Rule>(0);
  }
  return rule;
}

/** `rulewatch_filter`: the event batch in the input buffer; the selection bitmap. */
export function filter(len: u32): u64 {
  const runner = registered();
  const rule = currentRule();
  return runner.filter(rule, inputOf(len, "rulewatch_filter"), len);
}

/** `rulewatch_alert`: the window batch in the input buffer; the alert bitmap. */
export function alert(len: u32): u64 {
  const runner = registered();
  const rule = currentRule();
  return runner.alert(rule, inputOf(len, "rulewatch_alert"), len);
}

/** @internal Reads bit `i` of a bitmap at `ptr`. */
export function bitAt(ptr: usize, i: u32): bool {
  return (load<u8>(ptr + <usize>(i >> 3)) & <u8>((<u32>1) << (i & 7))) != 0;
}
