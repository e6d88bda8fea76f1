//go:build !wasip1

package main

// Faults inside the guest itself, on a build of the filter with the fault
// hooks of hook.go (build tag tokengate_fault_hooks): a panic in the
// request callback follows failure_mode; a fatal runtime error traps the VM
// so the plugin's failure policy answers, and it never goes on serving.

import (
	"context"
	"strings"
	"sync"
	"testing"

	"github.com/tokengate/tokengate/internal/wasmhost"
)

var hooked struct {
	once   sync.Once
	module *wasmhost.Module
	err    error
}

// hookedModule builds the filter with its fault hooks, once.
func hookedModule(t *testing.T) *wasmhost.Module {
	t.Helper()
	hooked.once.Do(func() {
		var wasm []byte
		if wasm, hooked.err = buildWasm(".", "tokengate_fault_hooks"); hooked.err == nil {
			hooked.module, hooked.err = wasmhost.Compile(context.Background(), wasm)
		}
	})
	if hooked.err != nil {
		t.Fatal(hooked.err)
	}
	return hooked.module
}

func TestPanicFollowsFailureMode(t *testing.T) {
	for _, tt := range []struct {
		mode       string
		wantStatus int
		wantRetry  string
	}{
		{"allow", 200, ""},
		{"deny", 503, "1"},
	} {
		t.Run(tt.mode, func(t *testing.T) {
			g := startModule(t, hookedModule(t), `{"rules":[{"name":"r","key":["remote_address"],"capacity":5,"refill":1,"interval":"1s"}],
				"status":503,"body":"busy","failure_mode":"`+tt.mode+`"}`)
			vm := g.Worker(0)
			resp := g.serve(vm, get("10.0.0.1:1", "/", "x-tokengate-fault", "panic"))
			if resp.Status != tt.wantStatus || headerValue(resp.Headers, "retry-after") != tt.wantRetry {
				t.Fatalf("after a panic: %d %v, want %d with Retry-After %q", resp.Status, resp.Headers, tt.wantStatus, tt.wantRetry)
			}
			if tt.mode == "deny" && string(resp.Body) != "busy" {
				t.Errorf("body %q, want the configured one", resp.Body)
			}
			if got := counter(t, g, "tokengate.panics"); got != 1 {
				t.Errorf("tokengate.panics = %d, want 1", got)
			}
			if !strings.Contains(g.log.String(), "recovered from panic: tokengate: fault hook") {
				t.Errorf("the panic is not logged:\n%s", g.log)
			}
			// The VM survived and decides the next request itself.
			if resp := g.serve(vm, get("10.0.0.1:1", "/")); resp.Status != 200 || headerValue(resp.Headers, "ratelimit") == "" {
				t.Fatalf("next request: %d %v", resp.Status, resp.Headers)
			}
		})
	}
}

func TestFatalErrorTraps(t *testing.T) {
	g := startModule(t, hookedModule(t), perIP)
	vm := g.Worker(0)
	resp := g.serve(vm, get("10.0.0.1:1", "/", "x-tokengate-fault", "fatal"))
	if !vm.Failed() || resp.Status != 503 {
		t.Fatalf("after a fatal error: failed %v, status %d; want a trapped VM and the failure policy's 503", vm.Failed(), resp.Status)
	}
	log := g.log.String()
	if !strings.Contains(log, "tokengate: fault hook") || !strings.Contains(log, "unreachable") {
		t.Errorf("want the runtime's trace and the trap in the log:\n%s", log)
	}
	// A c-shared Go module crashes (unreachable) instead of exiting: WASI
	// proc_exit, whose Envoy stub returns, is never reached.
	if strings.Contains(log, "proc_exit") {
		t.Errorf("proc_exit was called:\n%s", log)
	}
	if resp := g.serve(vm, get("10.0.0.1:1", "/")); resp.Status != 503 {
		t.Fatalf("the failed VM served again: %d", resp.Status)
	}
}
