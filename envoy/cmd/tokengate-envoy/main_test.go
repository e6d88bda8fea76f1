package main

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// update is accepted so that "go test ./envoy/... -update" runs here too;
// this package has no golden files of its own.
var _ = flag.Bool("update", false, "rewrite golden files (none in this package)")

const example = "../../examples/gateway.yaml"

func runCLI(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = run(args, strings.NewReader(stdin), &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestBootstrapToStdout(t *testing.T) {
	code, out, _ := runCLI(t, "", "-spec", example)
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	for _, want := range []string{"envoy.filters.http.wasm", "--concurrency 2", "port_value: 10000", "port_value: 8083"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
}

func TestSpecFromStdinToFile(t *testing.T) {
	spec, err := os.ReadFile(example)
	if err != nil {
		t.Fatal(err)
	}
	outPath := filepath.Join(t.TempDir(), "envoy.yaml")
	code, out, errOut := runCLI(t, string(spec), "-o", outPath)
	if code != 0 || out != "" {
		t.Fatalf("exit %d, stdout %q, stderr %s", code, out, errOut)
	}
	data, err := os.ReadFile(outPath)
	if err != nil || !bytes.Contains(data, []byte("static_resources:")) {
		t.Fatalf("output file: %v\n%s", err, data)
	}
}

func TestIstio(t *testing.T) {
	code, out, errOut := runCLI(t, "", "-spec", example, "-istio", "-url", "oci://r/tokengate:1",
		"-selector", "istio=ingressgateway", "-namespace", "istio-system", "-priority", "5", "-phase", "STATS")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, want := range []string{"kind: WasmPlugin", "namespace: istio-system", "istio: ingressgateway",
		"priority: 5", "phase: STATS", "failStrategy: FAIL_CLOSE", "url: oci://r/tokengate:1"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

func TestErrors(t *testing.T) {
	cases := []struct {
		name    string
		stdin   string
		args    []string
		code    int
		wantErr string
	}{
		{"check ok", "", []string{"-check", "-spec", example}, 0, ""},
		{"bad spec", "listen: 1\n", nil, 1, "standard input: invalid gateway spec:"},
		{"missing file", "", []string{"-spec", "nope.yaml"}, 1, "nope.yaml"},
		{"url without istio", "", []string{"-spec", example, "-url", "oci://x"}, 2, "-url needs -istio"},
		{"istio without url", "", []string{"-spec", example, "-istio"}, 1, "url is required"},
		{"bad selector", "", []string{"-spec", example, "-istio", "-url", "oci://x", "-selector", "a"}, 2, "not key=value"},
		{"extra argument", "", []string{"-spec", example, "x"}, 2, "unexpected argument"},
		{"unknown flag", "", []string{"-bogus"}, 2, "flag provided but not defined"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, out, errOut := runCLI(t, c.stdin, c.args...)
			if code != c.code || !strings.Contains(errOut, c.wantErr) {
				t.Errorf("exit %d (want %d), stderr %q (want %q)", code, c.code, errOut, c.wantErr)
			}
			if code != 0 && out != "" {
				t.Errorf("stdout on failure: %q", out)
			}
		})
	}
}
