package envoy_test

import (
	"errors"
	"path/filepath"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/tokengate/tokengate/envoy"
	"github.com/tokengate/tokengate/internal/config"
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
		if s.RateLimitService != nil {
			checkRateLimitConfig(t, s.Filter)
		}
	})
}

// FuzzReadWasmPlugins: reading a manifest never panics, fails only with a
// *config.Error listing problems, and every WasmPlugin it returns has a
// name and a spec; what the filter would receive never panics its parser.
func FuzzReadWasmPlugins(f *testing.F) {
	for _, p := range []string{"testdata/golden/single-route.istio.yaml", "testdata/golden/defaults.istio.yaml",
		"cmd/tokengate/testdata/wasmplugins.yaml"} {
		f.Add(readFileF(f, p))
	}
	f.Add([]byte("kind: WasmPlugin\n---\n---\napiVersion: extensions.istio.io/v1alpha1\nkind: WasmPlugin\nspec: {}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		plugins, err := envoy.ReadWasmPlugins(data)
		if err != nil {
			var ce *config.Error
			if !errors.As(err, &ce) || len(ce.Problems) == 0 {
				t.Fatalf("error is not a *config.Error with problems: %v", err)
			}
			return
		}
		for _, p := range plugins {
			if p.Name == "" || p.Spec == nil {
				t.Fatalf("plugin without name or spec: %+v", p)
			}
			_ = p.CheckConfig()
		}
	})
}

// checkRateLimitConfig: the service's configuration of an accepted filter is
// YAML holding its domain and one descriptor tree per global rule, whatever
// the names and the domain hold.
func checkRateLimitConfig(t *testing.T, filter []byte) {
	t.Helper()
	y, err := envoy.RateLimitConfig(filter)
	if err != nil {
		t.Fatalf("accepted spec, rejected rate limit service configuration: %v", err)
	}
	cfg, err := config.Parse(filter)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Domain      string           `json:"domain"`
		Descriptors []map[string]any `json:"descriptors"`
	}
	if err := yaml.UnmarshalStrict(y, &doc); err != nil {
		t.Fatalf("rate limit service configuration is not YAML: %v\n%s", err, y)
	}
	globals := 0
	for _, r := range cfg.Rules {
		if r.Global != nil {
			globals++
		}
	}
	if doc.Domain != cfg.RateLimitService.Domain || len(doc.Descriptors) != globals {
		t.Fatalf("domain %q with %d descriptors, want %q with %d\n%s", doc.Domain, len(doc.Descriptors),
			cfg.RateLimitService.Domain, globals, y)
	}
}
