//go:build wasip1

package proxywasm

import "unsafe"

// The arena holds every value the host writes into the guest during one
// top-level callback. It is a package-level slice, so it is always reachable
// from a GC root (rule 1), and it is reset when the next callback starts, so
// fetching a value costs no Go allocation. Values larger than what is left
// in the arena get their own slice, kept in overflow until the reset.
const arenaSize = 64 << 10

var (
	arena     = make([]byte, arenaSize)
	arenaUsed uint32
	overflow  [][]byte

	// Out-parameter slots shared by all host calls: the VM is single
	// threaded and no host call nests inside another. Package-level, so
	// passing their address does not make a local escape to the heap.
	retPtr, retSize, retCAS, retID uint32
	retTime                        uint64
)

func addressOf(b []byte) uint32 {
	return uint32(uintptr(unsafe.Pointer(unsafe.SliceData(b))))
}

// allocate serves proxy_on_memory_allocate. It must not call the host: only
// proxy_log, fd_write and clock_time_get are allowed while it runs.
func allocate(size uint32) uint32 {
	start := (arenaUsed + 7) &^ 7
	if end := uint64(start) + uint64(size); end <= arenaSize && size > 0 {
		arenaUsed = uint32(end)
		return addressOf(arena[start:])
	}
	b := make([]byte, max(size, 1))
	overflow = append(overflow, b)
	return addressOf(b)
}

// resetArena starts a new top-level callback: values of the previous one are
// dead.
func resetArena() {
	arenaUsed = 0
	for i := range overflow {
		overflow[i] = nil
	}
	overflow = overflow[:0]
}

// hostBytes returns the size bytes the host wrote at ptr, which must be an
// address allocate handed out during this callback; nil for any other.
func hostBytes(ptr, size uint32) []byte {
	if ptr == 0 || size == 0 {
		return nil
	}
	base := addressOf(arena)
	if ptr >= base && uint64(ptr-base)+uint64(size) <= arenaSize {
		off := ptr - base
		return arena[off : off+size : off+size]
	}
	for _, b := range overflow {
		if addressOf(b) == ptr && uint32(len(b)) >= size {
			return b[:size:size]
		}
	}
	return nil
}

func strPtr(s string) unsafe.Pointer   { return unsafe.Pointer(unsafe.StringData(s)) }
func bytesPtr(b []byte) unsafe.Pointer { return unsafe.Pointer(unsafe.SliceData(b)) }

// Log writes msg to the host's log at level.
func Log(level LogLevel, msg string) {
	proxyLog(uint32(level), strPtr(msg), uint32(len(msg)))
}

// Now returns the host's wall-clock time in nanoseconds since the Unix epoch.
// Envoy always answers; should a host fail the call, Now returns the last time
// it read (zero before the first): time stands still, it never jumps ahead.
func Now() int64 {
	proxyGetCurrentTimeNanoseconds(&retTime)
	return int64(retTime)
}

// GetBuffer returns up to maxSize bytes of a host buffer from start. The
// bytes are valid until the current callback returns.
func GetBuffer(t BufferType, start, maxSize int) ([]byte, Status) {
	st := Status(proxyGetBufferBytes(uint32(t), uint32(start), uint32(maxSize), &retPtr, &retSize))
	if st != StatusOK {
		return nil, st
	}
	return hostBytes(retPtr, retSize), StatusOK
}

// GetHeader returns the first value of header name (lower case) in map m,
// valid until the current callback returns.
func GetHeader(m MapType, name string) ([]byte, Status) {
	st := Status(proxyGetHeaderMapValue(uint32(m), strPtr(name), uint32(len(name)), &retPtr, &retSize))
	if st != StatusOK {
		return nil, st
	}
	return hostBytes(retPtr, retSize), StatusOK
}

// GetHeaderPairs returns the whole header map m in the header-pairs format
// (see CheckPairs), valid until the current callback returns: one host call
// instead of one per header.
func GetHeaderPairs(m MapType) ([]byte, Status) {
	st := Status(proxyGetHeaderMapPairs(uint32(m), &retPtr, &retSize))
	if st != StatusOK {
		return nil, st
	}
	return hostBytes(retPtr, retSize), StatusOK
}

// AddHeader appends a header to map m.
func AddHeader(m MapType, name string, value []byte) Status {
	return Status(proxyAddHeaderMapValue(uint32(m), strPtr(name), uint32(len(name)),
		bytesPtr(value), uint32(len(value))))
}

// ReplaceHeader sets header name in map m to value, replacing any others.
func ReplaceHeader(m MapType, name string, value []byte) Status {
	return Status(proxyReplaceHeaderMapValue(uint32(m), strPtr(name), uint32(len(name)),
		bytesPtr(value), uint32(len(value))))
}

// GetProperty returns a property; path is its parts joined by NUL bytes,
// such as "source\x00address". Valid until the current callback returns.
func GetProperty(path string) ([]byte, Status) {
	st := Status(proxyGetProperty(strPtr(path), uint32(len(path)), &retPtr, &retSize))
	if st != StatusOK {
		return nil, st
	}
	return hostBytes(retPtr, retSize), StatusOK
}

// GetSharedData returns the value and cas of a shared-data key, valid until
// the current callback returns.
func GetSharedData(key []byte) ([]byte, uint32, Status) {
	st := Status(proxyGetSharedData(bytesPtr(key), uint32(len(key)), &retPtr, &retSize, &retCAS))
	if st != StatusOK {
		return nil, 0, st
	}
	return hostBytes(retPtr, retSize), retCAS, StatusOK
}

// SetSharedData stores value under key if cas matches (see the limiter for
// the exact rules Envoy applies).
func SetSharedData(key, value []byte, cas uint32) Status {
	return Status(proxySetSharedData(bytesPtr(key), uint32(len(key)), bytesPtr(value), uint32(len(value)), cas))
}

// SendLocalResponse asks the host to answer the current stream itself once
// the callback returns. headers is in the header-pairs format (AppendPairs).
func SendLocalResponse(status int, details string, body, headers []byte) Status {
	return Status(proxySendLocalResponse(uint32(status), strPtr(details), uint32(len(details)),
		bytesPtr(body), uint32(len(body)), bytesPtr(headers), uint32(len(headers)), -1))
}

// DefineMetric defines (or finds) a metric and returns its id.
func DefineMetric(t MetricType, name string) (uint32, Status) {
	st := Status(proxyDefineMetric(uint32(t), strPtr(name), uint32(len(name)), &retID))
	return retID, st
}

// IncrementMetric adds delta to a metric.
func IncrementMetric(id uint32, delta int64) Status {
	return Status(proxyIncrementMetric(id, delta))
}

// GrpcCall starts the unary call method of service serviceName with
// message, on the cluster described by service (a serialized
// envoy.config.core.v3.GrpcService, see AppendGrpcService), without initial
// metadata. Envoy issues the call on the root context, whatever context
// calls: the answer comes to Handler.OnGrpcReceive or OnGrpcClose of the
// root, and the call outlives the stream that made it unless cancelled.
// On a status other than OK no token is returned, but Envoy may still
// deliver an OnGrpcClose for the token it had drawn (an unknown cluster):
// ignore closes of tokens you do not know.
func GrpcCall(service []byte, serviceName, method string, message []byte, timeoutMillis uint32) (uint32, Status) {
	st := Status(proxyGrpcCall(bytesPtr(service), uint32(len(service)), strPtr(serviceName), uint32(len(serviceName)),
		strPtr(method), uint32(len(method)), nil, 0, bytesPtr(message), uint32(len(message)), timeoutMillis, &retID))
	if st != StatusOK {
		return 0, st
	}
	return retID, StatusOK
}

// GrpcCancel cancels the call token: no callback will come for it.
func GrpcCancel(token uint32) Status { return Status(proxyGrpcCancel(token)) }

// ContinueStream resumes a paused stream direction of the effective
// context. Envoy resumes it after the current callback returns.
func ContinueStream(t StreamType) Status { return Status(proxyContinueStream(uint32(t))) }

// SetEffectiveContext makes ctx the context later host calls of this
// callback act on (continue, local reply, headers): needed in the root's
// gRPC callbacks to reach the stream that waits. BAD_ARGUMENT when ctx is
// gone. The host forgets it when the callback returns.
func SetEffectiveContext(ctx uint32) Status { return Status(proxySetEffectiveContext(ctx)) }
