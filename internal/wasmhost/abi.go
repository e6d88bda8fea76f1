package wasmhost

import (
	"github.com/tetratelabs/wazero/api"
	"github.com/tokengate/tokengate/internal/proxywasm"
)

// envFunctions returns the proxy-wasm host functions Envoy links under "env" for a module of
// the given ABI version (cpp-host registers a few only for some versions).
func envFunctions(abi abiVersion) []hostFn {
	fns := []hostFn{
		hf("proxy_log", 3, restrictInit|restrictAlloc, hostLog),
		hf("proxy_get_current_time_nanoseconds", 1, 0, hostGetCurrentTime),
		hf("proxy_set_tick_period_milliseconds", 1, 0, hostSetTickPeriod),
		hf("proxy_get_buffer_bytes", 5, 0, hostGetBufferBytes),
		hf("proxy_get_buffer_status", 3, 0, hostGetBufferStatus),
		hf("proxy_set_buffer_bytes", 5, 0, hostSetBufferBytes),
		hf("proxy_get_header_map_pairs", 3, 0, hostGetHeaderMapPairs),
		hf("proxy_set_header_map_pairs", 3, 0, hostSetHeaderMapPairs),
		hf("proxy_get_header_map_value", 5, 0, hostGetHeaderMapValue),
		hf("proxy_add_header_map_value", 5, 0, hostAddHeaderMapValue),
		hf("proxy_replace_header_map_value", 5, 0, hostReplaceHeaderMapValue),
		hf("proxy_remove_header_map_value", 3, 0, hostRemoveHeaderMapValue),
		hf("proxy_get_header_map_size", 2, 0, hostGetHeaderMapSize),
		hf("proxy_get_property", 4, 0, hostGetProperty),
		hf("proxy_set_property", 4, 0, hostSetProperty),
		hf("proxy_send_local_response", 8, 0, hostSendLocalResponse),
		hf("proxy_get_shared_data", 5, 0, hostGetSharedData),
		hf("proxy_set_shared_data", 5, 0, hostSetSharedData),
		hf("proxy_register_shared_queue", 3, 0, hostUnimplemented),
		hf("proxy_resolve_shared_queue", 5, 0, hostUnimplemented),
		hf("proxy_enqueue_shared_queue", 3, 0, hostUnimplemented),
		hf("proxy_dequeue_shared_queue", 3, 0, hostUnimplemented),
		hf("proxy_http_call", 10, 0, hostUnimplemented),
		hf("proxy_grpc_call", 12, 0, hostUnimplemented),
		hf("proxy_grpc_stream", 9, 0, hostUnimplemented),
		hf("proxy_grpc_send", 4, 0, hostUnimplemented),
		hf("proxy_grpc_cancel", 1, 0, hostUnimplemented),
		hf("proxy_grpc_close", 1, 0, hostUnimplemented),
		hf("proxy_get_status", 3, 0, hostUnimplemented),
		hf("proxy_define_metric", 4, 0, hostDefineMetric),
		{name: "proxy_increment_metric", params: []api.ValueType{i32, i64}, results: ints(1), fn: hostIncrementMetric},
		{name: "proxy_record_metric", params: []api.ValueType{i32, i64}, results: ints(1), fn: hostRecordMetric},
		hf("proxy_get_metric", 2, 0, hostGetMetric),
		hf("proxy_set_effective_context", 1, 0, hostSetEffectiveContext),
		hf("proxy_done", 0, 0, hostDone),
		hf("proxy_call_foreign_function", 6, 0, hostCallForeignFunction),
		hf("pthread_equal", 2, 0, func(vm *VM, s []uint64) {
			if api.DecodeU32(s[0]) == api.DecodeU32(s[1]) {
				s[0] = 1
			} else {
				s[0] = 0
			}
		}),
		{name: "emscripten_notify_memory_growth", params: ints(1), fn: func(*VM, []uint64) {}},
	}
	switch abi {
	case abi010:
		fns = append(fns,
			hf("proxy_get_configuration", 2, 0, hostGetConfiguration),
			hf("proxy_continue_request", 0, 0, func(vm *VM, s []uint64) { s[0] = uint64(vm.continueStream(0)) }),
			hf("proxy_continue_response", 0, 0, func(vm *VM, s []uint64) { s[0] = uint64(vm.continueStream(1)) }),
			hf("proxy_clear_route_cache", 0, 0, func(vm *VM, s []uint64) { s[0] = uint64(StatusOK) }),
		)
	case abi020, abi021:
		fns = append(fns,
			hf("proxy_continue_stream", 1, 0, func(vm *VM, s []uint64) { s[0] = uint64(vm.continueStream(api.DecodeU32(s[0]))) }),
			hf("proxy_close_stream", 1, 0, hostCloseStream),
		)
		if abi == abi021 {
			fns = append(fns, hf("proxy_get_log_level", 1, 0, hostGetLogLevel))
		}
	}
	return fns
}

func u32(s []uint64, i int) uint32 { return api.DecodeU32(s[i]) }

func ret(s []uint64, st Status) { s[0] = uint64(st) }

func hostUnimplemented(_ *VM, s []uint64) { ret(s, StatusUnimplemented) }

func hostLog(vm *VM, s []uint64) {
	level := LogLevel(int32(u32(s, 0)))
	msg, ok := vm.read(u32(s, 1), u32(s, 2))
	if !ok {
		ret(s, StatusInvalidMemoryAccess)
		return
	}
	if level < LogTrace || level > LogCritical {
		ret(s, StatusBadArgument)
		return
	}
	vm.logBytes(level, msg)
	ret(s, StatusOK)
}

func hostGetLogLevel(vm *VM, s []uint64) {
	if !vm.mem.WriteUint32Le(u32(s, 0), uint32(vm.p.cfg.LogLevel)) {
		ret(s, StatusInvalidMemoryAccess)
		return
	}
	ret(s, StatusOK)
}

func hostGetCurrentTime(vm *VM, s []uint64) {
	if !vm.mem.WriteUint64Le(u32(s, 0), uint64(vm.p.clock.Now().UnixNano())) {
		ret(s, StatusInvalidMemoryAccess)
		return
	}
	ret(s, StatusOK)
}

func hostSetTickPeriod(vm *VM, s []uint64) {
	ms := u32(s, 0)
	vm.tickPeriod = durationMS(ms)
	if ms == 0 {
		vm.nextTick = timeZero
	} else {
		vm.nextTick = vm.p.clock.Now().Add(vm.tickPeriod)
	}
	ret(s, StatusOK)
}

func hostGetConfiguration(vm *VM, s []uint64) {
	ret(s, vm.writeOut(vm.p.cfg.Configuration, u32(s, 0), u32(s, 1)))
}

func hostCloseStream(vm *VM, s []uint64) {
	if st := vm.stream(); st != nil {
		st.closedByFilter = true
	}
	ret(s, StatusOK)
}

// continueStream implements proxy_continue_stream: the paused direction of the stream is let
// go once the current callback has returned.
func (vm *VM) continueStream(typ uint32) Status {
	st := vm.stream()
	switch typ {
	case 0:
		if st != nil {
			// Envoy drops the request headers (and body) at once.
			st.reqContinued, st.reqGone = true, true
		}
	case 1:
		if st != nil {
			st.respContinued = true
		}
	default:
		return StatusBadArgument
	}
	return StatusOK
}

func hostSetEffectiveContext(vm *VM, s []uint64) {
	id := u32(s, 0)
	if id == rootContextID {
		vm.effSet, vm.eff = true, nil
		ret(s, StatusOK)
		return
	}
	st := vm.streams[id]
	if st == nil {
		ret(s, StatusBadArgument)
		return
	}
	vm.effSet, vm.eff = true, st
	ret(s, StatusOK)
}

func hostDone(vm *VM, s []uint64) {
	if vm.pendingDone {
		ret(s, StatusOK)
		return
	}
	ret(s, StatusNotFound)
}

func hostCallForeignFunction(_ *VM, s []uint64) { ret(s, StatusNotFound) }

// Buffers.

// buffer returns the buffer of the given type visible to the running callback.
func (vm *VM) buffer(typ uint32) (*[]byte, Status) {
	switch typ {
	case bufRequestBody, bufResponseBody:
		st := vm.stream()
		if st == nil {
			return nil, StatusNotFound
		}
		if typ == bufRequestBody {
			return &st.reqBody, StatusOK
		}
		return &st.respBody, StatusOK
	case bufVMConfig:
		if vm.phase == phaseVMStart {
			return &vm.p.cfg.VMConfiguration, StatusOK
		}
	case bufPluginConfig:
		if vm.phase == phaseConfigure {
			return &vm.p.cfg.Configuration, StatusOK
		}
	}
	return nil, StatusNotFound
}

func hostGetBufferBytes(vm *VM, s []uint64) {
	buf, st := vm.buffer(u32(s, 0))
	if st != StatusOK {
		ret(s, st)
		return
	}
	start, length := u32(s, 1), u32(s, 2)
	if start+length < start {
		ret(s, StatusBadArgument) // overflow, as cpp-host checks
		return
	}
	b := *buf
	if uint64(start) > uint64(len(b)) {
		b = nil // no over-read: an empty result
	} else {
		b = b[start:]
		if uint64(length) < uint64(len(b)) {
			b = b[:length]
		}
	}
	// Copy out first: the allocator may run guest code that changes nothing here, but the
	// buffer may alias the plugin configuration, which must not be exposed writable.
	vm.scratch = append(vm.scratch[:0], b...)
	ret(s, vm.writeOut(vm.scratch, u32(s, 3), u32(s, 4)))
}

func hostGetBufferStatus(vm *VM, s []uint64) {
	buf, st := vm.buffer(u32(s, 0))
	if st != StatusOK {
		ret(s, st)
		return
	}
	if !vm.mem.WriteUint32Le(u32(s, 1), uint32(len(*buf))) || !vm.mem.WriteUint32Le(u32(s, 2), 0) {
		ret(s, StatusInvalidMemoryAccess)
		return
	}
	ret(s, StatusOK)
}

// hostSetBufferBytes follows Envoy: start 0 and length 0 prepends, start 0 and length >= size
// replaces, start >= size appends; anything else is BAD_ARGUMENT. Only bodies are writable.
func hostSetBufferBytes(vm *VM, s []uint64) {
	typ := u32(s, 0)
	if typ != bufRequestBody && typ != bufResponseBody {
		ret(s, StatusBadArgument)
		return
	}
	buf, st := vm.buffer(typ)
	if st != StatusOK {
		ret(s, st)
		return
	}
	data, ok := vm.read(u32(s, 3), u32(s, 4))
	if !ok {
		ret(s, StatusInvalidMemoryAccess)
		return
	}
	start, length := int(u32(s, 1)), int(u32(s, 2))
	b := *buf
	switch {
	case start == 0 && length == 0:
		vm.scratch = append(append(vm.scratch[:0], data...), b...)
		*buf = append(b[:0], vm.scratch...)
	case start == 0 && length >= len(b):
		*buf = append(b[:0], data...)
	case start >= len(b):
		*buf = append(b, data...)
	default:
		ret(s, StatusBadArgument)
		return
	}
	ret(s, StatusOK)
}

// Shared data.

func hostGetSharedData(vm *VM, s []uint64) {
	key, ok := vm.read(u32(s, 0), u32(s, 1))
	if !ok {
		ret(s, StatusInvalidMemoryAccess)
		return
	}
	val, cas, st := vm.p.shared.getInto(vm.p.cfg.VMID, key, vm.scratch)
	vm.scratch = val
	if st != StatusOK {
		ret(s, st)
		return
	}
	if st := vm.writeOut(val, u32(s, 2), u32(s, 3)); st != StatusOK {
		ret(s, st)
		return
	}
	if !vm.mem.WriteUint32Le(u32(s, 4), cas) {
		ret(s, StatusInvalidMemoryAccess)
		return
	}
	ret(s, StatusOK)
}

func hostSetSharedData(vm *VM, s []uint64) {
	key, ok1 := vm.read(u32(s, 0), u32(s, 1))
	val, ok2 := vm.read(u32(s, 2), u32(s, 3))
	if !ok1 || !ok2 {
		ret(s, StatusInvalidMemoryAccess)
		return
	}
	ret(s, vm.p.shared.setBytes(vm.p.cfg.VMID, key, "", val, u32(s, 4)))
}

// Metrics.

func hostDefineMetric(vm *VM, s []uint64) {
	typ := u32(s, 0)
	name, ok := vm.read(u32(s, 1), u32(s, 2))
	if !ok {
		ret(s, StatusInvalidMemoryAccess)
		return
	}
	if typ > metricHistogram {
		ret(s, StatusBadArgument)
		return
	}
	m := vm.p.metrics.define(typ, string(name))
	vm.metricSlots[typ] = append(vm.metricSlots[typ], m)
	id := uint32(len(vm.metricSlots[typ]))<<2 | typ
	if !vm.mem.WriteUint32Le(u32(s, 3), id) {
		ret(s, StatusInvalidMemoryAccess)
		return
	}
	ret(s, StatusOK)
}

func (vm *VM) metricByID(id uint32) *metric {
	typ, idx := id&3, int(id>>2)-1
	if typ > metricHistogram || idx < 0 || idx >= len(vm.metricSlots[typ]) {
		return nil
	}
	return vm.metricSlots[typ][idx]
}

func hostIncrementMetric(vm *VM, s []uint64) {
	m := vm.metricByID(u32(s, 0))
	delta := int64(s[1])
	switch {
	case m == nil:
		ret(s, StatusNotFound)
	case m.kind == metricCounter:
		if delta <= 0 {
			ret(s, StatusBadArgument)
			return
		}
		m.value.Add(delta)
		ret(s, StatusOK)
	case m.kind == metricGauge:
		m.value.Add(delta)
		ret(s, StatusOK)
	default:
		ret(s, StatusBadArgument)
	}
}

func hostRecordMetric(vm *VM, s []uint64) {
	m := vm.metricByID(u32(s, 0))
	v := int64(s[1])
	switch {
	case m == nil:
		ret(s, StatusNotFound)
		return
	case m.kind == metricCounter:
		m.value.Add(v)
	case m.kind == metricGauge:
		m.value.Store(v)
	default:
		m.count.Add(1)
		m.value.Add(v)
	}
	ret(s, StatusOK)
}

func hostGetMetric(vm *VM, s []uint64) {
	m := vm.metricByID(u32(s, 0))
	switch {
	case m == nil:
		ret(s, StatusNotFound)
	case m.kind == metricHistogram:
		ret(s, StatusBadArgument)
	case !vm.mem.WriteUint64Le(u32(s, 1), uint64(m.value.Load())):
		ret(s, StatusInvalidMemoryAccess)
	default:
		ret(s, StatusOK)
	}
}

// Header maps.

// headerMap returns the header map of the given type that Envoy's getMap exposes to the
// running callback, for writes and for the size: Envoy drops its pointer to the request
// (response) headers once they have continued, so later access is BAD_ARGUMENT. Trailers are
// not modelled (BAD_ARGUMENT).
func (vm *VM) headerMap(typ uint32) (*Headers, Status) {
	st := vm.stream()
	if st == nil {
		return nil, StatusBadArgument
	}
	switch typ {
	case mapRequestHeaders:
		if st.reqGone || !st.reqSeen {
			return nil, StatusBadArgument
		}
		return &st.req, StatusOK
	case mapResponseHeaders:
		if st.respGone || !st.respSeen {
			return nil, StatusBadArgument
		}
		return &st.resp, StatusOK
	}
	return nil, StatusBadArgument
}

// constHeaderMap is Envoy's getConstMap, used by the getters: in proxy_on_log it returns the
// headers the access log sees (request and response headers as they finally were), else the
// same as headerMap. A nil map with StatusOK means "none in the access log".
func (vm *VM) constHeaderMap(typ uint32) (*Headers, Status) {
	st := vm.stream()
	if st == nil || !st.inLog {
		return vm.headerMap(typ)
	}
	switch typ {
	case mapRequestHeaders:
		if st.reqSeen {
			return &st.req, StatusOK
		}
	case mapResponseHeaders:
		if st.respSeen {
			return &st.resp, StatusOK
		}
	}
	return nil, StatusOK
}

// hostGetHeaderMapPairs never fails on a missing map: Envoy serializes it as empty, and an
// empty map is returned as pointer 0, length 0.
func hostGetHeaderMapPairs(vm *VM, s []uint64) {
	typ := u32(s, 0)
	if typ > maxMapType {
		ret(s, StatusBadArgument)
		return
	}
	h, _ := vm.constHeaderMap(typ)
	vm.scratch = vm.scratch[:0]
	if h != nil && len(*h) > 0 {
		vm.scratch = proxywasm.AppendPairs(vm.scratch, *h)
	}
	ret(s, vm.writeOut(vm.scratch, u32(s, 1), u32(s, 2)))
}

func hostSetHeaderMapPairs(vm *VM, s []uint64) {
	// Same arguments as a header removal: the map, then one buffer (the pairs).
	if h, data, _, ok := headerEdit(vm, s, false); ok {
		*h = decodePairs((*h)[:0], data)
		ret(s, StatusOK)
	}
}

// hostGetHeaderMapValue returns the first value of a header. In proxy_on_log a map the access
// log lacks is NOT_FOUND; elsewhere an unavailable map is BAD_ARGUMENT.
func hostGetHeaderMapValue(vm *VM, s []uint64) {
	h, st := vm.constHeaderMap(u32(s, 0))
	if st != StatusOK {
		ret(s, st)
		return
	}
	key, ok := vm.read(u32(s, 1), u32(s, 2))
	if !ok {
		ret(s, StatusInvalidMemoryAccess)
		return
	}
	if h == nil {
		ret(s, StatusNotFound)
		return
	}
	i := h.index(key)
	if i < 0 {
		ret(s, StatusNotFound)
		return
	}
	vm.scratch = append(vm.scratch[:0], (*h)[i][1]...)
	ret(s, vm.writeOut(vm.scratch, u32(s, 3), u32(s, 4)))
}

// headerEdit decodes the arguments of the header-editing calls: (map type,
// key ptr, key size[, value ptr, value size]). On failure it has already set
// the call's status and returns ok false.
func headerEdit(vm *VM, s []uint64, withValue bool) (h *Headers, key, val []byte, ok bool) {
	h, st := vm.headerMap(u32(s, 0))
	if st != StatusOK {
		ret(s, st)
		return nil, nil, nil, false
	}
	key, ok = vm.read(u32(s, 1), u32(s, 2))
	if ok && withValue {
		val, ok = vm.read(u32(s, 3), u32(s, 4))
	}
	if !ok {
		ret(s, StatusInvalidMemoryAccess)
	}
	return h, key, val, ok
}

func hostAddHeaderMapValue(vm *VM, s []uint64) {
	if h, key, val, ok := headerEdit(vm, s, true); ok {
		*h = append(*h, [2]string{lowerString(key), string(val)})
		ret(s, StatusOK)
	}
}

func hostReplaceHeaderMapValue(vm *VM, s []uint64) {
	if h, key, val, ok := headerEdit(vm, s, true); ok {
		h.set(key, string(val))
		ret(s, StatusOK)
	}
}

func hostRemoveHeaderMapValue(vm *VM, s []uint64) {
	if h, key, _, ok := headerEdit(vm, s, false); ok {
		h.remove(key)
		ret(s, StatusOK)
	}
}

// hostGetHeaderMapSize returns the map's byte size (keys plus values), as Envoy does.
func hostGetHeaderMapSize(vm *VM, s []uint64) {
	h, st := vm.headerMap(u32(s, 0))
	if st != StatusOK {
		ret(s, st)
		return
	}
	n := 0
	for _, kv := range *h {
		n += len(kv[0]) + len(kv[1])
	}
	if !vm.mem.WriteUint32Le(u32(s, 1), uint32(n)) {
		ret(s, StatusInvalidMemoryAccess)
		return
	}
	ret(s, StatusOK)
}

// EncodePairs serializes headers in the proxy-wasm pairs format (for tests and guests' peers).
func EncodePairs(h Headers) []byte { return proxywasm.AppendPairs(nil, h) }

// DecodePairs parses the proxy-wasm pairs format like cpp-host: malformed or oversized input
// (over 1 MiB or 1024 pairs) yields an empty map. Keys are lower-cased, as Envoy's header maps
// store them.
func DecodePairs(data []byte) Headers { return decodePairs(nil, data) }

func decodePairs(dst Headers, data []byte) Headers {
	dst = dst[:0]
	if len(data) > maxPairsBytes {
		return dst
	}
	r := proxywasm.ReadPairs(data)
	if r.Len() > maxPairsCount {
		return dst
	}
	for k, v, ok := r.Next(); ok; k, v, ok = r.Next() {
		dst = append(dst, [2]string{lowerString(k), string(v)})
	}
	if r.Err() != nil {
		return dst[:0]
	}
	return dst
}
