// The SDK's own tests: `npm test` compiles this module (asconfig.json, target test) and runs
// every exported test_* function with run-tests.mjs.

export * from "./batch";
export * from "./text";
export * from "./json";
export * from "./params";
export * from "./exports";
export * from "./golden.generated";
