package limiter

import (
	"errors"
	"sync"
	"testing"

	"github.com/tokengate/tokengate/internal/config"
	"github.com/tokengate/tokengate/internal/wasmhost"
)

// store adapts the project's Envoy-faithful shared data to Store.
type store struct {
	sd *wasmhost.SharedData
	vm string
}

func newStore() store { return store{sd: wasmhost.NewSharedData()} }

func (s store) GetSharedData(key []byte) ([]byte, uint32, error) {
	v, cas, st := s.sd.Get(s.vm, string(key))
	return v, cas, storeErr(st)
}

func (s store) SetSharedData(key, value []byte, cas uint32) error {
	return storeErr(s.sd.Set(s.vm, string(key), value, cas))
}

func storeErr(st wasmhost.Status) error {
	switch st {
	case wasmhost.StatusOK:
		return nil
	case wasmhost.StatusNotFound:
		return ErrNotFound
	case wasmhost.StatusCASMismatch:
		return ErrCASMismatch
	}
	return errOther
}

var errOther = errors.New("shared data failed")

// counters is a Metrics that remembers totals, safe for concurrent use.
type counters struct {
	mu sync.Mutex
	n  map[[2]int]int64
}

func (c *counters) Add(rule int, k Counter, delta int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n = map[[2]int]int64{}
	}
	c.n[[2]int{rule, int(k)}] += delta
}

func (c *counters) get(rule int, k Counter) int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[[2]int{rule, int(k)}]
}

// at is a Clock stopped at one time.
type at int64

func (t at) Now() int64 { return int64(t) }

// req is a Request from a header map and a peer address.
type req struct {
	h      map[string]string
	source string
}

func (r req) Header(name string) ([]byte, bool) {
	v, ok := r.h[name]
	return []byte(v), ok
}

func (r req) SourceAddress() ([]byte, bool) {
	return []byte(r.source), r.source != ""
}

func get(path, source string, kv ...string) req {
	h := map[string]string{":path": path, ":method": "GET", ":authority": "api.example.com"}
	for i := 0; i+1 < len(kv); i += 2 {
		h[kv[i]] = kv[i+1]
	}
	return req{h: h, source: source}
}

func mustConfig(t testing.TB, js string) *config.Config {
	t.Helper()
	cfg, err := config.Parse([]byte(js))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// newLimiter starts a limiter over s, like one VM configuring.
func newLimiter(t testing.TB, cfg *config.Config, s Store, m Metrics) *Limiter {
	t.Helper()
	l := New(cfg, "test", s, m)
	if err := l.Start(1, 42); err != nil {
		t.Fatal(err)
	}
	return l
}
