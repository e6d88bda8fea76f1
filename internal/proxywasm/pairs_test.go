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

func TestLookup(t *testing.T) {
	p, err := CheckPairs(AppendPairs(nil, [][2]string{{":path", "/a"}, {"x-api-key", ""}, {"x-api-key", "second"}, {"k", "v"}}))
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name, want string
		ok         bool
	}{{":path", "/a", true}, {"x-api-key", "", true}, {"k", "v", true}, {"missing", "", false}, {"", "", false}} {
		v, ok := p.Lookup(tt.name)
		if ok != tt.ok || string(v) != tt.want {
			t.Errorf("Lookup(%q) = %q %v, want %q %v", tt.name, v, ok, tt.want, tt.ok)
		}
	}
	if allocs := testing.AllocsPerRun(100, func() { p.Lookup("k") }); allocs != 0 {
		t.Errorf("Lookup allocates %v times", allocs)
	}
	var zero Pairs
	if v, ok := zero.Lookup("k"); ok || v != nil || zero.Len() != 0 {
		t.Errorf("the zero Pairs holds %q", v)
	}
}

// FuzzParsePairs holds the two readers of the format to one answer: bytes
// CheckPairs accepts are exactly those ParsePairs decodes, they re-encode to
// themselves, and Lookup answers, for every name present, the value of its
// first pair, and for a name absent, nothing.
func FuzzParsePairs(f *testing.F) {
	f.Add(AppendPairs(nil, [][2]string{{"a", "b"}, {"retry-after", "1"}}), "a")
	f.Add(AppendPairs(nil, [][2]string{{"a", "1"}, {"a", "2"}, {"", ""}}), "")
	f.Add([]byte{1, 0, 0, 0, 255, 255, 255, 255, 0, 0, 0, 0}, "a")
	f.Add([]byte{1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 'a', 'x', 'b', 0}, "a") // no NUL after the name
	f.Fuzz(func(t *testing.T, b []byte, absent string) {
		pairs, perr := ParsePairs(b)
		p, cerr := CheckPairs(b)
		if (perr == nil) != (cerr == nil) {
			t.Fatalf("ParsePairs err %v, CheckPairs err %v", perr, cerr)
		}
		if cerr != nil {
			if p.Len() != 0 {
				t.Fatal("rejected bytes hold pairs")
			}
			return
		}
		if p.Len() != len(pairs) {
			t.Fatalf("Len %d, ParsePairs %d pairs", p.Len(), len(pairs))
		}
		first := map[string]string{}
		for i := len(pairs) - 1; i >= 0; i-- {
			first[pairs[i][0]] = pairs[i][1]
		}
		for name, want := range first {
			if v, ok := p.Lookup(name); !ok || string(v) != want {
				t.Fatalf("Lookup(%q) = %q %v, want %q", name, v, ok, want)
			}
		}
		if _, present := first[absent]; !present {
			if v, ok := p.Lookup(absent); ok {
				t.Fatalf("Lookup(%q) = %q for a name not there", absent, v)
			}
		}
		if again := AppendPairs(nil, pairs); string(again) != string(b) {
			t.Fatalf("accepted bytes do not re-encode identically")
		}
	})
}
