package wasmhost

import (
	"strconv"
	"strings"
	"sync"
	"testing"
)

// TestConcurrentVMs drives every VM of a plugin from several goroutines at once (two per VM,
// so the same VM is also driven concurrently) while ticking and reading metrics; run with
// -race. Each request increments a shared counter with a bounded cas loop in the test and
// the guest counts requests in a metric: nothing may be lost.
func TestConcurrentVMs(t *testing.T) {
	p, _ := newTestPlugin(t, PluginConfig{Concurrency: 2, Configuration: []byte("tick=1")})
	vms := []*VM{p.Main(), p.Worker(0), p.Worker(1)}
	const perGoroutine = 40
	var wg sync.WaitGroup
	for g := 0; g < 2*len(vms); g++ {
		vm := vms[g%len(vms)]
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < perGoroutine; i++ {
				resp := vm.Serve(info, Request{Headers: req("sget:n"), Body: []byte("b")}, func(r Request) Response {
					return Response{Status: 200, Body: []byte("x")}
				})
				if resp.Status != 200 || string(resp.Body) != "[x]" {
					t.Errorf("%s: response %+v", vm.Name(), resp)
					return
				}
				for attempt := 0; ; attempt++ {
					v, cas, st := p.Shared().Get("", "n")
					n := 0
					if st == StatusOK {
						n, _ = strconv.Atoi(string(v))
					}
					if p.Shared().Set("", "n", []byte(strconv.Itoa(n+1)), cas) == StatusOK {
						break
					}
					if attempt > 1000 {
						t.Error("cas loop did not converge")
						return
					}
				}
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < 50; i++ {
			p.Tick()
			var b strings.Builder
			p.Metrics().WriteText(&b)
			p.Metrics().Snapshot()
		}
	}()
	wg.Wait()
	total := 2 * len(vms) * perGoroutine
	if v, _ := p.Metrics().Get("wasmcustom.guest.requests"); v != int64(total) {
		t.Errorf("guest.requests = %d, want %d", v, total)
	}
	v, _, _ := p.Shared().Get("", "n")
	if string(v) != strconv.Itoa(total) {
		t.Errorf("shared counter = %s, want %d", v, total)
	}
	for _, vm := range vms {
		if vm.Failed() {
			t.Errorf("%s failed: %v", vm.Name(), vm.Err())
		}
	}
}
