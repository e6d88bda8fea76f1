package envoy_test

import (
	"errors"
	"path/filepath"
	"testing"

	"github.com/tokengate/tokengate/envoy"
)

// FuzzParseSpec: ParseSpec never panics, fails only with a *envoy.Error,
// and whatever it accepts Bootstrap turns into a valid bootstrap and
// WasmPlugin into a manifest. A spec that passes ParseSpec but fails
// Bootstrap is a validation gap.
func FuzzParseSpec(f *testing.F) {
	seeds, err := filepath.Glob("testdata/*/*.y*ml")
	if err != nil {
		f.Fatal(err)
	}
	for _, p := range append(seeds, "testdata/golden/json.spec.json") {
		f.Add(readFileF(f, p))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := envoy.ParseSpec(data)
		if err != nil {
			var se *envoy.Error
			if !errors.As(err, &se) || len(se.Problems) == 0 {
				t.Fatalf("error is not a *envoy.Error with problems: %v", err)
			}
			return
		}
		s.Dir = goldenDir
		if _, err := envoy.BootstrapYAML(s); err != nil {
			t.Fatalf("accepted spec, rejected bootstrap: %v", err)
		}
		p := &envoy.Plugin{Config: s.Filter, FailurePolicy: s.FailurePolicy}
		if _, _, err := envoy.WasmPlugin(p, envoy.IstioOptions{URL: "oci://r.example/t:1"}); err != nil && !errors.Is(err, envoy.ErrInexactNumber) {
			t.Fatalf("accepted spec, rejected WasmPlugin: %v", err)
		}
	})
}
