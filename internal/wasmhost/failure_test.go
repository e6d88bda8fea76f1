package wasmhost

import (
	"slices"
	"strings"
	"testing"
	"time"
)

func TestTrapFailClosed(t *testing.T) {
	p, _ := newTestPlugin(t, PluginConfig{Concurrency: 2})
	vm := p.Worker(0)
	s := vm.NewStream(info)
	r := s.RequestHeaders(req("panic"), true)
	s.Close()
	if r.Action != Pause || r.LocalReply == nil || r.LocalReply.Status != 503 || r.LocalReply.Details != "wasm_fail_stream" {
		t.Fatalf("trapping request: %+v", r)
	}
	if !vm.Failed() || !strings.Contains(vm.Err().Error(), "guest panic on request") && !strings.Contains(vm.Err().Error(), "unreachable") {
		t.Fatalf("VM failed=%v err=%v", vm.Failed(), vm.Err())
	}
	// Later callbacks on the failed VM are skipped: no proxy_on_log for the trapping stream.
	if _, _, st := p.Shared().Get("", "log.2"); st != StatusNotFound {
		t.Error("proxy_on_log ran on a failed VM")
	}
	// New streams: 503 each, the upstream is never reached.
	for i := 0; i < 3; i++ {
		resp := vm.Serve(info, Request{Headers: req("count")}, func(Request) Response {
			t.Error("upstream reached through a failed FAIL_CLOSED VM")
			return Response{}
		})
		if resp.Status != 503 || resp.LocalReply == nil || resp.LocalReply.Details != "wasm_fail_stream" {
			t.Fatalf("request %d on failed VM: %+v", i, resp)
		}
	}
	// The other worker is unaffected.
	if p.Worker(1).Failed() {
		t.Fatal("a trap on one worker failed another")
	}
	resp := p.Worker(1).Serve(info, Request{Headers: req("")}, nil)
	if resp.Status != 200 {
		t.Fatalf("healthy worker: %+v", resp)
	}
	// Ticks are skipped on a failed VM (no panic, nothing happens).
	vm.Tick()
}

func TestTrapFailOpen(t *testing.T) {
	p, _ := newTestPlugin(t, PluginConfig{FailurePolicy: FailOpen})
	vm := p.Worker(0)
	s := vm.NewStream(info)
	r := s.RequestHeaders(req("panic"), true)
	s.Close()
	if r.Action != Continue || r.LocalReply != nil {
		t.Fatalf("trapping request under FAIL_OPEN: %+v", r)
	}
	if !vm.Failed() {
		t.Fatal("VM not failed")
	}
	// The filter is left out: headers untouched (no x-out-count), upstream reached.
	s = vm.NewStream(info)
	in := req("count")
	r = s.RequestHeaders(in, true)
	s.Close()
	if r.Action != Continue || r.LocalReply != nil || !slices.Equal(r.Headers, in) {
		t.Fatalf("request on failed FAIL_OPEN VM: %+v", r)
	}
	reached := false
	resp := vm.Serve(info, Request{Headers: req("")}, func(Request) Response {
		reached = true
		return Response{Status: 204}
	})
	if !reached || resp.Status != 204 {
		t.Fatalf("Serve on failed FAIL_OPEN VM: %+v reached=%v", resp, reached)
	}
	if _, ok := resp.Headers.Get("x-resp-seen"); ok {
		t.Error("response callback ran on a failed VM")
	}
}

func TestTrapFailReload(t *testing.T) {
	clock := NewFakeClock(epoch)
	p, _ := newTestPlugin(t, PluginConfig{FailurePolicy: FailReload, Clock: clock, ReloadBackoff: time.Second})
	vm := p.Worker(0)
	serve := func(cmds string) Response {
		return vm.Serve(info, Request{Headers: req(cmds)}, func(Request) Response { return Response{Status: 200} })
	}
	// Shared data written before the crash must survive the reload.
	if resp := serve("sset:survivor=yes@0"); resp.Status != 200 {
		t.Fatalf("before crash: %+v", resp)
	}
	if resp := serve("panic"); resp.Status != 503 || resp.LocalReply.Details != "wasm_fail_stream" {
		t.Fatalf("trapping request: %+v", resp)
	}
	// 503 until the back-off (base 1 s, jittered up to 1.5 s) has elapsed on the Clock.
	for _, d := range []time.Duration{0, 500 * time.Millisecond, 400 * time.Millisecond} {
		clock.Advance(d)
		if resp := serve(""); resp.Status != 503 {
			t.Fatalf("before back-off: %+v", resp)
		}
		if p.Reloads() != 0 {
			t.Fatal("reloaded too early")
		}
	}
	clock.Advance(700 * time.Millisecond) // 1.6 s after the crash
	s := vm.NewStream(info)
	r := s.RequestHeaders(req("sget:survivor,count"), true)
	s.Close()
	if r.LocalReply != nil {
		t.Fatalf("after back-off: %+v", r)
	}
	out := outputs(r.Headers)
	if !strings.HasPrefix(out["sget-survivor"], "yes/") || out["count"] != "6/eos=1" {
		t.Errorf("reloaded VM outputs %q", out)
	}
	if p.Reloads() != 1 || vm.Failed() {
		t.Fatalf("reloads=%d failed=%v", p.Reloads(), vm.Failed())
	}
	// The fresh VM ran the full start sequence: its context ids start again at 2.
	if s.ID() != 2 {
		t.Errorf("first stream of the reloaded VM has id %d, want 2", s.ID())
	}
}

func TestStreamInFlightWhenVMFails(t *testing.T) {
	p, _ := newTestPlugin(t, PluginConfig{})
	vm := p.Worker(0)
	a := vm.NewStream(info)
	a.RequestHeaders(req(""), true)
	b := vm.NewStream(info)
	rb := b.RequestHeaders(req("panic"), true)
	b.Close()
	if rb.LocalReply == nil {
		t.Fatal("no 503 for the trapping stream")
	}
	// Stream a was fine but its VM is gone: its response gets the failure policy too.
	r := a.ResponseHeaders(Headers{{":status", "200"}}, true)
	a.Close()
	if r.LocalReply == nil || r.LocalReply.Status != 503 {
		t.Fatalf("in-flight stream on failed VM: %+v", r)
	}
}

func TestTrapInResponseHeaders(t *testing.T) {
	p, _ := newTestPlugin(t, PluginConfig{})
	resp := p.Worker(0).Serve(info, Request{Headers: req("resppanic")}, func(Request) Response {
		return Response{Status: 200, Body: []byte("body")}
	})
	if resp.Status != 503 || resp.LocalReply == nil || resp.LocalReply.Details != "wasm_fail_stream" || len(resp.Body) != 0 {
		t.Fatalf("response %+v", resp)
	}
}

func TestTrapNextCallbackHook(t *testing.T) {
	p, sink := newTestPlugin(t, PluginConfig{})
	vm := p.Worker(0)
	vm.TrapNextCallback()
	resp := vm.Serve(info, Request{Headers: req("")}, nil)
	if resp.Status != 503 || !vm.Failed() {
		t.Fatalf("response %+v failed=%v", resp, vm.Failed())
	}
	if !strings.Contains(sink.String(), "Plugin Crash") {
		t.Errorf("crash not logged:\n%s", sink)
	}
}

func TestFailClosedAnswersGRPCRequestsTheGRPCWay(t *testing.T) {
	p, _ := newTestPlugin(t, PluginConfig{})
	vm := p.Worker(0)
	vm.TrapNextCallback()
	vm.Serve(info, Request{Headers: req("")}, nil)
	h := append(req(""), [2]string{"content-type", "application/grpc+proto"})
	resp := vm.Serve(info, Request{Headers: h}, nil)
	if resp.Status != 200 || resp.LocalReply == nil || resp.LocalReply.Details != "wasm_fail_stream" {
		t.Fatalf("response %+v", resp)
	}
	if v, _ := resp.Headers.Get("grpc-status"); v != "14" {
		t.Fatalf("grpc-status %q, want 14 (UNAVAILABLE)", v)
	}
}
