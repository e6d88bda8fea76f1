package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestRefusesBeforeStarting: what fleet says, and that it starts nothing,
// when the spec or the parts it needs are wrong or missing.
func TestRefusesBeforeStarting(t *testing.T) {
	dir := t.TempDir()
	local := filepath.Join(dir, "local.yaml")
	if err := os.WriteFile(local, []byte("listen: 127.0.0.1:10000\nadmin: 127.0.0.1:9901\nwasm: x.wasm\n"+
		"filter: {rules: [{name: a, key: [path], capacity: 1, refill: 1, interval: 1s}]}\n"+
		"routes: [{name: api, prefix: /, backends: [127.0.0.1:8081]}]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	global := "../../../envoy/examples/global.yaml"
	for _, tc := range []struct {
		name  string
		env   map[string]string
		args  []string
		wants string
	}{
		{"bad spec", nil, []string{"-spec", filepath.Join(dir, "missing.yaml")}, "invalid spec, nothing started"},
		{"no global rule", nil, []string{"-spec", local}, "has no global rule: use make run"},
		{"bad replicas", nil, []string{"-spec", global, "-replicas", "0"}, "-replicas 0"},
		{"no redis", map[string]string{"REDIS_SERVER_BIN": filepath.Join(dir, "redis-server")}, []string{"-spec", global},
			"apt-get install redis-server"},
		{"no ratelimit", map[string]string{"REDIS_SERVER_BIN": "/bin/true", "RATELIMIT_BIN": filepath.Join(dir, "ratelimit")},
			[]string{"-spec", global}, "make ratelimit"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			var out, errOut bytes.Buffer
			if code := run(append(tc.args, "-out", t.TempDir()), &out, &errOut); code != 1 {
				t.Fatalf("exit %d, want 1; stderr %s", code, errOut.String())
			}
			if !strings.Contains(errOut.String(), tc.wants) {
				t.Errorf("stderr %q lacks %q", errOut.String(), tc.wants)
			}
			if out.Len() != 0 {
				t.Errorf("started something: %s", out.String())
			}
		})
	}
}
