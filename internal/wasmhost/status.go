package wasmhost

import "strconv"

// Status is a proxy-wasm WasmResult: what most host functions return to the guest. The host
// writes the ABI's numbers down itself (checked against internal/abivectors),
// never borrowing the guest's.
type Status uint32

// The WasmResult values of the proxy-wasm ABI.
const (
	StatusOK                   Status = 0
	StatusNotFound             Status = 1
	StatusBadArgument          Status = 2
	StatusSerializationFailure Status = 3
	StatusParseFailure         Status = 4
	StatusBadExpression        Status = 5
	StatusInvalidMemoryAccess  Status = 6
	StatusEmpty                Status = 7
	StatusCASMismatch          Status = 8
	StatusResultMismatch       Status = 9
	StatusInternalFailure      Status = 10
	StatusBrokenConnection     Status = 11
	StatusUnimplemented        Status = 12
)

var statusNames = [...]string{
	StatusOK:                   "OK",
	StatusNotFound:             "NOT_FOUND",
	StatusBadArgument:          "BAD_ARGUMENT",
	StatusSerializationFailure: "SERIALIZATION_FAILURE",
	StatusParseFailure:         "PARSE_FAILURE",
	StatusBadExpression:        "BAD_EXPRESSION",
	StatusInvalidMemoryAccess:  "INVALID_MEMORY_ACCESS",
	StatusEmpty:                "EMPTY",
	StatusCASMismatch:          "CAS_MISMATCH",
	StatusResultMismatch:       "RESULT_MISMATCH",
	StatusInternalFailure:      "INTERNAL_FAILURE",
	StatusBrokenConnection:     "BROKEN_CONNECTION",
	StatusUnimplemented:        "UNIMPLEMENTED",
}

// String returns the ABI's name of the status ("CAS_MISMATCH"), or "Status(n)".
func (s Status) String() string {
	if int(s) < len(statusNames) {
		return statusNames[s]
	}
	return "Status(" + strconv.FormatUint(uint64(s), 10) + ")"
}
