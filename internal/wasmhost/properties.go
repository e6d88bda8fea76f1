package wasmhost

import (
	"bytes"
	"encoding/binary"
	"net"
	"strconv"
	"strings"
)

// Property paths are their parts joined by NUL bytes ("request\x00path"); a dotted single
// part such as "request.path" is NOT_FOUND, as in Envoy.
const (
	propRequestHeadersPrefix  = "request\x00headers\x00"
	propResponseHeadersPrefix = "response\x00headers\x00"
)

func hostGetProperty(vm *VM, s []uint64) Status {
	path, ok := vm.readArg(s, 0)
	if !ok {
		return StatusInvalidMemoryAccess
	}
	val, st := vm.property(path)
	if st != StatusOK {
		return st
	}
	vm.scratch = val
	return vm.writeOut(val, u32(s, 2), u32(s, 3))
}

func hostSetProperty(vm *VM, s []uint64) Status {
	path, ok1 := vm.readArg(s, 0)
	val, ok2 := vm.readArg(s, 2)
	if !ok1 || !ok2 {
		return StatusInvalidMemoryAccess
	}
	props := &vm.rootProps
	if st := vm.stream(); st != nil {
		props = &st.props
	}
	if *props == nil {
		*props = make(map[string][]byte)
	}
	(*props)[string(path)] = append([]byte(nil), val...)
	return StatusOK
}

// property returns the value of a property path, built in vm.scratch.
func (vm *VM) property(path []byte) ([]byte, Status) {
	b := vm.scratch[:0]
	st := vm.stream()
	if st != nil && st.props != nil {
		if v, ok := st.props[string(path)]; ok {
			return append(b, v...), StatusOK
		}
	}
	if v, ok := vm.rootProps[string(path)]; ok {
		return append(b, v...), StatusOK
	}
	cfg := &vm.p.cfg
	switch string(path) {
	case "plugin_name":
		return append(b, cfg.Name...), StatusOK
	case "plugin_root_id":
		return append(b, cfg.RootID...), StatusOK
	case "plugin_vm_id":
		return append(b, cfg.VMID...), StatusOK
	case "xds\x00node\x00id":
		if cfg.NodeID == "" {
			return b, StatusNotFound
		}
		return append(b, cfg.NodeID...), StatusOK
	}
	if st == nil {
		return b, StatusNotFound // request.*, source.*, ... have no meaning in a root context
	}
	str := func(v string, ok bool) ([]byte, Status) {
		if !ok {
			return b, StatusNotFound
		}
		return append(b, v...), StatusOK
	}
	u64 := func(v uint64) ([]byte, Status) { return binary.LittleEndian.AppendUint64(b, v), StatusOK }
	switch string(path) {
	case "request\x00path":
		return str(st.req.headers.Get(":path"))
	case "request\x00url_path":
		p, ok := st.req.headers.Get(":path")
		if i := strings.IndexByte(p, '?'); i >= 0 {
			p = p[:i]
		}
		return str(p, ok)
	case "request\x00host":
		return str(st.req.headers.Get(":authority"))
	case "request\x00method":
		return str(st.req.headers.Get(":method"))
	case "request\x00scheme":
		return str(st.req.headers.Get(":scheme"))
	case "request\x00id":
		return str(st.req.headers.Get("x-request-id"))
	case "request\x00useragent":
		return str(st.req.headers.Get("user-agent"))
	case "request\x00referer":
		return str(st.req.headers.Get("referer"))
	case "request\x00protocol":
		p := st.info.Protocol
		if p == "" {
			p = "HTTP/1.1"
		}
		return str(p, true)
	case "request\x00time":
		return u64(uint64(st.startTime.UnixNano()))
	case "request\x00headers":
		return appendPairs(b, st.req.headers), StatusOK
	case "response\x00code":
		if !st.resp.seen() {
			return b, StatusNotFound
		}
		return u64(uint64(st.respCode))
	case "response\x00code_details":
		if !st.resp.seen() {
			return b, StatusNotFound
		}
		if st.reply != nil {
			return str(st.reply.Details, true)
		}
		return str("via_upstream", true)
	case "response\x00headers":
		if !st.resp.seen() {
			return b, StatusNotFound
		}
		return appendPairs(b, st.resp.headers), StatusOK
	case "source\x00address":
		return str(st.info.SourceAddress, st.info.SourceAddress != "")
	case "source\x00port":
		return port(b, st.info.SourceAddress)
	case "destination\x00address":
		return str(st.info.DestinationAddress, st.info.DestinationAddress != "")
	case "destination\x00port":
		return port(b, st.info.DestinationAddress)
	case "connection\x00id":
		return u64(st.info.ConnectionID)
	case "connection\x00mtls":
		return append(b, 0), StatusOK
	case "xds\x00cluster_name":
		return str(st.info.ClusterName, true)
	case "xds\x00route_name":
		return str(st.info.RouteName, true)
	}
	if bytes.HasPrefix(path, []byte(propRequestHeadersPrefix)) {
		if i := st.req.headers.index(path[len(propRequestHeadersPrefix):]); i >= 0 {
			return append(b, st.req.headers[i][1]...), StatusOK
		}
		return b, StatusNotFound
	}
	if bytes.HasPrefix(path, []byte(propResponseHeadersPrefix)) && st.resp.seen() {
		if i := st.resp.headers.index(path[len(propResponseHeadersPrefix):]); i >= 0 {
			return append(b, st.resp.headers[i][1]...), StatusOK
		}
	}
	return b, StatusNotFound
}

// port returns the port of an "ip:port" address as an 8-byte little-endian integer.
func port(b []byte, addr string) ([]byte, Status) {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return b, StatusNotFound
	}
	n, err := strconv.ParseUint(p, 10, 16)
	if err != nil {
		return b, StatusNotFound
	}
	return binary.LittleEndian.AppendUint64(b, n), StatusOK
}
