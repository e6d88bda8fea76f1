package wasmhost

import (
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/proto"
)

// gRPC calls, as Envoy's wasm context makes them (proxy-wasm ABI 0.2.x, unary calls only):
//
//   - proxy_grpc_call(service, service_name, method, initial_metadata, message, timeout_ms,
//     token_ptr) runs on the ROOT context whatever context calls it: the call belongs to the
//     root, its answer comes to the root, and it outlives the stream that made it.
//   - service is a serialized envoy.config.core.v3.GrpcService (envoy_grpc.cluster_name and
//     .authority are used); bytes that do not parse as one are taken as a bare cluster name,
//     which must exist, else PARSE_FAILURE. A parsed service without envoy_grpc is
//     BAD_ARGUMENT.
//   - A parsed service naming an unknown cluster: the call fails inside Envoy's gRPC client
//     while being started, so proxy_grpc_call returns INTERNAL_FAILURE and writes no token,
//     and once the current callback has returned proxy_on_grpc_close(root, token, 14
//     UNAVAILABLE) still arrives for the token Envoy had drawn.
//   - Tokens come from one counter per VM: 5, 9, 13, ... (call ids are 1 mod 4).
//   - Success: proxy_on_grpc_receive(root, token, size); the message (without gRPC framing)
//     is buffer 5 during that callback, on the root context. No close follows.
//   - Failure: proxy_on_grpc_close(root, token, grpc_status); proxy_get_status gives the code
//     and message during that callback. The call's timeout is enforced here: a call not
//     answered in time is cancelled and closes with 4 DEADLINE_EXCEEDED (Envoy since 2026-04;
//     older Envoys reported 14 UNAVAILABLE).
//   - proxy_grpc_cancel(token): no callback will come; NOT_FOUND for an unknown token.
//   - In the callbacks the guest reaches a waiting stream with proxy_set_effective_context
//     (BAD_ARGUMENT once the stream is gone), then proxy_continue_stream or
//     proxy_send_local_response; both act once the callback has returned.
//   - A stream that ends while its call is in flight does not cancel the call.

// GrpcCall is one unary call a guest asked for.
type GrpcCall struct {
	Cluster   string  // the Envoy cluster
	Authority string  // :authority; "" means the cluster name
	Service   string  // e.g. "envoy.service.ratelimit.v3.RateLimitService"
	Method    string  // e.g. "ShouldRateLimit"
	Metadata  Headers // initial metadata
	Message   []byte  // the serialized request, without gRPC framing
	Timeout   time.Duration
}

// GrpcReply ends a call: the answer's message when Status is 0, else a failure.
type GrpcReply struct {
	Status  uint32 // gRPC status code
	Message []byte // the serialized response when Status is 0
	Detail  string // status message, for proxy_get_status
}

// GrpcTransport carries a plugin's gRPC calls: the embedder's gRPC client (envoysim's, or a
// fake in tests). It must be safe for concurrent use.
type GrpcTransport interface {
	// HasCluster reports whether the cluster exists.
	HasCluster(name string) bool
	// Start sends call and returns at once; done must be called exactly once, from any
	// goroutine, unless cancel is called first (after which done may still be called and is
	// ignored). The host enforces call.Timeout itself too.
	Start(call GrpcCall, done func(GrpcReply)) (cancel func())
}

// gRPC status codes used by the host.
const (
	grpcDeadlineExceeded = 4
	grpcUnavailable      = 14
	bufGrpcReceive       = 5
	grpcCallTokenStart   = 1 // tokens are this plus multiples of 4, from 5
)

// grpcState is a VM's gRPC calls. Guarded by vm.mu.
type grpcState struct {
	nextToken uint32
	calls     map[uint32]*inflight
	receive   []byte // buffer 5 during proxy_on_grpc_receive
	status    uint32 // proxy_get_status during proxy_on_grpc_close
	detail    string
	cond      *sync.Cond // broadcast whenever a call ends: streams in Wait re-check
}

type inflight struct {
	gen    uint64
	cancel func()
	timer  *time.Timer
}

func (vm *VM) grpc() *grpcState {
	g := &vm.grpcs
	if g.calls == nil {
		g.calls = make(map[uint32]*inflight)
		g.nextToken = grpcCallTokenStart
		g.cond = sync.NewCond(&vm.mu)
	}
	return g
}

// end forgets call token (answered, timed out or cancelled) and wakes the streams in Wait,
// which re-check once vm.mu, held by the caller, is free.
func (g *grpcState) end(token uint32, c *inflight) {
	delete(g.calls, token)
	if c.timer != nil {
		c.timer.Stop()
	}
	g.cond.Broadcast()
}

// hostGrpcCall is proxy_grpc_call (12 arguments, see above).
func hostGrpcCall(vm *VM, s []uint64) Status {
	service, ok1 := vm.readArg(s, 0)
	name, ok2 := vm.readArg(s, 2)
	method, ok3 := vm.readArg(s, 4)
	md, ok4 := vm.readArg(s, 6)
	msg, ok5 := vm.readArg(s, 8)
	if !ok1 || !ok2 || !ok3 || !ok4 || !ok5 {
		return StatusInvalidMemoryAccess
	}
	var cluster, authority string
	var gs corev3.GrpcService
	parsed := proto.Unmarshal(service, &gs) == nil
	if parsed {
		eg := gs.GetEnvoyGrpc()
		if eg == nil {
			return StatusBadArgument
		}
		cluster, authority = eg.ClusterName, eg.Authority
	} else {
		cluster = string(service)
	}
	t := vm.p.cfg.Grpc
	known := t != nil && t.HasCluster(cluster)
	if !known && !parsed {
		return StatusParseFailure
	}
	g := vm.grpc()
	g.nextToken += 4
	token := g.nextToken
	if !known {
		// Envoy's client fails while starting the call: an error now, and a close for the
		// token once the current callback has returned.
		gen := vm.gen
		go vm.deliverClose(token, gen, GrpcReply{Status: grpcUnavailable, Detail: "Cluster not available"})
		return StatusInternalFailure
	}
	if !vm.mem.WriteUint32Le(u32(s, 11), token) {
		return StatusInvalidMemoryAccess
	}
	call := GrpcCall{Cluster: cluster, Authority: authority, Service: string(name), Method: string(method),
		Metadata: decodePairs(nil, md), Message: append([]byte(nil), msg...),
		Timeout: time.Duration(u32(s, 10)) * time.Millisecond}
	c := &inflight{gen: vm.gen}
	g.calls[token] = c
	if call.Timeout > 0 {
		c.timer = time.AfterFunc(call.Timeout, func() {
			vm.deliver(token, c, GrpcReply{Status: grpcDeadlineExceeded, Detail: "deadline exceeded"})
		})
	}
	c.cancel = t.Start(call, func(r GrpcReply) { go vm.deliver(token, c, r) })
	return StatusOK
}

// deliverClose delivers a close for a token that was never handed out.
func (vm *VM) deliverClose(token uint32, gen uint64, r GrpcReply) {
	vm.mu.Lock()
	defer vm.mu.Unlock()
	if vm.failed || vm.gen != gen {
		return
	}
	vm.grpcCallback(token, r)
}

// deliver ends call token with r, unless it already ended or was cancelled.
func (vm *VM) deliver(token uint32, c *inflight, r GrpcReply) {
	vm.mu.Lock()
	defer vm.mu.Unlock()
	g := vm.grpc()
	if g.calls[token] != c {
		return
	}
	g.end(token, c)
	if r.Status == grpcDeadlineExceeded && c.cancel != nil {
		c.cancel()
	}
	if vm.failed || vm.gen != c.gen {
		return
	}
	vm.grpcCallback(token, r)
}

// grpcCallback runs proxy_on_grpc_receive or proxy_on_grpc_close on the root context, then
// what the guest asked for on the stream it made effective: a local reply (through the
// filter's response callbacks) or the continuation recorded by proxy_continue_stream.
func (vm *VM) grpcCallback(token uint32, r GrpcReply) {
	g := vm.grpc()
	fn := vm.fns.grpcClose
	if r.Status == 0 {
		fn = vm.fns.grpcReceive
	}
	if fn == nil {
		return
	}
	vm.stack[0], vm.stack[1] = rootContextID, uint64(token)
	if r.Status == 0 {
		g.receive, vm.stack[2] = r.Message, uint64(len(r.Message))
		if g.receive == nil {
			g.receive = []byte{} // an empty message is still a buffer
		}
	} else {
		g.status, g.detail, vm.stack[2] = r.Status, r.Detail, uint64(r.Status)
	}
	vm.lastEff = nil
	_, ok := vm.invoke(fn, nil, 3)
	g.receive, g.status, g.detail = nil, 0, ""
	if !ok {
		return
	}
	if st := vm.lastEff; st != nil && st.pending != nil && st.state == streamLive {
		st.sendLocalReply(true)
	}
}

// hostGrpcCancel is proxy_grpc_cancel(token).
func hostGrpcCancel(vm *VM, s []uint64) Status {
	g := vm.grpc()
	token := u32(s, 0)
	c := g.calls[token]
	if c == nil {
		return StatusNotFound
	}
	g.end(token, c)
	if c.cancel != nil {
		c.cancel()
	}
	return StatusOK
}

// hostGetStatus is proxy_get_status(code_ptr, message_ptr_ptr, message_size_ptr): the status
// of the gRPC call being closed (0 and empty otherwise).
func hostGetStatus(vm *VM, s []uint64) Status {
	g := vm.grpc()
	if !vm.mem.WriteUint32Le(u32(s, 0), g.status) {
		return StatusInvalidMemoryAccess
	}
	vm.scratch = append(vm.scratch[:0], g.detail...)
	return vm.writeOut(vm.scratch, u32(s, 1), u32(s, 2))
}

// GrpcInFlight returns the number of gRPC calls the VM's guest has in flight.
func (vm *VM) GrpcInFlight() int {
	vm.mu.Lock()
	defer vm.mu.Unlock()
	return len(vm.grpc().calls)
}

// Wait blocks while the stream's request is paused by the filter and a gRPC call of its VM
// is in flight; it returns when the filter continues the request (Action Continue, with the
// request headers), answers it (LocalReply set), or nothing can resume it any more (Action
// Pause: no call left in flight, the stream closed or the VM failed). Call it after
// RequestHeaders (or RequestBody) returned Pause.
func (s *Stream) Wait() Result {
	vm := s.vm
	vm.mu.Lock()
	defer vm.mu.Unlock()
	g := vm.grpc()
	for s.reply == nil && !s.req.resumed && s.state == streamLive && !vm.failed && s.gen == vm.gen &&
		len(g.calls) > 0 {
		g.cond.Wait()
	}
	switch {
	case s.reply != nil:
		return s.result(Pause, s.resp.headers, nil)
	case s.req.resumed:
		return Result{Action: Continue, Headers: s.req.headers, Body: s.req.body}
	}
	return Result{Action: Pause, Headers: s.req.headers}
}
