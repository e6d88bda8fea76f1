package wasmhost

import (
	"time"

	"github.com/tetratelabs/wazero/api"
)

// A stream's life, as the host drives it (each arrow is a method of Stream or a host call):
//
//	NewStream ──proxy_on_context_create──> streamLive ──Close──> streamClosed
//	    │ (VM already failed, or                 │
//	    │  context_create trapped)               │ VM trapped or reloaded since
//	    v                                        v
//	streamUnborn ──first callback──> failure policy: streamBypassed (FAIL_OPEN)
//	                                               or streamDenied (503 wasm_fail_stream)
//
// Within a live stream each direction (a half: request = Envoy's decoding path, response =
// encoding path) moves its headers through halfWaiting -> halfHeld -> halfPassed: the filter
// may read and edit them only while held. A callback that returns Pause leaves them held
// (the filter stopped iteration) until a later callback returns Continue or the filter calls
// proxy_continue_stream. A local reply (proxy_send_local_response, or the failure policy)
// replaces the response half and ends the filter's part in the stream.
//
// To add a new way of pausing or resuming (an asynchronous call answered later), add the
// waiting to half and its resumption next to continueStream: the callback methods below
// already leave a stopped half held and report Pause.

// streamState is the lifecycle state of a Stream (see the diagram above).
type streamState uint8

const (
	streamUnborn   streamState = iota // no guest context: the VM failed before it was created
	streamLive                        // the guest context exists: the filter's callbacks run
	streamBypassed                    // FAIL_OPEN on a failed VM: the filter is left out
	streamDenied                      // the failure policy answered (503 wasm_fail_stream)
	streamClosed                      // Close ran: nothing more happens
)

// halfState is where the headers of one direction of a stream stand.
type halfState uint8

const (
	halfWaiting halfState = iota // not arrived: not exposed to the guest
	halfHeld                     // arrived and held by the filter chain: readable and writable
	halfPassed                   // continued past the filter: Envoy no longer exposes them
)

// half is one direction of a stream: its headers, its body and how far they went.
type half struct {
	headers   Headers
	body      []byte
	state     halfState
	buffering bool // the last body callback paused: Envoy buffers, the next chunk is appended
	resumed   bool // the filter called proxy_continue_stream for this direction (request only)
}

// seen reports whether the headers arrived (or were made by a local reply).
func (h *half) seen() bool { return h.state != halfWaiting }

// addChunk takes the next body chunk: appended to the buffered data if the previous body
// callback paused, else replacing it.
func (h *half) addChunk(chunk []byte) {
	if h.buffering {
		h.body = append(h.body, chunk...)
	} else {
		h.body = append(h.body[:0], chunk...)
	}
}

// headersReturned applies what the filter's headers callback returned.
func (h *half) headersReturned(act Action) {
	if act == Continue {
		h.state = halfPassed
	}
}

// bodyReturned applies what the filter's body callback returned: a pause buffers, a
// continue lets the held headers (if any) go on with the data.
func (h *half) bodyReturned(act Action) {
	h.buffering = act != Continue
	if act == Continue {
		h.state = halfPassed
	}
}

// Stream is one HTTP stream through the filter: an Envoy stream context with its own
// context id. Drive it in order: RequestHeaders, RequestBody (per chunk, only if there is a
// body), ResponseHeaders, ResponseBody, then Close. Its methods serialize on the VM's mutex.
type Stream struct {
	vm        *VM
	id        uint32 // context id; 0 if the VM had failed before the stream began
	gen       uint64 // the VM instance generation the context belongs to
	info      StreamInfo
	startTime time.Time
	state     streamState

	req, resp half
	respCode  int           // :status of the response half, for properties
	inLog     bool          // proxy_on_log runs: header getters see the access log's maps
	pending   *pendingReply // proxy_send_local_response during the running callback
	reply     *LocalReply   // the reply the client receives
	props     map[string][]byte
}

// reset clears a closed stream for reuse by Serve, keeping its buffers' capacity.
func (s *Stream) reset() {
	clear(s.req.headers)
	clear(s.resp.headers)
	*s = Stream{
		req:  half{headers: s.req.headers[:0], body: s.req.body[:0]},
		resp: half{headers: s.resp.headers[:0], body: s.resp.body[:0]},
	}
}

// ID returns the stream's context id (0 if the filter was left out).
func (s *Stream) ID() uint32 { return s.id }

// NewStream creates a stream context: proxy_on_context_create(id, 1) with a fresh context id
// (per VM, from 2 up, never reused). On a failed VM it applies the failure policy instead
// (FailReload first tries to reload).
func (vm *VM) NewStream(info StreamInfo) *Stream {
	vm.mu.Lock()
	defer vm.mu.Unlock()
	return vm.newStream(info, &Stream{})
}

// newStream starts stream s (fresh or recycled); vm.mu must be held.
func (vm *VM) newStream(info StreamInfo, s *Stream) *Stream {
	vm.maybeReload()
	s.vm, s.info, s.gen, s.startTime = vm, info, vm.gen, vm.p.clock.Now()
	s.state = streamUnborn
	if vm.failed {
		return s // the first callback applies the failure policy (skip)
	}
	s.id = vm.nextID
	vm.nextID++
	vm.streams[s.id] = s
	if fn := vm.fns.contextCreate; fn != nil {
		vm.stack[0], vm.stack[1] = uint64(s.id), rootContextID
		if _, ok := vm.invoke(fn, s, 2); !ok {
			return s // the VM failed: the first callback applies the failure policy
		}
	}
	s.state = streamLive
	return s
}

// failStream applies the failure policy to a stream whose VM has failed: FAIL_OPEN leaves
// the filter out, otherwise the client gets a 503 with details wasm_fail_stream.
func (s *Stream) failStream() {
	if s.vm.p.cfg.FailurePolicy == FailOpen {
		s.state = streamBypassed
		return
	}
	s.state = streamDenied
	s.pending = nil
	status, h, _ := buildReply(&pendingReply{status: 503, grpc: 14}, s.req.headers)
	s.resp.headers, s.resp.body = h, nil
	if s.resp.state == halfWaiting {
		s.resp.state = halfHeld
	}
	s.respCode = status
	s.reply = &LocalReply{Status: status, Details: "wasm_fail_stream", Headers: s.resp.headers}
}

// skip reports whether the filter does not run for this callback, applying the failure
// policy if the VM failed since the stream was created.
func (s *Stream) skip() bool {
	if s.reply != nil || s.state > streamLive {
		return true
	}
	if s.state == streamUnborn || s.vm.failed || s.gen != s.vm.gen {
		s.failStream()
		return true
	}
	return false
}

func (s *Stream) result(act Action, h Headers, body []byte) Result {
	if s.reply != nil {
		act = Pause
	}
	return Result{Action: act, Headers: h, Body: body, LocalReply: s.reply}
}

// callback runs one of the stream's filter callbacks, fn(id, size, end_of_stream) (nil: not
// exported, taken as Continue), and what follows it: a trap applies the failure policy; a
// local reply asked for during the callback is sent, through the filter's response
// callbacks when the request was being decoded. ended reports that either happened: the
// callback's own action no longer matters.
func (s *Stream) callback(fn api.Function, size int, endOfStream, decoding bool) (act Action, ended bool) {
	vm := s.vm
	if fn != nil {
		vm.stack[0], vm.stack[1], vm.stack[2] = uint64(s.id), uint64(size), boolValue(endOfStream)
		r, ok := vm.invoke(fn, s, 3)
		if !ok {
			s.failStream()
			return Continue, true
		}
		act = Action(uint32(r))
	}
	if s.pending != nil {
		s.sendLocalReply(decoding)
		return Pause, true
	}
	return act, false
}

// RequestHeaders runs proxy_on_request_headers(id, header_count, end_of_stream).
func (s *Stream) RequestHeaders(h Headers, endOfStream bool) Result {
	vm := s.vm
	vm.mu.Lock()
	defer vm.mu.Unlock()
	s.req.headers = copyHeaders(s.req.headers, h)
	if s.req.state == halfWaiting {
		s.req.state = halfHeld
	}
	if s.skip() {
		return s.result(Continue, s.req.headers, nil)
	}
	act, ended := s.callback(vm.fns.reqHeaders, len(s.req.headers), endOfStream, true)
	if !ended {
		s.req.headersReturned(act)
	}
	return s.result(act, s.req.headers, nil)
}

// RequestBody runs proxy_on_request_body(id, body_size, end_of_stream) for one chunk. If the
// previous body callback paused, Envoy buffered that data and the guest now sees it all.
func (s *Stream) RequestBody(chunk []byte, endOfStream bool) Result {
	vm := s.vm
	vm.mu.Lock()
	defer vm.mu.Unlock()
	s.req.addChunk(chunk)
	if s.skip() {
		return s.result(Continue, s.req.headers, s.req.body)
	}
	act, ended := s.callback(vm.fns.reqBody, len(s.req.body), endOfStream, true)
	if !ended {
		s.req.bodyReturned(act)
	}
	return s.result(act, s.req.headers, s.req.body)
}

// ResponseHeaders runs proxy_on_response_headers(id, header_count, end_of_stream). The
// headers must include ":status".
func (s *Stream) ResponseHeaders(h Headers, endOfStream bool) Result {
	vm := s.vm
	vm.mu.Lock()
	defer vm.mu.Unlock()
	if s.reply != nil {
		return s.result(Pause, s.resp.headers, nil)
	}
	s.resp.headers = copyHeaders(s.resp.headers, h)
	s.resp.state = halfHeld
	s.respCode = statusOf(s.resp.headers, 0)
	if s.skip() {
		return s.result(Continue, s.resp.headers, nil)
	}
	act, ended := s.callback(vm.fns.respHeaders, len(s.resp.headers), endOfStream, false)
	if !ended {
		s.resp.headersReturned(act)
		s.respCode = statusOf(s.resp.headers, s.respCode)
	}
	return s.result(act, s.resp.headers, nil)
}

// ResponseBody runs proxy_on_response_body(id, body_size, end_of_stream) for one chunk.
func (s *Stream) ResponseBody(chunk []byte, endOfStream bool) Result {
	vm := s.vm
	vm.mu.Lock()
	defer vm.mu.Unlock()
	if s.reply != nil {
		return s.result(Pause, s.resp.headers, s.reply.Body)
	}
	s.resp.addChunk(chunk)
	if s.skip() {
		return s.result(Continue, s.resp.headers, s.resp.body)
	}
	act, ended := s.callback(vm.fns.respBody, len(s.resp.body), endOfStream, false)
	if !ended {
		s.resp.bodyReturned(act)
	}
	return s.result(act, s.resp.headers, s.resp.body)
}

// Close ends the stream at access-log time: proxy_on_log, proxy_on_done, proxy_on_delete.
// They are skipped when the filter was left out or the VM has failed. Close is idempotent.
func (s *Stream) Close() {
	vm := s.vm
	vm.mu.Lock()
	defer vm.mu.Unlock()
	if s.state == streamClosed {
		return
	}
	was := s.state
	s.state = streamClosed
	if s.id != 0 && vm.streams[s.id] == s {
		delete(vm.streams, s.id)
	}
	if was != streamLive || vm.failed || s.gen != vm.gen {
		return
	}
	vm.stack[0] = uint64(s.id)
	if fn := vm.fns.log; fn != nil {
		s.inLog = true
		_, ok := vm.invoke(fn, s, 1)
		s.inLog = false
		if !ok {
			return
		}
	}
	if fn := vm.fns.done; fn != nil {
		vm.stack[0] = uint64(s.id)
		if _, ok := vm.invoke(fn, s, 1); !ok {
			return
		}
	}
	if fn := vm.fns.del; fn != nil {
		vm.stack[0] = uint64(s.id)
		vm.invoke(fn, s, 1)
	}
}

// Stream types of proxy_continue_stream and proxy_close_stream.
const (
	streamTypeRequest    = 0
	streamTypeResponse   = 1
	streamTypeDownstream = 2 // a network-filter stream: nothing to do in an HTTP context
	streamTypeUpstream   = 3
)

// hostContinueStream is proxy_continue_stream(stream_type): the paused direction of the
// effective stream is let go once the current callback has returned. Like Envoy, continuing
// either direction drops the request headers (and body) at once; from a root context it
// does nothing but that. Downstream is OK and does nothing, upstream UNIMPLEMENTED.
func hostContinueStream(vm *VM, s []uint64) Status { return vm.continueStream(u32(s, 0)) }

func (vm *VM) continueStream(typ uint32) Status {
	switch typ {
	case streamTypeRequest, streamTypeResponse:
	case streamTypeDownstream:
		return StatusOK
	case streamTypeUpstream:
		return StatusUnimplemented
	default:
		return StatusBadArgument
	}
	if st := vm.stream(); st != nil {
		if typ == streamTypeRequest {
			st.req.resumed = true // a response callback's Pause is not modelled: nothing to resume
		}
		st.req.state = halfPassed
	}
	return StatusOK
}

// hostCloseStream is proxy_close_stream(stream_type): accepted, not acted on (Envoy resets
// the stream after the callback, details "wasm_close_stream").
func hostCloseStream(vm *VM, s []uint64) Status {
	if u32(s, 0) > streamTypeUpstream {
		return StatusBadArgument
	}
	return StatusOK
}

// boolValue is a bool as a wasm i32 argument.
func boolValue(b bool) uint64 {
	if b {
		return 1
	}
	return 0
}
