package envoysim

import (
	"testing"
	"time"

	"github.com/tokengate/tokengate/internal/wasmhost"
)

// pausedHost is a VM stream whose request headers callback returns a given action and
// whose filter, asked to wait, resumes the request.
type pausedHost struct {
	action wasmhost.Action
	waited chan struct{}
}

func (p *pausedHost) RequestHeaders(h wasmhost.Headers, _ bool) wasmhost.Result {
	return wasmhost.Result{Action: p.action, Headers: h}
}
func (p *pausedHost) RequestBody(chunk []byte, _ bool) wasmhost.Result {
	return wasmhost.Result{Body: chunk}
}
func (p *pausedHost) ResponseHeaders(h wasmhost.Headers, _ bool) wasmhost.Result {
	return wasmhost.Result{Headers: h}
}
func (p *pausedHost) ResponseBody(chunk []byte, _ bool) wasmhost.Result {
	return wasmhost.Result{Body: chunk}
}
func (p *pausedHost) Wait() wasmhost.Result {
	close(p.waited)
	return wasmhost.Result{Action: wasmhost.Continue, Headers: wasmhost.Headers{{":path", "/resumed"}}}
}
func (p *pausedHost) Close() {}

// TestResumeWatchedForEveryStop: whichever action stops the request's iteration
// (StopIteration, StopAllIterationAndBuffer, StopAllIterationAndWatermark), the stream waits
// for the filter to resume it and delivers the outcome on Resumed; Continue waits for nothing.
func TestResumeWatchedForEveryStop(t *testing.T) {
	for _, action := range []wasmhost.Action{wasmhost.Pause, 3, 4} {
		host := &pausedHost{action: action, waited: make(chan struct{})}
		w := &wasmStream{hostStream: host, resumed: make(chan wasmhost.Result, 1)}
		if r := w.RequestHeaders(wasmhost.Headers{{":path", "/"}}, true); r.Action != action {
			t.Fatalf("action %d: RequestHeaders returned %d", action, r.Action)
		}
		select {
		case r := <-w.Resumed():
			if r.Action != wasmhost.Continue || len(r.Headers) != 1 || r.Headers[0][1] != "/resumed" {
				t.Fatalf("action %d: resumed with %+v", action, r)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("action %d: the stream was never resumed", action)
		}
	}
	host := &pausedHost{action: wasmhost.Continue, waited: make(chan struct{})}
	w := &wasmStream{hostStream: host, resumed: make(chan wasmhost.Result, 1)}
	w.RequestHeaders(wasmhost.Headers{{":path", "/"}}, true)
	select {
	case <-host.waited:
		t.Fatal("a request that continued was waited for")
	case <-time.After(50 * time.Millisecond):
	}
}
