//go:build wasip1 && tokengate_fault_hooks

package main

import (
	"unsafe"

	"github.com/tokengate/tokengate/internal/proxywasm"
)

// Fault hooks for the filter tests, compiled only with the build tag
// tokengate_fault_hooks: never part of build/tokengate.wasm. A request
// header x-tokengate-fault: panic makes the request callback panic, and
// x-tokengate-fault: fatal makes it meet a fatal runtime error;
// x-tokengate-fault: grpc-panic makes the gRPC callback that answers the
// request's call to the rate limit service panic (receive or close), once
// the stream has been taken from the call table; x-tokengate-fault:
// resume-panic makes it panic later, in resume, with the decision made and
// the stream not yet answered.

//go:linkname throw runtime.throw
func throw(s string)

func init() {
	faultHook = func() {
		v, st := proxywasm.GetHeader(proxywasm.MapRequestHeaders, "x-tokengate-fault")
		if st != proxywasm.StatusOK {
			return
		}
		switch unsafe.String(unsafe.SliceData(v), len(v)) {
		case "panic":
			panic("tokengate: fault hook")
		case "fatal":
			throw("tokengate: fault hook")
		}
	}
	resumeFaultHook = func() {
		v, st := proxywasm.GetHeader(proxywasm.MapRequestHeaders, "x-tokengate-fault")
		if st == proxywasm.StatusOK && unsafe.String(unsafe.SliceData(v), len(v)) == "resume-panic" {
			panic("tokengate: fault hook in resume")
		}
	}
	grpcFaultHook = func(id uint32) {
		// The stream's request headers are reached through it: the call's
		// message, on the root, has been read already.
		if proxywasm.SetEffectiveContext(id) != proxywasm.StatusOK {
			return
		}
		v, st := proxywasm.GetHeader(proxywasm.MapRequestHeaders, "x-tokengate-fault")
		if st == proxywasm.StatusOK && unsafe.String(unsafe.SliceData(v), len(v)) == "grpc-panic" {
			panic("tokengate: fault hook in a gRPC callback")
		}
	}
}
