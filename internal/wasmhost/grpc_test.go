package wasmhost

import (
	"context"
	"sync"
	"testing"
	"time"
)

// testTransport is a GrpcTransport that knows the cluster "rls" and answers by message:
// "/ok" -> "ok-answer", "/deny" -> "deny", "/fail" -> status 7, "/hang" never answers,
// "/later" answers when the test calls release.
type testTransport struct {
	mu        sync.Mutex
	calls     []GrpcCall
	cancelled int
	later     func(GrpcReply)
}

func (f *testTransport) HasCluster(name string) bool { return name == "rls" }

func (f *testTransport) Start(call GrpcCall, done func(GrpcReply)) func() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, call)
	cancel := func() { f.mu.Lock(); f.cancelled++; f.mu.Unlock() }
	switch string(call.Message) {
	case "/ok":
		go done(GrpcReply{Message: []byte("ok-answer")})
	case "/deny":
		go done(GrpcReply{Message: []byte("deny")})
	case "/fail":
		go done(GrpcReply{Status: 7, Detail: "no entry"})
	case "/later":
		f.later = done
	}
	return cancel
}

func (f *testTransport) release(r GrpcReply) {
	f.mu.Lock()
	done := f.later
	f.mu.Unlock()
	done(r)
}

func grpcPlugin(t *testing.T) (*Plugin, *testTransport) {
	t.Helper()
	f := &testTransport{}
	sink := &logSink{}
	p, err := NewPlugin(context.Background(), guestModule(t, "grpcguest"),
		PluginConfig{Name: "grpc", Clock: NewFakeClock(epoch), Log: sink.log, Grpc: f})
	if err != nil {
		t.Fatalf("NewPlugin: %v\n%s", err, sink)
	}
	t.Cleanup(func() {
		p.Close(context.Background())
		if t.Failed() {
			t.Logf("guest log:\n%s", sink)
		}
	})
	return p, f
}

func grpcReq(path, mode string, extra ...string) Request {
	h := Headers{{":method", "GET"}, {":path", path}, {":authority", "example.com"}, {"x-grpc", mode}}
	for i := 0; i+1 < len(extra); i += 2 {
		h = append(h, [2]string{extra[i], extra[i+1]})
	}
	return Request{Headers: h}
}

// shared reads what the guest recorded, waiting up to a second for it.
func shared(t *testing.T, p *Plugin, key string) string {
	t.Helper()
	for deadline := time.Now().Add(time.Second); ; time.Sleep(5 * time.Millisecond) {
		if v, _, st := p.Shared().Get("", key); st == StatusOK {
			return string(v)
		}
		if time.Now().After(deadline) {
			t.Fatalf("the guest recorded no %s", key)
		}
	}
}

// TestGrpcCallAnswered: the call runs on the root context, with the service, method,
// metadata, message, timeout and authority the guest gave; the answer is buffer 5 on the
// root only; a continue from the callback lets the paused request go upstream.
func TestGrpcCallAnswered(t *testing.T) {
	p, f := grpcPlugin(t)
	vm := p.Worker(0)
	resp := vm.Serve(info, grpcReq("/ok", "svc:rls", "x-timeout", "250"), nil)
	if resp.Status != 200 || resp.LocalReply != nil {
		t.Fatalf("response %+v", resp)
	}
	if got := shared(t, p, "call.2"); got != "status=0 token=5" {
		t.Errorf("call: %s", got)
	}
	if got := shared(t, p, "recv.5"); got != "root=1 size=9 msg=ok-answer status=0 effective=status=0 stream-buffer=status=1" {
		t.Errorf("receive: %s", got)
	}
	c := f.calls[0]
	if c.Cluster != "rls" || c.Authority != "auth.test" || c.Service != "test.Service" || c.Method != "Call" ||
		string(c.Message) != "/ok" || c.Timeout != 250*time.Millisecond || len(c.Metadata) != 1 || c.Metadata[0] != [2]string{"x-md", "v"} {
		t.Errorf("call %+v", c)
	}
	// Tokens are 1 mod 4, per VM.
	vm.Serve(info, grpcReq("/ok", "svc:rls"), nil)
	if got := shared(t, p, "call.3"); got != "status=0 token=9" {
		t.Errorf("second call: %s", got)
	}
}

// TestGrpcLocalReplyAfterPause: a local reply sent from the gRPC callback on the effective
// stream answers the paused request.
func TestGrpcLocalReplyAfterPause(t *testing.T) {
	p, _ := grpcPlugin(t)
	resp := p.Worker(0).Serve(info, grpcReq("/deny", "svc:rls"), nil)
	if resp.Status != 429 || resp.LocalReply == nil || resp.LocalReply.Details != "denied_after_a_call" {
		t.Fatalf("response %+v", resp)
	}
}

// TestGrpcFailureAndTimeout: a failed call closes with its status (proxy_get_status gives
// code and message); a call not answered in time closes with DEADLINE_EXCEEDED and is
// cancelled in the transport.
func TestGrpcFailureAndTimeout(t *testing.T) {
	p, f := grpcPlugin(t)
	vm := p.Worker(0)
	if resp := vm.Serve(info, grpcReq("/fail", "svc:rls"), nil); resp.Status != 503 {
		t.Fatalf("failed call: %+v", resp)
	}
	if got := shared(t, p, "close.5"); got != "root=1 status=7 get_status=7/no entry/status=0" {
		t.Errorf("close: %s", got)
	}
	began := time.Now()
	if resp := vm.Serve(info, grpcReq("/hang", "svc:rls", "x-timeout", "30"), nil); resp.Status != 503 {
		t.Fatalf("timed out call: %+v", resp)
	}
	if took := time.Since(began); took < 30*time.Millisecond || took > 3*time.Second {
		t.Errorf("the timeout took %v", took)
	}
	if got := shared(t, p, "close.9"); got != "root=1 status=4 get_status=4/deadline exceeded/status=0" {
		t.Errorf("close: %s", got)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.cancelled != 1 {
		t.Errorf("%d transport cancels, want 1", f.cancelled)
	}
}

// TestGrpcServiceArgument: a GrpcService or a bare cluster name; a bare unknown name is
// PARSE_FAILURE, a GrpcService naming an unknown cluster INTERNAL_FAILURE followed by a close
// (14) for the token Envoy drew, bytes without envoy_grpc BAD_ARGUMENT.
func TestGrpcServiceArgument(t *testing.T) {
	p, f := grpcPlugin(t)
	vm := p.Worker(0)
	for i, tc := range []struct {
		mode, want string
	}{
		{"bare:rls", "status=0 token=5"},
		{"bare:nowhere", "status=4 token=0"},
		{"svc:nowhere", "status=10 token=0"},
		{"empty", "status=2 token=0"},
	} {
		vm.Serve(info, grpcReq("/ok", tc.mode), nil)
		if got := shared(t, p, "call."+string(rune('2'+i))); got != tc.want {
			t.Errorf("%s: %s, want %s", tc.mode, got, tc.want)
		}
	}
	if got := shared(t, p, "close.9"); got != "root=1 status=14 get_status=14/Cluster not available/status=0" {
		t.Errorf("close of the unknown cluster's token: %s", got)
	}
	if len(f.calls) != 1 || f.calls[0].Cluster != "rls" || f.calls[0].Authority != "" {
		t.Errorf("calls %+v", f.calls)
	}
}

// TestGrpcCancel: a cancelled call gets no callback; a second cancel is NOT_FOUND.
func TestGrpcCancel(t *testing.T) {
	p, f := grpcPlugin(t)
	vm := p.Worker(0)
	if resp := vm.Serve(info, grpcReq("/later", "svc:rls", "x-cancel", "1"), nil); resp.Status != 200 {
		t.Fatalf("response %+v", resp)
	}
	if got := shared(t, p, "cancel.2"); got != "status=0 status=1" {
		t.Errorf("cancel: %s", got)
	}
	f.release(GrpcReply{Message: []byte("late")})
	time.Sleep(50 * time.Millisecond)
	f.mu.Lock()
	cancelled := f.cancelled
	f.mu.Unlock()
	if _, _, st := p.Shared().Get("", "recv.5"); st == StatusOK || vm.GrpcInFlight() != 0 || cancelled != 1 {
		t.Errorf("a cancelled call was answered (%v), %d in flight, %d cancels", st, vm.GrpcInFlight(), cancelled)
	}
}

// TestGrpcOutlivesItsStream: the call belongs to the root, so a stream that ends first does
// not cancel it; the answer still comes, and the stream can no longer be made effective.
func TestGrpcOutlivesItsStream(t *testing.T) {
	p, f := grpcPlugin(t)
	vm := p.Worker(0)
	s := vm.NewStream(info)
	if r := s.RequestHeaders(grpcReq("/later", "svc:rls").Headers, true); r.Action != Pause {
		t.Fatalf("not paused: %+v", r)
	}
	s.Close()
	if n := vm.GrpcInFlight(); n != 1 {
		t.Fatalf("%d calls in flight after the stream ended, want 1", n)
	}
	f.release(GrpcReply{Message: []byte("late")})
	if got := shared(t, p, "recv.5"); got != "root=1 size=4 msg=late status=0 effective=status=2 stream-buffer=status=0" {
		t.Errorf("receive: %s", got)
	}
	if w := s.Wait(); w.Action != Pause || w.LocalReply != nil {
		t.Errorf("the closed stream resumed: %+v", w)
	}
}
