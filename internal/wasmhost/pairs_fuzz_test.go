package wasmhost

import (
	"bytes"
	"slices"
	"strings"
	"testing"
)

// FuzzDecodePairs: any input decodes without panicking to at most maxPairsCount pairs with
// ASCII-lower-cased keys; what decoded re-encodes to bytes that decode to the same map; and
// bytes that decode to pairs are exactly the encoding of those pairs (the decoder accepts
// nothing loose: no trailing bytes, no missing NUL), names' case aside.
func FuzzDecodePairs(f *testing.F) {
	f.Add(appendPairs(nil, Headers{{":path", "/a"}, {"x", "y"}}))
	f.Add(appendPairs(nil, nil))
	f.Add([]byte{1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 'a', 0, 'b', 0})
	f.Add([]byte{255, 255, 255, 255})
	f.Add([]byte{1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 'A', 0, 'b', 0, 0}) // a trailing byte
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
		if len(h) == 0 {
			return
		}
		enc := appendPairs(nil, h)
		if again := decodePairs(nil, enc); !slices.Equal(again, h) {
			t.Fatalf("round trip: %q -> %q", h, again)
		}
		if !bytes.Equal(enc, lowerNames(data, h)) {
			t.Fatalf("accepted % x, which is not the encoding % x of what it decoded to", data, enc)
		}
	})
}

// lowerNames returns data with the names of its pairs lower-cased; h is what data decoded to.
func lowerNames(data []byte, h Headers) []byte {
	out := append([]byte(nil), data...)
	pos := 4 + 8*len(h)
	for _, kv := range h {
		copy(out[pos:], kv[0])
		pos += len(kv[0]) + 1 + len(kv[1]) + 1
	}
	return out
}
