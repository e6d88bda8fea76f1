package envoysim

import (
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/tokengate/tokengate/envoy"
)

// TestLoadsGeneratedBootstraps is the contract between the generator and the
// stand-in: every golden bootstrap the generator writes, and the example
// gateway's, loads here without a rejected field.
func TestLoadsGeneratedBootstraps(t *testing.T) {
	files, err := filepath.Glob("../../envoy/testdata/golden/*.envoy.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden bootstraps: %v", err)
	}
	spec, err := envoy.ParseSpecFile("../../envoy/examples/gateway.yaml")
	if err != nil {
		t.Fatal(err)
	}
	example, err := envoy.BootstrapYAML(spec)
	if err != nil {
		t.Fatal(err)
	}
	// The goldens name where a user would install the module; the contract
	// is about fields, so point every bootstrap at a placeholder file.
	module := filepath.Join(t.TempDir(), "tokengate.wasm")
	if err := os.WriteFile(module, []byte("placeholder"), 0o644); err != nil {
		t.Fatal(err)
	}
	filename := regexp.MustCompile(`(?m)^(\s*filename:).*$`)
	inputs := map[string][]byte{"examples/gateway.yaml": filename.ReplaceAll(example, []byte("${1} "+module))}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		inputs[filepath.Base(f)] = filename.ReplaceAll(data, []byte("${1} "+module))
	}
	for name, data := range inputs {
		t.Run(name, func(t *testing.T) {
			b, err := ParseBootstrap(data)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := NewConfig(b); err != nil {
				t.Fatal(err)
			}
		})
	}
}
