package wasmhost

import (
	"strings"
	"testing"
	"time"
)

func TestLogLevels(t *testing.T) {
	p, sink := newTestPlugin(t, PluginConfig{LogLevel: LogWarn})
	s := p.Worker(0).NewStream(info)
	r := s.RequestHeaders(req("log:1:debug line,log:3:warn line,log:9:bad level"), true)
	s.Close()
	var sts []string
	for _, kv := range r.Headers {
		if kv[0] == "x-out-log" {
			sts = append(sts, kv[1])
		}
	}
	if strings.Join(sts, " ") != "status=0 status=0 status=2" {
		t.Errorf("proxy_log statuses %q, want OK OK BAD_ARGUMENT", sts)
	}
	log := sink.String()
	if !strings.Contains(log, "[worker-0] warn: warn line") || strings.Contains(log, "debug line") {
		t.Errorf("log filtered at warn:\n%s", log)
	}
}

func TestSetEffectiveContext(t *testing.T) {
	p, _ := newTestPlugin(t, PluginConfig{})
	vm := p.Worker(0)
	other := vm.NewStream(info) // id 2, paused: its request headers stay reachable
	other.RequestHeaders(req("pause"), false)
	s := vm.NewStream(info) // id 3
	r := s.RequestHeaders(req("effective:99,effective:2,effective:1"), true)
	// Unknown id: BAD_ARGUMENT, reported on the stream's own headers.
	if got := outputs(r.Headers)["effective"]; got != "status=2" {
		t.Errorf("effective:99 = %q", got)
	}
	// Then host calls act on stream 2: its status lands in stream 2's request headers.
	vm.mu.Lock()
	got := outputs(other.req)["effective"]
	vm.mu.Unlock()
	if got != "status=0" {
		t.Errorf("after set_effective_context(2), the output went to %q on stream 2, want status=0", got)
	}
	s.Close()
	other.Close()
}

func TestRequestBodyBufferedWhilePaused(t *testing.T) {
	p, _ := newTestPlugin(t, PluginConfig{})
	s := p.Worker(0).NewStream(info)
	s.RequestHeaders(req("bodypause"), false)
	if r := s.RequestBody([]byte("ab"), false); r.Action != Pause {
		t.Fatalf("first chunk: %+v", r)
	}
	r := s.RequestBody([]byte("cd"), true)
	s.Close()
	if r.Action != Continue || string(r.Body) != "abcd" {
		t.Fatalf("second chunk: %+v", r)
	}
	if got := sharedString(t, p, "req_body.2"); got != "abcd|status=2" {
		t.Errorf("guest saw %q, want the buffered body", got)
	}
}

func TestContextIDsNeverReused(t *testing.T) {
	p, _ := newTestPlugin(t, PluginConfig{})
	vm := p.Worker(0)
	a, b := vm.NewStream(info), vm.NewStream(info)
	b.Close()
	a.Close()
	if c := vm.NewStream(info); c.ID() != 4 {
		t.Fatalf("id %d after closing 2 and 3, want 4", c.ID())
	} else {
		c.Close()
	}
	for i := 0; i < 3; i++ {
		vm.Serve(info, Request{Headers: req("")}, nil)
	}
	if d := vm.NewStream(info); d.ID() != 8 {
		t.Fatalf("id %d, want 8 (Serve uses ids too)", d.ID())
	}
}

func TestPluginCloseReleasesSharedNamespace(t *testing.T) {
	shared := NewSharedData()
	a, _ := newTestPlugin(t, PluginConfig{Name: "a", VMID: "ns", Shared: shared})
	b, _ := newTestPlugin(t, PluginConfig{Name: "b", VMID: "ns", Shared: shared})
	a.Worker(0).Serve(info, Request{Headers: req("sset:k=v@0")}, nil)
	if err := a.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, _, st := shared.Get("ns", "k"); st != StatusOK {
		t.Fatal("data dropped while another plugin of the vm_id lives")
	}
	b.Close(t.Context())
	if shared.Len("ns") != 0 {
		t.Fatalf("%d keys left after the last plugin of the vm_id closed", shared.Len("ns"))
	}
	// A closed plugin's VMs never come back, even under FAIL_RELOAD.
	if resp := a.Worker(0).Serve(info, Request{Headers: req("")}, nil); resp.Status != 503 {
		t.Fatalf("closed VM served: %+v", resp)
	}
}

func TestReloadBackoff(t *testing.T) {
	p := &Plugin{cfg: PluginConfig{ReloadBackoff: time.Second}}
	for n, base := range []time.Duration{1, 2, 4, 8, 16, 32, 32, 32} {
		base *= time.Second
		for i := 0; i < 20; i++ {
			d := p.reloadDelay(n)
			if d < base || d > base+base/2 {
				t.Fatalf("attempt %d: delay %v outside [%v, %v]", n, d, base, base+base/2)
			}
		}
	}
}

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

func TestMemoryPages(t *testing.T) {
	p, _ := newTestPlugin(t, PluginConfig{})
	if pages := p.Worker(0).MemoryPages(); pages == 0 || pages > memoryLimitPages {
		t.Fatalf("MemoryPages = %d", pages)
	}
}
