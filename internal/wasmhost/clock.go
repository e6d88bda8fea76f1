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
