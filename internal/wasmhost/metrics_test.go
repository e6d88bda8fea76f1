package wasmhost

import (
	"strings"
	"testing"
)

func TestMetricsThroughGuest(t *testing.T) {
	metrics := NewMetrics()
	p, _ := newTestPlugin(t, PluginConfig{Concurrency: 2, Metrics: metrics})
	run := func(vm *VM, cmds string) map[string]string {
		s := vm.NewStream(info)
		defer s.Close()
		return outputs(s.RequestHeaders(req(cmds), true).Headers)
	}
	run(p.Worker(0), "gauge:7,hist:10")
	run(p.Worker(1), "gauge:9,hist:30")
	out := run(p.Main(), "minc:0,mget:counter,mget:gauge,mget:histogram,mget:unknown")
	if out["minc"] != "status=2" {
		t.Errorf("increment counter by 0 = %q, want BAD_ARGUMENT", out["minc"])
	}
	// Counters add up across VMs: 3 requests, one per VM, each incremented once.
	if out["mget-counter"] != "3/status=0" {
		t.Errorf("get counter = %q", out["mget-counter"])
	}
	if out["mget-gauge"] != "9/status=0" {
		t.Errorf("get gauge = %q (last set wins)", out["mget-gauge"])
	}
	if out["mget-histogram"] != "0/status=2" || out["mget-unknown"] != "0/status=1" {
		t.Errorf("get histogram %q (want BAD_ARGUMENT), unknown %q (want NOT_FOUND)", out["mget-histogram"], out["mget-unknown"])
	}
	out = run(p.Main(), "minc:-3")
	if out["minc"] != "status=2" {
		t.Errorf("negative counter increment = %q", out["minc"])
	}
	if v, ok := metrics.Get("wasmcustom.guest.requests"); !ok || v != 4 {
		t.Errorf("wasmcustom.guest.requests = %d %v", v, ok)
	}
	if v, _ := metrics.Get("wasmcustom.guest.sizes"); v != 2 {
		t.Errorf("histogram count = %d", v)
	}
	var text, prom strings.Builder
	metrics.WriteText(&text)
	metrics.WritePrometheus(&prom)
	wantText := "wasmcustom.guest.last_size: 9\nwasmcustom.guest.requests: 4\nwasmcustom.guest.sizes: count=2 sum=40\n"
	if text.String() != wantText {
		t.Errorf("WriteText:\n%s\nwant:\n%s", text.String(), wantText)
	}
	for _, w := range []string{"# TYPE guest_requests counter\nguest_requests{} 4\n", "# TYPE guest_last_size gauge\nguest_last_size{} 9\n",
		"guest_sizes_count{} 2\n", "guest_sizes_sum{} 40\n"} {
		if !strings.Contains(prom.String(), w) {
			t.Errorf("WritePrometheus lacks %q:\n%s", w, prom.String())
		}
	}
	if strings.Contains(prom.String(), "wasmcustom") {
		t.Errorf("prometheus output keeps the wasmcustom prefix:\n%s", prom.String())
	}
}
