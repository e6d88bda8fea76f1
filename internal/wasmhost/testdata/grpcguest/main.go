// Command grpcguest is a TEST FIXTURE for package wasmhost, not product code: a tiny
// proxy-wasm filter that makes one gRPC call per request, steered by request headers, and
// writes what the host did into shared data for the test to read.
//
//	x-grpc: svc:<cluster>   the service as a serialized GrpcService (envoy_grpc.cluster_name,
//	                        authority "auth.test"); bare:<cluster> the bare name; empty: no bytes
//	x-timeout: <ms>         the call's timeout (default 1000)
//	x-cancel: 1             cancel the call at once (twice: the second must be NOT_FOUND)
//
// The message sent is the request's :path. Answers: a message "deny" gets a 429 local reply,
// any other one continues the request; a failed call gets a 503 local reply.
package main

import (
	"strconv"
	"strings"
	"unsafe"
)

func main() {}

//go:wasmimport env proxy_get_header_map_value
func proxyGetHeaderMapValue(typ uint32, key unsafe.Pointer, keySize uint32, ptr, size *uint32) uint32

//go:wasmimport env proxy_get_buffer_bytes
func proxyGetBufferBytes(typ, start, max uint32, ptr, size *uint32) uint32

//go:wasmimport env proxy_set_shared_data
func proxySetSharedData(key unsafe.Pointer, keySize uint32, val unsafe.Pointer, valSize uint32, cas uint32) uint32

//go:wasmimport env proxy_grpc_call
func proxyGrpcCall(svc unsafe.Pointer, svcSize uint32, name unsafe.Pointer, nameSize uint32, method unsafe.Pointer,
	methodSize uint32, md unsafe.Pointer, mdSize uint32, msg unsafe.Pointer, msgSize uint32, timeout uint32, token *uint32) uint32

//go:wasmimport env proxy_grpc_cancel
func proxyGrpcCancel(token uint32) uint32

//go:wasmimport env proxy_get_status
func proxyGetStatus(code *uint32, ptr, size *uint32) uint32

//go:wasmimport env proxy_set_effective_context
func proxySetEffectiveContext(id uint32) uint32

//go:wasmimport env proxy_continue_stream
func proxyContinueStream(typ uint32) uint32

//go:wasmimport env proxy_send_local_response
func proxySendLocalResponse(code uint32, details unsafe.Pointer, detailsSize uint32, body unsafe.Pointer, bodySize uint32, headers unsafe.Pointer, headersSize uint32, grpc int32) uint32

var pending = map[uint32][]byte{}

//go:wasmexport proxy_abi_version_0_2_0
func abiVersion() {}

//go:wasmexport proxy_on_memory_allocate
func onMemoryAllocate(size uint32) uint32 {
	b := make([]byte, size)
	p := uint32(uintptr(unsafe.Pointer(&b[0])))
	pending[p] = b
	return p
}

func take(p, n uint32) string {
	if p == 0 {
		return ""
	}
	b := pending[p]
	delete(pending, p)
	return string(b[:n])
}

func ptr(s string) unsafe.Pointer { return unsafe.Pointer(unsafe.StringData(s)) }

func st(s uint32) string { return "status=" + strconv.Itoa(int(s)) }

func header(k string) string {
	var p, n uint32
	proxyGetHeaderMapValue(0, ptr(k), uint32(len(k)), &p, &n)
	return take(p, n)
}

func record(k, v string) { proxySetSharedData(ptr(k), uint32(len(k)), ptr(v), uint32(len(v)), 0) }

func buffer5() (string, uint32) {
	var p, n uint32
	s := proxyGetBufferBytes(5, 0, 1<<20, &p, &n)
	return take(p, n), s
}

// grpcService encodes envoy.config.core.v3.GrpcService{envoy_grpc{cluster_name, authority}}.
func grpcService(cluster string) string {
	const authority = "auth.test"
	inner := "\x0a" + string(rune(len(cluster))) + cluster + "\x12" + string(rune(len(authority))) + authority
	return "\x0a" + string(rune(len(inner))) + inner
}

var streams = map[uint32]uint32{} // token -> stream context id

//go:wasmexport proxy_on_context_create
func onContextCreate(id, parent uint32) {}

//go:wasmexport proxy_on_vm_start
func onVMStart(root, size uint32) uint32 { return 1 }

//go:wasmexport proxy_on_configure
func onConfigure(root, size uint32) uint32 { return 1 }

//go:wasmexport proxy_on_request_headers
func onRequestHeaders(id, n, eos uint32) uint32 {
	mode, arg, _ := strings.Cut(header("x-grpc"), ":")
	var svc string
	switch mode {
	case "svc":
		svc = grpcService(arg)
	case "bare":
		svc = arg
	}
	timeout := uint32(1000)
	if t := header("x-timeout"); t != "" {
		v, _ := strconv.Atoi(t)
		timeout = uint32(v)
	}
	path := header(":path")
	const name, method = "test.Service", "Call"
	md := "\x01\x00\x00\x00\x04\x00\x00\x00\x01\x00\x00\x00x-md\x00v\x00" // one pair: x-md: v
	var token uint32
	s := proxyGrpcCall(ptr(svc), uint32(len(svc)), ptr(name), uint32(len(name)), ptr(method), uint32(len(method)),
		ptr(md), uint32(len(md)), ptr(path), uint32(len(path)), timeout, &token)
	record("call."+strconv.Itoa(int(id)), st(s)+" token="+strconv.Itoa(int(token)))
	if s != 0 {
		return 0
	}
	if header("x-cancel") != "" {
		c1 := proxyGrpcCancel(token)
		c2 := proxyGrpcCancel(token)
		record("cancel."+strconv.Itoa(int(id)), st(c1)+" "+st(c2))
		return 0
	}
	streams[token] = id
	return 1
}

//go:wasmexport proxy_on_grpc_receive
func onGrpcReceive(root, token, size uint32) {
	msg, s := buffer5()
	id := streams[token]
	delete(streams, token)
	eff := proxySetEffectiveContext(id)
	_, s2 := buffer5() // on the stream: the message belongs to the root
	result := "root=" + strconv.Itoa(int(root)) + " size=" + strconv.Itoa(int(size)) + " msg=" + msg + " " + st(s) +
		" effective=" + st(eff) + " stream-buffer=" + st(s2)
	record("recv."+strconv.Itoa(int(token)), result)
	if eff != 0 {
		return
	}
	if msg == "deny" {
		d := "denied after a call"
		proxySendLocalResponse(429, ptr(d), uint32(len(d)), nil, 0, nil, 0, -1)
		return
	}
	proxyContinueStream(0)
}

//go:wasmexport proxy_on_grpc_close
func onGrpcClose(root, token, status uint32) {
	var code, p, n uint32
	gs := proxyGetStatus(&code, &p, &n)
	record("close."+strconv.Itoa(int(token)), "root="+strconv.Itoa(int(root))+" status="+strconv.Itoa(int(status))+
		" get_status="+strconv.Itoa(int(code))+"/"+take(p, n)+"/"+st(gs))
	id, ok := streams[token]
	delete(streams, token)
	if ok && proxySetEffectiveContext(id) == 0 {
		proxySendLocalResponse(503, nil, 0, nil, 0, nil, 0, -1)
	}
}

//go:wasmexport proxy_on_delete
func onDelete(id uint32) {}
