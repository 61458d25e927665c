// The binary layout shared by the host and a rule module: sdk/ABI.md, version 1.
//
// A batch is a header followed by columns:
//
//   u32 rows, u32 columns, then per column: u32 kind, u32 offset, u32 length
//
// Offsets are from the start of the batch, all integers little-endian, nothing aligned. A
// column is KIND_I64 (rows × i64), KIND_F64 (rows × f64) or KIND_STR (rows + 1 × u32 end
// offsets, the first 0, then the UTF-8 bytes). Answers are bitmaps of ceil(rows / 8) bytes,
// least significant bit first.

/** The ABI version this SDK speaks; the host refuses a module of another version. */
export const ABI_VERSION: u32 = 1;

/** Column kind: little-endian i64 values. */
export const KIND_I64: u32 = 1;
/** Column kind: little-endian f64 values. */
export const KIND_F64: u32 = 2;
/** Column kind: UTF-8 strings (`rows + 1` u32 end offsets, then the bytes). */
export const KIND_STR: u32 = 3;

/** Event batch column: the event time, ms since the Unix epoch (i64). */
export const EVENT_TIME: i32 = 0;
/** Event batch column: the rule's `window.key` value (str). */
export const EVENT_KEY: i32 = 1;
/** Columns of an event batch before the declared fields (time and key). */
export const EVENT_FIXED_COLUMNS: i32 = 2;

/** Window batch column: the window's start, ms since the Unix epoch (i64). */
export const WINDOW_START: i32 = 0;
/** Window batch column: the window's end (exclusive), ms since the Unix epoch (i64). */
export const WINDOW_END: i32 = 1;
/** Window batch column: the key (str). */
export const WINDOW_KEY: i32 = 2;
/** Window batch column: the count (i64). */
export const WINDOW_COUNT: i32 = 3;
/** Columns of a window batch. */
export const WINDOW_COLUMNS: i32 = 4;

/** Most fields a rule may declare (the host's `max_fields`). */
export const MAX_FIELDS: i32 = 256;
/** Longest field name, in UTF-8 bytes. */
export const MAX_FIELD_NAME_BYTES: i32 = 256;

/** Packs a pointer and a length into the u64 the exports return: `(ptr << 32) | len`. */
// @ts-ignore: decorator
@inline
export function pack(ptr: usize, len: u32): u64 {
  return ((<u64>ptr) << 32) | <u64>len;
}

/** The pointer half of a packed pointer/length. */
// @ts-ignore: decorator
@inline
export function packedPtr(packed: u64): usize {
  return <usize>(packed >>> 32);
}

/** The length half of a packed pointer/length. */
// @ts-ignore: decorator
@inline
export function packedLen(packed: u64): u32 {
  return <u32>packed;
}

/** Little-endian u32 at any alignment. */
// @ts-ignore: decorator
@inline
export function loadU32(ptr: usize): u32 {
  return load<u32>(ptr, 0, 1);
}

/** Little-endian i64 at any alignment. */
// @ts-ignore: decorator
@inline
export function loadI64(ptr: usize): i64 {
  return load<i64>(ptr, 0, 1);
}

/** Little-endian f64 at any alignment. */
// @ts-ignore: decorator
@inline
export function loadF64(ptr: usize): f64 {
  return load<f64>(ptr, 0, 1);
}

/** The name of a column kind, for messages. */
export function kindName(kind: u32): string {
  if (kind == KIND_I64) return "i64";
  if (kind == KIND_F64) return "f64";
  if (kind == KIND_STR) return "str";
  return "kind " + kind.toString();
}
