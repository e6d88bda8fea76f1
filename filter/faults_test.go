//go:build !wasip1

package main

// Faults: VMs that trap, shared data that is not ours, compare-and-swap
// rounds lost to a writer that never stops, and fuzzer-chosen requests.

import (
	"encoding/binary"
	"fmt"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokengate/tokengate/internal/wasmhost"
)

// policy sets Envoy's failure_policy of the plugin.
func policy(p wasmhost.FailurePolicy) option {
	return func(c *wasmhost.PluginConfig) { c.FailurePolicy = p }
}

// backoff sets the FAIL_RELOAD base back-off.
func backoff(d time.Duration) option {
	return func(c *wasmhost.PluginConfig) { c.ReloadBackoff = d }
}

// criticals counts the guest's and the host's critical log lines (a
// recovered panic, a crash) in n, besides keeping the log.
func criticals(n *atomic.Int64) option {
	return func(c *wasmhost.PluginConfig) {
		next := c.Log
		c.Log = func(level wasmhost.LogLevel, vm, msg string) {
			if level >= wasmhost.LogCritical {
				n.Add(1)
			}
			if next != nil {
				next(level, vm, msg)
			}
		}
	}
}

// trapConfig: 3 requests per client, then one token per hour, so the few
// seconds a test moves the clock refill nothing.
const trapConfig = `{"rules":[{"name":"t","key":["remote_address"],"capacity":3,"refill":1,"interval":"1h"}]}`

// spend takes the whole budget of client src on vm and checks the 429 after it.
func spend(t *testing.T, g *gateway, vm *wasmhost.VM, src string) {
	t.Helper()
	for i := 0; i < 3; i++ {
		if resp := g.serve(vm, get(src, "/")); resp.Status != 200 {
			t.Fatalf("%s request %d: %d", src, i, resp.Status)
		}
	}
	if resp := g.serve(vm, get(src, "/")); resp.Status != 429 {
		t.Fatalf("%s over budget: %d", src, resp.Status)
	}
}

func isFailStream(resp wasmhost.Response) bool {
	return resp.Status == 503 && resp.LocalReply != nil && resp.LocalReply.Details == "wasm_fail_stream"
}

// TestTrapFailClosed: the trapping request and every later one on that VM
// get 503 wasm_fail_stream, even a client with budget left; the other worker
// keeps limiting from the same shared budget.
func TestTrapFailClosed(t *testing.T) {
	g := start(t, trapConfig, workers(2))
	bad, good := g.Worker(0), g.Worker(1)
	spend(t, g, bad, "10.0.0.1:1")

	bad.TrapNextCallback()
	if resp := g.serve(bad, get("10.0.0.2:1", "/")); !isFailStream(resp) {
		t.Fatalf("trapping request: %d %+v, want 503 wasm_fail_stream", resp.Status, resp.LocalReply)
	}
	if !bad.Failed() {
		t.Fatal("the VM did not fail")
	}
	for i, src := range []string{"10.0.0.3:1", "10.0.0.1:1", "10.0.0.3:1"} {
		if resp := g.serve(bad, get(src, "/")); !isFailStream(resp) {
			t.Fatalf("request %d after the trap: %d, want 503 wasm_fail_stream", i, resp.Status)
		}
	}
	g.clock.Advance(time.Minute) // FAIL_CLOSED never reloads
	if resp := g.serve(bad, get("10.0.0.4:1", "/")); !isFailStream(resp) || g.Reloads() != 0 {
		t.Fatalf("a minute later: %d, reloads %d", resp.Status, g.Reloads())
	}

	if good.Failed() {
		t.Fatal("the other worker failed too")
	}
	if resp := g.serve(good, get("10.0.0.1:1", "/")); resp.Status != 429 {
		t.Fatalf("other worker, spent client: %d, want 429", resp.Status)
	}
	spend(t, g, good, "10.0.0.5:1")
}

// TestTrapFailOpen: the trapping request and later ones on that VM pass with
// the filter left out (no rate-limit headers, no limit); the other worker
// keeps limiting.
func TestTrapFailOpen(t *testing.T) {
	g := start(t, trapConfig, workers(2), policy(wasmhost.FailOpen))
	bad, good := g.Worker(0), g.Worker(1)
	spend(t, g, bad, "10.0.0.1:1")

	bad.TrapNextCallback()
	resp := g.serve(bad, get("10.0.0.1:1", "/"))
	if resp.Status != 200 || headerValue(resp.Headers, "x-upstream") != "yes" || !bad.Failed() {
		t.Fatalf("trapping request: %d %v (failed %v), want the upstream's 200", resp.Status, resp.Headers, bad.Failed())
	}
	for i := 0; i < 5; i++ {
		resp := g.serve(bad, get("10.0.0.1:1", "/"))
		if resp.Status != 200 || headerValue(resp.Headers, "ratelimit") != "" || headerValue(resp.Headers, "x-upstream") != "yes" {
			t.Fatalf("request %d on the failed VM: %d %v, want 200 without the filter", i, resp.Status, resp.Headers)
		}
	}
	before := counter(t, g, "tokengate.t.allowed") + counter(t, g, "tokengate.t.limited")
	if resp := g.serve(good, get("10.0.0.1:1", "/")); resp.Status != 429 {
		t.Fatalf("other worker, spent client: %d, want 429", resp.Status)
	}
	if after := counter(t, g, "tokengate.t.allowed") + counter(t, g, "tokengate.t.limited"); after != before+1 {
		t.Fatalf("decisions counted %d -> %d: the skipped requests were counted, or the good one was not", before, after)
	}
}

// TestTrapFailReload: 503 until the back-off has passed, then a fresh VM
// that finds the shared data as it was: the spent client is still limited,
// a new one is not. The other worker is untouched throughout.
func TestTrapFailReload(t *testing.T) {
	g := start(t, trapConfig, workers(2), policy(wasmhost.FailReload), backoff(time.Second))
	bad, good := g.Worker(0), g.Worker(1)
	spend(t, g, bad, "10.0.0.1:1")
	keys := g.Shared().Len("tokengate")

	bad.TrapNextCallback()
	if resp := g.serve(bad, get("10.0.0.2:1", "/")); !isFailStream(resp) {
		t.Fatalf("trapping request: %d", resp.Status)
	}
	// The first back-off is 1 s plus up to 0.5 s of jitter.
	g.clock.Advance(900 * time.Millisecond)
	if resp := g.serve(bad, get("10.0.0.2:1", "/")); !isFailStream(resp) || g.Reloads() != 0 {
		t.Fatalf("before the back-off: %d, reloads %d; want 503 and no reload", resp.Status, g.Reloads())
	}
	if resp := g.serve(good, get("10.0.0.2:1", "/")); resp.Status != 200 {
		t.Fatalf("other worker during the back-off: %d", resp.Status)
	}
	g.clock.Advance(700 * time.Millisecond)
	resp := g.serve(bad, get("10.0.0.1:1", "/"))
	if g.Reloads() != 1 || bad.Failed() {
		t.Fatalf("1.6 s after the trap: reloads %d, failed %v", g.Reloads(), bad.Failed())
	}
	if resp.Status != 429 {
		t.Fatalf("spent client on the reloaded VM: %d, want 429 (shared data lost?)", resp.Status)
	}
	if got := g.Shared().Len("tokengate"); got < keys {
		t.Fatalf("shared-data keys %d -> %d across the reload", keys, got)
	}
	// 10.0.0.2 spent one token on the good worker: two left, on either VM.
	for i, vm := range []*wasmhost.VM{bad, good} {
		if resp := g.serve(vm, get("10.0.0.2:1", "/")); resp.Status != 200 {
			t.Fatalf("10.0.0.2 request %d: %d", i, resp.Status)
		}
	}
	if resp := g.serve(bad, get("10.0.0.2:1", "/")); resp.Status != 429 {
		t.Fatalf("10.0.0.2 after its budget: %d", resp.Status)
	}
	spend(t, g, bad, "10.0.0.6:1")
}

// raceEnabled reports whether the test binary was built with -race.
func raceEnabled() bool {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "-race" {
				return s.Value == "true"
			}
		}
	}
	return false
}

// setKey is the shared-data key of set index i of a rule of plugin "tokengate".
func setKey(rule string, i int) string { return fmt.Sprintf("tokengate/tokengate/%s/%x", rule, i) }

// TestGarbageInSetsReset: every set of the rule starts out holding something
// that is not a set of ours (another plugin on the same vm_id, an older
// layout, a bucket that cannot be). Requests still get exact limits, each
// bad value is counted in garbage_reset and replaced by a set of ours, and
// no VM fails.
func TestGarbageInSetsReset(t *testing.T) {
	const rule = "g"
	var crit atomic.Int64
	g := start(t, `{"rules":[{"name":"g","key":["remote_address"],"capacity":3,"refill":1,"interval":"1h"}],"slots":16}`,
		workers(2), criticals(&crit))
	const setLen = 8 + 4*(8+24)
	older := make([]byte, setLen) // right size, magic of a layout we never wrote
	copy(older, "tgs0\x04")
	badBucket := make([]byte, setLen) // our magic, entries with negative tokens and time
	copy(badBucket, "tgs1\x04")
	for e := 0; e < 4; e++ {
		off := 8 + e*32
		binary.LittleEndian.PutUint64(badBucket[off:], uint64(0x1234_5678_9abc_def1+e))
		binary.LittleEndian.PutUint64(badBucket[off+8:], ^uint64(0))
		binary.LittleEndian.PutUint64(badBucket[off+24:], ^uint64(0))
	}
	garbage := [][]byte{
		[]byte("someone else's value"),
		{},
		older,
		badBucket,
	}
	for i, v := range garbage {
		g.Shared().Set("tokengate", setKey(rule, i), v, 0)
	}

	// Enough clients to touch every set; each gets exactly its budget,
	// whichever worker serves it.
	for c := 0; c < 40; c++ {
		src := fmt.Sprintf("10.1.0.%d:1", c)
		admitted := 0
		for i := 0; i < 5; i++ {
			resp := g.serve(g.Worker(i%2), get(src, "/"))
			switch resp.Status {
			case 200:
				admitted++
			case 429:
			default:
				t.Fatalf("client %d request %d: %d", c, i, resp.Status)
			}
		}
		if c < 4 && admitted != 3 {
			// The first clients are alone in their set: the garbage cost them nothing.
			t.Fatalf("client %d admitted %d of 5, want 3", c, admitted)
		}
		if admitted > 3 {
			t.Fatalf("client %d admitted %d of 5, capacity 3", c, admitted)
		}
	}
	for i := range garbage {
		v, _, st := g.Shared().Get("tokengate", setKey(rule, i))
		if st != wasmhost.StatusOK || len(v) != setLen || string(v[:4]) != "tgs1" {
			t.Errorf("set %d still holds %q (status %v)", i, v, st)
		}
	}
	// Three whole values were not sets: each is counted when it is read and
	// replaced, and only then, since later reads find our set. The fourth
	// value is a set of ours with four impossible buckets: they are treated
	// as free entries (never trusted) and may be counted each, so at most
	// 3+4. Garbage that was detected but never replaced would be counted on
	// every one of the 200 requests.
	if got := counter(t, g, "tokengate.g.garbage_reset"); got < 3 || got > 3+4 {
		t.Errorf("garbage_reset = %d, want 3..7", got)
	}
	if got := counter(t, g, "tokengate.g.failure_mode"); got != 0 {
		t.Errorf("failure_mode = %d", got)
	}
	for i := 0; i < 2; i++ {
		if g.Worker(i).Failed() {
			t.Fatalf("worker %d failed", i)
		}
	}
	if crit.Load() != 0 {
		t.Fatalf("%d critical log lines (a recovered panic?)", crit.Load())
	}
}

// TestCASExhaustion: writers that rewrite the client's set without pause
// make the worker's compare-and-swap lose round after round; when it loses
// maxCASAttempts in a row the request is refused with Retry-After 1 and no
// rate-limit headers, whatever failure_mode says, counted in cas_exhausted
// and limited, never in failure_mode: admitting it would take no token. A
// shadow rule refuses nobody and counts it in cas_exhausted and
// shadow_limited. The bucket is huge, so a refusal can only come from a lost
// loop, and every counted decision is checked against the responses.
//
// It depends on the writers outpacing the worker's read-modify-write. The
// race detector slows the host's store (the writers) but not the guest's
// code between its get and set, so under -race sixteen losses in a row
// practically never happen: the test is skipped there.
func TestCASExhaustion(t *testing.T) {
	if raceEnabled() {
		t.Skip("the race detector slows the writers too much to exhaust 16 rounds")
	}
	// Two writers: one of them is usually running even when the machine is
	// busy and the scheduler descheduled the other.
	const writers = 2
	for _, tc := range []struct {
		mode   string
		shadow bool
	}{{"deny", false}, {"allow", false}, {"allow", true}} {
		t.Run(fmt.Sprintf("%s/shadow=%v", tc.mode, tc.shadow), func(t *testing.T) {
			g := start(t, fmt.Sprintf(`{"rules":[{"name":"c","key":["remote_address"],"capacity":1000000000,"refill":1,"interval":"1s","shadow":%v}],
				"slots":16,"failure_mode":%q}`, tc.shadow, tc.mode))
			vm := g.Worker(0)
			const src = "10.2.0.1:1"
			if resp := g.serve(vm, get(src, "/")); resp.Status != 200 {
				t.Fatalf("first request: %d", resp.Status)
			}
			// The client's set is the only one: find it and keep its value.
			var key string
			var value []byte
			for i := 0; i < 4; i++ {
				if v, _, st := g.Shared().Get("tokengate", setKey("c", i)); st == wasmhost.StatusOK {
					key, value = setKey("c", i), v
				}
			}
			if key == "" || g.Shared().Len("tokengate") != 3 {
				t.Fatalf("want one set key besides seed and epoch; have %d keys", g.Shared().Len("tokengate"))
			}

			stop := make(chan struct{})
			var wg sync.WaitGroup
			var writes atomic.Int64
			for w := 0; w < writers; w++ {
				wg.Add(1)
				go func() { // each unconditional write bumps the key's cas
					defer wg.Done()
					for {
						select {
						case <-stop:
							return
						default:
						}
						for i := 0; i < 64; i++ {
							g.Shared().Set("tokengate", key, value, 0)
						}
						writes.Add(64)
					}
				}()
			}
			// Stop after a few exhausted loops; typically under a second,
			// at most 8 s on a machine too busy to run the writer.
			var ok200, deny429, other int
			deadline := time.Now().Add(8 * time.Second)
			for n := 0; time.Now().Before(deadline) && n < 1_000_000; n++ {
				resp := g.serve(vm, get(src, "/"))
				switch {
				case resp.Status == 200:
					ok200++
				case resp.Status == 429 && headerValue(resp.Headers, "retry-after") == "1" &&
					headerValue(resp.Headers, "ratelimit") == "" && headerValue(resp.Headers, "ratelimit-policy") == "":
					deny429++
				default:
					other++
					t.Errorf("request %d: %d, headers %v", n, resp.Status, resp.Headers)
				}
				if other > 3 {
					break
				}
				if n%64 == 0 && counter(t, g, "tokengate.c.cas_exhausted") >= 3 {
					break
				}
			}
			close(stop)
			wg.Wait()

			exhausted := counter(t, g, "tokengate.c.cas_exhausted")
			retries := counter(t, g, "tokengate.c.cas_retries")
			failures := counter(t, g, "tokengate.c.failure_mode")
			allowed, limited := counter(t, g, "tokengate.c.allowed"), counter(t, g, "tokengate.c.limited")
			shadowLimited := counter(t, g, "tokengate.c.shadow_limited")
			t.Logf("%s: %d concurrent writes; %d x 200, %d x 429; counters allowed %d limited %d shadow_limited %d cas_exhausted %d failure_mode %d cas_retries %d",
				t.Name(), writes.Load(), ok200, deny429, allowed, limited, shadowLimited, exhausted, failures, retries)
			if exhausted == 0 || retries < 15*exhausted {
				t.Fatalf("cas_exhausted %d, cas_retries %d: want cas_exhausted > 0 and 15 lost rounds for each", exhausted, retries)
			}
			if failures != 0 {
				t.Fatalf("failure_mode %d: losing the compare-and-swap is not a host failure", failures)
			}
			if vm.Failed() {
				t.Fatal("the VM failed")
			}
			if tc.shadow {
				// A shadow rule never refuses: every request is a 200,
				// the first one included, and each exhausted loop is a
				// would-be refusal.
				if deny429 != 0 || limited != 0 || shadowLimited != exhausted {
					t.Fatalf("429s %d, limited %d, shadow_limited %d, cas_exhausted %d: want 0, 0 and the last two equal",
						deny429, limited, shadowLimited, exhausted)
				}
				if int64(ok200)+1 != allowed+exhausted {
					t.Fatalf("%d+1 x 200, but allowed %d + cas_exhausted %d", ok200, allowed, exhausted)
				}
				return
			}
			// Only an exhausted loop can refuse: the bucket never runs dry.
			if int64(deny429) != exhausted || limited != exhausted || shadowLimited != 0 {
				t.Fatalf("429s %d, limited %d, cas_exhausted %d: want all equal", deny429, limited, exhausted)
			}
			// 200s are the admitted decisions (the first request too): none without a token.
			if int64(ok200)+1 != allowed {
				t.Fatalf("%d+1 x 200, but allowed %d", ok200, allowed)
			}
		})
	}
}

// FuzzRequest feeds fuzzer-chosen headers, X-Forwarded-For, :authority,
// :path and source address to one VM of a plugin whose rule uses every key
// kind, with trusted_hops 2. Every request must be answered 200 or 429, no
// VM may fail, and nothing may panic (a recovered panic logs at critical).
// The plugin is started once per fuzzing process.
func FuzzRequest(f *testing.F) {
	var crit atomic.Int64
	g := start(f, `{"rules":[{"name":"f","key":["remote_address","header:x-api-key","path","method","host"],
		"capacity":1000,"refill":1000,"interval":"1s"}],"trusted_hops":2}`, criticals(&crit))
	vm := g.Worker(0)
	f.Add("x-api-key", "k1", "203.0.113.7, 10.0.0.1", "api.example.com", "/v1/items?x=1", "10.0.0.1:5000")
	f.Add("x-api-key", "", "", "", "", "")
	f.Add("", "\x00", ",,,", "[::1", "*", "not an address")
	f.Add("X-API-KEY", "\xff\xfe", "2001:db8::1, [2001:db8::2]:80, unknown", "EXAMPLE.com:8080", "/\xc3\x28", "[2001:db8::1]:443")
	f.Add(":path", "/evil", "1.2.3.4,"+strings.Repeat(" ", 300)+"5.6.7.8", "host:", "//", "[::ffff:192.0.2.1]:1")
	f.Add("x-forwarded-for", "9.9.9.9", "300.1.1.1, 1.1.1.1:99999", "a.b.c.", "/%00", ":0")
	f.Fuzz(func(t *testing.T, name, value, xff, authority, path, source string) {
		h := wasmhost.Headers{{":method", "GET"}, {":path", path}, {":authority", authority}, {":scheme", "http"},
			{"x-forwarded-for", xff}, {strings.ToLower(name), value}}
		resp := vm.Serve(wasmhost.StreamInfo{SourceAddress: source}, wasmhost.Request{Headers: h}, upstreamOK)
		if resp.Status != 200 && resp.Status != 429 {
			t.Fatalf("status %d (local reply %+v)", resp.Status, resp.LocalReply)
		}
		if vm.Failed() {
			t.Fatalf("the VM failed: %v", vm.Err())
		}
		if crit.Load() != 0 {
			t.Fatalf("critical log line:\n%s", g.log)
		}
		if resp.Status == 200 && headerValue(resp.Headers, "x-upstream") != "yes" {
			t.Fatalf("200 that is not the upstream's: %v", resp.Headers)
		}
	})
}
