package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestBadSpecStartsNothing(t *testing.T) {
	dir := t.TempDir()
	spec := filepath.Join(dir, "bad.yaml")
	doc := "listen: 127.0.0.1:1\nadmin: 127.0.0.1:2\nwasm: x.wasm\nfilter: {rules: [{name: r, key: [remote_address], capacity: 0, refill: 1, interval: 1s}]}\nroutes: [{name: api, prefix: /api, backends: [127.0.0.1:3]}]\n"
	if err := os.WriteFile(spec, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	code := run([]string{"-spec", spec, "-out", filepath.Join(dir, "out")}, &stdout, &stderr)
	if code != 1 || !strings.Contains(stderr.String(), "filter.rules[0].capacity") || !strings.Contains(stderr.String(), "nothing started") {
		t.Fatalf("exit %d, stderr %q", code, stderr.String())
	}
	if _, err := os.Stat(filepath.Join(dir, "out")); !os.IsNotExist(err) {
		t.Fatalf("output directory created for a bad spec: %v", err)
	}
}
