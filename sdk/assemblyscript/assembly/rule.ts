// What a rule is made of: its declared fields, the Rule class, and the views it is given.

import { EVENT_FIXED_COLUMNS, EVENT_KEY, EVENT_TIME, KIND_F64, KIND_STR, loadF64, loadI64 } from "./abi";
import { columnData, fail, rowText } from "./guest";
import { Text } from "./text";

/** The type of a declared field. */
export enum FieldType {
  /** A JSON string: read with `Event.text` or `Event.str`. */
  Str = 0,
  /** A JSON number, delivered as f64: read with `Event.num`. */
  Num = 1,
}

/**
 * A top-level field of the event a rule reads, with its JSON type. The host sends only the
 * declared fields, and rejects an event where one is missing or of another type as bad
 * input (`missing_field`, `wrong_type`) before the rule sees it.
 */
export class Field {
  /** The top-level JSON key. */
  readonly name: string;
  /** The JSON type expected. */
  readonly type: FieldType;

  /** A field named `name` of type `type`. */
  constructor(name: string, type: FieldType) {
    this.name = name;
    this.type = type;
  }

  /** A string field: `Field.str("content")`. */
  static str(name: string): Field {
    return new Field(name, FieldType.Str);
  }

  /** A number field (delivered as f64): `Field.num("latency_ms")`. */
  static num(name: string): Field {
    return new Field(name, FieldType.Num);
  }

  /** The word for this type in the field declaration: `str` or `num`. */
  get typeName(): string {
    return this.type == FieldType.Str ? "str" : "num";
  }

  /** The batch column kind that carries this field. */
  get kind(): u32 {
    return this.type == FieldType.Str ? KIND_STR : KIND_F64;
  }

  /** The declaration line without its newline: `str content`. */
  toString(): string {
    return this.typeName + " " + this.name;
  }
}

/**
 * A rule: which events count, and which window counts are alerts. Extend it, build it from
 * its params in the constructor, and hand a factory to `register`:
 *
 * ```ts
 * class Crash extends Rule {
 *   constructor(params: Params) { super(); ... }
 *   filter(event: Event): bool { ... }
 *   alert(window: WindowCount): bool { ... }
 * }
 * register([Field.str("content")], (params: Params): Rule => new Crash(params));
 * ```
 *
 * A rule must be a pure function of its params and the rows it is given: the host runs
 * several instances of it (one per filtering worker, one for alerts), each seeing only some
 * of the batches.
 */
export abstract class Rule {
  /**
   * Whether the event counts towards its window. Runs for every event: avoid allocating
   * (use `event.text(..)` with `Utf8` constants rather than `event.str(..)`).
   */
  abstract filter(event: Event): bool;

  /** Whether the count of one key in one window is an alert. */
  abstract alert(window: WindowCount): bool;
}

/**
 * One event of a batch: its time, its key and the declared fields. `filter` is handed the
 * same `Event` object for every row of a batch; do not keep it (or the `Text`s it returns)
 * beyond the call.
 */
export class Event {
  /** @internal The declared fields. */
  fields: Field[];
  /** @internal One reusable view per column (null for non-string columns). */
  texts: StaticArray<Text | null>;
  /** @internal The current row. */
  row: u32 = 0;

  /** @internal The SDK makes events. */
  constructor(fields: Field[]) {
    this.fields = fields;
    const n = EVENT_FIXED_COLUMNS + fields.length;
    const texts = new StaticArray<Text | null>(n);
    texts[EVENT_KEY] = new Text();
    for (let i = 0; i < fields.length; i++) {
      if (fields[i].type == FieldType.Str) texts[EVENT_FIXED_COLUMNS + i] = new Text();
    }
    this.texts = texts;
  }

  /** Event time: ms since the Unix epoch (UTC), from the TOML's `[time] field`. */
  time(): i64 {
    return loadI64(columnData(EVENT_TIME) + (<usize>this.row << 3));
  }

  /** The value of the TOML's `[window] key` field (numbers as their JSON text). Allocates. */
  key(): string {
    return this.keyText().toString();
  }

  /** The key as a `Text` view (no allocation). */
  keyText(): Text {
    return this.textAt(EVENT_KEY);
  }

  /**
   * The string field `name` as a `Text` view over the batch: no allocation. The view is
   * reused for the next event. Aborts if `name` is not declared with `Field.str`.
   */
  text(name: string): Text {
    return this.textAt(this.column(name, FieldType.Str));
  }

  /** The string field `name` as a string (allocates; convenient outside hot paths). */
  str(name: string): string {
    return this.text(name).toString();
  }

  /** The number field `name`. Aborts if `name` is not declared with `Field.num`. */
  num(name: string): f64 {
    return loadF64(columnData(this.column(name, FieldType.Num)) + (<usize>this.row << 3));
  }

  /** @internal The column of declared field `name` of type `type`; aborts if there is none. */
  column(name: string, type: FieldType): i32 {
    const fields = this.fields;
    for (let i = 0, n = fields.length; i < n; i++) {
      const f = unchecked(fields[i]);
      if (f.name == name && f.type == type) return EVENT_FIXED_COLUMNS + i;
    }
    const want = type == FieldType.Str ? "Field.str" : "Field.num";
    fail(
      "field `" + name + "` is not declared as " + want + "(\"" + name +
      "\") in register(...): the host sends only the declared fields",
    );
    return -1;
  }

  /** @internal */
  textAt(column: i32): Text {
    const t = changetype<Text>(unchecked(this.texts[column]));
    rowText(column, this.row, t);
    return t;
  }
}

/**
 * The count of one key in one window, as `alert` sees it. In a batch the SDK reuses one
 * object per row; `key` is decoded (allocating) only when read.
 */
export class WindowCount {
  /** Window start, ms since the Unix epoch (inclusive). */
  startMs: i64 = 0;
  /** Window end, ms since the Unix epoch (exclusive). */
  endMs: i64 = 0;
  /** How many events passed the filter in this window for this key. */
  count: u64 = 0;
  /** @internal The key, once decoded or set. */
  keyString: string | null = null;
  /** @internal UTF-8 bytes of a key that was set as a string. */
  keyBytes: ArrayBuffer | null = null;
  /** @internal View of the key's bytes. */
  keyView: Text = new Text();

  /** A window count (for tests; the SDK fills one from each window batch row). */
  constructor(startMs: i64 = 0, endMs: i64 = 0, key: string = "", count: u64 = 0) {
    this.startMs = startMs;
    this.endMs = endMs;
    this.count = count;
    this.key = key;
  }

  /** The key (for example the user id). */
  get key(): string {
    let k = this.keyString;
    if (k === null) {
      k = this.keyView.toString();
      this.keyString = k;
    }
    return k;
  }

  set key(value: string) {
    const bytes = String.UTF8.encode(value);
    this.keyString = value;
    this.keyBytes = bytes;
    this.keyView.dataStart = changetype<usize>(bytes);
    this.keyView.byteLength = bytes.byteLength;
  }

  /** The key as a `Text` view (no allocation when it comes from a batch). */
  keyText(): Text {
    return this.keyView;
  }

  /** @internal Points this object at a row of the window batch being answered. */
  setRow(startMs: i64, endMs: i64, keyColumn: i32, row: u32, count: i64): void {
    this.startMs = startMs;
    this.endMs = endMs;
    this.count = count < 0 ? 0 : <u64>count;
    this.keyString = null;
    this.keyBytes = null;
    rowText(keyColumn, row, this.keyView);
  }
}
