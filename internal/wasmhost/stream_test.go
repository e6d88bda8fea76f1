package wasmhost

import (
	"testing"
)

func TestRequestBodyRewrite(t *testing.T) {
	p, _ := newTestPlugin(t, PluginConfig{})
	var got string
	p.Worker(0).Serve(info, Request{Headers: req("bodyrewrite"), Body: []byte("original")}, func(r Request) Response {
		got = string(r.Body)
		return Response{Status: 200}
	})
	if got != "rewritten" {
		t.Fatalf("upstream got %q", got)
	}
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
	got := outputs(other.req.headers)["effective"]
	vm.mu.Unlock()
	if got != "status=0" {
		t.Errorf("after set_effective_context(2), the output went to %q on stream 2, want status=0", got)
	}
	s.Close()
	other.Close()
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
