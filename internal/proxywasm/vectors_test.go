package proxywasm

import (
	"encoding/hex"
	"encoding/json"
	"os"
	"reflect"
	"strings"
	"testing"
)

// The guest's codec and status numbers against the byte vectors the test host is checked
// against too (testdata/proxy-wasm/abi-vectors.json at the repository root, written from
// proxy-wasm-cpp-host's pairs format), so a codec bug cannot hide by being the same on both
// sides.

type abiVectors struct {
	About []string
	Pairs []struct {
		Name      string
		Hex       string
		Pairs     [][2]string
		Malformed bool
	}
	Status map[string]uint32
}

func readABIVectors(t *testing.T) abiVectors {
	t.Helper()
	f, err := os.Open("../../testdata/proxy-wasm/abi-vectors.json")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dec := json.NewDecoder(f)
	dec.DisallowUnknownFields()
	var v abiVectors
	if err := dec.Decode(&v); err != nil {
		t.Fatal(err)
	}
	if len(v.Pairs) == 0 || len(v.Status) == 0 {
		t.Fatal("abi-vectors.json holds no vectors")
	}
	return v
}

func TestPairsVectors(t *testing.T) {
	for _, v := range readABIVectors(t).Pairs {
		t.Run(v.Name, func(t *testing.T) {
			b, err := hex.DecodeString(strings.ReplaceAll(v.Hex, " ", ""))
			if err != nil {
				t.Fatal(err)
			}
			got, err := ParsePairs(b)
			if v.Malformed {
				if err == nil {
					t.Fatalf("malformed bytes parsed to %q", got)
				}
				return
			}
			if err != nil || len(got) != len(v.Pairs) || len(got) > 0 && !reflect.DeepEqual(got, v.Pairs) {
				t.Fatalf("ParsePairs = %q, %v; want %q", got, err, v.Pairs)
			}
			if enc := AppendPairs([]byte("prefix"), v.Pairs); string(enc) != "prefix"+string(b) {
				t.Fatalf("AppendPairs = % x, want prefix then % x", enc, b)
			}
			// LookupPair answers the first value of each name.
			first := map[string]string{}
			for i := len(v.Pairs) - 1; i >= 0; i-- {
				first[v.Pairs[i][0]] = v.Pairs[i][1]
			}
			for name, want := range first {
				if val, ok := LookupPair(b, name); !ok || string(val) != want {
					t.Errorf("LookupPair(%q) = %q, %v; want %q", name, val, ok, want)
				}
			}
		})
	}
}

// TestStatusVectors: each status the guest names has the ABI's number.
func TestStatusVectors(t *testing.T) {
	want := readABIVectors(t).Status
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
