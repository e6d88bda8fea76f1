//go:build wasip1

// Command nothing is a benchmark fixture, not part of the product: a
// proxy-wasm module built with the same standard toolchain as tokengate whose
// callbacks return at once and make no host call. It exports the whole
// stream sequence Envoy drives (context create, request headers, response
// headers, log, done, delete), so its cost per request is what any Go
// filter pays before doing anything: `make bench` reports tokengate's
// request paths as multiples of it.
package main

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
func requestHeaders(id, n, eos uint32) uint32 { return 0 }

//go:wasmexport proxy_on_response_headers
func responseHeaders(id, n, eos uint32) uint32 { return 0 }

//go:wasmexport proxy_on_log
func onLog(id uint32) {}

//go:wasmexport proxy_on_done
func onDone(id uint32) uint32 { return 1 }

//go:wasmexport proxy_on_delete
func onDelete(id uint32) {}

func main() {}
