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

func FuzzParsePairs(f *testing.F) {
	f.Add(AppendPairs(nil, [][2]string{{"a", "b"}, {"retry-after", "1"}}))
	f.Add([]byte{1, 0, 0, 0, 255, 255, 255, 255, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		pairs, err := ParsePairs(b)
		if err != nil {
			return
		}
		if again := AppendPairs(nil, pairs); string(again) != string(b) {
			t.Fatalf("accepted bytes do not re-encode identically")
		}
	})
}
