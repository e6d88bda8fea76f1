package main

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestIstioWasmSHA256: -wasm records the module's sha256 in the annotation
// for every URL, and in spec.sha256 only for https://, the one scheme whose
// download Istio checks against the module (oci:// is checked against the
// manifest digest, file:// not at all).
func TestIstioWasmSHA256(t *testing.T) {
	module := filepath.Join(t.TempDir(), "m.wasm")
	if err := os.WriteFile(module, []byte("\x00asm\x01\x00\x00\x00"), 0o600); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte("\x00asm\x01\x00\x00\x00"))
	want := hex.EncodeToString(sum[:])
	for _, c := range []struct {
		url      string
		inSpec   bool
		warnings string
	}{
		{"https://filters.example.com/tokengate.wasm", true, ""},
		{"file:///opt/filters/tokengate.wasm", false, ""},
		{"oci://r.example/tokengate:v1", false, ""},
	} {
		code, out, errOut := runCLI(t, "", "istio", "-config", "testdata/plugin.json", "-url", c.url, "-wasm", module,
			"-namespace", "apps")
		if code != 0 {
			t.Fatalf("%s: exit %d: %s", c.url, code, errOut)
		}
		if errOut != c.warnings {
			t.Errorf("%s: stderr %q", c.url, errOut)
		}
		if !strings.Contains(out, "tokengate.io/module-sha256: "+want) {
			t.Errorf("%s: no module-sha256 annotation:\n%s", c.url, out)
		}
		if got := strings.Contains(out, "\n  sha256: "+want+"\n"); got != c.inSpec {
			t.Errorf("%s: spec.sha256 written %v, want %v:\n%s", c.url, got, c.inSpec, out)
		}
	}
}
