//go:build wasip1

// Command floor is a benchmark fixture, not part of the product: the
// do-nothing module of testdata/nothing plus four trivial host calls in
// proxy_on_request_headers, so the cost of a host call shows beside the cost
// of a callback. `make bench` reports tokengate's request paths as multiples
// of both.
package main

//go:wasmimport env proxy_get_current_time_nanoseconds
func getTime(ret *uint64) uint32

var scratch [64]byte

//go:wasmexport proxy_abi_version_0_2_0
func abiVersion() {}

//go:wasmexport proxy_on_memory_allocate
func allocate(size uint32) *byte { return &scratch[0] }

//go:wasmexport proxy_on_context_create
func contextCreate(id, parent uint32) {}

//go:wasmexport proxy_on_vm_start
func vmStart(root, size uint32) uint32 { return 1 }

//go:wasmexport proxy_on_configure
func configure(root, size uint32) uint32 { return 1 }

//go:wasmexport proxy_on_request_headers
func requestHeaders(id, n, eos uint32) uint32 {
	var t uint64
	for i := 0; i < 4; i++ {
		getTime(&t)
	}
	return 0
}

//go:wasmexport proxy_on_response_headers
func responseHeaders(id, n, eos uint32) uint32 { return 0 }

//go:wasmexport proxy_on_log
func onLog(id uint32) {}

//go:wasmexport proxy_on_done
func onDone(id uint32) uint32 { return 1 }

//go:wasmexport proxy_on_delete
func onDelete(id uint32) {}

func main() {}
