package wasmhost

import (
	"strconv"

	"github.com/tokengate/tokengate/internal/proxywasm"
)

// Status is a proxy-wasm WasmResult as returned by host functions. It is the
// guest layer's type, so the numbers of the ABI are written down once.
type Status = proxywasm.Status

// The WasmResult values of proxy-wasm ABI 0.2.1.
const (
	StatusOK                   = proxywasm.StatusOK
	StatusNotFound             = proxywasm.StatusNotFound
	StatusBadArgument          = proxywasm.StatusBadArgument
	StatusSerializationFailure = proxywasm.StatusSerializationFailure
	StatusParseFailure         = proxywasm.StatusParseFailure
	StatusInvalidMemoryAccess  = proxywasm.StatusInvalidMemoryAccess
	StatusEmpty                = proxywasm.StatusEmpty
	StatusCASMismatch          = proxywasm.StatusCASMismatch
	StatusInternalFailure      = proxywasm.StatusInternalFailure
	StatusUnimplemented        = proxywasm.StatusUnimplemented
)

// LogLevel is a proxy-wasm log level, from LogTrace (0) to LogCritical (5).
type LogLevel int

// Log levels of proxy_log.
const (
	LogTrace LogLevel = iota
	LogDebug
	LogInfo
	LogWarn
	LogError
	LogCritical
)

func (l LogLevel) String() string {
	switch l {
	case LogTrace:
		return "trace"
	case LogDebug:
		return "debug"
	case LogInfo:
		return "info"
	case LogWarn:
		return "warn"
	case LogError:
		return "error"
	case LogCritical:
		return "critical"
	}
	return "LogLevel(" + strconv.Itoa(int(l)) + ")"
}

// FailurePolicy is Envoy's failure_policy for a plugin whose VM has failed (trapped).
// The zero value is FailClosed, Envoy's default.
type FailurePolicy int

const (
	// FailClosed answers every request on a failed VM with a 503 local reply.
	FailClosed FailurePolicy = iota
	// FailOpen leaves the filter out: requests on a failed VM pass untouched.
	FailOpen
	// FailReload starts a fresh VM (full start sequence) once a jittered back-off has
	// elapsed on the plugin's Clock; requests get 503 until then.
	FailReload
)

func (p FailurePolicy) String() string {
	switch p {
	case FailClosed:
		return "FAIL_CLOSED"
	case FailOpen:
		return "FAIL_OPEN"
	case FailReload:
		return "FAIL_RELOAD"
	}
	return "FailurePolicy(" + strconv.Itoa(int(p)) + ")"
}

// Action is what a stream callback returned: Continue (0) or Pause / StopIteration (1).
// Values above 1 (Envoy's StopAllIteration variants) are passed through and treated as Pause.
type Action int

// Filter actions.
const (
	Continue Action = 0
	Pause    Action = 1
)

// Header map types of the proxy-wasm ABI.
const (
	mapRequestHeaders   = 0
	mapRequestTrailers  = 1
	mapResponseHeaders  = 2
	mapResponseTrailers = 3
	maxMapType          = 7 // http-call response trailers
)

// Buffer types of the proxy-wasm ABI.
const (
	bufRequestBody  = 0
	bufResponseBody = 1
	bufVMConfig     = 6
	bufPluginConfig = 7
)

// Metric types of the proxy-wasm ABI.
const (
	metricCounter   = 0
	metricGauge     = 1
	metricHistogram = 2
)

const (
	rootContextID    = 1       // the root context of every VM; streams count from 2
	maxPairsBytes    = 1 << 20 // cpp-host's limit on a serialized header map
	maxPairsCount    = 1024    // cpp-host's limit on the pairs of a header map
	memoryLimitPages = 16384   // 1 GiB of linear memory, V8's cap
)
