//go:build !wasip1

package main

// These tests load the compiled module (build/tokengate.wasm) into the
// project's Envoy-faithful host and drive it like Envoy would. They run
// natively; `make test` builds the module first and passes its path in
// TOKENGATE_WASM. Without that variable the tests build the module
// themselves, except under CI, where a missing module is a failure.

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tokengate/tokengate/internal/wasmhost"
)

var (
	wasmBytes []byte
	module    *wasmhost.Module
)

func TestMain(m *testing.M) {
	if err := setup(); err != nil {
		fmt.Fprintln(os.Stderr, "filter tests:", err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

// setup loads and compiles the module named by TOKENGATE_WASM, or builds it.
func setup() error {
	var err error
	if path := os.Getenv("TOKENGATE_WASM"); path != "" {
		if wasmBytes, err = os.ReadFile(path); err != nil {
			return fmt.Errorf("the compiled module is missing: %w", err)
		}
	} else if os.Getenv("CI") != "" {
		return fmt.Errorf("TOKENGATE_WASM is not set: run the tests with `make test`, which builds the module")
	} else if wasmBytes, err = buildWasm("."); err != nil {
		return err
	}
	module, err = wasmhost.Compile(context.Background(), wasmBytes)
	return err
}

// buildWasm builds the Go package pkg (relative to filter/) as a wasip1
// reactor module, like `make wasm` (with build tags, if any), and returns
// its bytes.
func buildWasm(pkg string, tags ...string) ([]byte, error) {
	dir, err := os.MkdirTemp("", "tokengate-build")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	out := filepath.Join(dir, "module.wasm")
	cmd := exec.Command("go", "build", "-buildmode=c-shared", "-tags="+strings.Join(tags, ","), "-o", out, pkg)
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
	if msg, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("building %s: %v\n%s", pkg, err, msg)
	}
	return os.ReadFile(out)
}

var t0 = time.Unix(1_700_000_000, 0)

// gateway is one plugin on a fake clock, with its log kept for failures.
type gateway struct {
	*wasmhost.Plugin
	clock *wasmhost.FakeClock
	log   *strings.Builder
}

type option func(*wasmhost.PluginConfig)

func workers(n int) option { return func(c *wasmhost.PluginConfig) { c.Concurrency = n } }

func start(t testing.TB, configuration string, opts ...option) *gateway {
	t.Helper()
	return startModule(t, module, configuration, opts...)
}

// startModule is start with another build of the filter.
func startModule(t testing.TB, m *wasmhost.Module, configuration string, opts ...option) *gateway {
	t.Helper()
	g := &gateway{clock: wasmhost.NewFakeClock(t0), log: &strings.Builder{}}
	cfg := wasmhost.PluginConfig{
		Name: "tokengate", RootID: "tokengate", VMID: "tokengate",
		Configuration: []byte(configuration),
		Concurrency:   1,
		Clock:         g.clock,
		Log: func(level wasmhost.LogLevel, vm, msg string) {
			fmt.Fprintf(g.log, "[%d %s] %s\n", level, vm, msg)
		},
	}
	for _, o := range opts {
		o(&cfg)
	}
	p, err := wasmhost.NewPlugin(context.Background(), m, cfg)
	if err != nil {
		t.Fatal(err)
	}
	g.Plugin = p
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("plugin log:\n%s", g.log)
		}
		p.Close(context.Background())
	})
	return g
}

// call is one request: a source address, a method and path, extra headers.
type call struct {
	source  string
	method  string
	path    string
	headers wasmhost.Headers
}

func get(source, path string, kv ...string) call {
	c := call{source: source, method: "GET", path: path}
	for i := 0; i+1 < len(kv); i += 2 {
		c.headers = append(c.headers, [2]string{kv[i], kv[i+1]})
	}
	return c
}

// upstreamOK is a backend that answers 200 with one header.
func upstreamOK(wasmhost.Request) wasmhost.Response {
	return wasmhost.Response{Status: 200, Headers: wasmhost.Headers{{":status", "200"}, {"x-upstream", "yes"}}, Body: []byte("ok")}
}

func (g *gateway) serve(vm *wasmhost.VM, c call) wasmhost.Response {
	h := wasmhost.Headers{{":method", c.method}, {":path", c.path}, {":authority", "api.example.com"}, {":scheme", "http"}}
	h = append(h, c.headers...)
	return vm.Serve(wasmhost.StreamInfo{SourceAddress: c.source}, wasmhost.Request{Headers: h}, upstreamOK)
}

func headerValue(h wasmhost.Headers, name string) string {
	for _, kv := range h {
		if kv[0] == name {
			return kv[1]
		}
	}
	return ""
}

func counter(t testing.TB, g *gateway, name string) int64 {
	t.Helper()
	v, ok := g.Metrics().Get("wasmcustom." + name)
	if !ok {
		t.Fatalf("no metric %s; have %v", name, g.Metrics().Snapshot())
	}
	return v
}
