package wasmhost

import (
	"testing"
	"time"
)

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

func TestMemoryPages(t *testing.T) {
	p, _ := newTestPlugin(t, PluginConfig{})
	if pages := p.Worker(0).MemoryPages(); pages == 0 || pages > memoryLimitPages {
		t.Fatalf("MemoryPages = %d", pages)
	}
}
