package wasmhost

import (
	"strings"
	"testing"
)

// FuzzDecodePairs: any input decodes without panicking to at most maxPairsCount pairs with
// ASCII-lower-cased keys, and what decoded re-encodes to bytes that decode to the same map.
func FuzzDecodePairs(f *testing.F) {
	f.Add(appendPairs(nil, Headers{{":path", "/a"}, {"x", "y"}}))
	f.Add(appendPairs(nil, nil))
	f.Add([]byte{1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 'a', 0, 'b', 0})
	f.Add([]byte{255, 255, 255, 255})
	f.Fuzz(func(t *testing.T, data []byte) {
		h := decodePairs(nil, data)
		if len(h) > maxPairsCount {
			t.Fatalf("%d pairs", len(h))
		}
		for _, kv := range h {
			if strings.ContainsAny(kv[0], "ABCDEFGHIJKLMNOPQRSTUVWXYZ") {
				t.Fatalf("key %q not lower-cased", kv[0])
			}
		}
		again := decodePairs(nil, appendPairs(nil, h))
		if len(h) > 0 && !equalHeaders(again, h) {
			t.Fatalf("round trip: %q -> %q", h, again)
		}
	})
}
