package wasmhost

// Buffer types of the proxy-wasm ABI.
const (
	bufRequestBody  = 0
	bufResponseBody = 1
	bufVMConfig     = 6
	bufPluginConfig = 7
)

// buffer returns the buffer of the given type visible to the running callback.
func (vm *VM) buffer(typ uint32) (*[]byte, Status) {
	switch typ {
	case bufRequestBody, bufResponseBody:
		st := vm.stream()
		if st == nil {
			return nil, StatusNotFound
		}
		if typ == bufRequestBody {
			return &st.req.body, StatusOK
		}
		return &st.resp.body, StatusOK
	case bufGrpcReceive:
		if vm.stream() == nil && vm.grpcs.receive != nil { // on the root, during proxy_on_grpc_receive
			return &vm.grpcs.receive, StatusOK
		}
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

func hostGetBufferBytes(vm *VM, s []uint64) Status {
	buf, st := vm.buffer(u32(s, 0))
	if st != StatusOK {
		return st
	}
	start, length := u32(s, 1), u32(s, 2)
	if start+length < start {
		return StatusBadArgument // overflow, as cpp-host checks
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
	return vm.writeOut(vm.scratch, u32(s, 3), u32(s, 4))
}

func hostGetBufferStatus(vm *VM, s []uint64) Status {
	buf, st := vm.buffer(u32(s, 0))
	if st != StatusOK {
		return st
	}
	return memStatus(vm.mem.WriteUint32Le(u32(s, 1), uint32(len(*buf))) && vm.mem.WriteUint32Le(u32(s, 2), 0))
}

// hostSetBufferBytes follows Envoy: start 0 and length 0 prepends, start 0 and length >= size
// replaces, start >= size appends; anything else is BAD_ARGUMENT. Only bodies are writable.
func hostSetBufferBytes(vm *VM, s []uint64) Status {
	typ := u32(s, 0)
	if typ != bufRequestBody && typ != bufResponseBody {
		return StatusBadArgument
	}
	buf, st := vm.buffer(typ)
	if st != StatusOK {
		return st
	}
	data, ok := vm.readArg(s, 3)
	if !ok {
		return StatusInvalidMemoryAccess
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
		return StatusBadArgument
	}
	return StatusOK
}
