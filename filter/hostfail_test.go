//go:build !wasip1

package main

// A host whose shared-data calls fail (wasmhost.SharedData.InjectFault): the
// outcome the filter promises for each failing call, on the compiled module.

import (
	"context"
	"strings"
	"testing"
	"time"

	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"

	"github.com/tokengate/tokengate/internal/wasmhost"
)

// setsOf is the shared-data key prefix of local rule r's sets (plugin "tokengate").
func setsOf(r string) string { return "tokengate/tokengate/" + r + "/" }

// TestSharedDataFailureFollowsFailureMode: whichever shared-data call of a
// local rule fails, each request is decided by failure_mode (allow admits
// without rate-limit headers, deny refuses with the configured reply and
// Retry-After: 1), counted in the rule's failure_mode counter, and the
// failure is logged once with the call and the host's status, not once per
// request. Once the host recovers, the rule decides again.
func TestSharedDataFailureFollowsFailureMode(t *testing.T) {
	for _, tc := range []struct {
		name   string
		call   wasmhost.SharedDataCall
		prefix string
		warm   bool // a request before the fault, so the client's set exists
		logs   string
	}{
		{"get of a set", wasmhost.CallGetSharedData, setsOf("r"), true, "proxy_get_shared_data"},
		{"set of a set", wasmhost.CallSetSharedData, setsOf("r"), true, "proxy_set_shared_data"},
		{"set of the epoch, creating a set", wasmhost.CallSetSharedData, "tokengate/tokengate/epoch", false, "proxy_set_shared_data"},
		{"get of the epoch, creating a set", wasmhost.CallGetSharedData, "tokengate/tokengate/epoch", false, "proxy_get_shared_data"},
	} {
		for _, mode := range []string{"allow", "deny"} {
			t.Run(tc.name+"/"+mode, func(t *testing.T) {
				g := start(t, `{"rules":[{"name":"r","key":["remote_address"],"capacity":100,"refill":1,"interval":"1s"}],
					"status":503,"body":"busy","failure_mode":"`+mode+`"}`)
				vm := g.Worker(0)
				if tc.warm {
					if resp := g.serve(vm, get("10.0.0.1:1", "/")); resp.Status != 200 {
						t.Fatalf("before the fault: %d", resp.Status)
					}
				}
				before := counter(t, g, "tokengate.r.allowed")
				f := g.Shared().InjectFault(wasmhost.SharedDataFault{Call: tc.call, KeyPrefix: tc.prefix, Status: wasmhost.StatusInternalFailure})
				const n = 5
				for i := 0; i < n; i++ {
					resp := g.serve(vm, get("10.0.0.1:1", "/"))
					switch mode {
					case "allow":
						if resp.Status != 200 || headerValue(resp.Headers, "x-upstream") != "yes" || headerValue(resp.Headers, "ratelimit") != "" {
							t.Fatalf("request %d: %d %v, want the upstream's 200 without rate-limit headers", i, resp.Status, resp.Headers)
						}
					case "deny":
						if resp.Status != 503 || string(resp.Body) != "busy" || headerValue(resp.Headers, "retry-after") != "1" || headerValue(resp.Headers, "ratelimit") != "" {
							t.Fatalf("request %d: %d %v %q, want the configured reply with Retry-After: 1", i, resp.Status, resp.Headers, resp.Body)
						}
					}
				}
				if f.Failed() < n {
					t.Fatalf("the fault struck %d times in %d requests", f.Failed(), n)
				}
				if got := counter(t, g, "tokengate.r.failure_mode"); got != n {
					t.Errorf("failure_mode = %d, want %d", got, n)
				}
				wantLimited := int64(0)
				if mode == "deny" {
					wantLimited = n
				}
				if got := counter(t, g, "tokengate.r.limited"); got != wantLimited {
					t.Errorf("limited = %d, want %d", got, wantLimited)
				}
				if got := counter(t, g, "tokengate.r.allowed"); got != before {
					t.Errorf("allowed %d -> %d under the fault", before, got)
				}
				if got := strings.Count(g.log.String(), "INTERNAL_FAILURE"); got != 1 || !strings.Contains(g.log.String(), tc.logs) {
					t.Errorf("want one log line naming %s and INTERNAL_FAILURE; %d lines:\n%s", tc.logs, got, g.log)
				}
				f.Remove()
				if resp := g.serve(vm, get("10.0.0.1:1", "/")); resp.Status != 200 || headerValue(resp.Headers, "ratelimit") == "" {
					t.Fatalf("after the host recovered: %d %v", resp.Status, resp.Headers)
				}
				if vm.Failed() {
					t.Fatal("the VM failed")
				}
			})
		}
	}
}

// TestSharedDataFailureAtStart: shared data that fails while the plugin
// configures rejects the configuration, with the call and the host's status
// in the error, whatever failure_mode says: the filter cannot share a seed.
func TestSharedDataFailureAtStart(t *testing.T) {
	for _, call := range []wasmhost.SharedDataCall{wasmhost.CallGetSharedData, wasmhost.CallSetSharedData} {
		shared := wasmhost.NewSharedData()
		shared.InjectFault(wasmhost.SharedDataFault{Call: call, Status: wasmhost.StatusInternalFailure})
		_, err := wasmhost.NewPlugin(context.Background(), module, wasmhost.PluginConfig{
			Name: "tokengate", RootID: "tokengate", VMID: "tokengate", Shared: shared, Clock: wasmhost.NewFakeClock(t0),
			Configuration: []byte(`{"rules":[{"name":"r","key":["remote_address"],"capacity":5,"refill":1,"interval":"1s"}],"failure_mode":"allow"}`),
		})
		if err == nil || !strings.Contains(err.Error(), "shared data unusable") || !strings.Contains(err.Error(), "INTERNAL_FAILURE") {
			t.Errorf("call %d failing at start: %v, want the configuration rejected naming the status", call, err)
		}
	}
}

// TestDenialCacheFailure: the global tier's denial cache is an optimisation,
// so when its shared-data calls fail the request is left to the rate limit
// service (a failed read is a miss, a failed write forgets the denial), or,
// when the service fails too, to rate_limit_service.failure_mode; the local
// rule is untouched, nothing counts in its failure_mode, and the failure is
// logged once.
func TestDenialCacheFailure(t *testing.T) {
	unavailable := func(*rlsv3.RateLimitRequest) (*rlsv3.RateLimitResponse, uint32) { return nil, 14 }
	for _, tc := range []struct {
		name    string
		call    wasmhost.SharedDataCall
		decide  func(*rlsv3.RateLimitRequest) (*rlsv3.RateLimitResponse, uint32)
		rls     string
		status  int
		retry   string
		counter string
	}{
		{"read fails, service refuses", wasmhost.CallGetSharedData, overAnswer, "", 429, "30", "rls_over_limit"},
		{"write fails, service refuses", wasmhost.CallSetSharedData, overAnswer, "", 429, "30", "rls_over_limit"},
		{"read fails, service admits", wasmhost.CallGetSharedData, okAnswer, "", 200, "", "rls_ok"},
		{"read fails, service down, deny", wasmhost.CallGetSharedData, unavailable, `,"failure_mode":"deny"`, 429, "1", "rls_failure_mode"},
		{"read fails, service down, allow", wasmhost.CallGetSharedData, unavailable, "", 200, "", "rls_failure_mode"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeRLS{decide: tc.decide}
			g := startGlobal(t, f, "100", tc.rls)
			fault := g.Shared().InjectFault(wasmhost.SharedDataFault{Call: tc.call, KeyPrefix: "tokengate/tokengate/fleet/deny/", Status: wasmhost.StatusInternalFailure})
			const n = 3
			for i := 0; i < n; i++ {
				resp := g.serve(g.Worker(0), get("10.0.0.1:5000", "/api/items", "x-api-key", "alice"))
				if resp.Status != tc.status || headerValue(resp.Headers, "retry-after") != tc.retry {
					t.Fatalf("request %d: %d %v, want %d with Retry-After %q", i, resp.Status, resp.Headers, tc.status, tc.retry)
				}
				g.clock.Advance(time.Second)
			}
			if f.count() != n {
				t.Errorf("%d calls to the service for %d requests: the denial cache answered", f.count(), n)
			}
			if fault.Failed() == 0 {
				t.Fatal("the denial cache's shared data was never touched")
			}
			if got := counter(t, g, "tokengate.fleet."+tc.counter); got != n {
				t.Errorf("%s = %d, want %d", tc.counter, got, n)
			}
			if got := counter(t, g, "tokengate.fleet.rls_cached"); got != 0 {
				t.Errorf("rls_cached = %d", got)
			}
			if got := counter(t, g, "tokengate.per-ip.failure_mode"); got != 0 {
				t.Errorf("the local rule's failure_mode = %d", got)
			}
			if got := strings.Count(g.log.String(), "INTERNAL_FAILURE"); got != 1 {
				t.Errorf("want the failure logged once; %d lines:\n%s", got, g.log)
			}
		})
	}
}

// TestHostFailuresLoggedOncePerCause: each distinct failing call and status
// is logged once per VM: a second kind of failure is not hidden behind the
// first, and neither repeats however many requests meet it.
func TestHostFailuresLoggedOncePerCause(t *testing.T) {
	g := start(t, `{"rules":[{"name":"r","key":["remote_address"],"capacity":100,"refill":1,"interval":"1s"}]}`)
	vm := g.Worker(0)
	for _, f := range []wasmhost.SharedDataFault{
		{Call: wasmhost.CallGetSharedData, KeyPrefix: setsOf("r"), Status: wasmhost.StatusInternalFailure, Count: 3},
		{Call: wasmhost.CallSetSharedData, KeyPrefix: setsOf("r"), Status: wasmhost.StatusInternalFailure, Count: 3},
		{Call: wasmhost.CallGetSharedData, KeyPrefix: setsOf("r"), Status: wasmhost.StatusInternalFailure, Count: 3},
		{Call: wasmhost.CallGetSharedData, KeyPrefix: setsOf("r"), Status: wasmhost.StatusBadArgument, Count: 3},
	} {
		g.Shared().InjectFault(f)
		for i := 0; i < 3; i++ {
			if resp := g.serve(vm, get("10.0.0.1:1", "/")); resp.Status != 200 {
				t.Fatalf("%+v: %d", f, resp.Status)
			}
		}
	}
	if got := counter(t, g, "tokengate.r.failure_mode"); got != 12 {
		t.Errorf("failure_mode = %d, want 12", got)
	}
	log := g.log.String()
	for _, line := range []string{"proxy_get_shared_data failed: INTERNAL_FAILURE", "proxy_set_shared_data failed: INTERNAL_FAILURE",
		"proxy_get_shared_data failed: BAD_ARGUMENT"} {
		if got := strings.Count(log, line); got != 1 {
			t.Errorf("%q logged %d times, want once:\n%s", line, got, log)
		}
	}
}
