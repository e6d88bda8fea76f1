package envoysim

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// maxRequestBody is the most envoysim buffers of a request body (it buffers whole bodies, so
// that retries can resend them). Larger requests get 413.
const maxRequestBody = 64 << 20

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
func sortedHeaders(h Headers, hdr http.Header) Headers {
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
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

// requestHeaders builds the headers a filter sees, the way Envoy's connection manager does:
// pseudo headers, then the request's headers, with x-forwarded-for, x-forwarded-proto and
// x-request-id set.
func (s *Server) requestHeaders(r *http.Request) Headers {
	path := r.RequestURI
	if !strings.HasPrefix(path, "/") {
		path = r.URL.RequestURI()
	}
	h := Headers{{":authority", r.Host}, {":path", path}, {":method", r.Method}, {":scheme", "http"}}
	h = sortedHeaders(h, r.Header)
	peer, _, _ := net.SplitHostPort(r.RemoteAddr)
	if s.cfg.UseRemoteAddress {
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

// setHeader replaces every value of name with one value, or appends it.
func setHeader(h Headers, name, value string) Headers {
	out := h[:0:0]
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

// match finds the route for an authority and path, nil when none matches.
func (s *Server) match(authority, path string) *Route {
	vh := s.virtualHost(authority)
	if vh == nil {
		return nil
	}
	bare := path
	if i := strings.IndexAny(bare, "?#"); i >= 0 {
		bare = bare[:i]
	}
	for i := range vh.Routes {
		r := &vh.Routes[i]
		if r.Exact && bare == r.Path || !r.Exact && strings.HasPrefix(path, r.Prefix) {
			return r
		}
	}
	return nil
}

// virtualHost picks the virtual host for an authority like Envoy: an exact domain, then the
// longest suffix wildcard ("*.example.com"), then the longest prefix wildcard ("foo.*"), then "*".
func (s *Server) virtualHost(authority string) *VirtualHost {
	authority = strings.ToLower(authority)
	candidates := []string{authority}
	if h, _, err := net.SplitHostPort(authority); err == nil {
		candidates = append(candidates, h)
	}
	for _, a := range candidates {
		var best *VirtualHost
		bestLen, bestKind := -1, 4
		for i := range s.cfg.VirtualHosts {
			vh := &s.cfg.VirtualHosts[i]
			for _, d := range vh.Domains {
				d = strings.ToLower(d)
				kind, n := 4, 0
				switch {
				case d == a:
					kind, n = 0, len(d)
				case d == "*":
					kind = 3
				case strings.HasPrefix(d, "*") && strings.HasSuffix(a, d[1:]) && len(a) > len(d)-1:
					kind, n = 1, len(d)
				case strings.HasSuffix(d, "*") && strings.HasPrefix(a, d[:len(d)-1]) && len(a) > len(d)-1:
					kind, n = 2, len(d)
				default:
					continue
				}
				if kind < bestKind || kind == bestKind && n > bestLen {
					best, bestKind, bestLen = vh, kind, n
				}
			}
		}
		if best != nil {
			return best
		}
	}
	return nil
}

// ServeHTTP runs one downstream request through the filter chain and the router.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c, _ := r.Context().Value(connKey{}).(*conn)
	if c == nil {
		c = &conn{}
	}
	s.stats.inc(s.httpPrefix + "downstream_rq_total")
	h := s.requestHeaders(r)
	body, err := io.ReadAll(io.LimitReader(r.Body, maxRequestBody+1))
	if err != nil {
		s.stats.inc(s.httpPrefix + "downstream_rq_rx_reset")
		return
	}
	authority, _ := h.Get(":authority")
	path, _ := h.Get(":path")
	route := s.match(authority, path)
	info := StreamInfo{
		SourceAddress:      r.RemoteAddr,
		DestinationAddress: c.local,
		ConnectionID:       c.id,
		Protocol:           r.Proto,
	}
	if route != nil {
		info.RouteName, info.ClusterName = route.Name, route.Cluster
	}
	var st Stream
	if s.filter != nil {
		st = s.filter.NewStream(c.worker, info)
		defer st.Close()
	}
	if len(body) > maxRequestBody {
		s.localReply(w, st, http.StatusRequestEntityTooLarge, "Payload Too Large")
		return
	}
	if st != nil {
		res := st.RequestHeaders(h, len(body) == 0)
		if res.LocalReply != nil {
			s.writeLocalReply(w, res.LocalReply)
			return
		}
		if res.Headers != nil {
			h = res.Headers
		}
		if len(body) > 0 {
			res = st.RequestBody(body, true)
			if res.LocalReply != nil {
				s.writeLocalReply(w, res.LocalReply)
				return
			}
			if res.Body != nil {
				body = res.Body
			}
		}
		// A filter that changed the path or authority changes the route (Envoy clears its
		// route cache when a filter modifies headers).
		a2, _ := h.Get(":authority")
		p2, _ := h.Get(":path")
		if a2 != authority || p2 != path {
			route = s.match(a2, p2)
		}
	}
	if route == nil {
		s.stats.inc(s.httpPrefix + "no_route")
		s.localReply(w, st, http.StatusNotFound, "")
		return
	}
	s.forward(w, r.Context(), c, st, route, h, body)
}

// failure is why an upstream attempt got no response.
type failure int

const (
	failConnect failure = iota + 1 // could not connect
	failReset                      // connected, but no response headers
	failPerTry                     // per_try_timeout expired
)

func (p *RetryPolicy) retriable(status int, f failure) bool {
	if p == nil {
		return false
	}
	switch f {
	case failConnect:
		return p.On["connect-failure"] || p.On["5xx"] || p.On["gateway-error"] || p.On["reset"]
	case failReset, failPerTry:
		return p.On["5xx"] || p.On["gateway-error"] || p.On["reset"]
	}
	return p.On["5xx"] && status >= 500 ||
		p.On["gateway-error"] && (status == 502 || status == 503 || status == 504) ||
		p.On["retriable-4xx"] && status == 409 ||
		p.On["retriable-status-codes"] && p.StatusCodes[status]
}

func isConnectError(err error) bool {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return true
	}
	return errors.Is(err, syscall.ECONNREFUSED)
}

// forward is the router: it picks hosts, retries and writes the response.
func (s *Server) forward(w http.ResponseWriter, ctx context.Context, c *conn, st Stream, route *Route, h Headers, body []byte) {
	cl := s.clusters[route.Cluster]
	if cl.activeRequests.Add(1) > int64(cl.cfg.MaxRequests) {
		cl.activeRequests.Add(-1)
		s.stats.inc(cl.prefix + "upstream_rq_pending_overflow")
		s.localReply(w, st, http.StatusServiceUnavailable, "upstream connect error or disconnect/reset before headers. reset reason: overflow", [2]string{"x-envoy-overloaded", "true"})
		return
	}
	defer cl.activeRequests.Add(-1)
	if route.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, route.Timeout)
		defer cancel()
	}
	method, _ := h.Get(":method")
	authority, _ := h.Get(":authority")
	path, _ := h.Get(":path")
	if route.HasRewrite && !route.Exact {
		path = route.PrefixRewrite + path[len(route.Prefix):]
	}
	expected := route.Timeout
	rp := route.Retry
	if rp != nil && rp.PerTryTimeout > 0 && (expected == 0 || rp.PerTryTimeout < expected) {
		expected = rp.PerTryTimeout
	}
	up := make(http.Header, len(h)+1)
	for _, kv := range h {
		// Expect: 100-continue was answered downstream already; Envoy does not forward it.
		if !strings.HasPrefix(kv[0], ":") && kv[0] != "content-length" && kv[0] != "host" && kv[0] != "expect" {
			k := http.CanonicalHeaderKey(kv[0])
			up[k] = append(up[k], kv[1])
		}
	}
	if _, ok := up["User-Agent"]; !ok {
		up["User-Agent"] = []string{""} // Envoy adds none; an empty value stops Go adding its own
	}
	if expected > 0 {
		up.Set("X-Envoy-Expected-Rq-Timeout-Ms", strconv.FormatInt(expected.Milliseconds(), 10))
	}
	var tried []*host
	retries, holdingRetry := 0, false
	defer func() {
		if holdingRetry {
			cl.activeRetries.Add(-1)
		}
	}()
	for {
		attempts := 0
		var exclude []*host
		if rp != nil && rp.PreviousHosts {
			exclude, attempts = tried, rp.HostSelectionAttempts
		}
		hst := cl.pick(c.worker, exclude, attempts)
		if hst == nil {
			s.stats.inc(cl.prefix + "upstream_cx_none_healthy")
			s.localReply(w, st, http.StatusServiceUnavailable, "no healthy upstream")
			return
		}
		tried = append(tried, hst)
		tryCtx, cancelTry := ctx, context.CancelFunc(func() {})
		if rp != nil && rp.PerTryTimeout > 0 {
			tryCtx, cancelTry = context.WithTimeout(ctx, rp.PerTryTimeout)
		}
		start := time.Now()
		resp, err := s.roundTrip(tryCtx, cl, hst, method, authority, path, up, body)
		s.stats.inc(cl.prefix + "upstream_rq_total")
		hst.rqTotal.Add(1)
		if holdingRetry {
			cl.activeRetries.Add(-1)
			holdingRetry = false
		}
		var f failure
		status := 0
		switch {
		case err != nil && ctx.Err() != nil:
			cancelTry()
			cl.outcome(hst, http.StatusGatewayTimeout)
			s.stats.inc(cl.prefix + "upstream_rq_timeout")
			s.localReply(w, st, http.StatusGatewayTimeout, "upstream request timeout")
			return
		case err != nil && tryCtx.Err() != nil:
			f, status = failPerTry, http.StatusGatewayTimeout
			s.stats.inc(cl.prefix + "upstream_rq_per_try_timeout")
		case err != nil && isConnectError(err):
			f, status = failConnect, http.StatusServiceUnavailable
		case err != nil:
			f, status = failReset, http.StatusServiceUnavailable
		default:
			status = resp.StatusCode
		}
		cl.outcome(hst, status)
		if err == nil {
			s.stats.inc(cl.prefix + "upstream_rq_" + strconv.Itoa(status/100) + "xx")
			s.stats.inc(cl.prefix + "upstream_rq_" + strconv.Itoa(status))
		}
		if retries < maxRetries(rp) && rp.retriable(status, f) {
			if cl.activeRetries.Add(1) > int64(cl.cfg.MaxRetries) {
				cl.activeRetries.Add(-1)
				s.stats.inc(cl.prefix + "upstream_rq_retry_overflow")
			} else {
				holdingRetry = true
				retries++
				s.stats.inc(cl.prefix + "upstream_rq_retry")
				if resp != nil {
					_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
					_ = resp.Body.Close()
				}
				cancelTry()
				if !sleepCtx(ctx, backoff(rp, retries)) {
					cl.outcome(hst, http.StatusGatewayTimeout)
					s.stats.inc(cl.prefix + "upstream_rq_timeout")
					s.localReply(w, st, http.StatusGatewayTimeout, "upstream request timeout")
					return
				}
				continue
			}
		}
		if err != nil {
			cancelTry()
			switch f {
			case failPerTry:
				s.localReply(w, st, http.StatusGatewayTimeout, "upstream request timeout")
			case failConnect:
				s.localReply(w, st, http.StatusServiceUnavailable, "upstream connect error or disconnect/reset before headers. reset reason: connection failure")
			default:
				s.localReply(w, st, http.StatusServiceUnavailable, "upstream connect error or disconnect/reset before headers. reset reason: connection termination")
			}
			return
		}
		if retries > 0 {
			s.stats.inc(cl.prefix + "upstream_rq_retry_success")
		}
		s.writeUpstream(w, st, method, resp, time.Since(start))
		_ = resp.Body.Close()
		cancelTry()
		return
	}
}

func maxRetries(p *RetryPolicy) int {
	if p == nil {
		return 0
	}
	return p.NumRetries
}

// backoff is Envoy's fully jittered exponential back-off before retry n (from 1).
func backoff(p *RetryPolicy, n int) time.Duration {
	ceil := p.BackoffBase * time.Duration((1<<min(n, 20))-1)
	if ceil > p.BackoffMax || ceil <= 0 {
		ceil = p.BackoffMax
	}
	if ceil <= 0 {
		return 0
	}
	return time.Duration(mrand.Int64N(int64(ceil) + 1))
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func (s *Server) roundTrip(ctx context.Context, cl *cluster, h *host, method, authority, path string, hdr http.Header, body []byte) (*http.Response, error) {
	// Opaque keeps the path byte for byte (no re-encoding), as Envoy forwards it.
	p, q, hasQuery := strings.Cut(path, "?")
	u := &url.URL{Scheme: "http", Host: h.addr, Opaque: p, RawQuery: q, ForceQuery: hasQuery && q == ""}
	req := &http.Request{
		Method:     method,
		URL:        u,
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Header:     hdr.Clone(),
		Host:       authority,
	}
	if len(body) > 0 {
		req.Body = io.NopCloser(strings.NewReader(string(body)))
		req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(string(body))), nil }
		req.ContentLength = int64(len(body))
	} // else: Go sends "Content-Length: 0" itself for POST, PUT and PATCH
	req = req.WithContext(ctx)
	return cl.transport.RoundTrip(req)
}

// writeUpstream sends an upstream response downstream through the filter's response
// callbacks.
func (s *Server) writeUpstream(w http.ResponseWriter, st Stream, method string, resp *http.Response, took time.Duration) {
	rh := Headers{{":status", strconv.Itoa(resp.StatusCode)}}
	rh = sortedHeaders(rh, resp.Header)
	rh = setHeader(rh, "x-envoy-upstream-service-time", strconv.FormatInt(took.Milliseconds(), 10))
	rh = setHeader(rh, "server", serverName)
	noBody := method == http.MethodHead || resp.StatusCode == http.StatusNoContent ||
		resp.StatusCode == http.StatusNotModified || resp.ContentLength == 0
	if st != nil {
		res := st.ResponseHeaders(rh, noBody)
		if res.LocalReply != nil {
			s.writeLocalReply(w, res.LocalReply)
			return
		}
		if res.Headers != nil {
			rh = res.Headers
		}
	}
	status := writeHeaders(w, rh)
	s.countDownstream(status)
	if noBody {
		return
	}
	flusher, _ := w.(http.Flusher)
	buf := make([]byte, 32<<10)
	for {
		n, err := resp.Body.Read(buf)
		if n > 0 {
			chunk := buf[:n]
			if st != nil {
				if res := st.ResponseBody(chunk, false); res.Body != nil {
					chunk = res.Body
				}
			}
			if _, werr := w.Write(chunk); werr != nil {
				return
			}
			if flusher != nil {
				flusher.Flush()
			}
		}
		if err == io.EOF {
			if st != nil {
				st.ResponseBody(nil, true)
			}
			return
		}
		if err != nil {
			// The upstream reset mid-body, or the route timeout fired: like Envoy, reset the
			// downstream stream.
			panic(http.ErrAbortHandler)
		}
	}
}

// writeHeaders writes response headers from a header list and returns the status.
func writeHeaders(w http.ResponseWriter, rh Headers) int {
	status := http.StatusOK
	out := w.Header()
	for _, kv := range rh {
		if kv[0] == ":status" {
			if n, err := strconv.Atoi(kv[1]); err == nil {
				status = n
			}
			continue
		}
		if strings.HasPrefix(kv[0], ":") || hopByHop[kv[0]] {
			continue
		}
		k := http.CanonicalHeaderKey(kv[0])
		out[k] = append(out[k], kv[1])
	}
	w.WriteHeader(status)
	return status
}

func (s *Server) countDownstream(status int) {
	s.stats.inc(s.httpPrefix + "downstream_rq_" + strconv.Itoa(status/100) + "xx")
}

// localReply sends a reply generated by envoysim itself (the router or the connection
// manager): like Envoy's, it passes through the filter's response callbacks.
func (s *Server) localReply(w http.ResponseWriter, st Stream, status int, body string, extra ...[2]string) {
	rh := Headers{{":status", strconv.Itoa(status)}}
	if body != "" {
		rh = append(rh, [2]string{"content-length", strconv.Itoa(len(body))}, [2]string{"content-type", "text/plain"})
	}
	rh = append(rh, extra...)
	rh = append(rh, [2]string{"server", serverName})
	if st != nil {
		res := st.ResponseHeaders(rh, body == "")
		if res.LocalReply != nil {
			s.writeLocalReply(w, res.LocalReply)
			return
		}
		if res.Headers != nil {
			rh = res.Headers
		}
		if body != "" {
			st.ResponseBody([]byte(body), true)
		}
	}
	s.countDownstream(writeHeaders(w, rh))
	_, _ = io.WriteString(w, body)
}

// writeLocalReply writes a filter's local reply, which has already been through the filter's
// response callbacks.
func (s *Server) writeLocalReply(w http.ResponseWriter, lr *LocalReply) {
	rh := Headers{{":status", strconv.Itoa(lr.Status)}}
	hasLen := false
	for _, kv := range lr.Headers {
		if kv[0] == ":status" {
			rh[0] = kv
			continue
		}
		if kv[0] == "content-length" {
			hasLen = true
		}
		rh = append(rh, kv)
	}
	if !hasLen {
		rh = append(rh, [2]string{"content-length", strconv.Itoa(len(lr.Body))})
	}
	if _, ok := rh.Get("content-type"); !ok && len(lr.Body) > 0 {
		rh = append(rh, [2]string{"content-type", "text/plain"})
	}
	if _, ok := rh.Get("server"); !ok {
		rh = append(rh, [2]string{"server", serverName})
	}
	s.countDownstream(writeHeaders(w, rh))
	_, _ = w.Write(lr.Body)
}
