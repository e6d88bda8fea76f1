//go:build wasip1

package proxywasm

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
func proxyOnContextCreate(id, parent uint32) {
	resetArena()
	handler.OnContextCreate(id, parent)
}

//go:wasmexport proxy_on_vm_start
func proxyOnVMStart(root, size uint32) uint32 {
	resetArena()
	return boolResult(handler.OnVMStart(root, int(size)))
}

//go:wasmexport proxy_on_configure
func proxyOnConfigure(root, size uint32) (ok uint32) {
	resetArena()
	defer func() {
		if r := recover(); r != nil { // a panic while configuring rejects the configuration
			logPanic(r)
			ok = 0
		}
	}()
	return boolResult(handler.OnConfigure(root, int(size)))
}

//go:wasmexport proxy_on_request_headers
func proxyOnRequestHeaders(id, headers, endOfStream uint32) (action uint32) {
	resetArena()
	defer recoverRequest(id, &action)
	return uint32(handler.OnRequestHeaders(id, int(headers), endOfStream != 0))
}

// recoverRequest turns a panic in OnRequestHeaders into a critical log line
// and the Handler's OnRequestPanic, which decides what the stream does.
func recoverRequest(id uint32, action *uint32) {
	if r := recover(); r != nil {
		logPanic(r)
		*action = uint32(handler.OnRequestPanic(id))
	}
}

//go:wasmexport proxy_on_response_headers
func proxyOnResponseHeaders(id, headers, endOfStream uint32) (action uint32) {
	resetArena()
	defer recoverResponse(&action)
	return uint32(handler.OnResponseHeaders(id, int(headers), endOfStream != 0))
}

// recoverResponse turns a panic in OnResponseHeaders into a critical log
// line and Continue: the request was admitted already, the response goes on
// as the upstream sent it.
func recoverResponse(action *uint32) {
	if r := recover(); r != nil {
		logPanic(r)
		*action = uint32(ActionContinue)
	}
}

//go:wasmexport proxy_on_delete
func proxyOnDelete(id uint32) {
	resetArena()
	handler.OnDelete(id)
}

//go:wasmexport proxy_on_grpc_receive
func proxyOnGrpcReceive(root, token, size uint32) {
	resetArena()
	defer recoverGrpc(root, token)
	handler.OnGrpcReceive(root, token, int(size))
}

//go:wasmexport proxy_on_grpc_close
func proxyOnGrpcClose(root, token, status uint32) {
	resetArena()
	defer recoverGrpc(root, token)
	handler.OnGrpcClose(root, token, GrpcStatus(status))
}

// recoverGrpc turns a panic in a gRPC callback into a critical log line and
// the Handler's OnGrpcPanic, which decides what the stream waiting on the
// call does: without it the stream would stay paused until Envoy's timeout.
func recoverGrpc(root, token uint32) {
	if r := recover(); r != nil {
		logPanic(r)
		handler.OnGrpcPanic(root, token)
	}
}

func boolResult(b bool) uint32 {
	if b {
		return 1
	}
	return 0
}

// logPanic logs a recovered panic value at critical level. It names the
// value without fmt, which would double the module's size for one line.
func logPanic(r any) {
	msg := "non-error value"
	switch v := r.(type) {
	case error:
		msg = v.Error()
	case string:
		msg = v
	}
	Log(LogCritical, "tokengate: recovered from panic: "+msg)
}
