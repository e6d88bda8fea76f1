//go:build !wasip1

package main

// Benchmarks of the compiled module in wasmhost, with the baselines a
// platform team would compare against in the same run: the do-nothing module
// (testdata/nothing), the floor (testdata/floor: the same plus four trivial
// host calls), golang.org/x/time/rate, the classic mutex-and-map net/http
// limiter (and, from ./internal/bucket, our bucket arithmetic). `make bench`
// runs them several times and prints the table of BENCHMARKS.md.

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tokengate/tokengate/internal/wasmhost"
	"golang.org/x/time/rate"
)

// fixture is a benchmark module built from testdata, compiled once.
type fixture struct {
	pkg    string
	once   sync.Once
	module *wasmhost.Module
	err    error
}

var (
	floorFixture     = &fixture{pkg: "./testdata/floor"}
	nothingFixture   = &fixture{pkg: "./testdata/nothing"}
	hostcallsFixture = &fixture{pkg: "./testdata/hostcalls"}
)

func (f *fixture) get(b *testing.B) *wasmhost.Module {
	f.once.Do(func() {
		var wasm []byte
		if wasm, f.err = buildWasm(f.pkg); f.err == nil {
			f.module, f.err = wasmhost.Compile(context.Background(), wasm)
		}
	})
	if f.err != nil {
		b.Fatal(f.err)
	}
	return f.module
}

var (
	benchInfo = wasmhost.StreamInfo{SourceAddress: "10.0.0.1:5000"}
	benchReq  = wasmhost.Request{Headers: wasmhost.Headers{
		{":method", "GET"}, {":path", "/api/items?page=2"}, {":authority", "api.example.com"},
		{"x-api-key", "k-8d2f1c"}, {"user-agent", "bench"}}}
)

// serveLoop runs the full callback sequence b.N times on one VM.
func serveLoop(b *testing.B, vm *wasmhost.VM, wantStatus int) {
	b.Helper()
	b.ReportAllocs()
	for b.Loop() {
		if resp := vm.Serve(benchInfo, benchReq, upstreamOK); resp.Status != wantStatus {
			b.Fatalf("status %d, want %d", resp.Status, wantStatus)
		}
	}
}

// The request paths of the table, each a configuration and the status its
// requests get.
const (
	allowedConfig = `{"rules":[{"name":"per-ip","key":["remote_address"],"capacity":1000000000,"refill":1,"interval":"1s"}]}`
	deniedConfig  = `{"rules":[{"name":"per-ip","key":["remote_address"],"capacity":1,"refill":1,"interval":"1000h"}]}`
	threeConfig   = `{"rules":[
		{"name":"per-ip","key":["remote_address"],"capacity":1000000000,"refill":1,"interval":"1s"},
		{"name":"per-key-path","match":{"path_prefix":"/api/","methods":["GET","POST"]},"key":["header:x-api-key","path","method"],"capacity":1000000000,"refill":1,"interval":"1s"},
		{"name":"per-host","match":{"hosts":["api.example.com"]},"key":["host"],"capacity":1000000000,"refill":1,"interval":"1s"}]}`
)

// cachedConfig is the denial-cache path: one global rule keyed like
// deniedConfig's, whose refusal by the rate limit service is remembered
// for 1000h, so every request is refused from shared data with no call.
const cachedConfig = `{"rules":[{"name":"per-ip","key":["remote_address"],"global":{"requests_per_unit":1,"unit":"hour"}}],
	"rate_limit_service":{"cluster":"ratelimit","domain":"tokengate"}}`

// cachedDenier starts the cached path: the service refuses the first
// request, later ones must not reach it.
func cachedDenier(b *testing.B) *wasmhost.VM {
	f := &fakeRLS{decide: overFor(1000 * time.Hour)}
	g := start(b, cachedConfig, func(c *wasmhost.PluginConfig) { c.Grpc = f })
	vm := g.Worker(0)
	if resp := vm.Serve(benchInfo, benchReq, upstreamOK); resp.Status != 429 || f.count() != 1 {
		b.Fatalf("priming: status %d, %d calls", resp.Status, f.count())
	}
	b.Cleanup(func() {
		if f.count() != 1 {
			b.Errorf("%d calls to the service: refusals were not served from the cache", f.count())
		}
	})
	return vm
}

// denier starts the denied path: its one token is spent before the loop.
func denier(b *testing.B) *gateway {
	g := start(b, deniedConfig)
	g.serve(g.Worker(0), get(benchInfo.SourceAddress, "/"))
	return g
}

// BenchmarkAllowed: one rule keyed by remote_address, every request admitted.
func BenchmarkAllowed(b *testing.B) { serveLoop(b, start(b, allowedConfig).Worker(0), 200) }

// BenchmarkDenied: the 429 path (local reply through the response callback).
func BenchmarkDenied(b *testing.B) { serveLoop(b, denier(b).Worker(0), 429) }

// BenchmarkPaths serves every request path and both floors in turns of
// pathBatch requests and reports, per path, the median time of a turn divided
// by pathBatch (ns/<path>) and that as a multiple of the do-nothing module's
// (x/<path>). Turns interleave, so a machine whose load changes during the
// run slows every path alike, and the median leaves out the turns another
// process preempted. ns/op is one turn of every path.
func BenchmarkPaths(b *testing.B) {
	const pathBatch = 8
	type path struct {
		name   string
		vm     *wasmhost.VM
		status int
		turns  []time.Duration
	}
	fixtureVM := func(f *fixture) *wasmhost.VM {
		p, err := wasmhost.NewPlugin(context.Background(), f.get(b), wasmhost.PluginConfig{Name: "fixture"})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { p.Close(context.Background()) })
		return p.Worker(0)
	}
	paths := []*path{
		{name: "nothing", vm: fixtureVM(nothingFixture), status: 200},
		{name: "floor", vm: fixtureVM(floorFixture), status: 200},
		{name: "hostcalls", vm: fixtureVM(hostcallsFixture), status: 200},
		{name: "allowed", vm: start(b, allowedConfig).Worker(0), status: 200},
		{name: "denied", vm: denier(b).Worker(0), status: 429},
		{name: "three", vm: start(b, threeConfig).Worker(0), status: 200},
		{name: "cached", vm: cachedDenier(b), status: 429},
	}
	for b.Loop() {
		for _, p := range paths {
			t0 := time.Now()
			for range pathBatch {
				if resp := p.vm.Serve(benchInfo, benchReq, upstreamOK); resp.Status != p.status {
					b.Fatalf("%s: status %d, want %d", p.name, resp.Status, p.status)
				}
			}
			p.turns = append(p.turns, time.Since(t0))
		}
	}
	perRequest := func(p *path) float64 {
		slices.Sort(p.turns)
		return float64(p.turns[len(p.turns)/2].Nanoseconds()) / pathBatch
	}
	ns := map[string]float64{}
	for _, p := range paths {
		ns[p.name] = perRequest(p)
		b.ReportMetric(ns[p.name], "ns/"+p.name)
		if p.name != "nothing" {
			b.ReportMetric(ns[p.name]/ns["nothing"], "x/"+p.name)
		}
	}
	b.ReportMetric(ns["cached"]/ns["denied"], "x-denied/cached")
}

// BenchmarkAllowedPhases splits an allowed request into its callbacks (as
// the host sees them) and reports each as ns/<phase>.
func BenchmarkAllowedPhases(b *testing.B) {
	g := start(b, `{"rules":[{"name":"per-ip","key":["remote_address"],"capacity":1000000000,"refill":1,"interval":"1s"}]}`)
	vm := g.Worker(0)
	resp := wasmhost.Headers{{":status", "200"}}
	var create, reqHdr, respHdr, done time.Duration
	for b.Loop() {
		t0 := time.Now()
		s := vm.NewStream(benchInfo)
		t1 := time.Now()
		s.RequestHeaders(benchReq.Headers, true)
		t2 := time.Now()
		s.ResponseHeaders(resp, true)
		t3 := time.Now()
		s.Close()
		t4 := time.Now()
		create, reqHdr, respHdr, done = create+t1.Sub(t0), reqHdr+t2.Sub(t1), respHdr+t3.Sub(t2), done+t4.Sub(t3)
	}
	n := float64(b.N)
	b.ReportMetric(float64(create.Nanoseconds())/n, "ns/create")
	b.ReportMetric(float64(reqHdr.Nanoseconds())/n, "ns/request-headers")
	b.ReportMetric(float64(respHdr.Nanoseconds())/n, "ns/response-headers")
	b.ReportMetric(float64(done.Nanoseconds())/n, "ns/close")
}

// contention drives 8 worker VMs from 8 goroutines, b.N requests in all,
// and reports requests per second and CAS retries per request.
func contention(b *testing.B, keys int) {
	g := start(b, `{"rules":[{"name":"c","key":["remote_address"],"capacity":1000000000,"refill":1,"interval":"1s"}],"slots":16384}`, workers(8))
	sources := make([]string, keys)
	for i := range sources {
		sources[i] = fmt.Sprintf("10.%d.%d.%d:1", i>>16&255, i>>8&255, i&255)
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	begin := time.Now()
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func(vm *wasmhost.VM) {
			defer wg.Done()
			for {
				i := next.Add(1)
				if i > int64(b.N) {
					return
				}
				vm.Serve(wasmhost.StreamInfo{SourceAddress: sources[int(i)%keys]}, benchReq, upstreamOK)
			}
		}(g.Worker(w))
	}
	wg.Wait()
	elapsed := time.Since(begin)
	b.StopTimer()
	v, _ := g.Metrics().Get("wasmcustom.tokengate.c.cas_retries")
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "req/s")
	b.ReportMetric(float64(v)/float64(b.N), "casretries/req")
}

func BenchmarkContentionHotKey(b *testing.B) { contention(b, 1) }

func BenchmarkContention10kKeys(b *testing.B) { contention(b, 10_000) }

// BenchmarkCompile: compiling the module from scratch (no cache), and its size.
func BenchmarkCompile(b *testing.B) {
	ctx := context.Background()
	for b.Loop() {
		rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigCompiler())
		if _, err := rt.CompileModule(ctx, wasmBytes); err != nil {
			b.Fatal(err)
		}
		rt.Close(ctx)
	}
	b.ReportMetric(float64(len(wasmBytes)), "wasm-bytes")
}

// BenchmarkStart8: the canary plus main and 8 worker VMs, each through the
// full start sequence (the module already compiled).
func BenchmarkStart8(b *testing.B) {
	for b.Loop() {
		p, err := wasmhost.NewPlugin(context.Background(), module, wasmhost.PluginConfig{
			Name: "tokengate", Concurrency: 8, Configuration: []byte(perIP)})
		if err != nil {
			b.Fatal(err)
		}
		p.Close(context.Background())
	}
}

// BenchmarkBaselineXTimeRate: golang.org/x/time/rate, one limiter, Allow.
func BenchmarkBaselineXTimeRate(b *testing.B) {
	l := rate.NewLimiter(rate.Inf, 1)
	b.ReportAllocs()
	for b.Loop() {
		l.Allow()
	}
}

// mutexLimiter is the classic net/http middleware design: a map from client
// key to a float token bucket, behind one mutex, refilled from time.Now.
type mutexLimiter struct {
	mu       sync.Mutex
	buckets  map[string]*mutexBucket
	capacity float64
	perSec   float64
}

type mutexBucket struct {
	tokens float64
	last   time.Time
}

func (l *mutexLimiter) allow(key string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	bk, ok := l.buckets[key]
	if !ok {
		bk = &mutexBucket{tokens: l.capacity, last: now}
		l.buckets[key] = bk
	}
	bk.tokens = min(l.capacity, bk.tokens+now.Sub(bk.last).Seconds()*l.perSec)
	bk.last = now
	if bk.tokens < 1 {
		return false
	}
	bk.tokens--
	return true
}

func BenchmarkBaselineMutexBucket(b *testing.B) {
	l := &mutexLimiter{buckets: map[string]*mutexBucket{}, capacity: 1e18, perSec: 1}
	b.ReportAllocs()
	for b.Loop() {
		l.allow("10.0.0.1")
	}
}

func BenchmarkBaselineMutexBucketParallel(b *testing.B) {
	l := &mutexLimiter{buckets: map[string]*mutexBucket{}, capacity: 1e18, perSec: 1}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			l.allow("10.0.0.1")
		}
	})
}

// BenchmarkMemoryLinear reports one VM's linear memory in 64 KiB pages after
// warm-up, after 100,000 and after 1,000,000 requests over 10,000 client
// keys. It does that fixed work once per call, whatever b.N is: read its
// metrics, not ns/op.
func BenchmarkMemoryLinear(b *testing.B) {
	g := start(b, `{"rules":[{"name":"r","key":["remote_address"],"capacity":100,"refill":10,"interval":"1s"}],"slots":16384}`)
	vm := g.Worker(0)
	sources := make([]string, 10_000)
	for i := range sources {
		sources[i] = fmt.Sprintf("10.1.%d.%d:1", i>>8&255, i&255)
	}
	serveN := func(from, to int) {
		for i := from; i < to; i++ {
			vm.Serve(wasmhost.StreamInfo{SourceAddress: sources[i%len(sources)]}, benchReq, upstreamOK)
			if i%1000 == 0 {
				g.clock.Advance(10 * time.Millisecond)
			}
		}
	}
	serveN(0, 10_000)
	warm := vm.MemoryPages()
	serveN(10_000, 100_000)
	at100k := vm.MemoryPages()
	serveN(100_000, 1_000_000)
	b.ReportMetric(float64(warm), "pages-warm")
	b.ReportMetric(float64(at100k), "pages-100k")
	b.ReportMetric(float64(vm.MemoryPages()), "pages-1M")
}

// BenchmarkSharedFootprint reports shared data after 1,000,000 distinct
// clients through one rule of 16,384 slots: keys, bytes and bytes per slot.
// Fixed work, like BenchmarkMemoryLinear.
func BenchmarkSharedFootprint(b *testing.B) {
	const slots = 16384
	g := start(b, fmt.Sprintf(`{"rules":[{"name":"r","key":["header:x-api-key"],"capacity":5,"refill":1,"interval":"1s"}],"slots":%d}`, slots))
	vm := g.Worker(0)
	h := wasmhost.Headers{{":method", "GET"}, {":path", "/"}, {":authority", "a"}, {"x-api-key", ""}}
	for i := 0; i < 1_000_000; i++ {
		h[3][1] = fmt.Sprint("key-", i)
		vm.Serve(benchInfo, wasmhost.Request{Headers: h}, upstreamOK)
	}
	keys, size := g.Shared().Len("tokengate"), g.Shared().Size("tokengate")
	b.ReportMetric(float64(keys), "keys")
	b.ReportMetric(float64(size), "bytes")
	b.ReportMetric(float64(size)/slots, "bytes/slot")
}
