package proxywasm

import (
	"errors"
	"reflect"
	"testing"
)

func TestPairsRoundTrip(t *testing.T) {
	for _, pairs := range [][][2]string{
		{},
		{{"retry-after", "3"}},
		{{"ratelimit-policy", `"a";q=1;w=1`}, {"", ""}, {"x", "bytes\xff\x00inside"}},
	} {
		b := AppendPairs(nil, pairs)
		got, err := ParsePairs(b)
		if err != nil || !reflect.DeepEqual(got, pairs) {
			t.Fatalf("round trip of %q: %q, %v", pairs, got, err)
		}
	}
}

func TestParsePairsMalformed(t *testing.T) {
	good := AppendPairs(nil, [][2]string{{"a", "b"}})
	for name, b := range map[string][]byte{
		"empty":           nil,
		"count too large": {0xff, 0xff, 0xff, 0xff},
		"truncated":       good[:len(good)-1],
		"trailing bytes":  append(append([]byte{}, good...), 'x'),
		"missing NUL":     append(append([]byte{}, good[:len(good)-1]...), 'x'),
	} {
		if _, err := ParsePairs(b); !errors.Is(err, ErrMalformedPairs) {
			t.Errorf("%s: err = %v, want ErrMalformedPairs", name, err)
		}
	}
}

func TestLookupPair(t *testing.T) {
	b := AppendPairs(nil, [][2]string{{":path", "/a"}, {"x-api-key", ""}, {"x-api-key", "second"}, {"k", "v"}})
	for _, tt := range []struct {
		name, want string
		ok         bool
	}{{":path", "/a", true}, {"x-api-key", "", true}, {"k", "v", true}, {"missing", "", false}, {"", "", false}} {
		v, ok := LookupPair(b, tt.name)
		if ok != tt.ok || string(v) != tt.want {
			t.Errorf("LookupPair(%q) = %q %v, want %q %v", tt.name, v, ok, tt.want, tt.ok)
		}
	}
	if allocs := testing.AllocsPerRun(100, func() { LookupPair(b, "k") }); allocs != 0 {
		t.Errorf("LookupPair allocates %v times", allocs)
	}
}

func FuzzParsePairs(f *testing.F) {
	f.Add(AppendPairs(nil, [][2]string{{"a", "b"}, {"retry-after", "1"}}))
	f.Add([]byte{1, 0, 0, 0, 255, 255, 255, 255, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		pairs, err := ParsePairs(b)
		if err != nil {
			LookupPair(b, "a") // must not panic on malformed bytes either
			return
		}
		for _, p := range pairs {
			if v, ok := LookupPair(b, p[0]); !ok || p[0] == pairs[0][0] && string(v) != pairs[0][1] {
				t.Fatalf("LookupPair(%q) = %q %v", p[0], v, ok)
			}
		}
		if again := AppendPairs(nil, pairs); string(again) != string(b) {
			t.Fatalf("accepted bytes do not re-encode identically")
		}
	})
}
