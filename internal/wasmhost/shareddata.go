package wasmhost

import (
	"sync"
)

// SharedData is Envoy's process-wide proxy-wasm shared-data store: key/value pairs in one
// namespace per vm_id, each value stamped with a cas number. It reproduces Envoy's rules:
//
//   - Get of a missing key is StatusNotFound.
//   - Set on an existing key with cas != 0 and cas != the stored cas is StatusCASMismatch and
//     changes nothing; otherwise the value is stored. A missing key is created whatever cas was
//     passed. cas == 0 is an unconditional write.
//   - cas numbers come from one store-wide uint32 counter that starts at 1, grows by one on
//     every successful Set of any key in any namespace, and skips 0 when it wraps.
//   - There is no delete and no size limit; an empty vm_id is a valid namespace. A namespace
//     used by plugins is dropped when the last plugin using it is closed (Envoy drops it with
//     the last VM of that vm_id); namespaces never used by a plugin live as long as the store.
//
// One mutex guards the whole store, as in Envoy. The zero value is not usable; call
// NewSharedData. SharedData is safe for concurrent use.
type SharedData struct {
	mu      sync.Mutex
	nextCAS uint32
	ns      map[string]*sharedNamespace
	faults  faultList // injected by InjectFault
}

type sharedNamespace struct {
	refs    int // plugins holding the namespace
	entries map[string]*sharedEntry
	size    int // bytes of keys and values
}

type sharedEntry struct {
	value []byte
	cas   uint32
}

// NewSharedData returns an empty store whose first successful Set gets cas 1.
func NewSharedData() *SharedData {
	return &SharedData{nextCAS: 1, ns: make(map[string]*sharedNamespace)}
}

// SetNextCAS sets the cas number the next successful Set will get (0 is taken as 1).
// It exists for tests near the uint32 wrap.
func (s *SharedData) SetNextCAS(cas uint32) {
	if cas == 0 {
		cas = 1
	}
	s.mu.Lock()
	s.nextCAS = cas
	s.mu.Unlock()
}

// takeCAS returns the next cas number; s.mu must be held.
func (s *SharedData) takeCAS() uint32 {
	c := s.nextCAS
	s.nextCAS++
	if s.nextCAS == 0 {
		s.nextCAS = 1
	}
	return c
}

// Get returns a copy of the value stored under key in namespace vmID and its cas number,
// or StatusNotFound.
func (s *SharedData) Get(vmID, key string) (value []byte, cas uint32, st Status) {
	return s.getInto(vmID, []byte(key), nil)
}

// getInto appends the value of key to dst[:0]; key may alias guest memory.
func (s *SharedData) getInto(vmID string, key []byte, dst []byte) ([]byte, uint32, Status) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := s.ns[vmID]
	if n == nil {
		return dst[:0], 0, StatusNotFound
	}
	e := n.entries[string(key)]
	if e == nil {
		return dst[:0], 0, StatusNotFound
	}
	return append(dst[:0], e.value...), e.cas, StatusOK
}

// Set stores a copy of value under key in namespace vmID following Envoy's cas rules
// (see SharedData). It returns StatusOK or StatusCASMismatch.
func (s *SharedData) Set(vmID, key string, value []byte, cas uint32) Status {
	return s.setBytes(vmID, []byte(key), key, value, cas)
}

// setBytes is Set for a key that may alias guest memory: keyStr, when not empty or when key
// is empty, is the same key already as a string.
func (s *SharedData) setBytes(vmID string, key []byte, keyStr string, value []byte, cas uint32) Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := s.namespace(vmID)
	e := n.entries[string(key)]
	if e == nil {
		if keyStr == "" && len(key) > 0 {
			keyStr = string(key)
		}
		e = &sharedEntry{value: append(make([]byte, 0, len(value)), value...), cas: s.takeCAS()}
		n.entries[keyStr] = e
		n.size += len(keyStr) + len(value)
		return StatusOK
	}
	if cas != 0 && cas != e.cas {
		return StatusCASMismatch
	}
	n.size += len(value) - len(e.value)
	e.value = append(e.value[:0], value...) // Get always copies, so reuse is safe
	e.cas = s.takeCAS()
	return StatusOK
}

// Len returns the number of keys in namespace vmID.
func (s *SharedData) Len(vmID string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if n := s.ns[vmID]; n != nil {
		return len(n.entries)
	}
	return 0
}

// Size returns the bytes of keys plus values stored in namespace vmID.
func (s *SharedData) Size(vmID string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if n := s.ns[vmID]; n != nil {
		return n.size
	}
	return 0
}

// namespace returns namespace vmID, creating it empty; s.mu must be held.
func (s *SharedData) namespace(vmID string) *sharedNamespace {
	n := s.ns[vmID]
	if n == nil {
		n = &sharedNamespace{entries: make(map[string]*sharedEntry)}
		s.ns[vmID] = n
	}
	return n
}

// acquire records that a plugin uses namespace vmID.
func (s *SharedData) acquire(vmID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.namespace(vmID).refs++
}

// release drops a plugin's hold on vmID; the last one gone drops the namespace, as Envoy does
// when the last VM with that vm_id goes away.
func (s *SharedData) release(vmID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := s.ns[vmID]
	if n == nil || n.refs == 0 {
		return
	}
	n.refs--
	if n.refs == 0 {
		delete(s.ns, vmID)
	}
}

// SharedDataCall names a guest's shared-data host call, for SharedDataFault.
type SharedDataCall uint8

const (
	CallGetSharedData SharedDataCall = iota // proxy_get_shared_data
	CallSetSharedData                       // proxy_set_shared_data
)

// function returns the host function's name.
func (c SharedDataCall) function() string {
	if c == CallSetSharedData {
		return "proxy_set_shared_data"
	}
	return "proxy_get_shared_data"
}

// SharedDataFault is a failure injected into the guests' shared-data calls: a test facility
// (Envoy's store answers only OK, NOT_FOUND and CAS_MISMATCH, but a guest must survive any
// status a host returns). While active, each guest call of kind Call on a key that starts with
// KeyPrefix returns Status without reading or writing the store. The Go methods of SharedData
// (Get, Set, Len...) are never failed, so a test can still look at the store.
type SharedDataFault struct {
	Call      SharedDataCall
	KeyPrefix string // "" matches every key
	Status    Status // returned instead of running the call; StatusOK is taken as INTERNAL_FAILURE
	// Count is how many calls fail before the fault removes itself; 0 fails every matching
	// call until Remove.
	Count int

	f    *fault
	list *faultList
}

// InjectFault makes the guests' calls on this store fail as f says, from now until f has
// failed f.Count calls or is removed. Faults are checked in the order they were injected;
// the first that matches a call fails it. It returns the active fault, whose Failed reports
// how often it has struck. Safe for concurrent use, like every method of SharedData.
func (s *SharedData) InjectFault(f SharedDataFault) *SharedDataFault {
	f.f, f.Status = s.faults.add(f.Call.function(), []byte(f.KeyPrefix), f.Status, f.Count)
	f.list = &s.faults
	return &f
}

// Failed returns how many guest calls the fault has failed.
func (f *SharedDataFault) Failed() int { return f.list.failures(f.f) }

// Remove ends the fault; later calls run normally (unless another fault matches them).
func (f *SharedDataFault) Remove() { f.list.remove(f.f) }

// injected returns the status an active fault imposes on a guest call on key, StatusOK when
// none does. Without faults it costs one atomic load.
func (s *SharedData) injected(call SharedDataCall, key []byte) Status {
	return s.faults.strike(call.function(), key)
}

func hostGetSharedData(vm *VM, s []uint64) Status {
	key, ok := vm.readArg(s, 0)
	if !ok {
		return StatusInvalidMemoryAccess
	}
	if st := vm.p.shared.injected(CallGetSharedData, key); st != StatusOK {
		return st
	}
	val, cas, st := vm.p.shared.getInto(vm.p.cfg.VMID, key, vm.scratch)
	vm.scratch = val
	if st != StatusOK {
		return st
	}
	if st := vm.writeOut(val, u32(s, 2), u32(s, 3)); st != StatusOK {
		return st
	}
	return memStatus(vm.mem.WriteUint32Le(u32(s, 4), cas))
}

func hostSetSharedData(vm *VM, s []uint64) Status {
	key, ok1 := vm.readArg(s, 0)
	val, ok2 := vm.readArg(s, 2)
	if !ok1 || !ok2 {
		return StatusInvalidMemoryAccess
	}
	if st := vm.p.shared.injected(CallSetSharedData, key); st != StatusOK {
		return st
	}
	return vm.p.shared.setBytes(vm.p.cfg.VMID, key, "", val, u32(s, 4))
}
