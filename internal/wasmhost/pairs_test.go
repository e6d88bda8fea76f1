package wasmhost

import (
	"slices"
	"strings"
	"testing"

	"github.com/tokengate/tokengate/internal/abivectors"
)

// TestPairsVectors: the host's codec against bytes written from cpp-host's format
// (internal/abivectors), not against the guest's codec.
func TestPairsVectors(t *testing.T) {
	for _, v := range abivectors.Must(t).Pairs {
		t.Run(v.Name, func(t *testing.T) {
			b := v.Bytes
			got := decodePairs(Headers{{"stale", "entry"}}, b)
			if v.Malformed {
				if len(got) != 0 {
					t.Fatalf("malformed bytes decoded to %q, want no pairs (as cpp-host)", got)
				}
				return
			}
			if !slices.Equal(got, Headers(v.Pairs)) {
				t.Fatalf("decoded %q, want %q", got, v.Pairs)
			}
			if enc := appendPairs([]byte("prefix"), Headers(v.Pairs)); string(enc) != "prefix"+string(b) {
				t.Fatalf("encoded % x, want prefix then % x", enc, b)
			}
		})
	}
}

// TestPairsLimits: cpp-host refuses more than 1024 pairs or more than 1 MiB from a guest;
// exactly at the limits is accepted.
func TestPairsLimits(t *testing.T) {
	many := func(n int) Headers {
		h := make(Headers, n)
		for i := range h {
			h[i] = [2]string{"k", "v"}
		}
		return h
	}
	if got := decodePairs(nil, appendPairs(nil, many(maxPairsCount))); len(got) != maxPairsCount {
		t.Errorf("%d pairs decoded to %d", maxPairsCount, len(got))
	}
	if got := decodePairs(nil, appendPairs(nil, many(maxPairsCount+1))); len(got) != 0 {
		t.Errorf("%d pairs decoded to %d, want none", maxPairsCount+1, len(got))
	}
	// One pair whose value fills the buffer to exactly maxPairsBytes, then one byte more.
	overhead := len(appendPairs(nil, Headers{{"k", ""}}))
	at := appendPairs(nil, Headers{{"k", strings.Repeat("v", maxPairsBytes-overhead)}})
	if len(at) != maxPairsBytes {
		t.Fatalf("test bug: %d bytes", len(at))
	}
	if got := decodePairs(nil, at); len(got) != 1 {
		t.Errorf("a map of exactly %d bytes decoded to %d pairs, want 1", maxPairsBytes, len(got))
	}
	over := appendPairs(nil, Headers{{"k", strings.Repeat("v", maxPairsBytes-overhead+1)}})
	if got := decodePairs(nil, over); len(got) != 0 {
		t.Errorf("a map of %d bytes decoded to %d pairs, want none", len(over), len(got))
	}
}

// TestPairsNamesLowerCased: Envoy's header maps store names in lower case, whatever the
// guest sent.
func TestPairsNamesLowerCased(t *testing.T) {
	got := decodePairs(nil, appendPairs(nil, Headers{{"X-Api-KEY", "Value"}}))
	if len(got) != 1 || got[0] != [2]string{"x-api-key", "Value"} {
		t.Fatalf("decoded %q", got)
	}
}
