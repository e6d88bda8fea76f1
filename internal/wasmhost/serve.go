package wasmhost

import (
	"slices"
	"strconv"
)

// Serve runs a whole stream: request headers and body through the filter, then, if the
// request continued, upstream (nil: an empty 200), then the response through the filter, then
// Close. A local reply (from the filter or the failure policy) is returned with LocalReply set.
// The Request given to upstream is only valid during that call. The returned Response does
// not alias the host's buffers.
//
// A request the filter pauses without a local reply and never continues would hang in Envoy
// until a timeout; Serve answers it with a 500 whose details are "wasmhost_stream_paused".
func (vm *VM) Serve(info StreamInfo, req Request, upstream func(Request) Response) Response {
	vm.mu.Lock()
	s := vm.free
	vm.free = nil
	if s == nil {
		s = &Stream{}
	}
	s = vm.newStream(info, s)
	vm.mu.Unlock()
	resp := s.serve(req, upstream)
	s.Close()
	vm.mu.Lock()
	s.reset()
	vm.free = s
	vm.mu.Unlock()
	return resp
}

func (s *Stream) serve(req Request, upstream func(Request) Response) Response {
	vm := s.vm
	eos := len(req.Body) == 0
	r := s.RequestHeaders(req.Headers, eos)
	if r.LocalReply != nil {
		return replyResponse(r.LocalReply)
	}
	paused := r.Action != Continue
	body := req.Body
	if !eos {
		rb := s.RequestBody(req.Body, true)
		if rb.LocalReply != nil {
			return replyResponse(rb.LocalReply)
		}
		paused = rb.Action != Continue
		body = rb.Body
	}
	if paused {
		// A filter waiting for a gRPC answer resumes (or answers) from its callback.
		w := s.Wait()
		if w.LocalReply != nil {
			return replyResponse(w.LocalReply)
		}
	}
	vm.mu.Lock()
	paused = paused && !s.req.resumed
	up := Request{Headers: s.req.headers, Body: body}
	vm.mu.Unlock()
	if paused {
		return replyResponse(&LocalReply{Status: 500, Details: "wasmhost_stream_paused", Headers: Headers{{":status", "500"}}})
	}
	resp := Response{Status: 200}
	if upstream != nil {
		resp = upstream(up)
	}
	if resp.Status == 0 {
		resp.Status = statusOf(resp.Headers, 200)
	}
	rh := resp.Headers
	if _, ok := rh.Get(":status"); !ok {
		rh = append(Headers{{":status", strconv.Itoa(resp.Status)}}, rh...)
	}
	r = s.ResponseHeaders(rh, len(resp.Body) == 0)
	if r.LocalReply != nil {
		return replyResponse(r.LocalReply)
	}
	out := Response{Status: statusOf(r.Headers, resp.Status), Headers: slices.Clone(r.Headers), Body: resp.Body}
	if len(resp.Body) > 0 {
		rb := s.ResponseBody(resp.Body, true)
		if rb.LocalReply != nil {
			return replyResponse(rb.LocalReply)
		}
		vm.mu.Lock()
		live := s.state == streamLive
		vm.mu.Unlock()
		if live {
			out.Body = append([]byte(nil), rb.Body...)
		}
	}
	return out
}

// replyResponse turns a local reply into the client's response, detached from the stream.
func replyResponse(lr *LocalReply) Response {
	c := *lr
	c.Headers = slices.Clone(lr.Headers)
	c.Body = append([]byte(nil), lr.Body...)
	return Response{Status: c.Status, Headers: c.Headers, Body: c.Body, LocalReply: &c}
}
