package wasmhost

import (
	"strconv"
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

// TestContinueStream: proxy_continue_stream as Envoy's HTTP context answers it. Continuing
// either direction takes the request headers away; a paused request that continued is
// served, not answered 500.
func TestContinueStream(t *testing.T) {
	p, _ := newTestPlugin(t, PluginConfig{})
	vm := p.Worker(0)
	tests := []struct {
		cmds       string
		wantStatus string // of the continue
		wantMap    string // of a request-header read after it
		wantServed int
	}{
		{"pause,continue:0,reqmap", "status=0", "status=2", 200},
		{"pause,continue:1,reqmap", "status=0", "status=2", 500}, // the request stays paused
		{"pause,continue:2,reqmap", "status=0", "status=0", 500},
		{"pause,continue:3,reqmap", "status=12", "status=0", 500},
		{"pause,continue:4,reqmap", "status=2", "status=0", 500},
	}
	for _, tt := range tests {
		t.Run(tt.cmds, func(t *testing.T) {
			id := strconv.Itoa(int(vm.nextID))
			typ := tt.cmds[len("pause,continue:") : len("pause,continue:")+1]
			resp := vm.Serve(info, Request{Headers: req(tt.cmds)}, nil)
			if resp.Status != tt.wantServed {
				t.Errorf("served %d, want %d", resp.Status, tt.wantServed)
			}
			if got := sharedString(t, p, "continue"+typ+"."+id); got != tt.wantStatus {
				t.Errorf("continue_stream(%s) = %s, want %s", typ, got, tt.wantStatus)
			}
			if got := sharedString(t, p, "reqmap."+id); got != tt.wantMap {
				t.Errorf("request headers after it: %s, want %s", got, tt.wantMap)
			}
		})
	}
}

func TestCloseStreamStatus(t *testing.T) {
	p, _ := newTestPlugin(t, PluginConfig{})
	vm := p.Worker(0)
	for typ, want := range map[string]string{"0": "status=0", "3": "status=0", "4": "status=2"} {
		id := strconv.Itoa(int(vm.nextID))
		vm.Serve(info, Request{Headers: req("closestream:" + typ)}, nil)
		if got := sharedString(t, p, "closestream"+typ+"."+id); got != want {
			t.Errorf("close_stream(%s) = %s, want %s", typ, got, want)
		}
	}
}
