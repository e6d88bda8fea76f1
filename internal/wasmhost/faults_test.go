package wasmhost

import (
	"slices"
	"strings"
	"testing"
)

// TestHostFaults: an injected fault fails the named call with its status and nothing else,
// for Count calls or until Remove; a fault injected before NewPlugin fails the start
// sequence's calls; a function that does not return a status is refused by name.
func TestHostFaults(t *testing.T) {
	faults := &HostFaults{}
	// The guest defines its metrics in proxy_on_configure: the canary VM's definition of
	// guest.requests is the first call.
	atStart, err := faults.Inject(HostFault{Function: "proxy_define_metric", Status: StatusBadArgument, Count: 1})
	if err != nil {
		t.Fatal(err)
	}
	p, _ := newTestPlugin(t, PluginConfig{Name: "faults", Faults: faults})
	if atStart.Failed() != 1 {
		t.Fatalf("define_metric fault at start failed %d calls, want 1", atStart.Failed())
	}
	run := func(cmds string) map[string]string {
		s := p.Worker(0).NewStream(info)
		defer s.Close()
		return outputs(s.RequestHeaders(req(cmds), true).Headers)
	}
	prop, err := faults.Inject(HostFault{Function: "proxy_get_property", Status: StatusNotFound, Count: 2})
	if err != nil {
		t.Fatal(err)
	}
	inc, err := faults.Inject(HostFault{Function: "proxy_increment_metric"}) // until Remove; OK means INTERNAL_FAILURE
	if err != nil {
		t.Fatal(err)
	}
	out := run("prop:source.address,prop:source.address,prop:source.address,minc:1,replace:x-a=b")
	// out keeps the last value of a key: the third property read runs normally.
	if out["prop-source.address"] != "10.1.2.3:54321/status=0" || out["minc"] != "status=10" || out["replace"] != "status=0" {
		t.Fatalf("with faults: %v", out)
	}
	if prop.Failed() != 2 || inc.Failed() != 2 { // the guest counts every request, then minc
		t.Fatalf("failed: property %d (want 2), increment %d (want 2)", prop.Failed(), inc.Failed())
	}
	if out := run("prop:source.address"); out["prop-source.address"] != "10.1.2.3:54321/status=0" {
		t.Fatalf("after Count calls the property fault is gone: %v", out)
	}
	inc.Remove()
	if out := run("minc:1"); out["minc"] != "status=0" || inc.Failed() != 3 {
		t.Fatalf("after Remove: %v, failed %d (want 3)", out, inc.Failed())
	}

	for _, name := range []string{"proxy_unknown", "pthread_equal", "emscripten_notify_memory_growth", "fd_write"} {
		if _, err := faults.Inject(HostFault{Function: name}); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("Inject(%s): %v, want an error naming it", name, err)
		}
	}
	names := FaultableFunctions()
	for _, want := range []string{"proxy_get_header_map_value", "proxy_send_local_response", "proxy_define_metric", "proxy_grpc_call"} {
		if !slices.Contains(names, want) {
			t.Errorf("FaultableFunctions lacks %s: %v", want, names)
		}
	}
}
