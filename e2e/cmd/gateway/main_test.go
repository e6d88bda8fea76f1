package main

import (
	"bytes"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/tokengate/tokengate/e2e/harness"
	"github.com/tokengate/tokengate/envoy"
	"github.com/tokengate/tokengate/internal/config"
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

// TestBusyPortStartsNothing: a port another process holds is reported before anything is
// built or started, and before any banner.
func TestBusyPortStartsNothing(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = l.Close() }() // the test is over: a close error changes nothing
	port := l.Addr().(*net.TCPAddr).Port
	dir := t.TempDir()
	var stdout, stderr bytes.Buffer
	code := run([]string{"-spec", "../../../envoy/examples/gateway.yaml", "-port", strconv.Itoa(port), "-out", filepath.Join(dir, "out")}, &stdout, &stderr)
	if code != 1 || !strings.Contains(stderr.String(), "listener 127.0.0.1:"+strconv.Itoa(port)) || !strings.Contains(stderr.String(), "nothing started") {
		t.Fatalf("exit %d, stderr %q", code, stderr.String())
	}
	if stdout.Len() != 0 {
		t.Fatalf("printed before the check: %q", stdout.String())
	}
}

// TestMovePorts: every address moves; backends keep their order from the first port on.
func TestMovePorts(t *testing.T) {
	spec, err := envoy.ParseSpecFile("../../../envoy/examples/gateway.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := (overrides{host: "127.0.0.5", port: 20000, adminPort: 20001, backendPort: 20010}).apply(spec); err != nil {
		t.Fatal(err)
	}
	got := []string{spec.Listen.String(), spec.Admin.String()}
	got = append(got, harness.BackendAddrs(spec)...)
	want := []string{"127.0.0.5:20000", "127.0.0.1:20001", "127.0.0.1:20010", "127.0.0.1:20011", "127.0.0.1:20012"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("got %v, want %v", got, want)
	}
	if err := (overrides{backendPort: 65535}).apply(spec); err == nil || !strings.Contains(err.Error(), "b2") {
		t.Fatalf("backends past 65535: got %v", err)
	}
	if err := (overrides{host: "localhost"}).apply(spec); err == nil {
		t.Fatal("a host name was accepted for -host")
	}
}

// TestBannerFollowsTheSpec: the hints use the spec's refusal status, header mode, rules and
// paths, not the example's.
func TestBannerFollowsTheSpec(t *testing.T) {
	cases := []struct {
		name, filter string
		want, not    []string
	}{
		{"example-like", `{"rules":[{"name":"per-ip","match":{"path_prefix":"/api/"},"key":["remote_address"],"capacity":5,"refill":5,"interval":"10s"}]}`,
			[]string{"a refusal is 429", "seq 7", "/api/burst", "-e '^ratelimit'", "another client IP has its own per-ip budget"},
			[]string{"x-ratelimit", "-H '"}},
		{"503 legacy per key", `{"status":503,"headers":"legacy","rules":[{"name":"shadowed","key":["remote_address"],"capacity":1,"refill":1,"interval":"1s","shadow":true},{"name":"keys","match":{"path_prefix":"/v2"},"key":["header:x-key"],"capacity":3,"refill":1,"interval":"1s"}]}`,
			[]string{"a refusal is 503", "keys: a burst of 3, then 503", "seq 5", "-H 'x-key: demo'", "/v2/burst", "-e '^x-ratelimit'", "[shadow: counts, never refuses]", "requests without x-key share one bucket"},
			[]string{"-e '^ratelimit'", "has its own"}},
		{"no headers", `{"headers":"none","rules":[{"name":"r","key":["remote_address"],"capacity":2,"refill":1,"interval":"1s"}]}`,
			[]string{"(no rate-limit headers)", "/burst "},
			[]string{"ratelimit'"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := config.Parse([]byte(tc.filter))
			if err != nil {
				t.Fatal(err)
			}
			spec, err := envoy.ParseSpecFile("../../../envoy/examples/gateway.yaml")
			if err != nil {
				t.Fatal(err)
			}
			g := &harness.Gateway{Spec: spec, Listen: "127.0.0.1:10000", Admin: "127.0.0.1:9901",
				Order: harness.BackendAddrs(spec), Names: map[string]string{"127.0.0.1:8081": "b1"}}
			b := banner(g, cfg, "spec.yaml", "gateway.log")
			for _, w := range tc.want {
				if !strings.Contains(b, w) {
					t.Errorf("banner lacks %q:\n%s", w, b)
				}
			}
			for _, n := range tc.not {
				if strings.Contains(b, n) {
					t.Errorf("banner has %q:\n%s", n, b)
				}
			}
			if strings.Count(b, "data plane:") != 1 {
				t.Errorf("the data plane is described more than once:\n%s", b)
			}
		})
	}
}
