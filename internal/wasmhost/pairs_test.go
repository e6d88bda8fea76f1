package wasmhost

import (
	"encoding/binary"
	"testing"
)

func TestHeaderPairsFormat(t *testing.T) {
	h := Headers{{":path", "/a"}, {"k", ""}}
	b := EncodePairs(h)
	want := "\x02\x00\x00\x00" + "\x05\x00\x00\x00\x02\x00\x00\x00" + "\x01\x00\x00\x00\x00\x00\x00\x00" +
		":path\x00/a\x00k\x00\x00"
	if string(b) != want {
		t.Fatalf("EncodePairs = %q, want %q", b, want)
	}
	if got := DecodePairs(b); len(got) != 2 || got[0] != h[0] || got[1] != h[1] {
		t.Fatalf("DecodePairs = %q", got)
	}
	bad := [][]byte{
		nil,
		{1, 0, 0},
		{1, 0, 0, 0, 5, 0, 0, 0}, // sizes truncated
		{1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 'a', 'b', 'c', 0},                   // missing NUL after key
		binary.LittleEndian.AppendUint32(nil, maxPairsCount+1),                   // too many pairs
		append(EncodePairs(h), make([]byte, maxPairsBytes)...)[:maxPairsBytes+1], // oversized
	}
	for i, b := range bad {
		if got := DecodePairs(b); len(got) != 0 {
			t.Errorf("case %d: malformed input decoded to %q, want empty", i, got)
		}
	}
}
