package envoysim

import (
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/tokengate/tokengate/envoy"
)

// TestLoadsGeneratedBootstraps is the contract between the generator and the
// stand-in: every golden bootstrap the generator writes, and the examples',
// loads here without a rejected field.
func TestLoadsGeneratedBootstraps(t *testing.T) {
	for name, data := range generatedBootstraps(t) {
		t.Run(name, func(t *testing.T) {
			if _, err := ParseConfig(data); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// generatedBootstraps returns, by name, the bootstraps the generator wrote into its golden
// files and the bootstraps of the examples, each pointing at a placeholder module that exists
// (the goldens name where a user would install it; the contract is about fields).
func generatedBootstraps(t *testing.T) map[string][]byte {
	t.Helper()
	files, err := filepath.Glob("../../envoy/testdata/golden/*.envoy.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden bootstraps: %v", err)
	}
	module := filepath.Join(t.TempDir(), "tokengate.wasm")
	if err := os.WriteFile(module, []byte("placeholder"), 0o644); err != nil {
		t.Fatal(err)
	}
	filename := regexp.MustCompile(`(?m)^(\s*filename:).*$`)
	out := map[string][]byte{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		out[filepath.Base(f)] = filename.ReplaceAll(data, []byte("${1} "+module))
	}
	examples, err := filepath.Glob("../../envoy/examples/*.yaml")
	if err != nil || len(examples) == 0 {
		t.Fatalf("no examples: %v", err)
	}
	for _, f := range examples {
		spec, err := envoy.ParseSpecFile(f)
		if err != nil {
			t.Fatal(err)
		}
		data, err := envoy.BootstrapYAML(spec)
		if err != nil {
			t.Fatal(err)
		}
		out["examples/"+filepath.Base(f)] = filename.ReplaceAll(data, []byte("${1} "+module))
	}
	return out
}
