package limiter

import (
	"sync"
	"testing"

	"github.com/tokengate/tokengate/internal/config"
)

// memStore keeps shared data in memory under the rules Store documents:
// the limiter's tests check it against its own contract. Whether Envoy keeps
// that contract is the business of internal/wasmhost, the project's one
// implementation of Envoy's shared data, and the filter's tests run the
// limiter over it inside the compiled module. Safe for concurrent use.
type memStore struct {
	mu      sync.Mutex
	entries map[string]memEntry
	lastCAS uint32 // the last cas handed out; the next is one more, never 0
}

type memEntry struct {
	value []byte
	cas   uint32
}

func newStore() *memStore { return &memStore{entries: map[string]memEntry{}} }

func (s *memStore) GetSharedData(key []byte) ([]byte, uint32, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.entries[string(key)]
	if !ok {
		return nil, 0, ErrNotFound
	}
	return append([]byte(nil), e.value...), e.cas, nil
}

func (s *memStore) SetSharedData(key, value []byte, cas uint32) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.entries[string(key)]
	if ok && cas != 0 && cas != e.cas {
		return ErrCASMismatch
	}
	s.lastCAS++
	if s.lastCAS == 0 { // the counter wraps round, skipping 0
		s.lastCAS = 1
	}
	s.entries[string(key)] = memEntry{value: append([]byte(nil), value...), cas: s.lastCAS}
	return nil
}

// put stores value under key like an unconditional Set.
func (s *memStore) put(key string, value []byte) {
	if err := s.SetSharedData([]byte(key), value, 0); err != nil {
		panic(err)
	}
}

// value returns what key holds, nil if it is missing.
func (s *memStore) value(key string) []byte {
	v, _, _ := s.GetSharedData([]byte(key))
	return v
}

// len returns the number of keys.
func (s *memStore) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.entries)
}

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
