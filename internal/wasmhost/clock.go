package wasmhost

import (
	"sync"
	"time"
)

// Clock is the wall clock the host reads for proxy_get_current_time_nanoseconds, WASI
// clock_time_get (realtime and, as an offset from the first reading, monotonic), tick
// deadlines and FAIL_RELOAD back-off. Implementations must be safe for concurrent use.
type Clock interface {
	Now() time.Time
}

type systemClock struct{}

func (systemClock) Now() time.Time { return time.Now() }

// SystemClock returns the real wall clock.
func SystemClock() Clock { return systemClock{} }

// FakeClock is a Clock that moves only when told to. It is safe for concurrent use.
// Use NewFakeClock to create one; the zero value reads as the zero time.
type FakeClock struct {
	mu  sync.Mutex
	now time.Time
}

// NewFakeClock returns a FakeClock that reads t until Set or Advance.
func NewFakeClock(t time.Time) *FakeClock { return &FakeClock{now: t} }

// Now returns the clock's current time.
func (c *FakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Set moves the clock to t (backwards too, to test clamping).
func (c *FakeClock) Set(t time.Time) {
	c.mu.Lock()
	c.now = t
	c.mu.Unlock()
}

// Advance moves the clock forward by d.
func (c *FakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func hostGetCurrentTime(vm *VM, s []uint64) Status {
	return memStatus(vm.mem.WriteUint64Le(u32(s, 0), uint64(vm.p.clock.Now().UnixNano())))
}

func hostSetTickPeriod(vm *VM, s []uint64) Status {
	ms := u32(s, 0)
	vm.tickPeriod = time.Duration(ms) * time.Millisecond
	if ms == 0 {
		vm.nextTick = time.Time{}
	} else {
		vm.nextTick = vm.p.clock.Now().Add(vm.tickPeriod)
	}
	return StatusOK
}

// Tick fires proxy_on_tick for the root context if the tick period the guest set has
// elapsed on the Clock, then re-arms the timer one period after the callback returns.
// It does nothing on a failed VM or when no period is set.
func (vm *VM) Tick() {
	vm.mu.Lock()
	defer vm.mu.Unlock()
	if vm.failed || vm.tickPeriod <= 0 || vm.fns.tick == nil {
		return
	}
	if vm.p.clock.Now().Before(vm.nextTick) {
		return
	}
	vm.stack[0] = rootContextID
	if _, ok := vm.invoke(vm.fns.tick, nil, 1); !ok {
		return
	}
	if vm.tickPeriod > 0 {
		vm.nextTick = vm.p.clock.Now().Add(vm.tickPeriod)
	}
}

// monotonic returns a monotonic reading in ns derived from the Clock, never decreasing.
func (vm *VM) monotonic() int64 {
	n := int64(vm.p.clock.Now().Sub(vm.p.monoBase)) + int64(time.Second)
	if n < vm.lastMono {
		n = vm.lastMono
	}
	vm.lastMono = n
	return n
}
