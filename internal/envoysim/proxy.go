package envoysim

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/tokengate/tokengate/internal/wasmhost"
)

// Envoy's default limits on request headers (the HTTP connection manager's
// common_http_protocol_options.max_headers_count and max_request_headers_kb, which the
// generator leaves unset). Above either, Envoy's codec answers 431 before any filter runs.
const (
	maxRequestHeadersBytes = 60 << 10 // names and values, summed
	maxRequestHeaders      = 100
)

type connKey struct{}

// conn is one downstream connection, pinned to a worker.
type conn struct {
	id     uint64
	worker int
	local  string
}

// hopByHop are the connection-specific headers a proxy never forwards.
var hopByHop = map[string]bool{
	"connection": true, "keep-alive": true, "proxy-connection": true, "transfer-encoding": true,
	"upgrade": true, "te": true, "trailer": true, "proxy-authenticate": true, "proxy-authorization": true,
	"http2-settings": true,
}

// sortedHeaders appends hdr to h with lower-case names, sorted by name, without hop-by-hop
// headers or headers named in Connection.
func sortedHeaders(h wasmhost.Headers, hdr http.Header) wasmhost.Headers {
	drop := map[string]bool{}
	for _, v := range hdr.Values("Connection") {
		for _, name := range strings.Split(v, ",") {
			drop[strings.ToLower(strings.TrimSpace(name))] = true
		}
	}
	names := make([]string, 0, len(hdr))
	for k := range hdr {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		lk := strings.ToLower(k)
		if hopByHop[lk] || drop[lk] {
			continue
		}
		for _, v := range hdr[k] {
			h = append(h, [2]string{lk, v})
		}
	}
	return h
}

func newRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (it panics instead)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

// requestHeaders builds the headers a filter sees, the way Envoy's connection manager does:
// pseudo headers, then the request's headers, with x-forwarded-for, x-forwarded-proto and
// x-request-id set. Known difference: a client's x-envoy-* headers stay (Envoy strips them
// from external requests) and the router does not obey them.
func (s *Server) requestHeaders(r *http.Request) wasmhost.Headers {
	path := r.RequestURI
	if !strings.HasPrefix(path, "/") {
		path = r.URL.RequestURI()
	}
	h := wasmhost.Headers{{":authority", r.Host}, {":path", path}, {":method", r.Method}, {":scheme", "http"}}
	h = sortedHeaders(h, r.Header)
	if s.cfg.UseRemoteAddress {
		peer, _, err := net.SplitHostPort(r.RemoteAddr)
		if err != nil {
			peer = r.RemoteAddr
		}
		h = setHeader(h, "x-forwarded-proto", "http")
		if xff, ok := h.Get("x-forwarded-for"); ok && xff != "" {
			h = setHeader(h, "x-forwarded-for", xff+","+peer)
		} else {
			h = setHeader(h, "x-forwarded-for", peer)
		}
	} else if _, ok := h.Get("x-forwarded-proto"); !ok {
		h = append(h, [2]string{"x-forwarded-proto", "http"})
	}
	if id, ok := h.Get("x-request-id"); !ok || id == "" {
		h = setHeader(h, "x-request-id", newRequestID())
	}
	return h
}

// setHeader returns a copy of h where name (lower case) has exactly one value, in the place of
// its first occurrence, or appended.
func setHeader(h wasmhost.Headers, name, value string) wasmhost.Headers {
	out := make(wasmhost.Headers, 0, len(h)+1)
	done := false
	for _, kv := range h {
		if kv[0] == name {
			if !done {
				out = append(out, [2]string{name, value})
				done = true
			}
			continue
		}
		out = append(out, kv)
	}
	if !done {
		out = append(out, [2]string{name, value})
	}
	return out
}

// headerLimitError says which of Envoy's default request header limits r exceeds, "" for
// none. Sizes count names and values as Envoy's header map does; Host counts as a header.
func headerLimitError(r *http.Request) string {
	size, count := len("host")+len(r.Host), 1
	for k, vs := range r.Header {
		for _, v := range vs {
			size += len(k) + len(v)
			count++
		}
	}
	switch {
	case size > maxRequestHeadersBytes:
		return "headers size exceeds limit"
	case count > maxRequestHeaders:
		return "too many headers"
	}
	return ""
}

func protocol(r *http.Request) string {
	if r.ProtoMajor == 2 {
		return "HTTP/2"
	}
	return "HTTP/1.1"
}

// ServeHTTP runs one downstream request through the filter chain and the router.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c, _ := r.Context().Value(connKey{}).(*conn)
	if c == nil {
		c = &conn{}
	}
	s.stats.inc(s.httpPrefix + "downstream_rq_total")
	ex := &exchange{s: s, w: w, r: r, c: c, st: noFilter{}}
	ex.ctx, ex.cancel = context.WithCancel(r.Context())
	defer ex.finish()
	if r.ProtoMajor == 1 {
		// Answer while the request body is still arriving (a denied upload gets its 429 at
		// once), as Envoy does; without this Go reads the body before sending a response.
		if err := http.NewResponseController(w).EnableFullDuplex(); err != nil {
			s.log.Debug("full duplex not available", "err", err)
		}
	}
	if msg := headerLimitError(r); msg != "" {
		// Envoy's codec answers this before the filter chain exists.
		s.stats.inc(s.httpPrefix + "downstream_rq_too_large_headers")
		ex.localReply(http.StatusRequestHeaderFieldsTooLarge, "Request Header Fields Too Large")
		return
	}
	h := s.requestHeaders(r)
	path, _ := h.Get(":path")
	if strings.HasPrefix(path, "/") {
		// Envoy's connection manager normalizes :path (or refuses it) before the filter
		// chain exists; the filter, the router and the upstream see the result.
		norm, ok := s.cfg.normalizePath(path)
		if !ok {
			s.stats.inc(s.httpPrefix + "downstream_rq_failed_path_normalization")
			ex.localReply(http.StatusBadRequest, "")
			return
		}
		if norm != path {
			path = norm
			h = setHeader(h, ":path", path)
		}
	}
	ex.route = s.match(path)
	ex.info = wasmhost.StreamInfo{
		SourceAddress:      r.RemoteAddr,
		DestinationAddress: c.local,
		ConnectionID:       c.id,
		Protocol:           protocol(r),
	}
	if ex.route != nil {
		ex.info.RouteName, ex.info.ClusterName = ex.route.Name, ex.route.Cluster
	}
	if s.filter != nil {
		ex.st = s.filter.NewStream(c.worker, ex.info)
	}
	ex.decode(h, path)
}

// exchange is one downstream request on its way through the filter chain, the router and
// back: Envoy's active stream. The handler goroutine decodes (request headers, body chunks,
// the filter's resumes, in arrival order); once the filter chain lets the headers through,
// the router runs in its own goroutine and encodes the response. Whichever side answers
// first claims the response; a later answer from the other side is dropped.
type exchange struct {
	s     *Server
	w     http.ResponseWriter
	r     *http.Request
	c     *conn
	st    Stream
	info  wasmhost.StreamInfo
	route *Route // matched on the headers as received; the filter may change it
	// hasBody says whether the request has a body (its headers did not end the stream).
	hasBody bool

	// ctx ends when the client goes away or the exchange is over; the router's upstream
	// requests run under it.
	ctx    context.Context
	cancel context.CancelFunc

	// Set when the router starts (by the decoding goroutine, before the router runs).
	cluster    *cluster
	body       *requestBody  // nil for a request without a body
	routerDone chan struct{} // closed when the router is done; nil until it starts

	mu        sync.Mutex
	responded bool // a response was claimed
	reqEnded  bool // the request was read to its end (or failed)
	abort     bool // the response broke off: reset the downstream stream
}

// bodyChunk is what one read of the downstream body brought.
type bodyChunk struct {
	data []byte
	eos  bool  // the body is complete after data
	err  error // the read failed (not io.EOF)
}

// decode runs the request through the filter chain: headers, then body chunks as they
// arrive, starting the router once the filter lets the headers through. Known difference:
// Envoy's stream idle timeout (5 min, then 408) is not implemented, so a request the filter
// holds and never resumes waits until the client goes away.
func (ex *exchange) decode(h wasmhost.Headers, path string) {
	eos := ex.r.Body == nil || ex.r.Body == http.NoBody
	if eos {
		ex.setRequestEnded()
	}
	ex.hasBody = !eos
	res := ex.st.RequestHeaders(h, eos)
	if !ex.decoded(res, path, false) || eos && ex.routerDone != nil {
		return
	}
	var chunks chan bodyChunk
	if !eos {
		chunks = make(chan bodyChunk)
		go ex.readBody(chunks)
	}
	for {
		select {
		case ch := <-chunks:
			if ch.err != nil {
				ex.readFailed(ch.err)
				return
			}
			if ch.eos {
				eos, chunks = true, nil
				ex.setRequestEnded()
			}
			res := ex.st.RequestBody(ch.data, ch.eos)
			if !ex.decoded(res, path, true) {
				return
			}
		case res := <-ex.st.Resumed():
			if !ex.decoded(res, path, true) {
				return
			}
		case <-ex.routerDone:
			return // answered: the rest of the request is not needed
		case <-ex.ctx.Done():
			return // the client went away, or the exchange was answered
		}
		if eos && ex.routerDone != nil {
			if ex.body != nil {
				ex.body.end(nil)
			}
			return
		}
	}
}

// decoded applies the result of a request callback or a resume. isBody says whether res came
// from a body callback or a resume (so res.Body is data that goes on). It reports whether
// decoding goes on.
func (ex *exchange) decoded(res wasmhost.Result, path string, isBody bool) bool {
	if res.LocalReply != nil {
		ex.filterReply(res.LocalReply)
		return false
	}
	if res.Action != wasmhost.Continue {
		// Held by the filter. What it buffers counts against the buffer limit, as in Envoy's
		// connection manager (413 when a filter buffers more).
		if isBody && len(res.Body) > defaultBufferLimit {
			ex.s.stats.inc(ex.s.httpPrefix + "downstream_rq_too_large")
			ex.localReply(http.StatusRequestEntityTooLarge, "Payload Too Large")
			return false
		}
		return true
	}
	if ex.routerDone == nil && !ex.startRouter(res.Headers, path) {
		return false
	}
	if isBody && len(res.Body) > 0 && ex.body != nil {
		if ex.body.write(res.Body) {
			ex.s.stats.inc(ex.cluster.prefix + "retry_or_shadow_abandoned")
		}
	}
	return true
}

// readBody reads the downstream body in chunks and sends them to the decoder until the end,
// an error, or the end of the exchange.
func (ex *exchange) readBody(out chan<- bodyChunk) {
	left := ex.r.ContentLength // -1 when unknown (chunked, HTTP/2)
	for {
		buf := make([]byte, 32<<10) // the decoder keeps the chunk: a fresh buffer each time
		n, err := ex.r.Body.Read(buf)
		if left > 0 {
			left -= int64(n)
		}
		ch := bodyChunk{data: buf[:n], eos: err == io.EOF || left == 0}
		if err != nil && err != io.EOF {
			ch.err = err
		}
		if n == 0 && !ch.eos && ch.err == nil {
			continue
		}
		select {
		case out <- ch:
		case <-ex.ctx.Done():
			return
		}
		if ch.eos || ch.err != nil {
			return
		}
	}
}

// readFailed answers a request whose body could not be read (a malformed chunked body, a
// client that went away): 400, as Envoy's codec does, if no response has started.
func (ex *exchange) readFailed(err error) {
	ex.setRequestEnded()
	if errors.Is(err, io.ErrUnexpectedEOF) {
		ex.s.stats.inc(ex.s.httpPrefix + "downstream_rq_rx_reset")
	} else {
		ex.s.stats.inc(ex.s.httpPrefix + "downstream_cx_protocol_error")
	}
	ex.localReply(http.StatusBadRequest, "Bad Request")
	if ex.body != nil {
		ex.body.end(err)
	}
}

func (ex *exchange) setRequestEnded() {
	ex.mu.Lock()
	ex.reqEnded = true
	ex.mu.Unlock()
}

// claim takes the right to answer; false when the other side already has.
func (ex *exchange) claim() bool {
	ex.mu.Lock()
	defer ex.mu.Unlock()
	if ex.responded {
		return false
	}
	ex.responded = true
	return true
}

// finish ends the exchange on the handler goroutine: it waits for the router, stops the body
// reader, closes the filter stream, and resets the downstream stream if the response broke
// off.
func (ex *exchange) finish() {
	if ex.routerDone != nil {
		<-ex.routerDone
	}
	ex.mu.Lock()
	ended, abort := ex.reqEnded, ex.abort
	ex.mu.Unlock()
	if !ended {
		// A body read may be blocked: end it now (the connection closes after the reply).
		_ = http.NewResponseController(ex.w).SetReadDeadline(time.Now()) // unsupported writers have no pending read
	}
	ex.cancel()
	ex.st.Close()
	if abort {
		panic(http.ErrAbortHandler)
	}
}

// startRouter hands the request to the router: it finds the route again if the filter changed
// :path (Envoy clears its route cache then), answers 404 when none matches, and otherwise
// starts the router's goroutine. It reports whether the router started.
func (ex *exchange) startRouter(h wasmhost.Headers, path string) bool {
	h = slices.Clone(h) // the filter's headers belong to its stream
	if p, _ := h.Get(":path"); p != path {
		ex.route = ex.s.match(p)
	}
	if ex.route == nil {
		ex.s.stats.inc(ex.s.httpPrefix + "no_route")
		ex.localReply(http.StatusNotFound, "")
		return false
	}
	ex.cluster = ex.s.clusters[ex.route.Cluster]
	if ex.hasBody {
		rp := ex.route.Retry
		ex.body = newRequestBody(defaultBufferLimit, rp != nil && rp.NumRetries > 0)
	}
	done := make(chan struct{})
	ex.routerDone = done
	go func() {
		defer close(done)
		if ex.body != nil {
			defer ex.body.finish()
		}
		ex.forward(h)
	}()
	return true
}
