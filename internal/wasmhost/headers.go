package wasmhost

// Headers is an ordered list of header name/value pairs. Names are lower case; pseudo headers
// (":method", ":path", ":authority", ":scheme", ":status") come first by convention.
// A repeated name appears once per value; lookups return the first.
type Headers [][2]string

// Get returns the first value of the header named name (compared case-insensitively).
func (h Headers) Get(name string) (string, bool) {
	if i := h.index([]byte(name)); i >= 0 {
		return h[i][1], true
	}
	return "", false
}

// index returns the position of the first header named key (ASCII case-insensitive), or -1.
func (h Headers) index(key []byte) int {
	for i := range h {
		if equalLower(h[i][0], key) {
			return i
		}
	}
	return -1
}

// set replaces the value of the first header named key and removes the others, or appends
// the header (Envoy's setCopy).
func (h *Headers) set(key []byte, val string) {
	i := h.index(key)
	if i < 0 {
		*h = append(*h, [2]string{lowerString(key), val})
		return
	}
	(*h)[i][1] = val
	out := (*h)[:i+1]
	for _, kv := range (*h)[i+1:] {
		if !equalLower(kv[0], key) {
			out = append(out, kv)
		}
	}
	clear((*h)[len(out):])
	*h = out
}

// remove deletes every header named key.
func (h *Headers) remove(key []byte) {
	out := (*h)[:0]
	for _, kv := range *h {
		if !equalLower(kv[0], key) {
			out = append(out, kv)
		}
	}
	clear((*h)[len(out):])
	*h = out
}

// equalLower reports whether the lower-case name equals key lower-cased.
func equalLower(name string, key []byte) bool {
	if len(name) != len(key) {
		return false
	}
	for i := 0; i < len(key); i++ {
		c := key[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if name[i] != c {
			return false
		}
	}
	return true
}

// lowerString returns b as a lower-case string; a string already in lower case is returned
// as it is, without a copy.
func lowerString[T string | []byte](b T) string {
	for i := 0; i < len(b); i++ {
		if c := b[i]; 'A' <= c && c <= 'Z' {
			out := []byte(string(b))
			for i, c := range out {
				if 'A' <= c && c <= 'Z' {
					out[i] = c + 'a' - 'A'
				}
			}
			return string(out)
		}
	}
	return string(b)
}

// copyHeaders copies h into dst (reusing its storage), lower-casing names.
func copyHeaders(dst, h Headers) Headers {
	if cap(dst) < len(h)+4 {
		dst = make(Headers, 0, len(h)+8) // room for the filter's additions
	}
	dst = dst[:0]
	for _, kv := range h {
		dst = append(dst, [2]string{lowerString(kv[0]), kv[1]})
	}
	return dst
}

// Header map types of the proxy-wasm ABI.
const (
	mapRequestHeaders   = 0
	mapRequestTrailers  = 1
	mapResponseHeaders  = 2
	mapResponseTrailers = 3
	maxMapType          = 7 // http-call response trailers
)

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
		if st.req.state != halfHeld {
			return nil, StatusBadArgument
		}
		return &st.req.headers, StatusOK
	case mapResponseHeaders:
		if st.resp.state != halfHeld {
			return nil, StatusBadArgument
		}
		return &st.resp.headers, StatusOK
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
		if st.req.seen() {
			return &st.req.headers, StatusOK
		}
	case mapResponseHeaders:
		if st.resp.seen() {
			return &st.resp.headers, StatusOK
		}
	}
	return nil, StatusOK
}

// hostGetHeaderMapPairs never fails on a missing map: Envoy serializes it as empty, and an
// empty map is returned as pointer 0, length 0.
func hostGetHeaderMapPairs(vm *VM, s []uint64) Status {
	typ := u32(s, 0)
	if typ > maxMapType {
		return StatusBadArgument
	}
	h, _ := vm.constHeaderMap(typ)
	vm.scratch = vm.scratch[:0]
	if h != nil && len(*h) > 0 {
		vm.scratch = appendPairs(vm.scratch, *h)
	}
	return vm.writeOut(vm.scratch, u32(s, 1), u32(s, 2))
}

func hostSetHeaderMapPairs(vm *VM, s []uint64) Status {
	// Same arguments as a header removal: the map, then one buffer (the pairs).
	h, data, _, st := headerEdit(vm, s, false)
	if st == StatusOK {
		*h = decodePairs((*h)[:0], data)
	}
	return st
}

// hostGetHeaderMapValue returns the first value of a header. In proxy_on_log a map the access
// log lacks is NOT_FOUND; elsewhere an unavailable map is BAD_ARGUMENT.
func hostGetHeaderMapValue(vm *VM, s []uint64) Status {
	h, st := vm.constHeaderMap(u32(s, 0))
	if st != StatusOK {
		return st
	}
	key, ok := vm.readArg(s, 1)
	if !ok {
		return StatusInvalidMemoryAccess
	}
	if h == nil {
		return StatusNotFound
	}
	i := h.index(key)
	if i < 0 {
		return StatusNotFound
	}
	vm.scratch = append(vm.scratch[:0], (*h)[i][1]...)
	return vm.writeOut(vm.scratch, u32(s, 3), u32(s, 4))
}

// headerEdit decodes the arguments of the header-editing calls: (map type,
// key ptr, key size[, value ptr, value size]). A status other than OK is the call's.
func headerEdit(vm *VM, s []uint64, withValue bool) (h *Headers, key, val []byte, st Status) {
	h, st = vm.headerMap(u32(s, 0))
	if st != StatusOK {
		return nil, nil, nil, st
	}
	key, ok := vm.readArg(s, 1)
	if ok && withValue {
		val, ok = vm.readArg(s, 3)
	}
	if !ok {
		return nil, nil, nil, StatusInvalidMemoryAccess
	}
	return h, key, val, StatusOK
}

func hostAddHeaderMapValue(vm *VM, s []uint64) Status {
	h, key, val, st := headerEdit(vm, s, true)
	if st == StatusOK {
		*h = append(*h, [2]string{lowerString(key), string(val)})
	}
	return st
}

func hostReplaceHeaderMapValue(vm *VM, s []uint64) Status {
	h, key, val, st := headerEdit(vm, s, true)
	if st == StatusOK {
		h.set(key, string(val))
	}
	return st
}

func hostRemoveHeaderMapValue(vm *VM, s []uint64) Status {
	h, key, _, st := headerEdit(vm, s, false)
	if st == StatusOK {
		h.remove(key)
	}
	return st
}

// hostGetHeaderMapSize returns the map's byte size (keys plus values), as Envoy does.
func hostGetHeaderMapSize(vm *VM, s []uint64) Status {
	h, st := vm.headerMap(u32(s, 0))
	if st != StatusOK {
		return st
	}
	n := 0
	for _, kv := range *h {
		n += len(kv[0]) + len(kv[1])
	}
	return memStatus(vm.mem.WriteUint32Le(u32(s, 1), uint32(n)))
}
