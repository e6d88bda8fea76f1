package wasmhost

import (
	"context"

	"github.com/tetratelabs/wazero/api"
)

// This file is the table of what the host links under "env" and the machinery every host
// function shares. Each host function lives next to the state it touches: header maps in
// headers.go, bodies and configuration in buffers.go, shared data in shareddata.go, metrics
// in metrics.go, properties in properties.go, local replies in localreply.go, stream control
// in stream.go, time and ticks in clock.go, logging in log.go, WASI in wasi.go.

// envFunctions returns the proxy-wasm host functions Envoy links under "env" for a module of
// the given ABI version (proxy_get_log_level only from 0.2.1, as cpp-host registers it).
func envFunctions(abi abiVersion) []hostFunc {
	fns := []hostFunc{
		statusFunc("proxy_log", 3, restrictInit|restrictAlloc, hostLog),
		statusFunc("proxy_get_current_time_nanoseconds", 1, 0, hostGetCurrentTime),
		statusFunc("proxy_set_tick_period_milliseconds", 1, 0, hostSetTickPeriod),
		statusFunc("proxy_get_buffer_bytes", 5, 0, hostGetBufferBytes),
		statusFunc("proxy_get_buffer_status", 3, 0, hostGetBufferStatus),
		statusFunc("proxy_set_buffer_bytes", 5, 0, hostSetBufferBytes),
		statusFunc("proxy_get_header_map_pairs", 3, 0, hostGetHeaderMapPairs),
		statusFunc("proxy_set_header_map_pairs", 3, 0, hostSetHeaderMapPairs),
		statusFunc("proxy_get_header_map_value", 5, 0, hostGetHeaderMapValue),
		statusFunc("proxy_add_header_map_value", 5, 0, hostAddHeaderMapValue),
		statusFunc("proxy_replace_header_map_value", 5, 0, hostReplaceHeaderMapValue),
		statusFunc("proxy_remove_header_map_value", 3, 0, hostRemoveHeaderMapValue),
		statusFunc("proxy_get_header_map_size", 2, 0, hostGetHeaderMapSize),
		statusFunc("proxy_get_property", 4, 0, hostGetProperty),
		statusFunc("proxy_set_property", 4, 0, hostSetProperty),
		statusFunc("proxy_send_local_response", 8, 0, hostSendLocalResponse),
		statusFunc("proxy_get_shared_data", 5, 0, hostGetSharedData),
		statusFunc("proxy_set_shared_data", 5, 0, hostSetSharedData),
		statusFunc("proxy_register_shared_queue", 3, 0, hostUnimplemented),
		statusFunc("proxy_resolve_shared_queue", 5, 0, hostUnimplemented),
		statusFunc("proxy_enqueue_shared_queue", 3, 0, hostUnimplemented),
		statusFunc("proxy_dequeue_shared_queue", 3, 0, hostUnimplemented),
		statusFunc("proxy_http_call", 10, 0, hostUnimplemented),
		statusFunc("proxy_grpc_call", 12, 0, hostGrpcCall),
		statusFunc("proxy_grpc_stream", 9, 0, hostUnimplemented),
		statusFunc("proxy_grpc_send", 4, 0, hostUnimplemented),
		statusFunc("proxy_grpc_cancel", 1, 0, hostGrpcCancel),
		statusFunc("proxy_grpc_close", 1, 0, hostUnimplemented),
		statusFunc("proxy_get_status", 3, 0, hostGetStatus),
		statusFunc("proxy_define_metric", 4, 0, hostDefineMetric),
		{name: "proxy_increment_metric", params: []api.ValueType{i32, i64}, results: ints(1), fn: returnsStatus(hostIncrementMetric)},
		{name: "proxy_record_metric", params: []api.ValueType{i32, i64}, results: ints(1), fn: returnsStatus(hostRecordMetric)},
		statusFunc("proxy_get_metric", 2, 0, hostGetMetric),
		statusFunc("proxy_set_effective_context", 1, 0, hostSetEffectiveContext),
		statusFunc("proxy_done", 0, 0, hostDone),
		statusFunc("proxy_call_foreign_function", 6, 0, hostCallForeignFunction),
		i32Func("pthread_equal", 2, 0, func(vm *VM, s []uint64) {
			if api.DecodeU32(s[0]) == api.DecodeU32(s[1]) {
				s[0] = 1
			} else {
				s[0] = 0
			}
		}),
		{name: "emscripten_notify_memory_growth", params: ints(1), fn: func(*VM, []uint64) {}},
		statusFunc("proxy_continue_stream", 1, 0, hostContinueStream),
		statusFunc("proxy_close_stream", 1, 0, hostCloseStream),
	}
	if abi >= abi021 {
		fns = append(fns, statusFunc("proxy_get_log_level", 1, 0, hostGetLogLevel))
	}
	return fns
}

// Restriction modes: while _initialize runs and while the host calls the guest allocator,
// cpp-host lets only a few host functions through; any other traps with "restricted_callback".
const (
	restrictInit  uint8 = 1 << iota // allowed while _initialize (and main) run
	restrictAlloc                   // allowed while the guest allocator runs
)

// hostFunc is one host function offered to guests. fn reads its arguments from stack and
// writes its result (if any) to stack[0].
type hostFunc struct {
	name    string
	params  []api.ValueType
	results []api.ValueType
	allow   uint8 // restriction modes in which the function may run
	fn      func(vm *VM, stack []uint64)
}

// restrictedCallback is the panic value of a restricted host call; wazero turns it into a trap.
type restrictedCallback struct{ fn string }

func (r restrictedCallback) Error() string {
	return "restricted_callback: " + r.fn + " is not allowed here"
}

func (f hostFunc) goFunc(module string) api.GoModuleFunction {
	fn, allow, full, name := f.fn, f.allow, module+"."+f.name, f.name
	faultable := module == "env" && f.faultable()
	return api.GoModuleFunc(func(ctx context.Context, _ api.Module, stack []uint64) {
		vm := vmFrom(ctx)
		if vm.restrict != 0 && vm.restrict&allow == 0 {
			panic(restrictedCallback{full})
		}
		if faultable {
			if st := vm.p.cfg.Faults.injected(name); st != StatusOK {
				setStatus(stack, st)
				return
			}
		}
		fn(vm, stack)
	})
}

var (
	i32 = api.ValueTypeI32
	i64 = api.ValueTypeI64
)

// ints returns n i32 value types.
func ints(n int) []api.ValueType {
	t := make([]api.ValueType, n)
	for i := range t {
		t[i] = i32
	}
	return t
}

// i32Func builds a host function of nParams i32 parameters returning one i32, the shape of
// almost every proxy-wasm and WASI import.
func i32Func(name string, nParams int, allow uint8, fn func(vm *VM, stack []uint64)) hostFunc {
	return hostFunc{name: name, params: ints(nParams), results: ints(1), allow: allow, fn: fn}
}

// statusFunc builds a proxy-wasm host function of nParams i32 parameters whose one result
// is the Status fn returns.
func statusFunc(name string, nParams int, allow uint8, fn func(vm *VM, stack []uint64) Status) hostFunc {
	return i32Func(name, nParams, allow, returnsStatus(fn))
}

// returnsStatus adapts a host function that returns its Status to hostFunc.fn, which stores
// it as the call's result.
func returnsStatus(fn func(vm *VM, stack []uint64) Status) func(vm *VM, stack []uint64) {
	return func(vm *VM, s []uint64) { setStatus(s, fn(vm, s)) }
}

// u32 returns argument i of a host call as a uint32 (pointers, sizes, enums).
func u32(s []uint64, i int) uint32 { return api.DecodeU32(s[i]) }

// setStatus stores a proxy-wasm host call's result.
func setStatus(s []uint64, st Status) { s[0] = uint64(st) }

// memStatus is the result of a host call whose last step wrote to guest memory: OK if the
// writes succeeded (ok), else INVALID_MEMORY_ACCESS.
func memStatus(ok bool) Status {
	if ok {
		return StatusOK
	}
	return StatusInvalidMemoryAccess
}

func hostUnimplemented(*VM, []uint64) Status { return StatusUnimplemented }

// hostCallForeignFunction knows no foreign function: every name is NOT_FOUND.
func hostCallForeignFunction(*VM, []uint64) Status { return StatusNotFound }
