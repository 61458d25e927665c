// Text views and Utf8 constants: the comparisons, and containsIgnoreCase against a naive
// reference on many generated inputs.

import { Text, Utf8, containsIgnoreAsciiCase } from "../assembly/index";
import { expectAbort, expectEqual, expectFalse, expectTrue } from "../assembly/testing";

/** A Text over the UTF-8 of `s` (kept alive by the returned pair). */
class Owned {
  bytes: ArrayBuffer;
  text: Text;
  constructor(s: string) {
    const bytes = String.UTF8.encode(s);
    this.bytes = bytes;
    this.text = new Text(changetype<usize>(bytes), bytes.byteLength);
  }
}

// Keeps the bytes of every Text made here alive (a Text does not reference its buffer).
const keep: Owned[] = [];

function t(s: string): Text {
  const o = new Owned(s);
  keep.push(o);
  return o.text;
}

function containsCI(h: string, n: string): bool {
  return t(h).containsIgnoreCase(Utf8.of(n));
}

export function test_contains_ignore_case_examples(): void {
  expectTrue(containsCI("App CRASH on start", "crash"));
  expectTrue(containsCI("crashed", "Crash"));
  expectTrue(containsCI("x", ""));
  expectTrue(containsCI("", ""));
  expectFalse(containsCI("", "a"));
  expectFalse(containsCI("cras", "crash"));
  expectFalse(containsCI("c r a s h", "crash"));
  expectTrue(containsCI("ééCrAsH", "crash"));
  expectTrue(containsCI("a long line where the CRASH is late", "crash"));
  expectTrue(containsCI("0123456789[x]", "[X]"));
  expectFalse(containsCI("0123456789{x}", "[x]"));
  expectFalse(containsCI("0123456789@", "`"));
  expectTrue(containsCI("ÉCLAIR", "Éclair"));
  expectFalse(containsCI("ÉCLAIR", "éclair")); // only ASCII letters fold
  expectTrue(containsCI("xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxCRASH", "crash"));
  expectTrue(containsCI("CRASHxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", "crash"));
}

// xorshift64: deterministic inputs without Math.random (which would import env.seed).
let seed: u64 = 0x2545_f491_4f6c_dd1d;
function next(m: i32): i32 {
  seed ^= seed << 13;
  seed ^= seed >> 7;
  seed ^= seed << 17;
  return <i32>(seed % <u64>m);
}

/** The plain definition, on bytes: lower-case both (ASCII only), then a naive search. */
function naive(h: ArrayBuffer, n: ArrayBuffer, fold: bool): bool {
  const hp = changetype<usize>(h), np = changetype<usize>(n);
  const hn = h.byteLength, nn = n.byteLength;
  for (let i = 0; i + nn <= hn; i++) {
    let k = 0;
    while (k < nn) {
      let a = <u32>load<u8>(hp + <usize>(i + k)), b = <u32>load<u8>(np + <usize>k);
      if (fold) {
        if (a >= 0x41 && a <= 0x5a) a += 32;
        if (b >= 0x41 && b <= 0x5a) b += 32;
      }
      if (a != b) break;
      k++;
    }
    if (k == nn) return true;
  }
  return false;
}

const ALPHABET: string[] = ["a", "A", "b", "c", "C", "@", "`", "[", "{", "é", " ", "crash", "CrA", "z", "Z", "\u{1F600}", "\x7f", "\xc1"];

function randomString(maxParts: i32): string {
  let s = "";
  const n = next(maxParts + 1);
  for (let i = 0; i < n; i++) s += ALPHABET[next(ALPHABET.length)];
  return s;
}

export function test_contains_agrees_with_the_plain_definition(): void {
  for (let round = 0; round < 30_000; round++) {
    const h = randomString(40);
    const n = randomString(round % 5);
    const hb = String.UTF8.encode(h);
    const text = new Text(changetype<usize>(hb), hb.byteLength);
    const needle = Utf8.of(n);
    const want = naive(hb, needle.bytes, true);
    if (text.containsIgnoreCase(needle) != want) {
      throw new Error("containsIgnoreCase(\"" + h + "\", \"" + n + "\") should be " + (want ? "true" : "false"));
    }
    const exact = naive(hb, needle.bytes, false);
    if (text.contains(needle) != exact) {
      throw new Error("contains(\"" + h + "\", \"" + n + "\") should be " + (exact ? "true" : "false"));
    }
    if (containsIgnoreAsciiCase(h, n) != want) {
      throw new Error("containsIgnoreAsciiCase(\"" + h + "\", \"" + n + "\") should be " + (want ? "true" : "false"));
    }
  }
}

export function test_needle_at_every_position(): void {
  // Every offset relative to the 8-byte steps, both cases, and near misses.
  const needle = Utf8.of("cRaSh");
  for (let pad = 0; pad < 40; pad++) {
    let prefix = "";
    for (let i = 0; i < pad; i++) prefix += i % 2 == 0 ? "x" : "C";
    expectTrue(t(prefix + "CRASH").containsIgnoreCase(needle), "at " + pad.toString());
    expectTrue(t(prefix + "crash" + prefix).containsIgnoreCase(needle), "in " + pad.toString());
    expectFalse(t(prefix + "CRAS").containsIgnoreCase(needle), "cut " + pad.toString());
    expectFalse(t(prefix + "CRA5H" + prefix).containsIgnoreCase(needle), "miss " + pad.toString());
  }
}

export function test_equality_and_affixes(): void {
  const high = Utf8.of("High");
  expectTrue(t("High").equals(high));
  expectFalse(t("high").equals(high));
  expectFalse(t("Highs").equals(high));
  expectFalse(t("").equals(high));
  expectTrue(t("").equals(Utf8.of("")));
  expectTrue(t("HIGH").equalsIgnoreCase(high));
  expectFalse(t("HIGHER").equalsIgnoreCase(high));
  const list = Utf8.all(["High", "Critical"]);
  expectTrue(t("Critical").equalsAny(list));
  expectFalse(t("critical").equalsAny(list));
  expectFalse(t("Low").equalsAny([]));
  expectTrue(t("Highway").startsWith(high));
  expectFalse(t("Hig").startsWith(high));
  expectTrue(t("SkyHigh").endsWith(high));
  expectFalse(t("Highs").endsWith(high));
  expectTrue(t("a needle here").contains(Utf8.of("needle")));
  expectFalse(t("a NEEDLE here").contains(Utf8.of("needle")));
}

export function test_text_decodes_utf8(): void {
  const s = "naïve 😀 ü";
  const text = t(s);
  expectEqual(text.toString(), s);
  expectEqual(text.length, 14);
  expectEqual(text.byteAt(0), <u8>0x6e);
  expectFalse(text.isEmpty());
  expectTrue(t("").isEmpty());
}

export function test_byte_at_out_of_range_aborts(): void {
  expectAbort("Text.byteAt: index out of range");
  t("ab").byteAt(2);
}
