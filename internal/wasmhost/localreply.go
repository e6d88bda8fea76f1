package wasmhost

import (
	"strconv"
	"strings"
)

// pendingReply is a local reply the guest asked for (proxy_send_local_response) during the
// running callback; it is sent once the callback returns.
type pendingReply struct {
	status  int
	details string
	body    []byte
	headers Headers
	grpc    int32 // grpc-status to send; outside 0..16, mapped from status
}

// sendLocalReply sends the reply the guest asked for during the callback that just returned.
// A reply sent while the request was being decoded flows back through the filter's
// proxy_on_response_headers (and body), as in Envoy; one sent while encoding replaces the
// response directly.
func (s *Stream) sendLocalReply(throughFilter bool) {
	vm := s.vm
	p := s.pending
	s.pending = nil
	status, h, body := buildReply(p, s.req.headers)
	s.resp.headers, s.resp.body = h, body
	s.resp.state, s.respCode = halfHeld, status
	s.reply = &LocalReply{Status: status, Details: p.details}
	reply := s.reply
	if throughFilter && !vm.failed {
		// The reply must not count as already sent while the filter encodes it.
		s.reply = nil
		if fn := vm.fns.respHeaders; fn != nil {
			vm.stack[0], vm.stack[1], vm.stack[2] = uint64(s.id), uint64(len(s.resp.headers)), boolValue(len(body) == 0)
			r, ok := vm.invoke(fn, s, 3)
			if !ok {
				s.failStream()
				if s.reply != nil {
					return
				}
				s.reply = reply // fail-open: the original reply goes out
				reply.Headers, reply.Body = s.resp.headers, s.resp.body
				return
			}
			s.resp.headersReturned(Action(uint32(r)))
		}
		if s.pending == nil && len(s.resp.body) > 0 {
			if fn := vm.fns.respBody; fn != nil {
				vm.stack[0], vm.stack[1], vm.stack[2] = uint64(s.id), uint64(len(s.resp.body)), 1
				if _, ok := vm.invoke(fn, s, 3); !ok {
					s.failStream()
					if s.reply != nil {
						return
					}
				}
			}
		}
		if s.pending != nil {
			// A reply sent while encoding the reply replaces it, without another pass.
			s.reply = nil
			s.sendLocalReply(false)
			return
		}
		s.reply = reply
	}
	reply.Status = statusOf(s.resp.headers, status)
	s.respCode = reply.Status
	reply.Headers, reply.Body = s.resp.headers, s.resp.body
}

// buildReply makes the headers and body of a local reply like Envoy's sendLocalReply: the
// guest's additional headers are added (addCopy) to ":status"; a body gets content-length and,
// unless the guest set one, content-type text/plain. A gRPC request (content-type
// application/grpc...) gets a trailers-only 200 instead, with grpc-status (the guest's, or
// mapped from the HTTP code) and the body as grpc-message.
func buildReply(p *pendingReply, req Headers) (int, Headers, []byte) {
	if ct, _ := req.Get("content-type"); strings.HasPrefix(ct, "application/grpc") {
		code := int(p.grpc)
		if p.grpc < 0 || p.grpc > 16 {
			code = grpcFromHTTP(p.status)
		}
		h := Headers{{":status", "200"}}
		h = append(h, p.headers...)
		h.set([]byte("content-type"), "application/grpc")
		h.set([]byte("grpc-status"), strconv.Itoa(code))
		if len(p.body) > 0 {
			h.set([]byte("grpc-message"), string(p.body))
		}
		return 200, h, nil
	}
	h := make(Headers, 0, len(p.headers)+3)
	h = append(h, [2]string{":status", strconv.Itoa(p.status)})
	h = append(h, p.headers...)
	if len(p.body) > 0 {
		h.set([]byte("content-length"), strconv.Itoa(len(p.body)))
		if _, ok := h.Get("content-type"); !ok {
			h = append(h, [2]string{"content-type", "text/plain"})
		}
	}
	return p.status, h, p.body
}

// grpcFromHTTP is Envoy's mapping of an HTTP status to a gRPC status for local replies.
func grpcFromHTTP(code int) int {
	switch code {
	case 400:
		return 13 // INTERNAL
	case 401:
		return 16 // UNAUTHENTICATED
	case 403:
		return 7 // PERMISSION_DENIED
	case 404:
		return 12 // UNIMPLEMENTED
	case 429, 502, 503, 504:
		return 14 // UNAVAILABLE
	}
	return 2 // UNKNOWN
}

// hostSendLocalResponse records the reply; it is sent once the running callback returns.
// From a root context it does nothing (and still returns OK), as in Envoy.
func hostSendLocalResponse(vm *VM, s []uint64) Status {
	details, ok1 := vm.readArg(s, 1)
	body, ok2 := vm.readArg(s, 3)
	pairs, ok3 := vm.readArg(s, 5)
	if !ok1 || !ok2 || !ok3 {
		return StatusInvalidMemoryAccess
	}
	st := vm.stream()
	if st == nil || st.pending != nil || st.reply != nil {
		return StatusOK
	}
	d := []byte(string(details))
	for i, c := range d {
		switch c {
		case ' ', '\t', '\n', '\r', '\v', '\f':
			d[i] = '_'
		}
	}
	st.pending = &pendingReply{
		status:  int(u32(s, 0)),
		details: string(d),
		body:    append([]byte(nil), body...),
		headers: decodePairs(nil, pairs),
		grpc:    int32(u32(s, 7)),
	}
	return StatusOK
}

// statusOf returns the ":status" of h, or def.
func statusOf(h Headers, def int) int {
	if v, ok := h.Get(":status"); ok {
		if n, err := strconv.Atoi(v); err == nil {
			return n
		}
	}
	return def
}
