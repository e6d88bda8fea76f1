package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestUsage(t *testing.T) {
	var stderr bytes.Buffer
	if code := run(nil, &stderr); code != 2 || !strings.Contains(stderr.String(), "NOT a production proxy") {
		t.Fatalf("no -c: exit %d, stderr %q", code, stderr.String())
	}
	stderr.Reset()
	if code := run([]string{"-c", "x.yaml", "--log-level", "loud"}, &stderr); code != 2 {
		t.Fatalf("bad --log-level: exit %d", code)
	}
}

func TestBadBootstrap(t *testing.T) {
	base, err := os.ReadFile("../../testdata/bootstrap.yaml")
	if err != nil {
		t.Fatal(err)
	}
	doc := strings.Replace(string(base), "stat_prefix: gateway", "stat_prefix: gateway\n          server_name: edge", 1)
	path := filepath.Join(t.TempDir(), "bootstrap.yaml")
	if err := os.WriteFile(path, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	code := run([]string{"-c", path, "--concurrency", "2", "--disable-hot-restart", "--log-level", "off"}, &stderr)
	if code != 1 || !strings.Contains(stderr.String(), "server_name") {
		t.Fatalf("exit %d, stderr %q", code, stderr.String())
	}
}
