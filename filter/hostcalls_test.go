//go:build !wasip1

package main

// A host whose other calls fail (wasmhost.HostFaults): header maps,
// properties, metrics, the local reply, the clock. Envoy answers OK to each
// of these when the call is well formed; the filter still has one defined
// outcome for every other status, shown here on the compiled module.

import (
	"strings"
	"testing"
	"time"

	"github.com/tokengate/tokengate/internal/wasmhost"
)

func hostFaults(f *wasmhost.HostFaults) option {
	return func(c *wasmhost.PluginConfig) { c.Faults = f }
}

func inject(t *testing.T, faults *wasmhost.HostFaults, f wasmhost.HostFault) *wasmhost.HostFault {
	t.Helper()
	fault, err := faults.Inject(f)
	if err != nil {
		t.Fatal(err)
	}
	return fault
}

// TestRequestReadFailures: a request header or the source address the host
// fails to give is taken as missing (so the clients it tells apart share
// the missing key's bucket: the limit still holds, it is just coarser), the
// first failure is logged once per VM with the call's status, and once the
// host recovers each client has its own bucket again.
func TestRequestReadFailures(t *testing.T) {
	for _, tc := range []struct {
		name, key, function string
		client              func(i int) call
		log                 string
	}{
		{"one header", `"header:x-api-key"`, "proxy_get_header_map_value",
			func(i int) call { return get("10.0.0.1:1", "/", "x-api-key", "k"+string(rune('a'+i))) },
			"tokengate: request header x-api-key: INTERNAL_FAILURE: taken as missing (logged once per VM)"},
		{"two headers", `"header:x-api-key","header:x-tenant"`, "proxy_get_header_map_pairs",
			func(i int) call { return get("10.0.0.1:1", "/", "x-api-key", "k"+string(rune('a'+i)), "x-tenant", "t") },
			"tokengate: request headers: INTERNAL_FAILURE: taken as missing (logged once per VM)"},
		{"source address", `"remote_address"`, "proxy_get_property",
			func(i int) call { return get("10.0.0."+string(rune('1'+i))+":1", "/") },
			"tokengate: property source.address: INTERNAL_FAILURE: taken as missing (logged once per VM)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			faults := &wasmhost.HostFaults{}
			g := start(t, `{"rules":[{"name":"r","key":[`+tc.key+`],"capacity":1,"refill":1,"interval":"1h"}]}`, hostFaults(faults))
			vm := g.Worker(0)
			fault := inject(t, faults, wasmhost.HostFault{Function: tc.function, Status: wasmhost.StatusInternalFailure})
			for i, want := range []int{200, 429, 429} {
				if resp := g.serve(vm, tc.client(i)); resp.Status != want {
					t.Fatalf("client %d while the host fails: %d, want %d (one shared bucket)", i, resp.Status, want)
				}
			}
			if fault.Failed() == 0 {
				t.Fatal("the fault never struck: the test reads nothing through it")
			}
			if got := strings.Count(g.log.String(), tc.log); got != 1 {
				t.Fatalf("%q logged %d times, want once:\n%s", tc.log, got, g.log)
			}
			fault.Remove()
			for i := 3; i < 5; i++ {
				if resp := g.serve(vm, tc.client(i)); resp.Status != 200 {
					t.Fatalf("client %d after the host recovered: %d, want 200 (its own bucket)", i, resp.Status)
				}
			}
		})
	}
}

// TestMetricFailures: counters the host refuses to define are left out,
// each logged once with the host's status, and the filter decides as
// before; counters it fails to increment are dropped, nothing else.
func TestMetricFailures(t *testing.T) {
	faults := &wasmhost.HostFaults{}
	inject(t, faults, wasmhost.HostFault{Function: "proxy_define_metric", Status: wasmhost.StatusBadArgument})
	g := start(t, `{"rules":[{"name":"r","key":["remote_address"],"capacity":1,"refill":1,"interval":"1h"}]}`, hostFaults(faults))
	vm := g.Worker(0)
	for i, want := range []int{200, 429} {
		if resp := g.serve(vm, get("10.0.0.1:1", "/")); resp.Status != want {
			t.Fatalf("request %d: %d, want %d", i, resp.Status, want)
		}
	}
	if snap := g.Metrics().Snapshot(); len(snap) != 0 {
		t.Errorf("metrics defined although the host refused: %v", snap)
	}
	for _, line := range []string{"tokengate: counter tokengate.r.allowed not defined, it will not be kept: BAD_ARGUMENT",
		"tokengate: counter tokengate.panics not defined, it will not be kept: BAD_ARGUMENT"} {
		if !strings.Contains(g.log.String(), "[4 worker-0] "+line) {
			t.Errorf("no %q logged by worker-0:\n%s", line, g.log)
		}
	}

	faults = &wasmhost.HostFaults{}
	g = start(t, `{"rules":[{"name":"r","key":["remote_address"],"capacity":1,"refill":1,"interval":"1h"}]}`, hostFaults(faults))
	vm = g.Worker(0)
	inc := inject(t, faults, wasmhost.HostFault{Function: "proxy_increment_metric"})
	for i, want := range []int{200, 429} {
		if resp := g.serve(vm, get("10.0.0.1:1", "/")); resp.Status != want {
			t.Fatalf("increment failing, request %d: %d, want %d", i, resp.Status, want)
		}
	}
	if inc.Failed() == 0 || counter(t, g, "tokengate.r.allowed") != 0 || counter(t, g, "tokengate.r.limited") != 0 {
		t.Errorf("increments failed %d, allowed %d, limited %d: want failures and no counts", inc.Failed(),
			counter(t, g, "tokengate.r.allowed"), counter(t, g, "tokengate.r.limited"))
	}
}

// TestLocalReplyRefused: a refusal whose local reply the host does not send
// goes on to the upstream (a stream left paused with no answer would hang
// until a timeout), logged once per VM; the refusal is still counted
// (limited).
func TestLocalReplyRefused(t *testing.T) {
	faults := &wasmhost.HostFaults{}
	g := start(t, `{"rules":[{"name":"r","key":["remote_address"],"capacity":1,"refill":1,"interval":"1h"}]}`, hostFaults(faults))
	vm := g.Worker(0)
	if resp := g.serve(vm, get("10.0.0.1:1", "/")); resp.Status != 200 {
		t.Fatalf("first request: %d", resp.Status)
	}
	fault := inject(t, faults, wasmhost.HostFault{Function: "proxy_send_local_response", Status: wasmhost.StatusBadArgument, Count: 2})
	for i := 0; i < 2; i++ {
		resp := g.serve(vm, get("10.0.0.1:1", "/"))
		if resp.Status != 200 || headerValue(resp.Headers, "x-upstream") != "yes" {
			t.Fatalf("refused reply %d: %d %v, want the upstream's 200", i, resp.Status, resp.Headers)
		}
	}
	const line = "tokengate: the local reply was not sent, the request continues: BAD_ARGUMENT (logged once per VM)"
	if fault.Failed() != 2 || strings.Count(g.log.String(), line) != 1 {
		t.Errorf("fault struck %d times (want 2); want %q logged once:\n%s", fault.Failed(), line, g.log)
	}
	if got := counter(t, g, "tokengate.r.limited"); got != 2 {
		t.Errorf("limited = %d, want 2", got)
	}
	if resp := g.serve(vm, get("10.0.0.1:1", "/")); resp.Status != 429 {
		t.Fatalf("with the host sending replies again: %d, want 429", resp.Status)
	}
}

// TestResponseHeaderFailures: rate-limit headers the host does not add to a
// response are left out (the response itself goes on), logged once per VM.
func TestResponseHeaderFailures(t *testing.T) {
	faults := &wasmhost.HostFaults{}
	g := start(t, `{"rules":[{"name":"r","key":["remote_address"],"capacity":5,"refill":1,"interval":"1h"}]}`, hostFaults(faults))
	vm := g.Worker(0)
	fault := inject(t, faults, wasmhost.HostFault{Function: "proxy_replace_header_map_value", Status: wasmhost.StatusInternalFailure})
	for i := 0; i < 3; i++ {
		resp := g.serve(vm, get("10.0.0.1:1", "/"))
		if resp.Status != 200 || headerValue(resp.Headers, "x-upstream") != "yes" || headerValue(resp.Headers, "ratelimit") != "" {
			t.Fatalf("request %d: %d %v, want the upstream's 200 without rate-limit headers", i, resp.Status, resp.Headers)
		}
	}
	const line = "tokengate: response header ratelimit-policy: INTERNAL_FAILURE: left out (logged once per VM)"
	if fault.Failed() < 3 || strings.Count(g.log.String(), line) != 1 {
		t.Fatalf("fault struck %d times; want %q logged once:\n%s", fault.Failed(), line, g.log)
	}
	fault.Remove()
	if resp := g.serve(vm, get("10.0.0.1:1", "/")); headerValue(resp.Headers, "ratelimit") == "" {
		t.Fatalf("after the host recovered: %v, want rate-limit headers", resp.Headers)
	}
}

// TestClockFailure: while the host's clock fails, the filter never admits
// more than the bucket holds.
func TestClockFailure(t *testing.T) {
	faults := &wasmhost.HostFaults{}
	g := start(t, `{"rules":[{"name":"r","key":["remote_address"],"capacity":2,"refill":2,"interval":"1s"}]}`, hostFaults(faults))
	vm := g.Worker(0)
	fault := inject(t, faults, wasmhost.HostFault{Function: "proxy_get_current_time_nanoseconds"})
	allowed := 0
	for i := 0; i < 20; i++ {
		if i%5 == 4 {
			g.clock.Advance(time.Second)
		}
		if resp := g.serve(vm, get("10.0.0.1:1", "/")); resp.Status == 200 {
			allowed++
		}
	}
	if fault.Failed() == 0 || allowed > 2 {
		t.Fatalf("fault struck %d times, %d allowed; want at most the capacity (2) while no time is read", fault.Failed(), allowed)
	}
}
