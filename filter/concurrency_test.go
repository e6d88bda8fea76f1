//go:build !wasip1

package main

// Correctness of the compiled module under concurrency and key churn:
// several worker VMs driven from goroutines, as Envoy's worker threads
// drive theirs, all reading one clock and one shared-data store.

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// model is an exact private token bucket, independent of the product's
// arithmetic: its level is kept in token-nanoseconds (tokens x interval), so
// refill is an integer product and nothing is ever rounded. It starts full.
type model struct {
	capacity, refill, cost int64 // tokens, tokens per interval, tokens per request
	interval               int64 // nanoseconds
	level                  int64 // token-nanoseconds
	last                   time.Time
}

func newModel(capacity, refill, cost int64, interval time.Duration, now time.Time) *model {
	return &model{capacity: capacity, refill: refill, cost: cost, interval: int64(interval),
		level: capacity * int64(interval), last: now}
}

// refillTo brings the level to time now (a clock that went back adds nothing).
func (m *model) refillTo(now time.Time) {
	if e := now.Sub(m.last); e > 0 {
		m.level = min(m.level+int64(e)*m.refill, m.capacity*m.interval)
		m.last = now
	}
}

// can reports whether a request at now fits in the bucket.
func (m *model) can(now time.Time) bool {
	m.refillTo(now)
	return m.level >= m.cost*m.interval
}

// take spends one request's cost; the caller has checked can.
func (m *model) take() { m.level -= m.cost * m.interval }

// TestRefillAcrossWorkers: four worker VMs on goroutines hammer one client
// while the same goroutines move the shared clock forward, 1 ms after each
// of their requests. Demand (one request per ms) exceeds the refill (half
// a token per ms), so nothing is wasted on a full bucket, and about half the
// requests write the bucket, so the workers' compare-and-swaps race; a final drain at a fixed time collects the last tokens.
// The ideal is capacity + refill x elapsed / interval tokens: the admitted
// requests must hold between ideal - cost and ideal tokens (never more,
// and at most one request's cost lost to a partial token).
func TestRefillAcrossWorkers(t *testing.T) {
	for _, tc := range []struct {
		name                   string
		capacity, refill, cost int64
	}{
		{"cost 1", 50, 500, 1},
		{"cost 3", 50, 500, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const workerN, perWorker, step = 4, 2000, time.Millisecond
			eachGate(t, fmt.Sprintf(`{"rules":[{"name":"r","key":["remote_address"],"capacity":%d,"refill":%d,"interval":"1s","cost":%d}]}`,
				tc.capacity, tc.refill, tc.cost), workerN, func(t *testing.T, g gate) {
				const src = "10.3.0.1:1"
				var admitted, elapsed atomic.Int64
				serve := func(w int) {
					switch status := g.serve(w, get(src, "/")); status {
					case 200:
						admitted.Add(1)
					case 429:
					default:
						t.Errorf("status %d", status)
					}
				}
				serve(0) // creates the bucket, full, at t0
				var wg sync.WaitGroup
				for w := 0; w < workerN; w++ {
					wg.Add(1)
					go func(w int) {
						defer wg.Done()
						for i := 0; i < perWorker; i++ {
							serve(w)
							g.clock().Advance(step)
							elapsed.Add(int64(step))
						}
					}(w)
				}
				wg.Wait()
				for i := 0; i < 2*int(tc.capacity); i++ { // the drain, at the final time
					serve(i % workerN)
				}
				e := elapsed.Load()
				if got := g.clock().Now().Sub(t0); int64(got) != e {
					t.Fatalf("clock moved %v, goroutines moved it %v", got, time.Duration(e))
				}
				ideal := tc.capacity + tc.refill*e/int64(time.Second) // e is whole seconds here
				spent := admitted.Load() * tc.cost
				t.Logf("%s: %d admitted of %d over %v on %d workers = %d tokens; ideal %d tokens; cas_retries %d",
					tc.name, admitted.Load(), 1+workerN*perWorker+2*tc.capacity, time.Duration(e), workerN, spent, ideal,
					g.counter(t, "tokengate.r.cas_retries"))
				if f, x := g.counter(t, "tokengate.r.failure_mode"), g.counter(t, "tokengate.r.cas_exhausted"); f != 0 || x != 0 {
					t.Fatalf("failure_mode decided %d requests, cas_exhausted refused %d", f, x)
				}
				if spent > ideal || spent <= ideal-tc.cost {
					t.Fatalf("admitted %d x cost %d = %d tokens, want within one cost below the ideal %d", admitted.Load(), tc.cost, spent, ideal)
				}
			})
		})
	}
}

// setOf learns the set index of each client key through a probe rule: the
// probe and the rule under test have the same key, so a client lands in the
// same set index in both (the index is the client key's hash modulo the
// number of sets). Every probe request is admitted and writes exactly one
// set of the probe rule, whose cas then changes. Tests that rely on it
// check the sets they observe afterwards.
func setOf(t *testing.T, g gate, w int, sets int, clients []string) map[string]int {
	t.Helper()
	cas := func() []uint32 {
		c := make([]uint32, sets)
		for i := range c {
			_, c[i], _ = g.shared().Get("tokengate", setKey("probe", i))
		}
		return c
	}
	out := make(map[string]int, len(clients))
	for _, c := range clients {
		before := cas()
		if status := g.serve(w, get("10.0.0.1:1", "/p", "x-client", c)); status != 200 {
			t.Fatalf("probe %s: %d", c, status)
		}
		after := cas()
		out[c] = -1
		for i := range after {
			if after[i] != before[i] {
				if out[c] >= 0 {
					t.Fatalf("probe %s wrote sets %d and %d", c, out[c], i)
				}
				out[c] = i
			}
		}
		if out[c] < 0 {
			t.Fatalf("probe %s wrote no set", c)
		}
	}
	return out
}

// churnConfig: the rule under test ("c", /c...) and a probe rule ("p",
// /p...) with the same key; 16 slots: 4 sets of 4 entries.
const churnConfig = `{"rules":[
	{"name":"c","match":{"path_prefix":"/c"},"key":["header:x-client"],"capacity":%d,"refill":1,"interval":"%s"},
	{"name":"probe","match":{"path_prefix":"/p"},"key":["header:x-client"],"capacity":1000000000,"refill":1,"interval":"1s"}],
	"slots":16}`

// TestCollisionIsStricter documents, on one VM and in numbers, what sharing
// a set costs: five clients in one set of four entries, capacity 2, one
// token per 10 s.
//
//   - t0: A, B, C, D spend their 2 tokens each. E's own bucket would be full,
//     but its set holds four busy buckets: E draws from one of them (entry j,
//     fixed by E's hash), which is empty: 429. E loses its whole burst.
//   - t0+10s: every entry has 1 token. E takes j's token (admitted once, then
//     429 though its own bucket would still hold 1). The owner of j finds its
//     token gone: 429 while its own bucket would hold 1. The other three get
//     their token.
//   - t0+30s: all four entries are full again, so E evicts one and gets an
//     entry of its own, started from j's level (full): 2 admitted, then 429.
//
// Nobody is ever admitted beyond their own bucket.
func TestCollisionIsStricter(t *testing.T) {
	eachGate(t, fmt.Sprintf(churnConfig, 2, "10s"), 1, func(t *testing.T, g gate) {
		var names []string
		for i := 0; i < 200; i++ {
			names = append(names, fmt.Sprint("client-", i))
		}
		idx := setOf(t, g, 0, 4, names)
		var five []string
		for _, n := range names {
			if idx[n] == idx[names[0]] && len(five) < 5 {
				five = append(five, n)
			}
		}
		if len(five) < 5 {
			t.Fatalf("fewer than 5 of 200 clients in set %d", idx[names[0]])
		}
		a, e := five[:4], five[4]
		req := func(c string) int { return g.serve(0, get("10.0.0.1:1", "/c", "x-client", c)) }
		expect := func(when, c string, want ...int) {
			t.Helper()
			for i, w := range want {
				if got := req(c); got != w {
					t.Fatalf("%s: %s request %d: %d, want %d", when, c, i, got, w)
				}
			}
		}
		for _, c := range a {
			expect("t0", c, 200, 200, 429)
		}
		expect("t0", e, 429) // stricter: E's own bucket would be full

		g.clock().Advance(10 * time.Second)
		expect("t0+10s", e, 200, 429) // stricter: E's own bucket would hold 1 more
		var refused []string
		for _, c := range a {
			if req(c) == 429 {
				refused = append(refused, c) // stricter: its token went to E
			} else if req(c) != 429 {
				t.Fatalf("t0+10s: %s admitted twice after one token of refill", c)
			}
		}
		if len(refused) != 1 {
			t.Fatalf("t0+10s: %v refused, want exactly the one client whose entry E shares", refused)
		}

		g.clock().Advance(20 * time.Second)
		expect("t0+30s", e, 200, 200, 429)
		if got := g.counter(t, "tokengate.c.shared"); got != 1 {
			t.Errorf("shared = %d, want 1 (E's one admitted draw from j)", got)
		}
		if got := g.counter(t, "tokengate.c.evictions"); got != 1 {
			t.Errorf("evictions = %d, want 1 (E's own entry at t0+30s)", got)
		}
		t.Logf("stricter limiting: E refused 2 requests its own bucket allowed (1 at t0, 1 at t0+10s), %s refused 1 at t0+10s", refused[0])
	})
}

// TestChurnNeverOverAdmits: far more clients than slots (16 slots, 4 sets;
// 60 clients crowd three sets, 20 per set of four entries), served by four
// worker VMs on goroutines, while one more client is alone in the fourth
// set. Rounds at a fixed time, the clock moving between rounds by a random
// amount up to 1.5 s; in each round a client is idle (3 times in 5) or
// sends 1 to 4 requests, always from the same goroutine, so buckets both
// run dry (sharing) and refill to full (eviction). The test keeps an exact private bucket
// for every client, charged only for its admitted requests, and asserts:
//
//   - a crowded client is never admitted when its own bucket is short
//     (collisions only make limits stricter); the refusals its own bucket
//     would have allowed are counted and logged;
//   - the lone client is admitted exactly when its own bucket allows,
//     never limited below it;
//   - neither failure_mode nor an exhausted compare-and-swap loop decides,
//     and churn did happen (evictions, shared).
func TestChurnNeverOverAdmits(t *testing.T) {
	const (
		capacity = 4
		interval = time.Second
		workerN  = 4
	)
	rounds := 400
	if testing.Short() {
		rounds = 100
	}
	eachGate(t, fmt.Sprintf(churnConfig, capacity, interval), workerN, func(t *testing.T, g gate) {
		var names []string
		for i := 0; i < 400; i++ {
			names = append(names, fmt.Sprint("churn-", i))
		}
		idx := setOf(t, g, 0, 4, names)
		lone := names[0]
		loneSet := idx[lone]
		var crowd []string
		for _, n := range names[1:] {
			if idx[n] != loneSet && len(crowd) < 60 {
				crowd = append(crowd, n)
			}
		}
		if len(crowd) < 60 {
			t.Fatalf("only %d clients outside set %d", len(crowd), loneSet)
		}

		type client struct {
			name  string
			lone  bool
			m     *model
			rng   *rand.Rand
			stats struct{ requests, admitted, stricter int }
		}
		byWorker := make([][]*client, workerN)
		all := []*client{}
		for i, n := range append([]string{lone}, crowd...) {
			c := &client{name: n, lone: n == lone, m: newModel(capacity, 1, 1, interval, g.clock().Now()),
				rng: rand.New(rand.NewPCG(uint64(i), 7))}
			byWorker[i%workerN] = append(byWorker[i%workerN], c)
			all = append(all, c)
		}
		// Every write to the lone client's set must be its own: check that the
		// set's cas moves only in rounds where the lone client was admitted.
		_, loneCAS, _ := g.shared().Get("tokengate", setKey("c", loneSet))

		rng := rand.New(rand.NewPCG(1, 2))
		var wg sync.WaitGroup
		for round := 0; round < rounds; round++ {
			now := g.clock().Now()
			var loneAdmitted atomic.Bool
			for w := 0; w < workerN; w++ {
				wg.Add(1)
				go func(w int, clients []*client) {
					defer wg.Done()
					// Interleave this worker's clients request by request.
					left := make([]int, len(clients))
					for i, c := range clients {
						// Mostly idle (buckets refill to full, to be evicted),
						// sometimes a burst of up to 4.
						if c.rng.IntN(5) < 2 {
							left[i] = 1 + c.rng.IntN(4)
						}
					}
					for more := true; more; {
						more = false
						for i, c := range clients {
							if left[i] == 0 {
								continue
							}
							left[i]--
							more = true
							status := g.serve(w, get("10.0.0.1:1", "/c", "x-client", c.name))
							if status != 200 && status != 429 {
								t.Errorf("%s: status %d", c.name, status)
								return
							}
							ok := status == 200
							can := c.m.can(now)
							c.stats.requests++
							switch {
							case ok && !can:
								t.Errorf("round %d: %s admitted with less than one token in its own bucket", round, c.name)
							case ok:
								c.m.take()
								c.stats.admitted++
								if c.lone {
									loneAdmitted.Store(true)
								}
							case can:
								c.stats.stricter++
								if c.lone {
									t.Errorf("round %d: the lone client was refused with a token in its own bucket", round)
								}
							}
						}
					}
				}(w, byWorker[w])
			}
			wg.Wait()
			if t.Failed() {
				t.FailNow()
			}
			if _, c, _ := g.shared().Get("tokengate", setKey("c", loneSet)); c != loneCAS && !loneAdmitted.Load() {
				t.Fatalf("round %d: the lone client's set was written by someone else", round)
			} else {
				loneCAS = c
			}
			g.clock().Advance(time.Duration(rng.Int64N(int64(1500 * time.Millisecond))))
		}

		var requests, admitted, stricter, ownOK int
		for _, c := range all[1:] {
			requests += c.stats.requests
			admitted += c.stats.admitted
			stricter += c.stats.stricter
			ownOK += c.stats.admitted + c.stats.stricter
		}
		l := all[0].stats
		evictions, shared := g.counter(t, "tokengate.c.evictions"), g.counter(t, "tokengate.c.shared")
		t.Logf("%d rounds over %v: crowd of %d in 3 sets: %d requests, %d admitted, %d refused that their own bucket allowed (%.1f%% of %d); "+
			"lone client: %d requests, %d admitted, %d stricter; evictions %d, shared %d, cas_retries %d",
			rounds, g.clock().Now().Sub(t0).Round(time.Second), len(crowd), requests, admitted, stricter,
			100*float64(stricter)/float64(max(ownOK, 1)), ownOK, l.requests, l.admitted, l.stricter,
			evictions, shared, g.counter(t, "tokengate.c.cas_retries"))
		if f, x := g.counter(t, "tokengate.c.failure_mode"), g.counter(t, "tokengate.c.cas_exhausted"); f != 0 || x != 0 {
			t.Fatalf("failure_mode decided %d requests, cas_exhausted refused %d", f, x)
		}
		if evictions == 0 || shared == 0 {
			t.Fatalf("no churn: evictions %d, shared %d", evictions, shared)
		}
		if l.admitted == 0 || l.requests == l.admitted {
			t.Fatalf("the lone client was never admitted or never limited (%d of %d): the test proves nothing", l.admitted, l.requests)
		}
		if stricter == 0 {
			t.Fatalf("20 clients per set of 4 entries and no stricter refusal: collisions are not exercised")
		}
		// The README quotes this share (85% in four runs, 84.8-85.0%); the
		// band holds the figure while leaving room for the interleaving of the
		// workers, which varies from run to run.
		if share := float64(stricter) / float64(max(ownOK, 1)); !testing.Short() && (share < 0.75 || share > 0.95) {
			t.Errorf("the crowd was refused %.1f%% of what its own buckets allowed; the README says about 85%%", 100*share)
		}
	})
}
