// UTF-8 text without allocation: `Text`, a view of a string inside a batch, and `Utf8`, a
// constant encoded once (in init) to compare texts with.

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGH: u64 = 0x8080_8080_8080_8080;

/** ASCII lower case of a byte; other bytes unchanged. */
// @ts-ignore: decorator
@inline
function lower(c: u32): u32 {
  return c - 0x41 < 26 ? c | 0x20 : c;
}

/** Whether the `n` bytes at `a` equal those at `folded` (lower case) ignoring ASCII case. */
// @ts-ignore: decorator
@inline
function equalFolded(a: usize, folded: usize, n: usize): bool {
  for (let k: usize = 0; k < n; k++) {
    if (lower(<u32>load<u8>(a + k)) != <u32>load<u8>(folded + k)) return false;
  }
  return true;
}

/**
 * Whether the `hn` bytes at `h` contain the `nn` bytes at `n`. With `fold`, ASCII letters
 * match in any case and `n` must be in lower case already (as `Utf8.folded` is).
 *
 * Candidates for the needle's first byte are found eight bytes at a time (SWAR), then
 * checked: few loop iterations per byte, which matters inside WebAssembly, where every loop
 * iteration also checks the host's time budget. No allocation; unaligned 8-byte loads.
 */
export function findBytes(h: usize, hn: usize, n: usize, nn: usize, fold: bool): bool {
  if (nn == 0) return true;
  if (hn < nn) return false;
  const first = <u32>load<u8>(n);
  const last = hn - nn;
  // Letters compare with bit 0x20 set (lower case); other bytes exactly.
  const foldMask: u64 = fold && first - 0x61 < 26 ? ONES * 0x20 : 0;
  const pattern = ONES * <u64>first;
  let i: usize = 0;
  while (i + 8 <= last + 1) {
    const x = (load<u64>(h + i, 0, 1) | foldMask) ^ pattern;
    // The high bit is set in each byte of x that is zero (and, rarely, in a false candidate
    // above one, which the check below rejects).
    let candidates = (x - ONES) & ~x & HIGH;
    while (candidates != 0) {
      const at = h + i + <usize>(ctz(candidates) >> 3);
      if (fold ? equalFolded(at, n, nn) : memory.compare(at, n, nn) == 0) return true;
      candidates &= candidates - 1;
    }
    i += 8;
  }
  for (; i <= last; i++) {
    const c = <u32>load<u8>(h + i);
    if ((fold ? lower(c) : c) != first) continue;
    if (fold ? equalFolded(h + i, n, nn) : memory.compare(h + i, n, nn) == 0) return true;
  }
  return false;
}

/** ASCII lower case of `n` bytes from `src` into `dst`. */
function foldInto(dst: usize, src: usize, n: usize): void {
  for (let k: usize = 0; k < n; k++) store<u8>(dst + k, <u8>lower(<u32>load<u8>(src + k)));
}

/**
 * A constant string encoded as UTF-8 once, to compare `Text`s with without allocating.
 * Make them in your rule's constructor (from params), not in `filter`.
 *
 * ```ts
 * this.keyword = Utf8.of(params.string("keyword"));
 * // in filter:
 * event.text("content").containsIgnoreCase(this.keyword)
 * ```
 */
export class Utf8 {
  /** The UTF-8 bytes. */
  readonly bytes: ArrayBuffer;
  /** The same bytes with ASCII letters in lower case (for the `...IgnoreCase` tests). */
  readonly folded: ArrayBuffer;
  /** The string it was made from. */
  readonly value: string;

  /** Encodes `value` as UTF-8 (a lone surrogate becomes U+FFFD). */
  constructor(value: string) {
    this.value = value;
    const bytes = String.UTF8.encode(value);
    const folded = new ArrayBuffer(bytes.byteLength);
    foldInto(changetype<usize>(folded), changetype<usize>(bytes), <usize>bytes.byteLength);
    this.bytes = bytes;
    this.folded = folded;
  }

  /** Encodes `value` as UTF-8: `Utf8.of("crash")`. */
  static of(value: string): Utf8 {
    return new Utf8(value);
  }

  /** Encodes every string of `values`, for `Text.equalsAny`. */
  static all(values: string[]): Utf8[] {
    const out = new Array<Utf8>(values.length);
    for (let i = 0; i < values.length; i++) out[i] = new Utf8(values[i]);
    return out;
  }

  /** Length in UTF-8 bytes. */
  get length(): i32 {
    return this.bytes.byteLength;
  }

  /** The string it was made from. */
  toString(): string {
    return this.value;
  }
}

/**
 * A view of UTF-8 text inside the current batch: a pointer and a length, no copy.
 *
 * `Event.text(name)` returns one; the SDK reuses the same `Text` object for a field from
 * one event to the next, so a `Text` is valid only until `filter` returns (keep
 * `toString()` if you need the value later). Comparisons allocate nothing.
 */
export class Text {
  /** Address of the first byte in linear memory. */
  dataStart: usize = 0;
  /** Length in bytes. */
  byteLength: i32 = 0;

  /** A view of `byteLength` bytes at `dataStart` (the SDK makes these; rules get them). */
  constructor(dataStart: usize = 0, byteLength: i32 = 0) {
    this.dataStart = dataStart;
    this.byteLength = byteLength;
  }

  /** Length in UTF-8 bytes. */
  get length(): i32 {
    return this.byteLength;
  }

  /** Whether the text is empty. */
  isEmpty(): bool {
    return this.byteLength == 0;
  }

  /** The byte at `index` (0 ≤ index < length; aborts otherwise). */
  byteAt(index: i32): u8 {
    if (<u32>index >= <u32>this.byteLength) {
      throw new RangeError("Text.byteAt: index out of range");
    }
    return load<u8>(this.dataStart + <usize>index);
  }

  /** Whether the text is exactly `value`, byte for byte. */
  equals(value: Utf8): bool {
    const n = value.bytes.byteLength;
    return n == this.byteLength && memory.compare(this.dataStart, changetype<usize>(value.bytes), <usize>n) == 0;
  }

  /** Whether the text equals `value` ignoring ASCII case (`"HIGH"` equals `"high"`). */
  equalsIgnoreCase(value: Utf8): bool {
    const n = value.folded.byteLength;
    return n == this.byteLength && equalFolded(this.dataStart, changetype<usize>(value.folded), <usize>n);
  }

  /** Whether the text is exactly one of `values` (for example a list of severities). */
  equalsAny(values: Utf8[]): bool {
    for (let i = 0, k = values.length; i < k; i++) {
      if (this.equals(unchecked(values[i]))) return true;
    }
    return false;
  }

  /** Whether `value` occurs in the text, byte for byte. */
  contains(value: Utf8): bool {
    return findBytes(this.dataStart, <usize>this.byteLength, changetype<usize>(value.bytes), <usize>value.bytes.byteLength, false);
  }

  /**
   * Whether `value` occurs in the text ignoring ASCII case: `"App CRASHED"` contains
   * `"crash"`. Other characters compare exactly. Allocates nothing.
   */
  containsIgnoreCase(value: Utf8): bool {
    return findBytes(this.dataStart, <usize>this.byteLength, changetype<usize>(value.folded), <usize>value.folded.byteLength, true);
  }

  /** Whether the text begins with `value`. */
  startsWith(value: Utf8): bool {
    const n = value.bytes.byteLength;
    return n <= this.byteLength && memory.compare(this.dataStart, changetype<usize>(value.bytes), <usize>n) == 0;
  }

  /** Whether the text ends with `value`. */
  endsWith(value: Utf8): bool {
    const n = value.bytes.byteLength;
    return n <= this.byteLength &&
      memory.compare(this.dataStart + <usize>(this.byteLength - n), changetype<usize>(value.bytes), <usize>n) == 0;
  }

  /** The text as a string (allocates; decodes UTF-8). */
  toString(): string {
    return String.UTF8.decodeUnsafe(this.dataStart, <usize>this.byteLength);
  }
}

/**
 * Whether `haystack` contains `needle`, ignoring ASCII case, on plain strings (UTF-16 code
 * units). No allocation. For batch text prefer `Text.containsIgnoreCase`.
 */
export function containsIgnoreAsciiCase(haystack: string, needle: string): bool {
  const hn = haystack.length, nn = needle.length;
  if (nn == 0) return true;
  for (let i = 0; i + nn <= hn; i++) {
    let k = 0;
    while (k < nn && lower(<u32>haystack.charCodeAt(i + k)) == lower(<u32>needle.charCodeAt(k))) k++;
    if (k == nn) return true;
  }
  return false;
}
