package wasmhost

import (
	"context"
	"testing"
)

// TestHostFunctionsDoNotAllocate calls the hot host functions directly on a VM of a
// hand-assembled module whose allocator hands out a fixed scratch area, and checks that they
// allocate nothing on the Go heap: header value, property, shared data get and cas set of an
// existing key, metric increment, current time.
func TestHostFunctionsDoNotAllocate(t *testing.T) {
	const scratch = 4096 // the allocator's answer: guest memory the host may fill
	m, err := Compile(context.Background(), buildWasm(nil, []wasmExport{
		abiExport020, {name: "proxy_on_memory_allocate", sig: sigI32I32, result: scratch},
	}))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close(context.Background())
	p, err := NewPlugin(context.Background(), m, PluginConfig{Name: "alloc", Clock: NewFakeClock(epoch)})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close(context.Background())
	vm := p.Worker(0)
	s := vm.NewStream(info)
	s.RequestHeaders(req(""), false)
	s.req.state = halfHeld // as if the (absent) callback had paused: the headers stay reachable
	p.Shared().Set("", "bucket", make([]byte, 24), 0)

	// Guest memory layout for arguments: strings at 100.., out-slots at 16, 20, 24.
	put := func(addr uint32, str string) (uint32, uint32) {
		vm.mem.Write(addr, []byte(str))
		return addr, uint32(len(str))
	}
	keyP, keyN := put(100, "x-request-id")
	propP, propN := put(200, "source\x00address")
	shP, shN := put(300, "bucket")
	valP, valN := put(400, "012345678901234567890123")
	var metricID uint32
	{
		nP, nN := put(500, "hot.counter")
		st := []uint64{metricCounter, uint64(nP), uint64(nN), 28}
		setStatus(st, hostDefineMetric(vm, st))
		metricID, _ = vm.mem.ReadUint32Le(28)
	}
	vm.cur = s
	defer func() { vm.cur = nil }()
	stack := make([]uint64, 8)
	calls := []struct {
		name string
		fn   func(*VM, []uint64) Status
		args []uint64
	}{
		{"get_header_map_value", hostGetHeaderMapValue, []uint64{mapRequestHeaders, uint64(keyP), uint64(keyN), 16, 20}},
		{"get_property", hostGetProperty, []uint64{uint64(propP), uint64(propN), 16, 20}},
		{"get_shared_data", hostGetSharedData, []uint64{uint64(shP), uint64(shN), 16, 20, 24}},
		{"set_shared_data", hostSetSharedData, []uint64{uint64(shP), uint64(shN), uint64(valP), uint64(valN), 0}},
		{"increment_metric", hostIncrementMetric, []uint64{uint64(metricID), 1}},
		{"get_current_time_nanoseconds", hostGetCurrentTime, []uint64{16}},
		{"get_header_map_size", hostGetHeaderMapSize, []uint64{mapRequestHeaders, 16}},
	}
	vm.mu.Lock()
	defer vm.mu.Unlock()
	for _, c := range calls {
		run := func() {
			copy(stack, c.args)
			setStatus(stack, c.fn(vm, stack))
		}
		run()
		if Status(stack[0]) != StatusOK {
			t.Fatalf("%s: %v", c.name, Status(stack[0]))
		}
		if allocs := testing.AllocsPerRun(200, run); allocs != 0 {
			t.Errorf("%s allocates %v times per call, want 0", c.name, allocs)
		}
	}
	// The value really went through the allocator into guest memory.
	copy(stack, calls[0].args)
	setStatus(stack, hostGetHeaderMapValue(vm, stack))
	ptr, _ := vm.mem.ReadUint32Le(16)
	n, _ := vm.mem.ReadUint32Le(20)
	got, _ := vm.mem.Read(ptr, n)
	if ptr != scratch || string(got) != "rid-1" {
		t.Fatalf("value at %d: %q", ptr, got)
	}
}
