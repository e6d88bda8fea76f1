//go:build !wasip1

package main

// Faults inside the guest itself, on a build of the filter with the fault
// hooks of hook.go (build tag tokengate_fault_hooks): a panic in the
// request callback follows failure_mode, one in a gRPC callback
// rate_limit_service.failure_mode; a fatal runtime error traps the VM so the
// plugin's failure policy answers, and it never goes on serving.

import (
	"context"
	"strings"
	"sync"
	"testing"

	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"

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

// TestGrpcPanicFollowsFailureMode: a panic in the gRPC callback that
// answers a request's call to the rate limit service (an answer, or a
// failure) follows rate_limit_service.failure_mode for the stream waiting on
// it, not the local rules' failure_mode, counted once in tokengate.panics and
// logged; the stream is not left paused (wasmhost would answer 500
// wasmhost_stream_paused where Envoy waits for its stream timeout), and the
// VM goes on deciding.
func TestGrpcPanicFollowsFailureMode(t *testing.T) {
	unavailable := func(*rlsv3.RateLimitRequest) (*rlsv3.RateLimitResponse, uint32) { return nil, 14 }
	for _, cb := range []struct {
		name   string
		decide func(*rlsv3.RateLimitRequest) (*rlsv3.RateLimitResponse, uint32)
	}{{"receive", okAnswer}, {"close", unavailable}} {
		for _, tt := range []struct {
			mode, local string
			wantStatus  int
			wantRetry   string
		}{
			{"allow", "deny", 200, ""},
			{"deny", "allow", 429, "1"},
		} {
			t.Run(cb.name+"/"+tt.mode, func(t *testing.T) {
				f := &fakeRLS{decide: cb.decide}
				cfg := strings.NewReplacer("%LOCAL%", "100", "%RLS%", `,"failure_mode":"`+tt.mode+`"`).Replace(globalRules)
				cfg = strings.Replace(cfg, `"rate_limit_service"`, `"failure_mode":"`+tt.local+`","rate_limit_service"`, 1)
				g := startModule(t, hookedModule(t), cfg, func(c *wasmhost.PluginConfig) { c.Grpc = f })
				vm := g.Worker(0)
				resp := g.serve(vm, get("10.0.0.1:1", "/api/items", "x-api-key", "alice", "x-tokengate-fault", "grpc-panic"))
				if resp.Status != tt.wantStatus || headerValue(resp.Headers, "retry-after") != tt.wantRetry {
					t.Fatalf("after a panic: %d %v (local reply %+v), want %d with Retry-After %q",
						resp.Status, resp.Headers, resp.LocalReply, tt.wantStatus, tt.wantRetry)
				}
				if tt.mode == "allow" && headerValue(resp.Headers, "x-upstream") != "yes" {
					t.Errorf("not the upstream's answer: %v", resp.Headers)
				}
				if tt.mode == "deny" && (headerValue(resp.Headers, "ratelimit") != "" || !strings.Contains(string(resp.Body), "quota-exceeded")) {
					t.Errorf("want the configured reply without quota headers: %v %s", resp.Headers, resp.Body)
				}
				if f.count() != 1 {
					t.Errorf("%d calls", f.count())
				}
				if got := counter(t, g, "tokengate.panics"); got != 1 {
					t.Errorf("tokengate.panics = %d, want 1", got)
				}
				// Counted once: the callback panicked before any rls_* counter.
				for _, c := range []string{"rls_ok", "rls_error", "rls_failure_mode"} {
					if got := counter(t, g, "tokengate.fleet."+c); got != 0 {
						t.Errorf("%s = %d, want 0", c, got)
					}
				}
				if !strings.Contains(g.log.String(), "recovered from panic: tokengate: fault hook in a gRPC callback") {
					t.Errorf("the panic is not logged:\n%s", g.log)
				}
				if vm.Failed() {
					t.Fatal("the VM failed")
				}
				// The VM survived: the next request is decided by the service.
				resp = g.serve(vm, get("10.0.0.1:1", "/api/items", "x-api-key", "alice"))
				wantNext := 200
				if cb.name == "close" && tt.mode == "deny" {
					wantNext = 429
				}
				if resp.Status != wantNext || f.count() != 2 {
					t.Fatalf("next request: %d after %d calls, want %d after 2", resp.Status, f.count(), wantNext)
				}
			})
		}
	}
}

// TestGrpcResumePanicFollowsFailureMode: a panic after the service's answer
// has been read, while the stream is being resumed, still ends the pause by
// rate_limit_service.failure_mode (before, the stream stayed paused: the
// panic handler found no stream to resume), counted in tokengate.panics.
func TestGrpcResumePanicFollowsFailureMode(t *testing.T) {
	over := func(*rlsv3.RateLimitRequest) (*rlsv3.RateLimitResponse, uint32) {
		return &rlsv3.RateLimitResponse{OverallCode: rlsv3.RateLimitResponse_OVER_LIMIT, Statuses: []*rlsv3.RateLimitResponse_DescriptorStatus{
			{Code: rlsv3.RateLimitResponse_OVER_LIMIT}}}, 0
	}
	for _, answer := range []struct {
		name   string
		decide func(*rlsv3.RateLimitRequest) (*rlsv3.RateLimitResponse, uint32)
	}{{"ok", okAnswer}, {"over limit", over}} {
		for _, tt := range []struct {
			mode       string
			wantStatus int
			wantRetry  string
		}{
			{"allow", 200, ""},
			{"deny", 429, "1"},
		} {
			t.Run(answer.name+"/"+tt.mode, func(t *testing.T) {
				f := &fakeRLS{decide: answer.decide}
				cfg := strings.NewReplacer("%LOCAL%", "100", "%RLS%", `,"failure_mode":"`+tt.mode+`"`).Replace(globalRules)
				g := startModule(t, hookedModule(t), cfg, func(c *wasmhost.PluginConfig) { c.Grpc = f })
				vm := g.Worker(0)
				resp := g.serve(vm, get("10.0.0.1:1", "/api/items", "x-api-key", "alice", "x-tokengate-fault", "resume-panic"))
				if resp.Status != tt.wantStatus || headerValue(resp.Headers, "retry-after") != tt.wantRetry {
					t.Fatalf("after a panic in resume: %d %v (local reply %+v), want %d with Retry-After %q",
						resp.Status, resp.Headers, resp.LocalReply, tt.wantStatus, tt.wantRetry)
				}
				if got := counter(t, g, "tokengate.panics"); got != 1 {
					t.Errorf("tokengate.panics = %d, want 1", got)
				}
				if !strings.Contains(g.log.String(), "recovered from panic: tokengate: fault hook in resume") {
					t.Errorf("the panic is not logged:\n%s", g.log)
				}
				if vm.Failed() {
					t.Fatal("the VM failed")
				}
			})
		}
	}
}
