package wasmhost

import (
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
)

// HostFaults is a set of failures injected into the guests' proxy-wasm host calls, by
// function name: a test facility (HOST.md, "Test facilities"). Envoy's header maps, metrics
// and local replies answer OK for every well-formed call, but another host, a future Envoy or
// a stream in an unusual state may not, and a guest must have a defined answer for each
// status. Give one to PluginConfig.Faults; faults injected before NewPlugin fail the start
// sequence's calls too. The zero value is an empty set, ready to use, safe for concurrent use.
//
// SharedDataFault does the same for shared data, by key prefix and per store.
type HostFaults struct {
	mu     sync.Mutex
	faults []*HostFault // oldest first
	n      atomic.Int32 // len(faults), read without the lock on every host call
}

// HostFault fails a guest's calls of one host function. While it is active, each call of
// Function returns Status without running, so nothing is read, written or returned.
type HostFault struct {
	// Function is a proxy-wasm function under "env" that returns a status, for example
	// "proxy_get_header_map_value" or "proxy_define_metric" (FaultableFunctions lists them).
	Function string
	Status   Status // returned instead of running the call; StatusOK is taken as INTERNAL_FAILURE
	// Count is how many calls fail before the fault removes itself; 0 fails every call until
	// Remove.
	Count int

	failed int // guarded by set.mu
	set    *HostFaults
}

// faultable is the set of functions a HostFault may name.
var faultable = sync.OnceValue(func() map[string]bool {
	m := map[string]bool{}
	for _, f := range envFunctions(abi021) {
		m[f.name] = f.faultable()
	}
	return m
})

// faultable reports whether f is a proxy-wasm call whose only result is a status.
func (f hostFunc) faultable() bool {
	return len(f.name) > 6 && f.name[:6] == "proxy_" && slices.Equal(f.results, ints(1))
}

// FaultableFunctions returns the host functions a HostFault may name, sorted.
func FaultableFunctions() []string {
	var names []string
	for name, ok := range faultable() {
		if ok {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return names
}

// Inject makes the guests' calls of f.Function fail as f says, from now until f has failed
// f.Count calls or is removed. Faults are checked in the order they were injected; the first
// that names a call fails it. It returns the active fault, whose Failed reports how often it
// has struck, or an error for a function that is not in FaultableFunctions.
func (h *HostFaults) Inject(f HostFault) (*HostFault, error) {
	if !faultable()[f.Function] {
		return nil, fmt.Errorf("wasmhost: HostFault: %q is not a proxy-wasm host function that returns a status", f.Function)
	}
	if f.Status == StatusOK {
		f.Status = StatusInternalFailure
	}
	fp := &f
	fp.failed, fp.set = 0, h
	h.mu.Lock()
	h.faults = append(h.faults, fp)
	h.n.Store(int32(len(h.faults)))
	h.mu.Unlock()
	return fp, nil
}

// Failed returns how many guest calls the fault has failed.
func (f *HostFault) Failed() int {
	f.set.mu.Lock()
	defer f.set.mu.Unlock()
	return f.failed
}

// Remove ends the fault; later calls run normally (unless another fault names them).
func (f *HostFault) Remove() {
	f.set.mu.Lock()
	f.set.remove(f)
	f.set.mu.Unlock()
}

// remove drops f from the active faults; h.mu must be held.
func (h *HostFaults) remove(f *HostFault) {
	if i := slices.Index(h.faults, f); i >= 0 {
		h.faults = slices.Delete(h.faults, i, i+1)
	}
	h.n.Store(int32(len(h.faults)))
}

// injected returns the status an active fault imposes on a call of fn, StatusOK when none
// does. A nil set, or an empty one, costs at most one atomic load.
func (h *HostFaults) injected(fn string) Status {
	if h == nil || h.n.Load() == 0 {
		return StatusOK
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, f := range h.faults {
		if f.Function != fn {
			continue
		}
		f.failed++
		if f.Count > 0 && f.failed >= f.Count {
			h.remove(f)
		}
		return f.Status
	}
	return StatusOK
}
