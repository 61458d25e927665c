// rulewatch-sdk for AssemblyScript: write rulewatch rules (https://github.com/rulewatch/rulewatch).
//
// A rule makes two decisions: which events count (`Rule.filter`) and which window counts are
// alerts (`Rule.alert`). Everything else (reading, parsing JSON, event time, windows,
// watermarks, late data, output) is the host's, configured in the rule's TOML file.
//
//   import { Event, Field, Params, Rule, Utf8, WindowCount, register } from "rulewatch-sdk/assembly";
//   export * from "rulewatch-sdk/assembly/exports";
//
// See README.md for a whole rule, and testing.ts for native tests.

export { ABI_VERSION } from "./abi";
export { Event, Field, FieldType, Rule, WindowCount } from "./rule";
export { Params } from "./params";
export { JsonKind, JsonValue, parseJson, parseJsonString } from "./json";
export { Text, Utf8, containsIgnoreAsciiCase } from "./text";
export { register } from "./guest";
