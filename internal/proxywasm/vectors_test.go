package proxywasm

import (
	"reflect"
	"strings"
	"testing"

	"github.com/tokengate/tokengate/internal/abivectors"
)

// The guest's codec and status numbers against the byte vectors the test host is checked
// against too (internal/abivectors, written from proxy-wasm-cpp-host's pairs format), so a
// codec bug cannot hide by being the same on both sides.

func TestPairsVectors(t *testing.T) {
	for _, v := range abivectors.Must(t).Pairs {
		t.Run(v.Name, func(t *testing.T) {
			b := v.Bytes
			got, err := ParsePairs(b)
			if v.Malformed {
				if err == nil {
					t.Fatalf("malformed bytes parsed to %q", got)
				}
				if _, err := CheckPairs(b); err == nil {
					t.Fatal("CheckPairs accepts malformed bytes")
				}
				return
			}
			if err != nil || len(got) != len(v.Pairs) || len(got) > 0 && !reflect.DeepEqual(got, v.Pairs) {
				t.Fatalf("ParsePairs = %q, %v; want %q", got, err, v.Pairs)
			}
			if enc := AppendPairs([]byte("prefix"), v.Pairs); string(enc) != "prefix"+string(b) {
				t.Fatalf("AppendPairs = % x, want prefix then % x", enc, b)
			}
			// Lookup answers the first value of each name.
			p, err := CheckPairs(b)
			if err != nil {
				t.Fatal(err)
			}
			first := map[string]string{}
			for i := len(v.Pairs) - 1; i >= 0; i-- {
				first[v.Pairs[i][0]] = v.Pairs[i][1]
			}
			for name, want := range first {
				if val, ok := p.Lookup(name); !ok || string(val) != want {
					t.Errorf("Lookup(%q) = %q, %v; want %q", name, val, ok, want)
				}
			}
		})
	}
}

// TestStatusVectors: each status the guest names has the ABI's number.
func TestStatusVectors(t *testing.T) {
	want := abivectors.Must(t).Status
	named := 0
	for n := uint32(0); n < 64; n++ {
		name := Status(n).String()
		if strings.HasPrefix(name, "Status(") {
			continue
		}
		named++
		if w, ok := want[name]; !ok || w != n {
			t.Errorf("guest's %s is %d; the ABI's is %d (known %v)", name, n, w, ok)
		}
	}
	if named == 0 {
		t.Fatal("no status named")
	}
}
