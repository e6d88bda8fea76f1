package wasmhost

import (
	"testing"

	"github.com/tokengate/tokengate/internal/abivectors"
)

// TestStatusNumbers: every WasmResult of the ABI, by name, has the number the vectors give.
func TestStatusNumbers(t *testing.T) {
	want := abivectors.Must(t).Status
	got := map[string]uint32{}
	for s := StatusOK; s <= StatusUnimplemented; s++ {
		got[s.String()] = uint32(s)
	}
	for name, n := range want {
		if g, ok := got[name]; !ok || g != n {
			t.Errorf("%s: host has %d (present %v), ABI says %d", name, g, ok, n)
		}
	}
	if len(got) != len(want) {
		t.Errorf("host names %d statuses, the ABI %d", len(got), len(want))
	}
	if s := Status(13).String(); s != "Status(13)" {
		t.Errorf("unknown status prints %q", s)
	}
}
