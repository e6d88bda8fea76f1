//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tokengate/tokengate/e2e/harness"
	"github.com/tokengate/tokengate/envoy"
)

// fleetSpec returns a gateway spec with the filter of globalFilter plus a
// local rule on /local (3 per client IP per minute), one route for both
// prefixes' backend, on free ports.
func fleetSpec(t *testing.T, limit int, timeout, failureMode string) *envoy.Spec {
	t.Helper()
	ports, err := harness.FreePorts(3)
	if err != nil {
		t.Fatal(err)
	}
	filter := fmt.Sprintf(`{"rules":[
  {"name":"local-per-ip","match":{"path_prefix":"/local"},"key":["remote_address"],"capacity":3,"refill":3,"interval":"1m"},
  {"name":"fleet-per-key","match":{"path_prefix":"/api"},"key":["header:x-api-key"],
   "global":{"requests_per_unit":%d,"unit":"minute"}}],
 "rate_limit_service":{"cluster":"ratelimit","domain":"tokengate-e2e","timeout":%q,"failure_mode":%q}}`,
		limit, timeout, failureMode)
	doc := fmt.Sprintf(`listen: 127.0.0.1:%d
admin: 127.0.0.1:%d
wasm: %s
filter: %s
rate_limit_service: {backends: ["127.0.0.1:1"]}
routes:
  - name: all
    prefix: /
    backends: [127.0.0.1:%d]
    health_check: { path: /healthz, interval: 300ms, timeout: 200ms, unhealthy_threshold: 2, healthy_threshold: 1 }
    retries: 0
    timeout: 5s
`, ports[0], ports[1], wasmPath, filter, ports[2])
	spec, err := envoy.ParseSpec([]byte(doc))
	if err != nil {
		t.Fatalf("spec: %v\n%s", err, doc)
	}
	return spec
}

// startFleet runs Redis, the rate limit service and n replicas of spec, and
// stops them when the test ends, printing every log if it failed.
func startFleet(t *testing.T, spec *envoy.Spec, n int) *harness.Fleet {
	t.Helper()
	parts := globalParts(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	f, err := harness.StartFleet(ctx, spec, harness.FleetOptions{
		Options:  harness.Options{Dir: t.TempDir(), Dataplane: dp, Tools: tools, StartBackends: true},
		Replicas: n, Parts: parts,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		f.Stop()
		if t.Failed() {
			t.Logf("ratelimit configuration:\n%s\n%s", f.RLSConfig, f.Logs())
		}
	})
	return f
}

// statuses sends n requests for key, replica i%len(replicas) for request i
// (each replica in turn, so every replica sees the key), and returns the
// count per status. Every request must end within maxLatency.
func statuses(t *testing.T, f *harness.Fleet, key, path string, n int, maxLatency time.Duration) map[int]int {
	t.Helper()
	c := client("127.0.0.1", true)
	got := map[int]int{}
	var slowest time.Duration
	for i := 0; i < n; i++ {
		g := f.Replicas[i%len(f.Replicas)]
		begin := time.Now()
		r := mustSend(t, c, "http://"+g.Listen+path, "x-api-key", key)
		took := time.Since(begin)
		if took > maxLatency {
			t.Errorf("request %d to replica %d took %v, more than %v", i, i%len(f.Replicas)+1, took, maxLatency)
		}
		slowest = max(slowest, took)
		got[r.status]++
	}
	t.Logf("key %s: %d requests, statuses %v, slowest %v", key, n, got, slowest.Round(time.Microsecond))
	return got
}

func expectCounts(t *testing.T, what string, got map[int]int, want map[int]int) {
	t.Helper()
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("%s: statuses %v, want %v", what, got, want)
	}
}

// TestGlobalLimitAcrossReplicas: two replicas, one global rule of 10 per key
// per minute. Across both replicas exactly 10 requests of a key are admitted
// in a window, whichever replica each hits; the refusal carries Retry-After
// up to the window's end; another key has its own 10.
func TestGlobalLimitAcrossReplicas(t *testing.T) {
	const limit = 10
	f := startFleet(t, fleetSpec(t, limit, "1s", "deny"), 2)
	freshWindow(t, time.Minute, 20*time.Second)
	expectCounts(t, "key a, alternating replicas", statuses(t, f, "a", "/api/x", 2*limit, 2*time.Second),
		map[int]int{200: limit, 429: limit})
	// Every admission was the service's; each replica asked until it was
	// refused once, then answered from its denial cache.
	if d := fleetStats(t, f); d["rls_ok"] != limit || d["rls_over_limit"] != 2 || d["rls_cached"] != limit-2 {
		t.Errorf("global counters %v, want rls_ok %d, rls_over_limit 2 (one per replica), rls_cached %d", d, limit, limit-2)
	}
	// Key b: all but the last request on replica 1, then replica 2 refuses.
	c := client("127.0.0.1", true)
	for i := 0; i < limit; i++ {
		if r := mustSend(t, c, "http://"+f.Replicas[0].Listen+"/api/b", "x-api-key", "b"); r.status != 200 {
			t.Fatalf("key b request %d on replica 1: %d, want 200", i+1, r.status)
		}
	}
	r := mustSend(t, c, "http://"+f.Replicas[1].Listen+"/api/b", "x-api-key", "b")
	if r.status != 429 {
		t.Fatalf("key b request %d on replica 2: %d, want 429 (the budget is the fleet's)", limit+1, r.status)
	}
	if ra, err := strconv.Atoi(r.header.Get("Retry-After")); err != nil || ra < 1 || ra > 60 {
		t.Errorf("Retry-After %q on a global refusal, want 1..60 (the rest of the minute)", r.header.Get("Retry-After"))
	}
}

// TestGlobalFailureModeDeny: with failure_mode deny, a hung service (frozen:
// each request waits for the timeout), a stopped service, then a stopped
// Redis refuse every request of a global rule within the timeout; with the
// service back, then Redis back, the limit holds again. The local rule
// decides exactly as before throughout.
func TestGlobalFailureModeDeny(t *testing.T) {
	testFaults(t, "deny", 429)
}

// TestGlobalFailureModeAllow: the same faults with failure_mode allow admit
// every request, over the limit too.
func TestGlobalFailureModeAllow(t *testing.T) {
	testFaults(t, "allow", 200)
}

func testFaults(t *testing.T, mode string, failStatus int) {
	const limit = 5
	const timeout = time.Second // roomy: a loaded CI machine must not turn a healthy call into the failure mode
	// Generous: the bound is "no request hangs", not the filter's precision.
	const maxLatency = timeout + time.Second
	f := startFleet(t, fleetSpec(t, limit, timeout.String(), mode), 2)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	n := limit + 3
	local := func(phase string, ip string) {
		t.Helper()
		// Each phase's own client IP: 3 admitted, then refused, on one replica.
		c := client(ip, false)
		var got []int
		for i := 0; i < 5; i++ {
			got = append(got, mustSend(t, c, "http://"+f.Replicas[0].Listen+"/local").status)
		}
		if fmt.Sprint(got) != "[200 200 200 429 429]" {
			t.Errorf("%s: local rule statuses %v, want [200 200 200 429 429]", phase, got)
		}
	}
	healthy := func(phase, key, ip string) {
		t.Helper()
		freshWindow(t, time.Minute, 15*time.Second)
		before := fleetStats(t, f)
		expectCounts(t, phase, statuses(t, f, key, "/api/x", n, maxLatency), map[int]int{200: limit, 429: n - limit})
		d := statsDelta(t, f, before)
		// Each replica asks until the service refuses it once, then serves
		// the rest of the window from its denial cache.
		if d["rls_ok"] != limit || d["rls_over_limit"]+d["rls_cached"] != int64(n-limit) || d["rls_failure_mode"] != 0 {
			t.Errorf("%s: global counters %v, want rls_ok %d, rls_over_limit+rls_cached %d, no rls_failure_mode", phase, d, limit, n-limit)
		}
		local(phase, ip)
	}
	failing := func(phase, key, ip string) {
		t.Helper()
		before := fleetStats(t, f)
		expectCounts(t, phase, statuses(t, f, key, "/api/x", n, maxLatency), map[int]int{failStatus: n})
		d := statsDelta(t, f, before)
		if d["rls_failure_mode"] != int64(n) || d["rls_error"]+d["rls_timeout"] != int64(n) || d["rls_ok"] != 0 {
			t.Errorf("%s: global counters %v, want rls_failure_mode %d = rls_error+rls_timeout, no rls_ok", phase, d, n)
		}
		local(phase, ip)
	}

	healthy("healthy", "k1", "127.0.0.11")

	// A hung service: every call ends at the timeout, in the failure mode.
	if err := f.RLS.Freeze(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.RLS.Thaw() })
	before := fleetStats(t, f)
	c := client("127.0.0.1", true)
	for i := 0; i < 4; i++ {
		begin := time.Now()
		r := mustSend(t, c, "http://"+f.Replicas[i%2].Listen+"/api/x", "x-api-key", "k-hung")
		took := time.Since(begin)
		t.Logf("service hung: request %d: %d after %v", i, r.status, took.Round(time.Millisecond))
		if r.status != failStatus || took < timeout-50*time.Millisecond || took > maxLatency {
			t.Errorf("service hung: request %d got %d after %v, want %d after the %v timeout (at most %v)",
				i, r.status, took, failStatus, timeout, maxLatency)
		}
	}
	if d := statsDelta(t, f, before); d["rls_timeout"] != 4 || d["rls_failure_mode"] != 4 {
		t.Errorf("service hung: global counters %v, want rls_timeout 4, rls_failure_mode 4", d)
	}
	local("service hung", "127.0.0.16")
	if err := f.RLS.Thaw(); err != nil {
		t.Fatal(err)
	}
	waitAnswered(t, f, "the service's thaw")

	f.RLS.Stop()
	failing("service stopped", "k2", "127.0.0.12")
	if err := f.RLS.Start(ctx); err != nil {
		t.Fatal(err)
	}
	waitAnswered(t, f, "the service's restart")
	healthy("service back", "k3", "127.0.0.13")
	f.Redis.Stop()
	failing("redis stopped", "k4", "127.0.0.14")
	if err := f.Redis.Start(ctx); err != nil {
		t.Fatal(err)
	}
	waitAnswered(t, f, "Redis' restart")
	healthy("redis back", "k5", "127.0.0.15")
}

// fleetStats sums the global rule's counters over the replicas.
func fleetStats(t *testing.T, f *harness.Fleet) map[string]int64 {
	t.Helper()
	sum := map[string]int64{}
	for _, g := range f.Replicas {
		for name, v := range stats(t, g) {
			if c, ok := strings.CutPrefix(name, "wasmcustom.tokengate.fleet-per-key."); ok {
				sum[c] += v
			}
		}
	}
	return sum
}

func statsDelta(t *testing.T, f *harness.Fleet, before map[string]int64) map[string]int64 {
	t.Helper()
	d := fleetStats(t, f)
	for k, v := range before {
		d[k] -= v
	}
	return d
}

// waitAnswered waits until every replica gets answers from the service
// again (a probe request of a fresh key counts in rls_ok): a reconnection
// takes a moment, and the counts after it must be exact.
func waitAnswered(t *testing.T, f *harness.Fleet, after string) {
	t.Helper()
	c := client("127.0.0.1", false)
	deadline := time.Now().Add(10 * time.Second)
	for i, g := range f.Replicas {
		for probe := 0; ; probe++ {
			before := stats(t, g)["wasmcustom.tokengate.fleet-per-key.rls_ok"]
			mustSend(t, c, "http://"+g.Listen+"/api/x", "x-api-key", fmt.Sprintf("probe-%d-%d", i, probe))
			if stats(t, g)["wasmcustom.tokengate.fleet-per-key.rls_ok"] > before {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("replica %d gets no answer from the service 10s after %s", i+1, after)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
}
