//go:build wasip1

package proxywasm

import "fmt"

var handler Handler

// SetHandler installs the Handler of this VM. Call it from an init function:
// the host calls no callback before _initialize has run the inits. Package
// initialisers must not call the host (Envoy traps "restricted_callback").
func SetHandler(h Handler) { handler = h }

//go:wasmexport proxy_abi_version_0_2_0
func proxyABIVersion() {}

//go:wasmexport proxy_on_memory_allocate
func proxyOnMemoryAllocate(size uint32) uint32 { return allocate(size) }

//go:wasmexport proxy_on_context_create
func proxyOnContextCreate(ctx, parent uint32) {
	resetArena()
	handler.OnContextCreate(ctx, parent)
}

//go:wasmexport proxy_on_vm_start
func proxyOnVMStart(root, size uint32) uint32 {
	resetArena()
	return boolResult(handler.OnVMStart(root, int(size)))
}

//go:wasmexport proxy_on_configure
func proxyOnConfigure(root, size uint32) (ok uint32) {
	resetArena()
	defer recoverTo(&ok, 0) // a panic while configuring rejects the configuration
	return boolResult(handler.OnConfigure(root, int(size)))
}

//go:wasmexport proxy_on_request_headers
func proxyOnRequestHeaders(ctx, headers, endOfStream uint32) (action uint32) {
	resetArena()
	defer recoverTo(&action, uint32(ActionContinue))
	return uint32(handler.OnRequestHeaders(ctx, int(headers), endOfStream != 0))
}

//go:wasmexport proxy_on_response_headers
func proxyOnResponseHeaders(ctx, headers, endOfStream uint32) (action uint32) {
	resetArena()
	defer recoverTo(&action, uint32(ActionContinue))
	return uint32(handler.OnResponseHeaders(ctx, int(headers), endOfStream != 0))
}

//go:wasmexport proxy_on_delete
func proxyOnDelete(ctx uint32) {
	resetArena()
	handler.OnDelete(ctx)
}

func boolResult(b bool) uint32 {
	if b {
		return 1
	}
	return 0
}

// recoverTo turns a panic into a critical log line and a fixed result, so a
// bug met by one request does not trap and kill the whole VM.
func recoverTo(result *uint32, value uint32) {
	if r := recover(); r != nil {
		Log(LogCritical, fmt.Sprint("tokengate: recovered from panic: ", r))
		*result = value
	}
}
