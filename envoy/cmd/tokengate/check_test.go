package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tokengate/tokengate/internal/config"
)

// TestCheck runs check on plain JSON and on WasmPlugin manifests, comparing
// the whole output: every problem on its own line with its path, exactly
// the filter's messages.
func TestCheck(t *testing.T) {
	plugin, err := os.ReadFile("testdata/plugin.json")
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name       string
		stdin      string
		args       []string
		code       int
		wantStdout string
		wantStderr string
	}{
		{"valid json", "", []string{"testdata/plugin.json"}, 0, "testdata/plugin.json: ok\n", ""},
		{"valid json from stdin", string(plugin), []string{"-"}, 0, "standard input: ok\n", ""},
		{"invalid json", "", []string{"testdata/bad-plugin.json"}, 1, "",
			"testdata/bad-plugin.json: rules[0].burst: unknown field (allowed here: name, match, key, capacity, refill, interval, cost, shadow, global)\n" +
				"testdata/bad-plugin.json: rules[0].key[0]: \"remote_ip\" is not a key part: use remote_address, header:<name>, path, method or host\n" +
				"testdata/bad-plugin.json: rules[0].capacity: must be at least 1, got 0\n" +
				"testdata/bad-plugin.json: status: must be between 400 and 599, got 200\n"},
		{"not json at all", "{\"rules\": [", []string{"-"}, 1, "", "standard input: configuration is not valid JSON\n"},
		{"empty", "", []string{"-"}, 1, "", "standard input: configuration is empty: at least one rule is required\n"},
		// The third plugin's capacity is above 2^53: Istio hands the filter
		// 9007199254740992 (a float64), not what the manifest says.
		{"manifest", "", []string{"testdata/wasmplugins.yaml"}, 1,
			"testdata/wasmplugins.yaml: WasmPlugin edge/tokengate: ok\n",
			"testdata/wasmplugins.yaml: WasmPlugin edge/tokengate-api: spec.pluginConfig.rules[0].key[1]: \"header:x-api-key\" appears twice\n" +
				"testdata/wasmplugins.yaml: WasmPlugin edge/tokengate-api: spec.pluginConfig.rules[0].capacity: must be at least 1, got 0\n" +
				"testdata/wasmplugins.yaml: WasmPlugin edge/tokengate-api: spec.pluginConfig.slots: must be between 16 and 4194304, got 8\n" +
				"testdata/wasmplugins.yaml: WasmPlugin edge/tokengate-huge: envoy: the plugin configuration changes on its way through Istio, which turns every number of pluginConfig into a float64: keep integers (capacity, refill, cost) at most 2^53\n"},
		{"manifest without plugin config", "apiVersion: extensions.istio.io/v1alpha1\nkind: WasmPlugin\nmetadata: {name: x}\nspec: {url: oci://r.example/t:1}\n",
			[]string{"-"}, 1, "", "standard input: WasmPlugin x: spec.pluginConfig: configuration is empty: at least one rule is required\n"},
		{"manifest as JSON", `{"apiVersion": "extensions.istio.io/v1alpha1", "kind": "WasmPlugin", "metadata": {"name": "x", "namespace": "edge"},
			"spec": {"url": "oci://r.example/t:1", "pluginConfig": {"rules": [{"name": "a", "key": ["path"], "capacity": 0, "refill": 1, "interval": "1s"}]}}}`,
			[]string{"-"}, 1, "", "standard input: WasmPlugin edge/x: spec.pluginConfig.rules[0].capacity: must be at least 1, got 0\n"},
		{"not a manifest", "kind: ConfigMap\n", []string{"-"}, 1, "",
			"standard input: no WasmPlugin in the manifest (a plugin configuration is JSON; a gateway spec is checked by tokengate envoy -check)\n"},
		{"missing file", "", []string{"testdata/nope.json"}, 2, "", "tokengate: check: open testdata/nope.json: no such file or directory\n"},
		{"no file", "", nil, 2, "", "tokengate: check: want exactly one FILE, got 0 arguments\n"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, out, errOut := runCLI(t, c.stdin, append([]string{"check"}, c.args...)...)
			if c.code == 2 {
				// Usage errors also print the flags; the first line is the error.
				errOut, _, _ = strings.Cut(errOut, "\n")
				errOut += "\n"
			}
			if code != c.code || out != c.wantStdout || errOut != c.wantStderr {
				t.Errorf("exit %d (want %d)\nstdout %q\nwant   %q\nstderr %q\nwant   %q", code, c.code, out, c.wantStdout, errOut, c.wantStderr)
			}
		})
	}
}

// TestCheckSaysWhatTheFilterSays runs check on every fixture of the filter
// configuration's own tests: a valid one passes, an invalid one fails with
// exactly the problems its .want file holds (the message the filter logs),
// one per line.
func TestCheckSaysWhatTheFilterSays(t *testing.T) {
	valid, _ := filepath.Glob("../../../internal/config/testdata/valid/*.json")
	invalid, _ := filepath.Glob("../../../internal/config/testdata/invalid/*.json")
	if len(valid) == 0 || len(invalid) == 0 {
		t.Fatalf("fixtures not found: %d valid, %d invalid", len(valid), len(invalid))
	}
	for _, file := range valid {
		if code, out, errOut := runCLI(t, "", "check", file); code != 0 || out != file+": ok\n" {
			t.Errorf("%s: exit %d, %q %q", file, code, out, errOut)
		}
	}
	for _, file := range invalid {
		want, err := os.ReadFile(strings.TrimSuffix(file, ".json") + ".want")
		if err != nil {
			t.Fatal(err)
		}
		code, out, errOut := runCLI(t, "", "check", file)
		// Each line is one problem as Problem.String writes it; the
		// filter's error joins the same strings.
		var lines []config.Problem
		for _, line := range strings.Split(strings.TrimSuffix(errOut, "\n"), "\n") {
			p, ok := strings.CutPrefix(line, file+": ")
			if !ok {
				t.Errorf("%s: line %q does not start with the file name", file, line)
			}
			lines = append(lines, config.Problem{Message: p})
		}
		got := (&config.Error{Problems: lines}).Error()
		if code != 1 || out != "" || got != strings.TrimSuffix(string(want), "\n") {
			t.Errorf("%s: exit %d\ngot  %s\nwant %s", file, code, got, want)
		}
	}
}
