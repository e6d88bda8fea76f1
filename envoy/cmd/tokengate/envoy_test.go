package main

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// update is accepted so that "go test ./envoy/... -update" runs here too.
var update = flag.Bool("update", false, "rewrite golden files")

const example = "../../examples/gateway.yaml"

func runCLI(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = run(args, &env{stdin: strings.NewReader(stdin), stdout: &out, stderr: &errOut})
	return code, out.String(), errOut.String()
}

func TestEnvoyToStdout(t *testing.T) {
	code, out, _ := runCLI(t, "", "envoy", "-spec", example)
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	for _, want := range []string{"envoy.filters.http.wasm", "--concurrency 2", "port_value: 10000", "port_value: 8083"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
}

func TestEnvoySpecFromStdinToFile(t *testing.T) {
	spec, err := os.ReadFile(example)
	if err != nil {
		t.Fatal(err)
	}
	outPath := filepath.Join(t.TempDir(), "envoy.yaml")
	code, out, errOut := runCLI(t, string(spec), "envoy", "-o", outPath)
	if code != 0 || out != "" {
		t.Fatalf("exit %d, stdout %q, stderr %s", code, out, errOut)
	}
	data, err := os.ReadFile(outPath)
	if err != nil || !bytes.Contains(data, []byte("static_resources:")) {
		t.Fatalf("output file: %v\n%s", err, data)
	}
}

// TestEnvoyMissingWasmHint: a module that is not there is a warning (the
// bootstrap may be used elsewhere), with -check too, and the hint says
// where the path starts from and what builds the file.
func TestEnvoyMissingWasmHint(t *testing.T) {
	dir := t.TempDir()
	spec := "listen: 127.0.0.1:10000\nadmin: 127.0.0.1:9901\nwasm: build/tokengate.wasm\n" +
		"filter: {rules: [{name: a, key: [path], capacity: 1, refill: 1, interval: 1s}]}\n" +
		"routes: [{name: api, prefix: /, backends: [127.0.0.1:8081]}]\n"
	specPath := filepath.Join(dir, "gw.yaml")
	if err := os.WriteFile(specPath, []byte(spec), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, errOut := runCLI(t, "", "envoy", "-check", "-spec", specPath)
	want := "warning: wasm module " + filepath.Join(dir, "build", "tokengate.wasm") + " does not exist; " +
		`"build/tokengate.wasm" is relative to the spec's directory ` + dir + "; to build it there, run make wasm in " + dir
	if code != 0 || !strings.Contains(errOut, want) {
		t.Errorf("exit %d, stderr %q\nwant %q", code, errOut, want)
	}
	code, _, errOut = runCLI(t, spec, "envoy", "-check")
	if code != 0 || !strings.Contains(errOut, "resolves it against the working directory: pass the spec with -spec FILE") {
		t.Errorf("stdin: exit %d, stderr %q", code, errOut)
	}
	// The example's module, once built, gives no warning at all.
	if err := os.MkdirAll(filepath.Join(dir, "build"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "build", "tokengate.wasm"), []byte("\x00asm"), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, _, errOut = runCLI(t, "", "envoy", "-check", "-spec", specPath); code != 0 || errOut != "" {
		t.Errorf("built: exit %d, stderr %q", code, errOut)
	}
}

func TestEnvoyErrors(t *testing.T) {
	cases := []struct {
		name    string
		stdin   string
		args    []string
		code    int
		wantErr string
	}{
		{"bad spec", "listen: 1\n", nil, 1, "standard input: invalid gateway spec:"},
		{"missing file", "", []string{"-spec", "nope.yaml"}, 2, "nope.yaml"},
		{"extra argument", "", []string{"-spec", example, "x"}, 2, "unexpected argument"},
		{"unknown flag", "", []string{"-bogus"}, 2, "flag provided but not defined"},
		{"unwritable output", "", []string{"-spec", example, "-o", "/nonexistent/dir/envoy.yaml"}, 2, "/nonexistent/dir/envoy.yaml"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, out, errOut := runCLI(t, c.stdin, append([]string{"envoy"}, c.args...)...)
			if code != c.code || !strings.Contains(errOut, c.wantErr) {
				t.Errorf("exit %d (want %d), stderr %q (want %q)", code, c.code, errOut, c.wantErr)
			}
			if code != 0 && out != "" {
				t.Errorf("stdout on failure: %q", out)
			}
		})
	}
}

func TestUsage(t *testing.T) {
	if code, _, errOut := runCLI(t, ""); code != 2 || !strings.Contains(errOut, "usage: tokengate COMMAND") {
		t.Errorf("no command: exit %d, %q", code, errOut)
	}
	if code, _, errOut := runCLI(t, "", "frobnicate"); code != 2 || !strings.Contains(errOut, `unknown command "frobnicate"`) {
		t.Errorf("unknown command: exit %d, %q", code, errOut)
	}
	code, out, _ := runCLI(t, "", "help")
	if code != 0 {
		t.Errorf("help: exit %d", code)
	}
	for name := range commands {
		if !strings.Contains(out, "  "+name+" ") {
			t.Errorf("help lacks %s:\n%s", name, out)
		}
	}
	if code, _, _ := runCLI(t, "", "envoy", "-h"); code != 0 {
		t.Errorf("envoy -h: exit %d", code)
	}
}

// TestEnvoyAdminBeyondLoopbackWarns: an admin address other than loopback is
// written as asked, with a warning; loopback gives none.
func TestEnvoyAdminBeyondLoopbackWarns(t *testing.T) {
	dir := t.TempDir()
	wasm := filepath.Join(dir, "t.wasm")
	if err := os.WriteFile(wasm, []byte("\x00asm"), 0o644); err != nil {
		t.Fatal(err)
	}
	for admin, warn := range map[string]bool{"127.0.0.1:9901": false, "[::1]:9901": false, "0.0.0.0:9901": true, "10.1.2.3:9901": true} {
		spec := "listen: 127.0.0.1:10000\nadmin: \"" + admin + "\"\nwasm: " + wasm + "\n" +
			"filter: {rules: [{name: a, key: [path], capacity: 1, refill: 1, interval: 1s}]}\n" +
			"routes: [{name: api, prefix: /, backends: [127.0.0.1:8081]}]\n"
		code, out, errOut := runCLI(t, spec, "envoy")
		if code != 0 || !strings.Contains(out, "admin:") {
			t.Fatalf("%s: exit %d, stderr %q", admin, code, errOut)
		}
		if got := strings.Contains(errOut, "listens beyond loopback: Envoy's admin has no authentication"); got != warn {
			t.Errorf("%s: warned %v, want %v: %q", admin, got, warn, errOut)
		}
	}
}
