package wasmhost

import (
	"bytes"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
)

// faultList is an ordered set of injected failures of guest host calls: the machinery of
// HostFaults and of SharedData.InjectFault. The zero value is empty and ready to use.
type faultList struct {
	mu     sync.Mutex
	active []*fault     // oldest first
	n      atomic.Int32 // len(active), read without the lock on every host call
}

// fault is one active failure: the calls of function (on keys starting with prefix, for the
// calls that have a key) fail with status, count times (0: until removed).
type fault struct {
	function string
	prefix   []byte
	status   Status
	count    int
	failed   int // guarded by the list's mutex
}

// add activates a fault; StatusOK is taken as INTERNAL_FAILURE, which it returns with it.
func (l *faultList) add(function string, prefix []byte, status Status, count int) (*fault, Status) {
	if status == StatusOK {
		status = StatusInternalFailure
	}
	f := &fault{function: function, prefix: prefix, status: status, count: count}
	l.mu.Lock()
	l.active = append(l.active, f)
	l.n.Store(int32(len(l.active)))
	l.mu.Unlock()
	return f, status
}

// strike returns the status the first active fault matching a call of function on key
// imposes, StatusOK when none does; an empty list costs one atomic load.
func (l *faultList) strike(function string, key []byte) Status {
	if l.n.Load() == 0 {
		return StatusOK
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, f := range l.active {
		if f.function != function || !bytes.HasPrefix(key, f.prefix) {
			continue
		}
		f.failed++
		if f.count > 0 && f.failed >= f.count {
			l.removeLocked(f)
		}
		return f.status
	}
	return StatusOK
}

func (l *faultList) failures(f *fault) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return f.failed
}

func (l *faultList) remove(f *fault) {
	l.mu.Lock()
	l.removeLocked(f)
	l.mu.Unlock()
}

func (l *faultList) removeLocked(f *fault) {
	if i := slices.Index(l.active, f); i >= 0 {
		l.active = slices.Delete(l.active, i, i+1)
	}
	l.n.Store(int32(len(l.active)))
}

// HostFaults is a set of failures injected into the guests' proxy-wasm host calls, by
// function name: a test facility (HOST.md, "Test facilities"). Envoy's header maps, metrics
// and local replies answer OK for every well-formed call, but another host, a future Envoy or
// a stream in an unusual state may not, and a guest must have a defined answer for each
// status. Give one to PluginConfig.Faults; faults injected before NewPlugin fail the start
// sequence's calls too. The zero value is an empty set, ready to use, safe for concurrent use.
//
// SharedData.InjectFault does the same for shared data, by key prefix and per store.
type HostFaults struct {
	list faultList
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

	f    *fault
	list *faultList
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
	f.f, f.Status = h.list.add(f.Function, nil, f.Status, f.Count)
	f.list = &h.list
	return &f, nil
}

// Failed returns how many guest calls the fault has failed.
func (f *HostFault) Failed() int { return f.list.failures(f.f) }

// Remove ends the fault; later calls run normally (unless another fault names them).
func (f *HostFault) Remove() { f.list.remove(f.f) }

// injected returns the status an active fault imposes on a call of fn, StatusOK when none
// does. A nil set, or an empty one, costs at most one atomic load.
func (h *HostFaults) injected(fn string) Status {
	if h == nil {
		return StatusOK
	}
	return h.list.strike(fn, nil)
}
