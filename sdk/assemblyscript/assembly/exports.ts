// The functions of the rulewatch rule ABI (sdk/ABI.md, version 1). A rule's entry file
// re-exports them, so that they become the module's exports:
//
//   export * from "rulewatch-sdk/assembly/exports";
//
// The memory is exported by asc as `memory`. Nothing is imported except `env.abort`, which
// the host turns into a trap with the message, file, line and column.

import { ABI_VERSION } from "./abi";
import * as guest from "./guest";

/** The ABI version: 1. */
export function rulewatch_abi_version(): u32 {
  return ABI_VERSION;
}

/** Packed pointer/length of the field declaration (`str severity\nstr content\n`). */
export function rulewatch_fields(): u64 {
  return guest.fieldsPacked();
}

/** A pointer to a buffer of at least `len` bytes, where the host writes the next input. */
export function rulewatch_input(len: u32): u32 {
  return <u32>guest.inputBuffer(len);
}

/** Builds the rule from the params JSON in the input buffer: 0 accepts, 1 refuses. */
export function rulewatch_init(len: u32): u32 {
  return guest.init(len);
}

/** Runs `filter` over the event batch in the input buffer; packed pointer/length of the bitmap. */
export function rulewatch_filter(len: u32): u64 {
  return guest.filter(len);
}

/** Runs `alert` over the window batch in the input buffer; packed pointer/length of the bitmap. */
export function rulewatch_alert(len: u32): u64 {
  return guest.alert(len);
}

/** Packed pointer/length of the last error message (UTF-8). */
export function rulewatch_error(): u64 {
  return guest.errorPacked();
}
