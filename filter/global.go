//go:build wasip1

package main

import (
	"github.com/tokengate/tokengate/internal/limiter"
	"github.com/tokengate/tokengate/internal/proxywasm"
	"github.com/tokengate/tokengate/internal/rls"
)

// The global tier's wiring. After the local rules admit a request, the
// matching global rules go to the rate limit service in one gRPC call and
// the stream pauses. Envoy makes the call on the root context, so the
// answer (or the failure) comes to the root with the call's token; the
// stream is found by token, made the effective context, and continued or
// answered with the local reply. A stream that ends while its call is in
// flight cancels the call, so no answer comes for a context that is gone.

// checkGlobal runs the global tier for stream s after its local rules
// admitted it.
func (v *vm) checkGlobal(s *stream) proxywasm.Action {
	g := s.root.lim.Global()
	msg, d := g.Begin(&v.req, &v.clock, &s.call)
	if d != nil {
		return v.refuse(s, g, d)
	}
	if msg == nil {
		return proxywasm.ActionContinue
	}
	token, st := proxywasm.GrpcCall(g.Service(), rls.ServiceName, rls.MethodName, msg, g.Timeout())
	if st != proxywasm.StatusOK {
		// Unknown cluster and the like: decided now. Envoy may still send
		// a close for the token it drew; unknown tokens are ignored.
		if d := g.Fail(&s.call, false); d.Denied {
			return v.refuse(s, g, d)
		}
		return proxywasm.ActionContinue
	}
	s.token = token
	v.calls.put(token, s)
	return proxywasm.ActionPause
}

func (v *vm) OnGrpcReceive(_, token uint32, size int) {
	// The message lives on the root context: read it before anything
	// switches to the stream.
	msg, _ := proxywasm.GetBuffer(proxywasm.BufferGrpcReceive, 0, size)
	s := v.answer(token)
	if s == nil {
		return
	}
	g := s.root.lim.Global()
	v.resume(s, g, g.Answer(&s.call, msg, proxywasm.Now()))
}

func (v *vm) OnGrpcClose(_, token uint32, status proxywasm.GrpcStatus) {
	s := v.answer(token)
	if s == nil {
		return
	}
	g := s.root.lim.Global()
	v.resume(s, g, g.Fail(&s.call, g.TimedOut(&s.call, uint32(status), proxywasm.Now())))
}

// answer takes the stream waiting on call token, nil if none, and keeps it
// in v.answering until resume: a panic in the callback finds it there.
func (v *vm) answer(token uint32) *stream {
	s := v.calls.take(token)
	if s == nil {
		return nil
	}
	v.answering = s
	if grpcFaultHook != nil {
		grpcFaultHook(s.id)
	}
	return s
}

// grpcFaultHook, when set (only by the test build of hook.go), runs in the
// gRPC callbacks once the waiting stream s is known, with its context id.
var grpcFaultHook func(id uint32)

// OnGrpcPanic follows rate_limit_service.failure_mode for the stream that
// waited on call token after a panic in its gRPC callback, as OnRequestPanic
// does for the request callback: a bug must not leave the stream paused
// until Envoy's timeout. Under "deny" (and a rule that is not shadow) the
// client gets the configured reply with Retry-After: 1, under "allow" the
// request goes on. Each one is counted in tokengate.panics, besides the
// critical log line; the call's rls_* counters are left as the panic found
// them.
func (v *vm) OnGrpcPanic(_, token uint32) {
	s := v.answering // the callback had taken it from the call table
	v.answering = nil
	if s == nil {
		s = v.calls.take(token)
	}
	if s == nil || s.root == nil || s.root.lim == nil {
		return
	}
	s.root.metrics.panicked()
	if s.replied { // the panic came after the reply was on its way
		return
	}
	g := s.root.lim.Global()
	v.resume(s, g, g.Undecided(&s.call))
}

// resume ends the pause of s with decision d. v.answering is cleared only
// once the stream has its answer (explicitly, not deferred: a deferred clear
// would run before the callback's recover), so a panic on the way leaves it
// for OnGrpcPanic, which resumes the stream by failure_mode instead.
func (v *vm) resume(s *stream, g *limiter.Global, d *limiter.Decision) {
	s.token = 0
	if proxywasm.SetEffectiveContext(s.id) != proxywasm.StatusOK {
		v.answering = nil
		return // the stream is gone
	}
	if resumeFaultHook != nil && v.answering != nil {
		resumeFaultHook()
	}
	if d.Denied && v.refuse(s, g, d) == proxywasm.ActionPause {
		v.answering = nil
		return
	}
	proxywasm.ContinueStream(proxywasm.StreamRequest)
	v.answering = nil
}

// resumeFaultHook, when set (only by the test build of hook.go), runs in
// resume once the stream is the effective context, when a gRPC callback (not
// OnGrpcPanic) is answering it.
var resumeFaultHook func()

// cancelCall cancels the call of stream id, if one is in flight: Envoy
// would otherwise deliver its answer to the root after the stream is gone.
func (v *vm) cancelCall(id uint32) {
	if s := v.streams.get(id); s != nil && s.token != 0 {
		proxywasm.GrpcCancel(s.token)
		v.calls.take(s.token)
		s.token = 0
	}
}
