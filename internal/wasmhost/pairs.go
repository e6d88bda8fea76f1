package wasmhost

import (
	"github.com/tokengate/tokengate/internal/proxywasm"
)

const (
	maxPairsBytes = 1 << 20 // cpp-host's limit on a serialized header map
	maxPairsCount = 1024    // cpp-host's limit on the pairs of a header map
)

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

// appendPairs appends h to dst in the proxy-wasm pairs format.
func appendPairs(dst []byte, h Headers) []byte { return proxywasm.AppendPairs(dst, h) }
