//go:build !wasip1

package main

import (
	"strings"
	"sync"
	"testing"
	"time"

	commonv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/tokengate/tokengate/internal/wasmhost"
)

// fakeRLS is a rate limit service behind the host's gRPC transport: it
// records every call and answers with decide (nil answer: never answers).
type fakeRLS struct {
	mu        sync.Mutex
	calls     []wasmhost.GrpcCall
	requests  []*rlsv3.RateLimitRequest
	cancelled int
	decide    func(*rlsv3.RateLimitRequest) (*rlsv3.RateLimitResponse, uint32)
}

func (f *fakeRLS) HasCluster(name string) bool { return name == "ratelimit" }

func (f *fakeRLS) Start(call wasmhost.GrpcCall, done func(wasmhost.GrpcReply)) func() {
	var req rlsv3.RateLimitRequest
	err := proto.Unmarshal(call.Message, &req)
	f.mu.Lock()
	f.calls = append(f.calls, call)
	f.requests = append(f.requests, &req)
	f.mu.Unlock()
	if err != nil {
		go done(wasmhost.GrpcReply{Status: 13, Detail: err.Error()})
		return func() {}
	}
	resp, status := f.decide(&req)
	if resp == nil && status == 0 {
		return func() { f.mu.Lock(); f.cancelled++; f.mu.Unlock() } // hangs until cancelled
	}
	reply := wasmhost.GrpcReply{Status: status}
	if status == 0 {
		reply.Message, _ = proto.Marshal(resp)
	} else {
		reply.Detail = "refused by the fake"
	}
	go done(reply)
	return func() {}
}

func (f *fakeRLS) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.calls)
}

func okAnswer(req *rlsv3.RateLimitRequest) (*rlsv3.RateLimitResponse, uint32) {
	resp := &rlsv3.RateLimitResponse{OverallCode: rlsv3.RateLimitResponse_OK}
	for range req.Descriptors {
		resp.Statuses = append(resp.Statuses, &rlsv3.RateLimitResponse_DescriptorStatus{Code: rlsv3.RateLimitResponse_OK, LimitRemaining: 9})
	}
	return resp, 0
}

var overAnswer = overFor(30 * time.Second)

// overFor refuses every descriptor until reset.
func overFor(reset time.Duration) func(*rlsv3.RateLimitRequest) (*rlsv3.RateLimitResponse, uint32) {
	return func(req *rlsv3.RateLimitRequest) (*rlsv3.RateLimitResponse, uint32) {
		resp := &rlsv3.RateLimitResponse{OverallCode: rlsv3.RateLimitResponse_OVER_LIMIT}
		for range req.Descriptors {
			resp.Statuses = append(resp.Statuses, &rlsv3.RateLimitResponse_DescriptorStatus{
				Code:               rlsv3.RateLimitResponse_OVER_LIMIT,
				CurrentLimit:       &rlsv3.RateLimitResponse_RateLimit{RequestsPerUnit: 100, Unit: rlsv3.RateLimitResponse_RateLimit_MINUTE},
				DurationUntilReset: durationpb.New(reset),
			})
		}
		return resp, 0
	}
}

const globalRules = `{"rules":[
	{"name":"per-ip","key":["remote_address"],"capacity":%LOCAL%,"refill":1,"interval":"1h"},
	{"name":"fleet","match":{"path_prefix":"/api/"},"key":["header:x-api-key"],"cost":2,
	 "global":{"requests_per_unit":100,"unit":"minute"}}],
	"rate_limit_service":{"cluster":"ratelimit","domain":"tokengate"%RLS%}}`

func startGlobal(t *testing.T, f *fakeRLS, local, rls string) *gateway {
	t.Helper()
	cfg := strings.NewReplacer("%LOCAL%", local, "%RLS%", rls).Replace(globalRules)
	return start(t, cfg, func(c *wasmhost.PluginConfig) { c.Grpc = f })
}

func TestGlobalAllowed(t *testing.T) {
	f := &fakeRLS{decide: okAnswer}
	g := startGlobal(t, f, "100", `,"authority":"rls.example","timeout":"250ms"`)
	resp := g.serve(g.Worker(0), get("10.0.0.1:5000", "/api/items", "x-api-key", "alice"))
	if resp.Status != 200 || headerValue(resp.Headers, "x-upstream") != "yes" {
		t.Fatalf("status %d headers %v", resp.Status, resp.Headers)
	}
	if f.count() != 1 {
		t.Fatalf("%d calls", f.count())
	}
	c, req := f.calls[0], f.requests[0]
	if c.Cluster != "ratelimit" || c.Authority != "rls.example" || c.Timeout != 250*time.Millisecond ||
		c.Service != "envoy.service.ratelimit.v3.RateLimitService" || c.Method != "ShouldRateLimit" {
		t.Errorf("call %+v", c)
	}
	want := &rlsv3.RateLimitRequest{Domain: "tokengate", Descriptors: []*commonv3.RateLimitDescriptor{{
		Entries: []*commonv3.RateLimitDescriptor_Entry{{Key: "rule", Value: "fleet"}, {Key: "header:x-api-key", Value: "alice"}},
	}}}
	if len(req.Descriptors) != 1 || req.Descriptors[0].HitsAddend.GetValue() != 2 {
		t.Fatalf("request %v", req)
	}
	req.Descriptors[0].HitsAddend = nil
	if !proto.Equal(req, want) {
		t.Errorf("request\n got %v\nwant %v", req, want)
	}
	if counter(t, g, "tokengate.fleet.rls_ok") != 1 {
		t.Error("rls_ok not counted")
	}
	// A path no global rule matches makes no call.
	if resp := g.serve(g.Worker(0), get("10.0.0.1:5000", "/public")); resp.Status != 200 || f.count() != 1 {
		t.Fatalf("status %d, %d calls", resp.Status, f.count())
	}
}

// TestGlobalOverLimitAndCache: a refusal carries the service's numbers,
// and the same client is then refused from the denial cache, no call made,
// until the window resets.
func TestGlobalOverLimitAndCache(t *testing.T) {
	f := &fakeRLS{decide: overAnswer}
	g := startGlobal(t, f, "100", "")
	vm := g.Worker(0)
	resp := g.serve(vm, get("10.0.0.1:5000", "/api/items", "x-api-key", "alice"))
	if resp.Status != 429 || headerValue(resp.Headers, "retry-after") != "30" ||
		headerValue(resp.Headers, "ratelimit-policy") != `"fleet";q=100;w=60` ||
		headerValue(resp.Headers, "ratelimit") != `"fleet";r=0;t=30` || !strings.Contains(string(resp.Body), "quota-exceeded") {
		t.Fatalf("status %d headers %v body %s", resp.Status, resp.Headers, resp.Body)
	}
	g.clock.Advance(10 * time.Second)
	resp = g.serve(g.Worker(0), get("10.0.0.2:5000", "/api/items", "x-api-key", "alice"))
	if resp.Status != 429 || headerValue(resp.Headers, "retry-after") != "20" || f.count() != 1 {
		t.Fatalf("cached: status %d headers %v after %d calls", resp.Status, resp.Headers, f.count())
	}
	if counter(t, g, "tokengate.fleet.rls_over_limit") != 1 || counter(t, g, "tokengate.fleet.rls_cached") != 1 {
		t.Error("counters")
	}
	// Another client asks; after the reset, alice asks again.
	g.serve(vm, get("10.0.0.1:5000", "/api/items", "x-api-key", "bob"))
	g.clock.Advance(21 * time.Second)
	g.serve(vm, get("10.0.0.1:5000", "/api/items", "x-api-key", "alice"))
	if f.count() != 3 {
		t.Fatalf("%d calls, want 3", f.count())
	}
}

// TestGlobalFailureMode: a timeout, an error status and an unknown cluster
// all end in rate_limit_service.failure_mode, counted.
func TestGlobalFailureMode(t *testing.T) {
	hang := func(*rlsv3.RateLimitRequest) (*rlsv3.RateLimitResponse, uint32) { return nil, 0 }
	unavailable := func(*rlsv3.RateLimitRequest) (*rlsv3.RateLimitResponse, uint32) { return nil, 14 }
	for _, tc := range []struct {
		name    string
		decide  func(*rlsv3.RateLimitRequest) (*rlsv3.RateLimitResponse, uint32)
		rls     string
		status  int
		counter string
	}{
		{"timeout allows", hang, `,"timeout":"30ms"`, 200, "rls_timeout"},
		{"timeout denies", hang, `,"timeout":"30ms","failure_mode":"deny"`, 429, "rls_timeout"},
		{"error allows", unavailable, "", 200, "rls_error"},
		{"error denies", unavailable, `,"failure_mode":"deny"`, 429, "rls_error"},
		{"unknown cluster", okAnswer, `,"failure_mode":"deny","cluster":"nowhere"`, 429, "rls_error"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeRLS{decide: tc.decide}
			rls := tc.rls
			cfg := strings.NewReplacer("%LOCAL%", "100", "%RLS%", rls).Replace(globalRules)
			if strings.Contains(rls, `"cluster"`) {
				cfg = strings.Replace(cfg, `"cluster":"ratelimit",`, "", 1)
			}
			g := start(t, cfg, func(c *wasmhost.PluginConfig) { c.Grpc = f })
			began := time.Now()
			resp := g.serve(g.Worker(0), get("10.0.0.1:5000", "/api/items"))
			if resp.Status != tc.status {
				t.Fatalf("status %d, want %d", resp.Status, tc.status)
			}
			if tc.status == 429 && (headerValue(resp.Headers, "retry-after") != "1" || headerValue(resp.Headers, "ratelimit") != "") {
				t.Errorf("failure-mode refusal headers %v", resp.Headers)
			}
			if time.Since(began) > 5*time.Second {
				t.Errorf("took %v", time.Since(began))
			}
			if counter(t, g, "tokengate.fleet."+tc.counter) != 1 || counter(t, g, "tokengate.fleet.rls_failure_mode") != 1 {
				t.Errorf("%s / rls_failure_mode not counted", tc.counter)
			}
			if n := g.Worker(0).GrpcInFlight(); n != 0 {
				t.Errorf("%d calls left in flight", n)
			}
		})
	}
}

// TestGlobalStreamResetWhileWaiting: a stream that ends while its call is in
// flight cancels it; no answer reaches a context that is gone.
func TestGlobalStreamResetWhileWaiting(t *testing.T) {
	f := &fakeRLS{decide: func(*rlsv3.RateLimitRequest) (*rlsv3.RateLimitResponse, uint32) { return nil, 0 }}
	g := startGlobal(t, f, "100", `,"timeout":"10s"`)
	vm := g.Worker(0)
	s := vm.NewStream(wasmhost.StreamInfo{SourceAddress: "10.0.0.1:5000"})
	r := s.RequestHeaders(wasmhost.Headers{{":method", "GET"}, {":path", "/api/x"}, {":authority", "a"}}, true)
	if r.Action != wasmhost.Pause || r.LocalReply != nil || vm.GrpcInFlight() != 1 {
		t.Fatalf("not waiting: %+v, %d in flight", r, vm.GrpcInFlight())
	}
	s.Close()
	f.mu.Lock()
	cancelled := f.cancelled
	f.mu.Unlock()
	if vm.GrpcInFlight() != 0 || cancelled != 1 {
		t.Fatalf("%d in flight, %d cancelled after the reset", vm.GrpcInFlight(), cancelled)
	}
	if w := s.Wait(); w.Action != wasmhost.Pause || w.LocalReply != nil {
		t.Fatalf("a closed stream resumed: %+v", w)
	}
	// The VM goes on serving.
	f.decide = okAnswer
	if resp := g.serve(vm, get("10.0.0.1:5000", "/api/x")); resp.Status != 200 {
		t.Fatalf("status %d", resp.Status)
	}
}

// TestLocalRefusalNeverCallsRLS: the local tier decides first.
func TestLocalRefusalNeverCallsRLS(t *testing.T) {
	f := &fakeRLS{decide: okAnswer}
	g := startGlobal(t, f, "1", "")
	vm := g.Worker(0)
	if resp := g.serve(vm, get("10.0.0.1:5000", "/api/x")); resp.Status != 200 {
		t.Fatalf("first: %d", resp.Status)
	}
	resp := g.serve(vm, get("10.0.0.1:5000", "/api/x"))
	if resp.Status != 429 || headerValue(resp.Headers, "ratelimit-policy") != `"per-ip";q=1;w=3600` {
		t.Fatalf("second: %d %v", resp.Status, resp.Headers)
	}
	if f.count() != 1 {
		t.Fatalf("%d calls: a local refusal reached the service", f.count())
	}
}

// TestGlobalShadowNeverRefuses: a shadow global rule counts, never rejects,
// and its refusals are not cached.
func TestGlobalShadowNeverRefuses(t *testing.T) {
	f := &fakeRLS{decide: overAnswer}
	cfg := strings.NewReplacer("%LOCAL%", "100", "%RLS%", "", `"cost":2,`, `"cost":2,"shadow":true,`).Replace(globalRules)
	g := start(t, cfg, func(c *wasmhost.PluginConfig) { c.Grpc = f })
	for i := 0; i < 2; i++ {
		if resp := g.serve(g.Worker(0), get("10.0.0.1:5000", "/api/x")); resp.Status != 200 {
			t.Fatalf("status %d", resp.Status)
		}
	}
	if f.count() != 2 || counter(t, g, "tokengate.fleet.rls_over_limit") != 2 {
		t.Fatalf("%d calls", f.count())
	}
}

// TestGlobalConcurrentWaits: many requests wait on one VM at once, their
// answers arriving in any order; each is resumed with its own verdict.
func TestGlobalConcurrentWaits(t *testing.T) {
	f := &fakeRLS{decide: func(req *rlsv3.RateLimitRequest) (*rlsv3.RateLimitResponse, uint32) {
		time.Sleep(time.Duration(len(req.Descriptors[0].Entries[1].Value)%5) * time.Millisecond)
		if strings.HasPrefix(req.Descriptors[0].Entries[1].Value, "deny") {
			return overAnswer(req)
		}
		return okAnswer(req)
	}}
	g := startGlobal(t, f, "1000000", `,"timeout":"5s"`)
	vm := g.Worker(0)
	const n = 64
	var wg sync.WaitGroup
	statuses := make([]int, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			key := "ok-" + strings.Repeat("k", i)
			if i%4 == 0 {
				key = "deny-" + strings.Repeat("k", i)
			}
			statuses[i] = g.serve(vm, get("10.0.0.1:5000", "/api/x", "x-api-key", key)).Status
		}()
	}
	wg.Wait()
	for i, st := range statuses {
		want := 200
		if i%4 == 0 {
			want = 429
		}
		if st != want {
			t.Errorf("request %d: status %d, want %d", i, st, want)
		}
	}
	if got := counter(t, g, "tokengate.fleet.rls_ok") + counter(t, g, "tokengate.fleet.rls_over_limit"); got != n || f.count() != n {
		t.Errorf("%d answers counted, %d calls, want %d", got, f.count(), n)
	}
	if vm.GrpcInFlight() != 0 {
		t.Errorf("%d calls left in flight", vm.GrpcInFlight())
	}
}

// TestNoGuestAllocationGlobal: like TestNoGuestAllocationPerRequest, for the
// global tier once warm: a call and its answer per request, and refusals
// from the denial cache, make the VM's Go runtime collect nothing.
func TestNoGuestAllocationGlobal(t *testing.T) {
	for name, decide := range map[string]func(*rlsv3.RateLimitRequest) (*rlsv3.RateLimitResponse, uint32){
		"answered": okAnswer,
		"cached":   overFor(1000 * time.Hour),
	} {
		t.Run(name, func(t *testing.T) {
			f := &fakeRLS{decide: decide}
			cfg := strings.NewReplacer("%LOCAL%", "9000000000000000000", "%RLS%", "").Replace(globalRules)
			g := start(t, cfg, func(c *wasmhost.PluginConfig) {
				c.Grpc = f
				c.Env = map[string]string{"GODEBUG": "gctrace=1", "GOGC": "1"}
			})
			vm := g.Worker(0)
			serve := func() {
				vm.Serve(wasmhost.StreamInfo{SourceAddress: "10.0.0.1:5000"}, wasmhost.Request{Headers: wasmhost.Headers{
					{":method", "GET"}, {":path", "/api/items"}, {":authority", "api.example.com"}, {"x-api-key", "k"}}}, upstreamOK)
			}
			cycles := func() int { return strings.Count(g.log.String(), "] gc ") }
			if cycles() == 0 {
				t.Fatal("no GC cycle reported at start-up: the trace does not reach the log, the test proves nothing")
			}
			for range 100 { // warm: buffers reach their size
				serve()
			}
			warm := cycles()
			for range 10_000 {
				serve()
			}
			if n := cycles() - warm; n != 0 {
				t.Fatalf("%d GC cycles during 10,000 requests: the global tier allocates", n)
			}
			if name == "cached" && f.count() != 1 {
				t.Fatalf("%d calls: refusals did not come from the cache", f.count())
			}
		})
	}
}

// TestGlobalOverallOnly: a service that answers only overall_code
// OVER_LIMIT, with no per-descriptor statuses (the protocol allows it;
// Envoy's ratelimit filter decides on overall_code alone), refuses: the
// configured quota in RateLimit-Policy, Retry-After to the end of the
// current minute (the fake clock starts 20 s into one), counted
// rls_over_limit and not rls_error. The denial is cached until that end,
// not longer.
func TestGlobalOverallOnly(t *testing.T) {
	f := &fakeRLS{decide: func(*rlsv3.RateLimitRequest) (*rlsv3.RateLimitResponse, uint32) {
		return &rlsv3.RateLimitResponse{OverallCode: rlsv3.RateLimitResponse_OVER_LIMIT}, 0
	}}
	g := startGlobal(t, f, "100", "")
	vm := g.Worker(0)
	alice := get("10.0.0.1:5000", "/api/items", "x-api-key", "alice")
	resp := g.serve(vm, alice)
	if resp.Status != 429 || headerValue(resp.Headers, "retry-after") != "40" ||
		headerValue(resp.Headers, "ratelimit-policy") != `"fleet";q=100;w=60` ||
		headerValue(resp.Headers, "ratelimit") != `"fleet";r=0;t=40` {
		t.Fatalf("status %d headers %v", resp.Status, resp.Headers)
	}
	if counter(t, g, "tokengate.fleet.rls_over_limit") != 1 || counter(t, g, "tokengate.fleet.rls_error") != 0 ||
		counter(t, g, "tokengate.fleet.rls_failure_mode") != 0 {
		t.Error("counters: an overall-only refusal is rls_over_limit, not an error")
	}
	g.clock.Advance(10 * time.Second)
	if resp := g.serve(vm, alice); resp.Status != 429 || headerValue(resp.Headers, "retry-after") != "30" || f.count() != 1 {
		t.Fatalf("cached: status %d headers %v after %d calls", resp.Status, resp.Headers, f.count())
	}
	g.clock.Advance(30 * time.Second) // the minute is over
	if resp := g.serve(vm, alice); resp.Status != 429 || f.count() != 2 {
		t.Fatalf("after the window: status %d after %d calls, want a new call", resp.Status, f.count())
	}
}
