//go:build !wasip1

package main

import (
	"fmt"
	"os"
	"testing"
	"time"
)

// longRun reports whether TOKENGATE_LONG=1 asks for the full-size flood in
// TestSharedDataFootprint; without it that test runs a fifth of its size so
// that the filter suite stays well under a minute on two shared cores.
func longRun() bool { return os.Getenv("TOKENGATE_LONG") == "1" }

// sources returns n distinct "a.b.c.d:port" peers, built once so the loops
// below measure the filter, not fmt.
func sources(n int) []string {
	s := make([]string, n)
	for i := range s {
		s[i] = fmt.Sprintf("10.%d.%d.%d:4000", i>>16&255, i>>8&255, i&255)
	}
	return s
}

// TestMemoryFlat: the linear memory of one VM stops growing once warm.
//
// One worker serves requests round-robin over 10,000 clients with the clock
// advancing 1 ms per request, so each client comes back every 10 s and finds
// about half a token (capacity 5, 1 token per 20 s): both the admitted path
// (upstream response headers rendered) and the 429 path (local reply built)
// run all the time. Pages are read after start-up, after a warm-up of 100,000
// requests and at the end, after 1,000,000 requests (about 8 s on a loaded
// two-core machine; -short stops at 110,000).
//
// The bound: no growth at all between the warm-up and the end. A VM's memory
// only grows (wasm has no shrink), and the Go runtime grows it by whole heap
// arenas (4 MiB, 64 pages, on wasm), so any per-request leak or unbounded
// cache (a map keyed by client, a stream table that is never recycled) shows
// up as at least 64 more pages long before 1,000,000 requests: a leak of only
// 8 bytes per request over 900,000 requests is 110 pages. Warm-up itself may
// take at most one more arena than start-up.
func TestMemoryFlat(t *testing.T) {
	g := start(t, `{"rules":[{"name":"r","key":["remote_address"],"capacity":5,"refill":1,"interval":"20s"}]}`)
	vm := g.Worker(0)
	const clients, warm = 10_000, 100_000
	total := 1_000_000
	if testing.Short() {
		total = warm + clients
	}
	src := sources(clients)
	atStart := vm.MemoryPages()
	var atWarm uint32
	var allowed, limited int
	began := time.Now()
	for i := 0; i < total; i++ {
		switch g.serve(vm, get(src[i%clients], "/x")).Status {
		case 200:
			allowed++
		case 429:
			limited++
		default:
			t.Fatalf("request %d: unexpected status (VM failed: %v)", i, vm.Failed())
		}
		g.clock.Advance(time.Millisecond)
		if i+1 == warm {
			atWarm = vm.MemoryPages()
		}
	}
	atEnd := vm.MemoryPages()
	t.Logf("pages: %d after start, %d after %d requests, %d after %d requests over %d clients (%d allowed, %d limited, %v)",
		atStart, atWarm, warm, atEnd, total, clients, allowed, limited, time.Since(began).Round(time.Millisecond))
	if allowed == 0 || limited == 0 {
		t.Fatalf("both paths must run: %d allowed, %d limited", allowed, limited)
	}
	if atEnd != atWarm {
		t.Errorf("memory grew from %d to %d pages between request %d and %d", atWarm, atEnd, warm, total)
	}
	if atWarm > atStart+64 {
		t.Errorf("warm-up grew memory from %d to %d pages: more than one 4 MiB arena", atStart, atWarm)
	}
	if vm.Failed() {
		t.Fatal("the VM failed")
	}
}

// TestSharedDataFootprint: a flood of distinct clients leaves the rule's
// shared data bounded by slots: at most slots/4 set keys plus the seed and
// epoch keys, whatever the number of clients. It logs the bytes per slot
// (keys and values, as the store counts them). 1,000,000 distinct clients
// with TOKENGATE_LONG=1 (about 9 s), 200,000 otherwise: the table is full
// after a few thousand clients, so the bound is already under test at 200,000.
//
// It also logs what the flood costs the clients: the clock moves 1 µs per
// request, so every set soon holds four busy buckets and each new client
// draws from one of them (never from a bucket of its own): of the flood only
// about slots x capacity requests are admitted. That is the documented price
// of the bounded table, stricter limits, never looser.
func TestSharedDataFootprint(t *testing.T) {
	const slots = 1024
	g := start(t, fmt.Sprintf(`{"rules":[{"name":"flood","key":["remote_address"],"capacity":5,"refill":1,"interval":"1s"}],"slots":%d}`, slots))
	vm := g.Worker(0)
	n := 200_000
	if longRun() {
		n = 1_000_000
	}
	if testing.Short() {
		n = 20_000
	}
	bound := slots/4 + 2
	var allowed int
	for i := 0; i < n; i++ {
		// 1,000,000 distinct IPv4 peers: 10.0.0.0/8 has 16M of them.
		src := fmt.Sprintf("10.%d.%d.%d:1", i>>16&255, i>>8&255, i&255)
		if g.serve(vm, get(src, "/")).Status == 200 {
			allowed++
		}
		g.clock.Advance(time.Microsecond)
		if i%50_000 == 0 {
			if keys := g.Shared().Len("tokengate"); keys > bound {
				t.Fatalf("%d keys after %d clients, bound %d", keys, i+1, bound)
			}
		}
	}
	keys, size := g.Shared().Len("tokengate"), g.Shared().Size("tokengate")
	t.Logf("%d distinct clients, slots %d: %d keys (bound %d), %d bytes, %.1f bytes per slot; %d admitted",
		n, slots, keys, bound, size, float64(size)/slots, allowed)
	if keys > bound {
		t.Fatalf("%d shared-data keys, bound %d", keys, bound)
	}
	if keys < slots/4 {
		t.Errorf("only %d keys: the flood did not fill the table (%d sets)", keys, slots/4)
	}
	// Each set is one key of ~30 bytes and a 136-byte value for 4 slots.
	if perSlot := float64(size) / slots; perSlot > 64 {
		t.Errorf("%.1f bytes per slot, want at most 64", perSlot)
	}
	// What the flood costs the clients, as the README states it: every one
	// of the slots entries is drained (capacity 5 each), and no entry gets
	// back more than one token per second of flood (n µs).
	const capacity = 5
	floodSeconds := (n + 999_999) / 1_000_000
	if lo, hi := slots*capacity, slots*(capacity+floodSeconds); allowed < lo || allowed > hi {
		t.Errorf("%d of %d flood clients admitted, want %d..%d (slots x (capacity + refill over the flood))", allowed, n, lo, hi)
	}
	t.Logf("stricter limiting: %d of %d brand-new clients refused (%.1f%%; their set held four busy buckets)", n-allowed, n, 100*float64(n-allowed)/float64(n))
}
