// Package abivectors holds byte vectors of the proxy-wasm ABI, written by hand from
// proxy-wasm-cpp-host's formats, for the tests of both sides of the ABI: the guest
// (internal/proxywasm) and the test host (internal/wasmhost). Each side has its own codec and
// constants; both are checked against these bytes, never against each other, so a bug cannot
// hide by being the same on both sides. No codec lives here: only bytes and what they mean.
//
// The vectors are in vectors.json, embedded; its "about" lines describe the formats.
package abivectors

import (
	"bytes"
	_ "embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
)

//go:embed vectors.json
var vectorsJSON []byte

// PairsVector is one encoding of a header map in the pairs format.
type PairsVector struct {
	Name string
	// Bytes is the encoding.
	Bytes []byte
	// Pairs is what Bytes decodes to, and what must encode to exactly Bytes; nil when
	// Malformed.
	Pairs [][2]string
	// Malformed bytes are rejected by a strict decoder; cpp-host's decoder yields no pairs.
	Malformed bool
}

// Vectors is the content of vectors.json.
type Vectors struct {
	Pairs []PairsVector
	// Status maps the ABI's name of each WasmResult ("CAS_MISMATCH") to its number.
	Status map[string]uint32
}

// Load decodes the embedded vectors strictly: an unknown field, bad hex, a malformed vector
// with pairs or a valid one without, is an error.
func Load() (Vectors, error) {
	var file struct {
		About []string
		Pairs []struct {
			Name      string
			Hex       string
			Pairs     [][2]string
			Malformed bool
		}
		Status map[string]uint32
	}
	dec := json.NewDecoder(bytes.NewReader(vectorsJSON))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&file); err != nil {
		return Vectors{}, fmt.Errorf("abivectors: vectors.json: %w", err)
	}
	var errs []error
	v := Vectors{Status: file.Status}
	for i, p := range file.Pairs {
		b, err := hex.DecodeString(strings.ReplaceAll(p.Hex, " ", ""))
		if err != nil {
			errs = append(errs, fmt.Errorf("abivectors: pairs[%d] (%s).hex: %w", i, p.Name, err))
		}
		if p.Malformed == (p.Pairs != nil) {
			errs = append(errs, fmt.Errorf("abivectors: pairs[%d] (%s): give pairs, or malformed, not both", i, p.Name))
		}
		v.Pairs = append(v.Pairs, PairsVector{Name: p.Name, Bytes: b, Pairs: p.Pairs, Malformed: p.Malformed})
	}
	if len(v.Pairs) == 0 || len(v.Status) == 0 {
		errs = append(errs, errors.New("abivectors: vectors.json holds no vectors"))
	}
	return v, errors.Join(errs...)
}

// Must is Load for a test: a vectors file that does not load fails tb at once.
func Must(tb testing.TB) Vectors {
	tb.Helper()
	v, err := Load()
	if err != nil {
		tb.Fatal(err)
	}
	return v
}
