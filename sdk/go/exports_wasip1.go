//go:build wasip1

package rulewatch

// The module side of the ABI (sdk/ABI.md, version 1): the functions the host calls. They are
// exported by any main package that imports this one and is built with
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared ...
//
// The host calls _initialize (the package inits, so Export) once after instantiation, then
// these. Calls are never concurrent or re-entrant, so plain globals are enough.

import (
	"os"
	"unsafe"
)

var (
	// input is the buffer the host writes params and batches into; referenced here so the
	// pointer handed out stays valid (Go's collector does not move objects).
	input []byte
	// guest runs the rule once rulewatch_init has accepted the params.
	guest *runner
	// lastError is what rulewatch_error returns.
	lastError string
)

// packed is (pointer << 32) | length of b.
func packed(p *byte, n int) uint64 {
	return uint64(uintptr(unsafe.Pointer(p)))<<32 | uint64(uint32(n))
}

func packedString(s string) uint64 { return packed(unsafe.StringData(s), len(s)) }

func packedBytes(b []byte) uint64 { return packed(unsafe.SliceData(b), len(b)) }

// trap is deferred by every export that runs rule code or reads a batch. A panic becomes the
// message of rulewatch_error and a line on stderr, then the module exits, which traps: the
// host quarantines the rule with that message.
func trap() {
	if p := recover(); p != nil {
		lastError = describePanic(p)
		os.Stderr.WriteString(lastError + "\n")
		os.Exit(2)
	}
}

func mustRegistered() *registration {
	if registered == nil {
		panic("no rule is registered: call rulewatch.Export(fields, constructor) from the rule's func init()")
	}
	return registered
}

// in returns the first n bytes of the input buffer, which the host has just written.
func in(export string, n uint32) []byte {
	if uint64(n) > uint64(len(input)) {
		panic(export + ": the input is longer than the buffer rulewatch_input returned")
	}
	return input[:n]
}

//go:wasmexport rulewatch_abi_version
func rulewatchABIVersion() uint32 { return ABIVersion }

//go:wasmexport rulewatch_fields
func rulewatchFields() uint64 {
	defer trap()
	return packedString(mustRegistered().declaration)
}

//go:wasmexport rulewatch_input
func rulewatchInput(n uint32) uint32 {
	if uint64(cap(input)) < uint64(n) || cap(input) == 0 {
		// Whole 64 KiB: the size of a batch varies a little from call to call.
		size := (uint64(n) + 0xffff) &^ 0xffff
		input = make([]byte, max(size, 1))
	}
	input = input[:n]
	return uint32(uintptr(unsafe.Pointer(unsafe.SliceData(input[:1]))))
}

//go:wasmexport rulewatch_init
func rulewatchInit(n uint32) uint32 {
	defer trap()
	reg := mustRegistered()
	guest = nil
	rule, err := reg.build(in("rulewatch_init", n))
	if err != nil {
		lastError = err.Error()
		return 1
	}
	guest = newRunner(rule, reg)
	lastError = ""
	return 0
}

//go:wasmexport rulewatch_filter
func rulewatchFilter(n uint32) uint64 {
	defer trap()
	if guest == nil {
		panic("rulewatch_filter: rulewatch_init was not called, or refused the params")
	}
	return packedBytes(guest.filter(in("rulewatch_filter", n)))
}

//go:wasmexport rulewatch_alert
func rulewatchAlert(n uint32) uint64 {
	defer trap()
	if guest == nil {
		panic("rulewatch_alert: rulewatch_init was not called, or refused the params")
	}
	return packedBytes(guest.alert(in("rulewatch_alert", n)))
}

//go:wasmexport rulewatch_error
func rulewatchError() uint64 { return packedString(lastError) }
