package wasmhost

import (
	"testing"
	"time"
)

func TestMonotonicClockNeverGoesBack(t *testing.T) {
	clock := NewFakeClock(epoch)
	p, _ := newTestPlugin(t, PluginConfig{Clock: clock})
	vm := p.Worker(0)
	vm.mu.Lock()
	defer vm.mu.Unlock()
	a := vm.monotonic()
	clock.Advance(time.Second)
	b := vm.monotonic()
	clock.Set(epoch.Add(-time.Hour))
	c := vm.monotonic()
	if b-a != int64(time.Second) || c != b {
		t.Fatalf("monotonic readings %d %d %d", a, b, c)
	}
}
