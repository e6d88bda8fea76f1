//go:build !wasip1

package main

// Scenarios written once and run twice (t.Run("go") / t.Run("wasm")): the
// limiter called natively from Go, and the compiled module in wasmhost.
// Both share one clock and one shared-data store between their workers, the
// project's Envoy-faithful wasmhost.SharedData, so a scenario tests the
// limiter's logic and, on the .wasm, also the wiring, the ABI and the VM.

import (
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/tokengate/tokengate/internal/config"
	"github.com/tokengate/tokengate/internal/limiter"
	"github.com/tokengate/tokengate/internal/wasmhost"
)

// gate is what a scenario drives: workers that decide requests, a clock,
// shared data and counters. serve may be called from one goroutine per
// worker at a time.
type gate interface {
	workers() int
	// serve decides c on worker w and returns the status: 200 or 429.
	serve(w int, c call) int
	clock() *wasmhost.FakeClock
	shared() *wasmhost.SharedData
	counter(t testing.TB, name string) int64
}

// eachGate runs scenario on the native limiter and on the compiled module,
// configured with configuration and n workers.
func eachGate(t *testing.T, configuration string, n int, scenario func(t *testing.T, g gate)) {
	t.Run("go", func(t *testing.T) { scenario(t, newGoGate(t, configuration, n)) })
	t.Run("wasm", func(t *testing.T) { scenario(t, wasmGate{start(t, configuration, workers(n))}) })
}

// wasmGate is the compiled module.
type wasmGate struct{ g *gateway }

func (w wasmGate) workers() int                 { return w.g.Workers() }
func (w wasmGate) serve(i int, c call) int      { return w.g.serve(w.g.Worker(i), c).Status }
func (w wasmGate) clock() *wasmhost.FakeClock   { return w.g.clock }
func (w wasmGate) shared() *wasmhost.SharedData { return w.g.Shared() }
func (w wasmGate) counter(t testing.TB, name string) int64 {
	t.Helper()
	return counter(t, w.g, name)
}

// goGate is the limiter package called from Go, one Limiter per worker, as
// the filter configures one per VM, under the plugin name the wasm gate's
// plugin has, so both write the same shared-data keys.
type goGate struct {
	lims  []*limiter.Limiter
	locks []sync.Mutex
	clk   *wasmhost.FakeClock
	sd    *wasmhost.SharedData
	cnt   *goCounters
}

func newGoGate(t *testing.T, configuration string, n int) *goGate {
	t.Helper()
	cfg, err := config.Parse([]byte(configuration))
	if err != nil {
		t.Fatal(err)
	}
	g := &goGate{locks: make([]sync.Mutex, n), clk: wasmhost.NewFakeClock(t0), sd: wasmhost.NewSharedData(),
		cnt: &goCounters{cfg: cfg, n: map[string]*atomic.Int64{}}}
	for i := 0; i < n; i++ {
		l := limiter.New(cfg, "tokengate", goStore{g.sd}, g.cnt)
		if err := l.Start(g.clk.Now().UnixNano(), uint64(i)); err != nil {
			t.Fatal(err)
		}
		g.lims = append(g.lims, l)
	}
	return g
}

func (g *goGate) workers() int                 { return len(g.lims) }
func (g *goGate) clock() *wasmhost.FakeClock   { return g.clk }
func (g *goGate) shared() *wasmhost.SharedData { return g.sd }

func (g *goGate) serve(w int, c call) int {
	g.locks[w].Lock()
	defer g.locks[w].Unlock()
	if g.lims[w].Decide(goRequest(c), goClock{g.clk}).Denied {
		return 429
	}
	return 200
}

func (g *goGate) counter(t testing.TB, name string) int64 {
	t.Helper()
	g.cnt.mu.Lock()
	defer g.cnt.mu.Unlock()
	v, ok := g.cnt.n[name]
	if !ok {
		return 0 // counters appear on first use here; the host defines them all at start
	}
	return v.Load()
}

// goStore is the limiter's Store over wasmhost's shared data, in the
// namespace the wasm gate's plugin uses (vm_id "tokengate").
type goStore struct{ sd *wasmhost.SharedData }

func (s goStore) GetSharedData(key []byte) ([]byte, uint32, error) {
	v, cas, st := s.sd.Get("tokengate", string(key))
	return v, cas, goStatus(st)
}

func (s goStore) SetSharedData(key, value []byte, cas uint32) error {
	return goStatus(s.sd.Set("tokengate", string(key), value, cas))
}

func goStatus(st wasmhost.Status) error {
	switch st {
	case wasmhost.StatusOK:
		return nil
	case wasmhost.StatusNotFound:
		return limiter.ErrNotFound
	case wasmhost.StatusCASMismatch:
		return limiter.ErrCASMismatch
	}
	return &hostStatusError{st}
}

type hostStatusError struct{ st wasmhost.Status }

func (e *hostStatusError) Error() string { return "shared data: status " + e.st.String() }

// goCounters keeps the limiter's counters under their metric names.
type goCounters struct {
	cfg *config.Config
	mu  sync.Mutex
	n   map[string]*atomic.Int64
}

func (c *goCounters) Add(rule int, k limiter.Counter, delta int64) {
	name := limiter.MetricName(c.cfg.Rules[rule].Name, k)
	c.mu.Lock()
	v, ok := c.n[name]
	if !ok {
		v = &atomic.Int64{}
		c.n[name] = v
	}
	c.mu.Unlock()
	v.Add(delta)
}

// goClock reads the fake clock in Unix nanoseconds, as the host's does.
type goClock struct{ c *wasmhost.FakeClock }

func (c goClock) Now() int64 { return c.c.Now().UnixNano() }

// goRequest is a call as the limiter sees a request.
type goRequest call

func (r goRequest) Header(name string) ([]byte, bool) {
	switch name {
	case ":method":
		return []byte(r.method), true
	case ":path":
		return []byte(r.path), true
	case ":authority":
		return []byte("api.example.com"), true
	}
	for _, kv := range r.headers {
		if strings.EqualFold(kv[0], name) {
			return []byte(kv[1]), true
		}
	}
	return nil, false
}

func (r goRequest) SourceAddress() ([]byte, bool) { return []byte(r.source), r.source != "" }

var (
	_ gate = wasmGate{}
	_ gate = (*goGate)(nil)
)
