package limiter

import (
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokengate/tokengate/internal/bucket"
)

const sec = int64(time.Second)

const perIP = `{"rules":[{"name":"per-ip","key":["remote_address"],"capacity":3,"refill":1,"interval":"1s"}]}`

func TestDecideTimeline(t *testing.T) {
	l := newLimiter(t, mustConfig(t, perIP), newStore(), nil)
	t0 := 1_700_000_000 * sec
	steps := []struct {
		at            int64
		wantAllowed   bool
		wantRemaining int64
		wantRetry     int64 // RetryAfter when denied
	}{
		{t0, true, 2, 0},
		{t0, true, 1, 0},
		{t0, true, 0, 0},
		{t0, false, 0, sec},
		{t0 + sec/4, false, 0, 3 * sec / 4},
		{t0 + sec, true, 0, 0},
		{t0 + 10*sec, true, 2, 0},
	}
	for i, st := range steps {
		d := l.Decide(get("/", "10.0.0.1:5555"), at(st.at))
		if len(d.Verdicts) != 1 {
			t.Fatalf("step %d: %d verdicts", i, len(d.Verdicts))
		}
		v := d.Verdicts[0]
		if v.Allowed != st.wantAllowed || v.Remaining != st.wantRemaining || d.Denied == st.wantAllowed {
			t.Fatalf("step %d: %+v denied=%v, want allowed=%v remaining=%d", i, v, d.Denied, st.wantAllowed, st.wantRemaining)
		}
		if !st.wantAllowed && v.RetryAfter != st.wantRetry {
			t.Fatalf("step %d: RetryAfter %d, want %d", i, v.RetryAfter, st.wantRetry)
		}
	}
}

func TestIndependentKeys(t *testing.T) {
	l := newLimiter(t, mustConfig(t, perIP), newStore(), nil)
	for i := 0; i < 3; i++ {
		l.Decide(get("/", "10.0.0.1:1"), at(0))
	}
	if d := l.Decide(get("/", "10.0.0.1:2"), at(0)); !d.Denied {
		t.Fatal("same IP, other port: not limited")
	}
	if d := l.Decide(get("/", "10.0.0.2:1"), at(0)); d.Denied {
		t.Fatal("another IP was limited")
	}
	// One address, two spellings: one client.
	for i := 0; i < 3; i++ {
		l.Decide(get("/", "[::ffff:10.0.0.3]:1"), at(0))
	}
	if d := l.Decide(get("/", "10.0.0.3:9"), at(0)); !d.Denied {
		t.Fatal("IPv4-mapped IPv6 and IPv4 were different clients")
	}
}

func TestMatch(t *testing.T) {
	cfg := mustConfig(t, `{"rules":[{"name":"api","match":{"path_prefix":"/api/","methods":["POST"],"hosts":["*.example.com"]},
		"key":["remote_address"],"capacity":1,"refill":1,"interval":"1h"}]}`)
	l := newLimiter(t, cfg, newStore(), nil)
	tests := []struct {
		name  string
		r     req
		match bool
	}{
		{"all conditions", get("/api/x", "1.1.1.1:1", ":method", "POST", ":authority", "Api.Example.com:8080"), true},
		{"wrong prefix", get("/apix", "1.1.1.1:1", ":method", "POST", ":authority", "a.example.com"), false},
		{"wrong method", get("/api/x", "1.1.1.1:1", ":method", "GET", ":authority", "a.example.com"), false},
		{"wrong host", get("/api/x", "1.1.1.1:1", ":method", "POST", ":authority", "example.com"), false},
		{"host suffix trick", get("/api/x", "1.1.1.1:1", ":method", "POST", ":authority", "evilexample.com"), false},
	}
	for _, tt := range tests {
		d := l.Decide(tt.r, at(0))
		if got := len(d.Verdicts) == 1; got != tt.match {
			t.Errorf("%s: matched=%v, want %v", tt.name, got, tt.match)
		}
	}
}

// TestMissingKeyPartShared pins the documented behaviour: requests that lack
// a key part share one bucket instead of escaping the limit.
func TestMissingKeyPartShared(t *testing.T) {
	cfg := mustConfig(t, `{"rules":[{"name":"per-key","key":["header:x-api-key"],"capacity":2,"refill":1,"interval":"1h"}]}`)
	l := newLimiter(t, cfg, newStore(), nil)
	for i := 0; i < 2; i++ {
		if d := l.Decide(get("/", fmt.Sprintf("10.0.0.%d:1", i)), at(0)); d.Denied {
			t.Fatalf("anonymous request %d denied", i)
		}
	}
	if d := l.Decide(get("/", "10.9.9.9:1"), at(0)); !d.Denied {
		t.Fatal("third anonymous request from a new address escaped the shared bucket")
	}
	// An empty key value is a value, not a missing part.
	if d := l.Decide(get("/", "10.0.0.1:1", "x-api-key", ""), at(0)); d.Denied {
		t.Fatal("empty API key shares the missing-key bucket")
	}
	if d := l.Decide(get("/", "10.0.0.1:1", "x-api-key", "k1"), at(0)); d.Denied {
		t.Fatal("a real API key was limited by anonymous traffic")
	}
}

func TestCompositeKey(t *testing.T) {
	cfg := mustConfig(t, `{"rules":[{"name":"ip-path","key":["remote_address","path","method","host"],"capacity":1,"refill":1,"interval":"1h"}]}`)
	l := newLimiter(t, cfg, newStore(), nil)
	if l.Decide(get("/a?x=1", "1.1.1.1:1"), at(0)).Denied {
		t.Fatal("first denied")
	}
	if !l.Decide(get("/a?y=2", "1.1.1.1:2", ":authority", "API.EXAMPLE.COM:443"), at(0)).Denied {
		t.Fatal("query, port or host case made a new client")
	}
	if l.Decide(get("/b", "1.1.1.1:1"), at(0)).Denied {
		t.Fatal("other path limited")
	}
	if l.Decide(get("/a", "1.1.1.1:1", ":method", "POST"), at(0)).Denied {
		t.Fatal("other method limited")
	}
}

// TestRulesStopAtFirstDenial pins the documented order: rules are checked in
// order, tokens taken by earlier rules stay taken, later rules are not
// checked, and shadow rules never reject.
func TestRulesStopAtFirstDenial(t *testing.T) {
	cfg := mustConfig(t, `{"rules":[
		{"name":"shadow","key":["remote_address"],"capacity":1,"refill":1,"interval":"1h","shadow":true},
		{"name":"global","key":["method"],"capacity":5,"refill":1,"interval":"1h"},
		{"name":"strict","key":["remote_address"],"capacity":1,"refill":1,"interval":"1h"},
		{"name":"after","key":["path"],"capacity":100,"refill":1,"interval":"1h"}]}`)
	m := &counters{}
	l := newLimiter(t, cfg, newStore(), m)
	if d := l.Decide(get("/", "1.1.1.1:1"), at(0)); d.Denied || len(d.Verdicts) != 4 {
		t.Fatalf("first request: %+v", d)
	}
	d := l.Decide(get("/", "1.1.1.1:1"), at(0))
	if !d.Denied || len(d.Verdicts) != 3 || d.Verdicts[0].Allowed {
		t.Fatalf("second request: %+v", d)
	}
	if got := m.get(0, CounterShadowLimited); got != 1 {
		t.Errorf("shadow_limited = %d, want 1", got)
	}
	if got := m.get(1, CounterAllowed); got != 2 {
		t.Errorf("global allowed = %d, want 2 (tokens stay taken)", got)
	}
	if got := m.get(3, CounterAllowed); got != 1 {
		t.Errorf("rule after the denial was checked: allowed = %d", got)
	}
}

// TestWorkersShareOneBudget: 8 VMs (limiters over one store) hammer one
// key on goroutines at a fixed time: exactly capacity requests pass.
func TestWorkersShareOneBudget(t *testing.T) {
	cfg := mustConfig(t, `{"rules":[{"name":"hot","key":["remote_address"],"capacity":500,"refill":1,"interval":"1h"}]}`)
	s := newStore()
	m := &counters{}
	var admitted atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		l := newLimiter(t, cfg, s, m)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 1000; i++ {
				if !l.Decide(get("/", "10.1.1.1:1"), at(5*sec)).Denied {
					admitted.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	if got := admitted.Load(); got != 500 {
		t.Fatalf("admitted %d, want exactly 500 (failure_mode decisions: %d, cas_exhausted: %d)", got,
			m.get(0, CounterFailureMode), m.get(0, CounterCASExhausted))
	}
}

// TestColdStartRaces: many rounds of 8 workers racing on a key nobody has
// used, each worker wanting the whole burst: never more than capacity.
func TestColdStartRaces(t *testing.T) {
	cfg := mustConfig(t, `{"rules":[{"name":"cold","key":["header:x-k"],"capacity":3,"refill":1,"interval":"1h"}],"slots":4096}`)
	s := newStore()
	var limiters []*Limiter
	for w := 0; w < 8; w++ {
		limiters = append(limiters, newLimiter(t, cfg, s, nil))
	}
	for round := 0; round < 300; round++ {
		key := fmt.Sprintf("fresh-%d", round)
		var admitted atomic.Int64
		var wg sync.WaitGroup
		start := make(chan struct{})
		for _, l := range limiters {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				for i := 0; i < 2; i++ {
					if !l.Decide(get("/", "1.1.1.1:1", "x-k", key), at(0)).Denied {
						admitted.Add(1)
					}
				}
			}()
		}
		close(start)
		wg.Wait()
		if got := admitted.Load(); got > 3 {
			t.Fatalf("round %d: %d admitted on a fresh key, capacity 3", round, got)
		}
	}
}

// TestCreationCannotOverwrite pins the cas trick that makes creating a set
// atomic: a worker that found a set missing, and then loses the race to
// create it, must not overwrite the winner's write.
func TestCreationCannotOverwrite(t *testing.T) {
	cfg := mustConfig(t, `{"rules":[{"name":"r","key":["remote_address"],"capacity":1,"refill":1,"interval":"1h"}]}`)
	s := newStore()
	a := newLimiter(t, cfg, s, nil)
	b := newLimiter(t, cfg, s, nil)
	// a reads "missing"; before a writes, b creates the set and spends the
	// only token.
	hook := &raceStore{Store: s, beforeSet: func() {
		if b.Decide(get("/", "1.1.1.1:1"), at(0)).Denied {
			t.Error("b denied on a fresh key")
		}
	}}
	a.store = hook
	if d := a.Decide(get("/", "1.1.1.1:1"), at(0)); !d.Denied {
		t.Fatal("a admitted too: creation overwrote b's set (2 admitted, capacity 1)")
	}
	if hook.mismatches == 0 {
		t.Fatal("a's create did not meet a cas mismatch")
	}
}

// TestCreationAcrossTheCASWrap: creating a set stays atomic when the
// store's cas counter wraps round through 0, and when the cas of a set this
// VM read earlier comes round again: a creation uses a cas issued just
// before it, never one remembered from an older read (issue 12.2).
func TestCreationAcrossTheCASWrap(t *testing.T) {
	cfg := mustConfig(t, `{"rules":[{"name":"r","key":["remote_address"],"capacity":1,"refill":1,"interval":"1h"}]}`)
	for _, tt := range []struct {
		name string
		// rival returns the cas the other worker's creation must get,
		// given the cas of the set a touched earlier.
		rival func(old uint32) uint32
	}{
		{"the rival's set gets cas 1, after the wrap", func(uint32) uint32 { return 1 }},
		{"the rival's set gets the cas of a set read earlier", func(old uint32) uint32 { return old }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := newStore()
			s.lastCAS = 0xfffffff0
			a := newLimiter(t, cfg, s, nil)
			b := newLimiter(t, cfg, s, nil)
			a.Decide(get("/", "9.9.9.9:1"), at(0))
			old := s.lastCAS
			hook := &windowStore{Store: s, window: func() {
				// b's creation costs two numbers: its epoch write, then
				// the set (0 is skipped when the counter wraps).
				s.mu.Lock()
				s.lastCAS = tt.rival(old) - 2
				if tt.rival(old) == 1 {
					s.lastCAS = 0xffffffff - 1
				}
				s.mu.Unlock()
				if b.Decide(get("/", "1.1.1.1:1"), at(0)).Denied {
					t.Error("b denied on a fresh key")
				}
			}}
			a.store = hook
			if d := a.Decide(get("/", "1.1.1.1:1"), at(0)); !d.Denied {
				t.Fatal("a admitted too: its creation overwrote b's set (2 admitted, capacity 1)")
			}
			if !hook.created {
				t.Fatal("a did not find the set missing: the test raced nothing")
			}
		})
	}
}

// windowStore runs window once, just before the first Set that creates a
// missing key (a conditional Set after that key's Get found nothing).
type windowStore struct {
	Store
	window  func()
	missing string
	created bool
}

func (w *windowStore) GetSharedData(key []byte) ([]byte, uint32, error) {
	v, cas, err := w.Store.GetSharedData(key)
	if err == ErrNotFound {
		w.missing = string(key)
	}
	return v, cas, err
}

func (w *windowStore) SetSharedData(key, value []byte, cas uint32) error {
	if cas != 0 && string(key) == w.missing && w.window != nil {
		f := w.window
		w.window, w.created = nil, true
		f()
	}
	return w.Store.SetSharedData(key, value, cas)
}

// raceStore runs beforeSet once, between a Get and the Set that follows.
type raceStore struct {
	Store
	beforeSet  func()
	mismatches int
}

func (r *raceStore) SetSharedData(key, value []byte, cas uint32) error {
	if f := r.beforeSet; f != nil {
		r.beforeSet = nil
		f()
	}
	err := r.Store.SetSharedData(key, value, cas)
	if err == ErrCASMismatch {
		r.mismatches++
	}
	return err
}

// TestBoundedMemory: 100,000 distinct clients leave at most one key per set
// (plus the seed and epoch keys) in shared data.
func TestBoundedMemory(t *testing.T) {
	cfg := mustConfig(t, `{"rules":[{"name":"r","key":["remote_address"],"capacity":5,"refill":1,"interval":"1s"}],"slots":1024}`)
	s := newStore()
	l := newLimiter(t, cfg, s, nil)
	for i := 0; i < 100_000; i++ {
		ip := fmt.Sprintf("10.%d.%d.%d:1", i>>16&255, i>>8&255, i&255)
		l.Decide(get("/", ip), at(int64(i)*int64(time.Millisecond)))
	}
	if n, bound := s.len(), 1024/ways+2; n > bound {
		t.Fatalf("%d shared-data keys, bound %d", n, bound)
	}
}

func TestGarbageIsResetAndCounted(t *testing.T) {
	cfg := mustConfig(t, `{"rules":[{"name":"r","key":["remote_address"],"capacity":2,"refill":1,"interval":"1h"}],"slots":16}`)
	s := newStore()
	m := &counters{}
	l := newLimiter(t, cfg, s, m)
	// Fill every set of the rule with garbage, as another plugin might.
	for i := 0; i < 4; i++ {
		s.put(fmt.Sprintf("tokengate/test/r/%x", i), []byte("not a set"))
	}
	for i := 0; i < 2; i++ {
		if l.Decide(get("/", "1.2.3.4:1"), at(0)).Denied {
			t.Fatalf("request %d denied", i)
		}
	}
	if !l.Decide(get("/", "1.2.3.4:1"), at(0)).Denied {
		t.Fatal("the set was not repaired: third request admitted")
	}
	if m.get(0, CounterGarbage) != 1 {
		t.Fatalf("garbage_reset = %d, want 1", m.get(0, CounterGarbage))
	}
}

// failingStore loses every compare-and-swap on keys that begin with prefix
// (all keys when it is empty), as under extreme contention; unconditional
// writes (cas 0) still succeed, as they always do.
type failingStore struct {
	Store
	prefix string
}

func (f failingStore) SetSharedData(key, value []byte, cas uint32) error {
	if cas == 0 || !strings.HasPrefix(string(key), f.prefix) {
		return f.Store.SetSharedData(key, value, cas)
	}
	return ErrCASMismatch
}

// TestCASExhaustionRefuses: a decision that loses every compare-and-swap
// attempt is refused, whatever failure_mode says, with Retry-After 1 and no
// bucket state, counted in cas_exhausted and limited, not in failure_mode.
// A shadow rule only counts it (cas_exhausted and shadow_limited).
func TestCASExhaustionRefuses(t *testing.T) {
	for _, tc := range []struct {
		mode   string
		shadow bool
	}{{"allow", false}, {"deny", false}, {"allow", true}, {"deny", true}} {
		t.Run(fmt.Sprintf("%s/shadow=%v", tc.mode, tc.shadow), func(t *testing.T) {
			cfg := mustConfig(t, fmt.Sprintf(`{"rules":[{"name":"r","key":["remote_address"],"capacity":5,"refill":1,"interval":"1s","shadow":%v}],"failure_mode":%q}`,
				tc.shadow, tc.mode))
			m := &counters{}
			l := newLimiter(t, cfg, newStore(), m)
			l.store = failingStore{Store: l.store}
			d := l.Decide(get("/", "1.1.1.1:1"), at(0))
			if len(d.Verdicts) != 1 {
				t.Fatalf("decision %+v", d)
			}
			v := d.Verdicts[0]
			if d.Denied == tc.shadow || v.Allowed || !v.Exhausted || v.Failure || v.RetryAfter != 1e9 {
				t.Fatalf("decision %+v, want a refusal (counted only, for a shadow rule) with Retry-After 1s", d)
			}
			limited, shadowLimited := int64(1), int64(0)
			if tc.shadow {
				limited, shadowLimited = 0, 1
			}
			if m.get(0, CounterCASExhausted) != 1 || m.get(0, CounterCASRetries) != maxCASAttempts-1 ||
				m.get(0, CounterFailureMode) != 0 || m.get(0, CounterAllowed) != 0 ||
				m.get(0, CounterLimited) != limited || m.get(0, CounterShadowLimited) != shadowLimited {
				t.Fatalf("cas_exhausted=%d cas_retries=%d failure_mode=%d allowed=%d limited=%d shadow_limited=%d",
					m.get(0, CounterCASExhausted), m.get(0, CounterCASRetries), m.get(0, CounterFailureMode),
					m.get(0, CounterAllowed), m.get(0, CounterLimited), m.get(0, CounterShadowLimited))
			}
			var h Headers
			l.AppendHeaders(&h, d)
			want := "retry-after: 1"
			if tc.shadow {
				want = ""
			}
			if got := strings.Join(lines(&h), "\n"); got != want {
				t.Fatalf("headers %q, want %q", got, want)
			}
		})
	}
}

// TestCASExhaustionHeaders: the rate-limit headers of a refusal by an
// exhausted compare-and-swap loop leave that rule out (its bucket state is
// unknown) and describe the rules whose buckets decided.
func TestCASExhaustionHeaders(t *testing.T) {
	cfg := mustConfig(t, `{"rules":[{"name":"a","key":["remote_address"],"capacity":10,"refill":1,"interval":"1s"},
		{"name":"hot","key":["path"],"capacity":100,"refill":1,"interval":"1s"}],"headers":"both"}`)
	l := newLimiter(t, cfg, newStore(), nil)
	l.store = failingStore{Store: l.store, prefix: "tokengate/test/hot/"}
	d := l.Decide(get("/", "1.1.1.1:1"), at(0))
	if !d.Denied || len(d.Verdicts) != 2 || !d.Verdicts[0].Allowed || !d.Verdicts[1].Exhausted {
		t.Fatalf("decision %+v", d)
	}
	var h Headers
	l.AppendHeaders(&h, d)
	want := []string{
		`retry-after: 1`,
		`ratelimit-policy: "a";q=10;w=10`,
		`ratelimit: "a";r=9;t=1`,
		`x-ratelimit-limit: 10`, `x-ratelimit-remaining: 9`, `x-ratelimit-reset: 1`}
	if got := lines(&h); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// rivalStore runs rival, when set, before each compare-and-swap write (cas
// not 0) it is asked for: another VM's decision slipped in between this VM's
// read and its write.
type rivalStore struct {
	Store
	rival func()
}

func (r *rivalStore) SetSharedData(key, value []byte, cas uint32) error {
	if cas != 0 && r.rival != nil {
		r.rival()
	}
	return r.Store.SetSharedData(key, value, cas)
}

// TestCASExhaustionNeverOverAdmits: VM B admits one request of a client
// before each of VM A's writes, so A loses every round, each time after a
// read that showed tokens. A's request is refused and counted, whatever
// failure_mode says, and draining the bucket from both VMs admits exactly its
// capacity: the lost rounds took no token from A and gave none away.
func TestCASExhaustionNeverOverAdmits(t *testing.T) {
	for _, mode := range []string{"allow", "deny"} {
		t.Run(mode, func(t *testing.T) {
			cfg := mustConfig(t, `{"rules":[{"name":"hot","key":["remote_address"],"capacity":100,"refill":1,"interval":"1h"}],"failure_mode":"`+mode+`"}`)
			s := newStore()
			client := get("/", "10.9.9.9:1")
			b := newLimiter(t, cfg, s, nil)
			admitted := 0
			if b.Decide(client, at(sec)).Denied { // creates the client's set
				t.Fatal("first request refused")
			}
			admitted++
			rs := &rivalStore{Store: s}
			m := &counters{}
			a := newLimiter(t, cfg, rs, m)
			rivals := 0
			rs.rival = func() {
				rivals++
				if b.Decide(client, at(sec)).Denied {
					t.Errorf("rival request %d refused", rivals)
					return
				}
				admitted++
			}
			d := a.Decide(client, at(sec))
			rs.rival = nil
			if rivals != maxCASAttempts {
				t.Fatalf("%d rival requests, want one before each of %d attempts", rivals, maxCASAttempts)
			}
			if v := d.Verdicts[0]; !d.Denied || v.Allowed || !v.Exhausted || v.Failure || v.RetryAfter != 1e9 {
				t.Errorf("A's decision %+v, want a refusal with Retry-After 1s", d)
			}
			if !d.Denied {
				admitted++
			}
			if m.get(0, CounterCASExhausted) != 1 || m.get(0, CounterLimited) != 1 || m.get(0, CounterFailureMode) != 0 {
				t.Errorf("A: cas_exhausted=%d limited=%d failure_mode=%d, want 1, 1, 0",
					m.get(0, CounterCASExhausted), m.get(0, CounterLimited), m.get(0, CounterFailureMode))
			}
			for i := 0; i < 200; i++ {
				for _, l := range []*Limiter{a, b} {
					if !l.Decide(client, at(sec)).Denied {
						admitted++
					}
				}
			}
			if admitted != 100 {
				t.Fatalf("admitted %d from a bucket of 100", admitted)
			}
		})
	}
}

func TestDecideAllocatesNothing(t *testing.T) {
	cfg := mustConfig(t, `{"rules":[{"name":"a","key":["remote_address","header:x-api-key"],"capacity":1000000,"refill":1,"interval":"1s"},
		{"name":"b","match":{"path_prefix":"/"},"key":["path"],"capacity":1000000,"refill":1,"interval":"1s"}]}`)
	l := newLimiter(t, cfg, noAllocStore{}, nil)
	r := noAllocReq{}
	allocs := testing.AllocsPerRun(200, func() { l.Decide(r, at(0)) })
	if allocs != 0 {
		t.Fatalf("Decide allocates %v times per request, want 0", allocs)
	}
}

// noAllocStore holds one value per key name length, to measure the
// limiter's own allocations without the test store's.
type noAllocStore struct{}

var noAllocData = map[int]*[setLen]byte{}

func (noAllocStore) GetSharedData(key []byte) ([]byte, uint32, error) {
	if v := noAllocData[len(key)]; v != nil {
		return v[:], 1, nil
	}
	return nil, 0, ErrNotFound
}

func (noAllocStore) SetSharedData(key, value []byte, _ uint32) error {
	v := noAllocData[len(key)]
	if v == nil {
		v = new([setLen]byte)
		noAllocData[len(key)] = v
	}
	copy(v[:], value)
	return nil
}

type noAllocReq struct{}

var (
	noAllocPath = []byte("/api/items")
	noAllocKey  = []byte("k-123")
	noAllocPeer = []byte("192.168.1.20:40000")
)

func (noAllocReq) Header(name string) ([]byte, bool) {
	switch name {
	case ":path":
		return noAllocPath, true
	case "x-api-key":
		return noAllocKey, true
	}
	return nil, false
}

func (noAllocReq) SourceAddress() ([]byte, bool) { return noAllocPeer, true }

// FuzzSet feeds arbitrary bytes as a stored set: the limiter never panics,
// admits at most what a fresh bucket holds, and writes back only a valid set.
func FuzzSet(f *testing.F) {
	var s set
	s.clear()
	s.put(1, 7, bucket.State{Tokens: 2, Last: 5})
	f.Add(s.raw[:], int64(10))
	f.Add([]byte("tgs1garbage"), int64(0))
	f.Fuzz(func(t *testing.T, stored []byte, now int64) {
		if now < 0 {
			return
		}
		cfg := mustConfig(t, `{"rules":[{"name":"r","key":["remote_address"],"capacity":3,"refill":1,"interval":"1h"}],"slots":16}`)
		st := newStore()
		l := newLimiter(t, cfg, st, nil)
		for i := 0; i < 4; i++ {
			st.put(fmt.Sprintf("tokengate/test/r/%x", i), stored)
		}
		admitted := 0
		for i := 0; i < 5; i++ {
			if !l.Decide(get("/", "10.0.0.1:1"), at(now)).Denied {
				admitted++
			}
		}
		if admitted > 3 {
			t.Fatalf("admitted %d of capacity 3 from stored bytes %x", admitted, stored)
		}
		for i := 0; i < 4; i++ {
			v := st.value(fmt.Sprintf("tokengate/test/r/%x", i))
			var check set
			if string(v) != string(stored) && !check.load(v) {
				t.Fatalf("wrote an invalid set: %x", v)
			}
		}
	})
}

// countingClock counts how often the time is read.
type countingClock struct{ reads int }

func (c *countingClock) Now() int64 { c.reads++; return 0 }

// TestClockReadOnlyWhenARuleMatches: reading the time is a host call in a
// VM; a request no rule matches must not pay it, and a request several
// rules match pays it once.
func TestClockReadOnlyWhenARuleMatches(t *testing.T) {
	cfg := mustConfig(t, `{"rules":[
		{"name":"a","match":{"path_prefix":"/api/"},"key":["remote_address"],"capacity":5,"refill":1,"interval":"1s"},
		{"name":"b","match":{"path_prefix":"/api/"},"key":["path"],"capacity":5,"refill":1,"interval":"1s"}]}`)
	l := newLimiter(t, cfg, newStore(), nil)
	var c countingClock
	if d := l.Decide(get("/static/x", "1.1.1.1:1"), &c); len(d.Verdicts) != 0 || c.reads != 0 {
		t.Fatalf("unmatched request: %d verdicts, %d clock reads", len(d.Verdicts), c.reads)
	}
	if d := l.Decide(get("/api/x", "1.1.1.1:1"), &c); len(d.Verdicts) != 2 || c.reads != 1 {
		t.Fatalf("two matching rules: %d verdicts, %d clock reads, want 2 and 1", len(d.Verdicts), c.reads)
	}
}
