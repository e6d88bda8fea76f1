//go:build wasip1

// Command hostcalls is a benchmark fixture, not part of the product: the
// do-nothing module of testdata/nothing plus the host calls tokengate makes
// for an allowed request with one remote_address rule, and no logic: the
// peer address, the clock, one shared-data get and set, one counter, and
// two response headers. `make bench` sets tokengate beside it to show what
// its own Go code costs over the calls it cannot avoid.
package main

import "unsafe"

//go:wasmimport env proxy_get_property
func getProperty(path unsafe.Pointer, size uint32, retPtr, retSize *uint32) uint32

//go:wasmimport env proxy_get_current_time_nanoseconds
func getTime(ret *uint64) uint32

//go:wasmimport env proxy_get_shared_data
func getSharedData(key unsafe.Pointer, keySize uint32, retPtr, retSize, cas *uint32) uint32

//go:wasmimport env proxy_set_shared_data
func setSharedData(key unsafe.Pointer, keySize uint32, value unsafe.Pointer, valueSize, cas uint32) uint32

//go:wasmimport env proxy_define_metric
func defineMetric(kind uint32, name unsafe.Pointer, size uint32, id *uint32) uint32

//go:wasmimport env proxy_increment_metric
func incrementMetric(id uint32, delta int64) uint32

//go:wasmimport env proxy_replace_header_map_value
func replaceHeader(mapType uint32, key unsafe.Pointer, keySize uint32, value unsafe.Pointer, valueSize uint32) uint32

var (
	heap                    [4096]byte
	used                    uint32
	retPtr, retSize, retCAS uint32
	metricID                uint32
	now                     uint64
	property                = "source\x00address"
	key                     = "hostcalls/set"
	value                   [136]byte
	metricName              = "hostcalls.allowed"
	policyName, policyValue = "ratelimit-policy", `"per-ip";q=1000000000;w=1000000000`
	limitName, limitValue   = "ratelimit", `"per-ip";r=999999999;t=1`
)

func ptr(s string) unsafe.Pointer { return unsafe.Pointer(unsafe.StringData(s)) }

//go:wasmexport proxy_abi_version_0_2_0
func abiVersion() {}

// allocate hands out a bump-allocated piece of a static buffer, reset by
// every request callback.
//
//go:wasmexport proxy_on_memory_allocate
func allocate(size uint32) *byte {
	if used+size > uint32(len(heap)) {
		used = 0
	}
	p := &heap[used]
	used += (size + 7) &^ 7
	return p
}

//go:wasmexport proxy_on_context_create
func contextCreate(id, parent uint32) {}

//go:wasmexport proxy_on_vm_start
func vmStart(root, size uint32) uint32 { return 1 }

//go:wasmexport proxy_on_configure
func configure(root, size uint32) uint32 {
	defineMetric(0, ptr(metricName), uint32(len(metricName)), &metricID)
	return 1
}

//go:wasmexport proxy_on_request_headers
func requestHeaders(id, n, eos uint32) uint32 {
	used = 0
	getProperty(ptr(property), uint32(len(property)), &retPtr, &retSize)
	getTime(&now)
	cas := uint32(0)
	if getSharedData(ptr(key), uint32(len(key)), &retPtr, &retSize, &retCAS) == 0 {
		cas = retCAS
	}
	setSharedData(ptr(key), uint32(len(key)), unsafe.Pointer(&value[0]), uint32(len(value)), cas)
	incrementMetric(metricID, 1)
	return 0
}

//go:wasmexport proxy_on_response_headers
func responseHeaders(id, n, eos uint32) uint32 {
	replaceHeader(2, ptr(policyName), uint32(len(policyName)), ptr(policyValue), uint32(len(policyValue)))
	replaceHeader(2, ptr(limitName), uint32(len(limitName)), ptr(limitValue), uint32(len(limitValue)))
	return 0
}

//go:wasmexport proxy_on_log
func onLog(id uint32) {}

//go:wasmexport proxy_on_done
func onDone(id uint32) uint32 { return 1 }

//go:wasmexport proxy_on_delete
func onDelete(id uint32) {}

func main() {}
