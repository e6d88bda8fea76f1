// Package proxywasm is the guest side of the proxy-wasm ABI (0.2.0) for the
// standard Go toolchain (GOOS=wasip1 GOARCH=wasm, -buildmode=c-shared).
//
// It is deliberately small: host calls as plain functions, the exported
// callbacks forwarded to one Handler by context id, and an allocator for the
// values the host writes into guest memory. Three rules keep standard Go safe
// inside Envoy:
//
//  1. Memory the host writes through proxy_on_memory_allocate stays reachable
//     from a Go root until it has been consumed: values live in an arena that
//     is reset only when the next top-level callback starts. A value the
//     filter keeps beyond the callback that fetched it must be copied.
//  2. Out-parameters are 32-bit slots (uint32), never Go pointers or ints,
//     which are 64 bits wide on wasm while the ABI's are 32.
//  3. Nothing blocks: no goroutines, channels, sleeps or runtime.GC. A VM is
//     single-threaded and Envoy's WASI poll_oneoff may be missing.
//
// A panic inside a stream callback is recovered and logged at critical
// level, and the Handler decides the stream's fate (see Handler): in Envoy a
// trap kills the worker's VM. A fatal runtime error (out of memory, a
// corrupted heap) is not a panic. In a c-shared module Go treats it as
// GOTRACEBACK=crash: it prints its trace through fd_write, which Envoy logs,
// then executes wasm's unreachable instruction, so the VM traps and Envoy's
// failure policy answers; WASI proc_exit, which Envoy's stub only logs and
// returns from, is not what ends it. Nothing here calls os.Exit, the one
// path that would reach proc_exit and then carry on.
//
// The status codes, enums and the header-pairs codec build on every GOOS so
// they can be tested natively; the host calls need wasip1.
package proxywasm

import (
	"encoding/binary"
	"errors"
	"strconv"
)

// Status is the proxy-wasm WasmResult returned by host calls.
type Status uint32

const (
	StatusOK                   Status = 0
	StatusNotFound             Status = 1
	StatusBadArgument          Status = 2
	StatusSerializationFailure Status = 3
	StatusParseFailure         Status = 4
	StatusInvalidMemoryAccess  Status = 6
	StatusEmpty                Status = 7
	StatusCASMismatch          Status = 8
	StatusInternalFailure      Status = 10
	StatusUnimplemented        Status = 12
)

func (s Status) String() string {
	switch s {
	case StatusOK:
		return "OK"
	case StatusNotFound:
		return "NOT_FOUND"
	case StatusBadArgument:
		return "BAD_ARGUMENT"
	case StatusSerializationFailure:
		return "SERIALIZATION_FAILURE"
	case StatusParseFailure:
		return "PARSE_FAILURE"
	case StatusInvalidMemoryAccess:
		return "INVALID_MEMORY_ACCESS"
	case StatusEmpty:
		return "EMPTY"
	case StatusCASMismatch:
		return "CAS_MISMATCH"
	case StatusInternalFailure:
		return "INTERNAL_FAILURE"
	case StatusUnimplemented:
		return "UNIMPLEMENTED"
	}
	return "Status(" + strconv.FormatUint(uint64(s), 10) + ")"
}

// Action is what a stream callback tells the host to do next.
type Action uint32

const (
	ActionContinue Action = 0
	ActionPause    Action = 1
)

// MapType selects a header map.
type MapType uint32

const (
	MapRequestHeaders   MapType = 0
	MapRequestTrailers  MapType = 1
	MapResponseHeaders  MapType = 2
	MapResponseTrailers MapType = 3
)

// BufferType selects a buffer.
type BufferType uint32

const (
	BufferGrpcReceive         BufferType = 5 // the message of proxy_on_grpc_receive
	BufferVMConfiguration     BufferType = 6
	BufferPluginConfiguration BufferType = 7
)

// StreamType selects the direction proxy_continue_stream resumes.
type StreamType uint32

const (
	StreamRequest  StreamType = 0
	StreamResponse StreamType = 1
)

// GrpcStatus is the gRPC status code a call ends with (0 OK .. 16).
type GrpcStatus uint32

// LogLevel is a proxy-wasm log level.
type LogLevel uint32

const (
	LogTrace    LogLevel = 0
	LogDebug    LogLevel = 1
	LogInfo     LogLevel = 2
	LogWarn     LogLevel = 3
	LogError    LogLevel = 4
	LogCritical LogLevel = 5
)

// MetricType is a proxy-wasm metric type.
type MetricType uint32

const (
	MetricCounter   MetricType = 0
	MetricGauge     MetricType = 1
	MetricHistogram MetricType = 2
)

// Handler receives the callbacks of one VM, by context id. Only the
// callbacks tokengate needs are exported: the host skips the others
// (proxy_on_log, proxy_on_done, bodies, ticks), which saves two calls into
// the VM per request. Root contexts are created with parent 0, stream
// contexts with their root's id. A Handler is only ever called from the
// VM's single thread.
//
// A panic in OnRequestHeaders is recovered and logged, and OnRequestPanic
// says what the stream does then (OnGrpcPanic likewise for the gRPC
// callbacks); a panic in OnConfigure rejects the
// configuration; one in OnResponseHeaders is logged and the response goes
// on. A fatal runtime error cannot be recovered: it traps (see the package
// comment).
type Handler interface {
	OnContextCreate(id, parent uint32)
	OnVMStart(root uint32, vmConfigSize int) bool
	OnConfigure(root uint32, pluginConfigSize int) bool
	OnRequestHeaders(id uint32, headers int, endOfStream bool) Action
	OnRequestPanic(id uint32) Action
	OnResponseHeaders(id uint32, headers int, endOfStream bool) Action
	OnDelete(id uint32)
	// OnGrpcReceive delivers the answer of the unary call token, of size
	// bytes in BufferGrpcReceive (read it before SetEffectiveContext: the
	// buffer belongs to the root); no OnGrpcClose follows. OnGrpcClose ends
	// a call that failed, with its gRPC status. Both go to the root context
	// that made the call (Envoy issues gRPC calls on the root). A panic in
	// either is recovered and logged, and OnGrpcPanic, in the same callback,
	// ends the wait of whatever waited on call token.
	OnGrpcReceive(root, token uint32, size int)
	OnGrpcClose(root, token uint32, status GrpcStatus)
	OnGrpcPanic(root, token uint32)
}

// AppendPairs appends pairs to dst in the proxy-wasm header-pairs format:
// u32 count; count x (u32 name length, u32 value length); then each name and
// each value followed by a NUL byte. All integers are little endian.
func AppendPairs(dst []byte, pairs [][2]string) []byte {
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(pairs)))
	for _, p := range pairs {
		dst = binary.LittleEndian.AppendUint32(dst, uint32(len(p[0])))
		dst = binary.LittleEndian.AppendUint32(dst, uint32(len(p[1])))
	}
	for _, p := range pairs {
		dst = append(dst, p[0]...)
		dst = append(dst, 0)
		dst = append(dst, p[1]...)
		dst = append(dst, 0)
	}
	return dst
}

// ErrMalformedPairs reports header-pairs bytes that do not follow the format.
var ErrMalformedPairs = errors.New("proxywasm: malformed header pairs")

// Pairs is a header map in the header-pairs format, checked whole by
// CheckPairs: every size within the bytes, every name and value followed by
// a NUL byte, no byte left over. Lookups on it need no further checks. It
// aliases the checked bytes. The zero value holds no pairs.
type Pairs struct {
	sizes, data []byte
}

// CheckPairs checks b, bytes in the header-pairs format (see AppendPairs),
// and returns them as Pairs, or ErrMalformedPairs: the one decoder of the
// format, for lookups on the request path and for ParsePairs alike.
func CheckPairs(b []byte) (Pairs, error) {
	if len(b) < 4 {
		return Pairs{}, ErrMalformedPairs
	}
	n := uint64(binary.LittleEndian.Uint32(b))
	if n*8 > uint64(len(b)-4) {
		return Pairs{}, ErrMalformedPairs
	}
	sizes, data := b[4:4+8*n], b[4+8*n:]
	rest := data
	for i := uint64(0); i < n; i++ {
		k := uint64(binary.LittleEndian.Uint32(sizes[8*i:]))
		v := uint64(binary.LittleEndian.Uint32(sizes[8*i+4:]))
		if k+v+2 > uint64(len(rest)) || rest[k] != 0 || rest[k+1+v] != 0 {
			return Pairs{}, ErrMalformedPairs
		}
		rest = rest[k+v+2:]
	}
	if len(rest) != 0 {
		return Pairs{}, ErrMalformedPairs
	}
	return Pairs{sizes: sizes, data: data}, nil
}

// Len returns the number of pairs.
func (p Pairs) Len() int { return len(p.sizes) / 8 }

// Lookup returns the value of the first pair named name, without
// allocating.
func (p Pairs) Lookup(name string) ([]byte, bool) {
	data := p.data
	for i := 0; i+8 <= len(p.sizes); i += 8 {
		k := int(binary.LittleEndian.Uint32(p.sizes[i:]))
		v := int(binary.LittleEndian.Uint32(p.sizes[i+4:]))
		if k == len(name) && string(data[:k]) == name {
			return data[k+1 : k+1+v : k+1+v], true
		}
		data = data[k+v+2:]
	}
	return nil, false
}

// ParsePairs decodes the header-pairs format written by AppendPairs. The
// strings are copies; malformed input, trailing bytes included, gives
// ErrMalformedPairs.
func ParsePairs(b []byte) ([][2]string, error) {
	p, err := CheckPairs(b)
	if err != nil {
		return nil, err
	}
	pairs := make([][2]string, 0, p.Len())
	data := p.data
	for i := 0; i < len(p.sizes); i += 8 {
		k := int(binary.LittleEndian.Uint32(p.sizes[i:]))
		v := int(binary.LittleEndian.Uint32(p.sizes[i+4:]))
		pairs = append(pairs, [2]string{string(data[:k]), string(data[k+1 : k+1+v])})
		data = data[k+v+2:]
	}
	return pairs, nil
}
