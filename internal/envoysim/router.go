package envoysim

import (
	"context"
	"errors"
	"io"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/tokengate/tokengate/internal/wasmhost"
)

// match finds the route for a path in the one virtual host (domains "*"), nil when none
// matches. Like Envoy's prefix match, the query string takes part.
func (s *Server) match(path string) *Route {
	vh := &s.cfg.VirtualHosts[0]
	for i := range vh.Routes {
		if r := &vh.Routes[i]; strings.HasPrefix(path, r.Prefix) {
			return r
		}
	}
	return nil
}

// failure is why an upstream attempt got no response.
type failure int

const (
	failConnect failure = iota + 1 // could not connect
	failReset                      // connected, but no response headers
	failTimeout                    // the route timeout expired: never retried
	failGone                       // the exchange ended (client gone, or answered already)
)

// retriable reports whether the policy retries an attempt that ended with status (the
// response's, or what the failure counts as) and failure f.
func (p *RetryPolicy) retriable(status int, f failure) bool {
	switch f {
	case failConnect:
		return p.On["connect-failure"] || p.On["5xx"] || p.On["reset"]
	case failReset:
		return p.On["5xx"] || p.On["reset"]
	case failTimeout, failGone:
		return false
	}
	return p.On["5xx"] && status >= 500
}

// retryState is the retry bookkeeping of one request, like Envoy's RetryStateImpl: the policy,
// the retries spent, the hosts tried (for the previous_hosts predicate), and the slot of the
// cluster's max_retries circuit breaker, held from a retry's decision until its attempt ends.
// Used by the router goroutine only.
type retryState struct {
	policy  *RetryPolicy // nil: no retries
	cl      *cluster
	body    *requestBody // nil: the request has no body
	retries int
	tried   []*host
	holding bool
}

// pick chooses the host of the next attempt.
func (rs *retryState) pick(worker int) *host {
	var exclude []*host
	attempts := 0
	if rs.policy != nil && rs.policy.PreviousHosts {
		exclude, attempts = rs.tried, rs.policy.HostSelectionAttempts
	}
	h := rs.cl.pick(worker, exclude, attempts)
	if h != nil {
		rs.tried = append(rs.tried, h)
	}
	return h
}

// attemptDone releases the circuit breaker slot of the retry that just ran.
func (rs *retryState) attemptDone() {
	if rs.holding {
		rs.cl.activeRetries.Add(-1)
		rs.holding = false
	}
}

// shouldRetry decides whether attempt a is retried: the policy allows it, retries are left,
// the body can be sent again, and the max_retries circuit breaker has room (else
// upstream_rq_retry_overflow).
func (rs *retryState) shouldRetry(a *attempt) bool {
	p := rs.policy
	if p == nil || rs.retries >= p.NumRetries || !p.retriable(a.status, a.fail) {
		return false
	}
	if rs.body != nil && !rs.body.replayable() {
		return false // retry_or_shadow_abandoned was counted when the body outgrew the buffer
	}
	if rs.cl.activeRetries.Add(1) > int64(rs.cl.cfg.MaxRetries) {
		rs.cl.activeRetries.Add(-1)
		rs.cl.stats.inc(rs.cl.prefix + "upstream_rq_retry_overflow")
		return false
	}
	rs.holding = true
	rs.retries++
	rs.cl.stats.inc(rs.cl.prefix + "upstream_rq_retry")
	return true
}

// backoff is Envoy's fully jittered exponential back-off before the current retry.
func (rs *retryState) backoff() time.Duration {
	p := rs.policy
	ceil := p.BackoffBase * time.Duration((1<<min(rs.retries, 20))-1)
	if ceil > p.BackoffMax || ceil <= 0 {
		ceil = p.BackoffMax
	}
	if ceil <= 0 {
		return 0
	}
	return time.Duration(retryJitter(int64(ceil) + 1))
}

// retryJitter draws a back-off in [0, n); tests make it exact.
var retryJitter = mrand.Int64N

// attempt is one try of the request on one upstream host.
type attempt struct {
	host   *host
	resp   *http.Response // nil when the try failed
	fail   failure        // why it failed; 0 with a response
	status int            // the response's status, or the status the failure counts as
	took   time.Duration
	cancel context.CancelFunc // ends the try; call when done with resp
}

// upstreamRequest is what every attempt of a request sends.
type upstreamRequest struct {
	method, authority, path string
	header                  http.Header
}

// newUpstreamRequest builds the upstream request from the headers after the filter chain:
// pseudo headers become the request line, prefix_rewrite applies, hop-by-hop headers and
// Expect (answered downstream) are dropped, and x-envoy-expected-rq-timeout-ms is set.
func newUpstreamRequest(route *Route, h wasmhost.Headers) upstreamRequest {
	u := upstreamRequest{header: make(http.Header, len(h)+1)}
	u.method, _ = h.Get(":method")
	u.authority, _ = h.Get(":authority")
	u.path, _ = h.Get(":path")
	if route.HasRewrite {
		u.path = route.PrefixRewrite + u.path[len(route.Prefix):]
	}
	for _, kv := range h {
		if !strings.HasPrefix(kv[0], ":") && kv[0] != "content-length" && kv[0] != "host" && kv[0] != "expect" {
			k := http.CanonicalHeaderKey(kv[0])
			u.header[k] = append(u.header[k], kv[1])
		}
	}
	if _, ok := u.header["User-Agent"]; !ok {
		u.header["User-Agent"] = []string{""} // Envoy adds none; an empty value stops Go adding its own
	}
	if route.Timeout > 0 {
		u.header.Set("X-Envoy-Expected-Rq-Timeout-Ms", strconv.FormatInt(route.Timeout.Milliseconds(), 10))
	}
	return u
}

// Router local replies, with Envoy's texts (shortened: no transport failure reason).
const (
	replyTimeout       = "upstream request timeout"
	replyNoHealthy     = "no healthy upstream"
	replyOverflow      = "upstream connect error or disconnect/reset before headers. reset reason: overflow"
	replyConnectFail   = "upstream connect error or disconnect/reset before headers. reset reason: connection failure"
	replyReset         = "upstream connect error or disconnect/reset before headers. reset reason: connection termination"
	replyBufferOverrun = "exceeded request buffer limit while retrying upstream"
)

// forward is the router: it applies the max_requests circuit breaker and the route timeout,
// then runs attempts on hosts, retrying as the route's policy says, and sends the response or
// a local reply. It runs on the router goroutine.
func (ex *exchange) forward(h wasmhost.Headers) {
	s, route, cl := ex.s, ex.route, ex.cluster
	if cl.activeRequests.Add(1) > int64(cl.cfg.MaxRequests) {
		cl.activeRequests.Add(-1)
		s.stats.inc(cl.prefix + "upstream_rq_pending_overflow")
		ex.localReply(http.StatusServiceUnavailable, replyOverflow, [2]string{"x-envoy-overloaded", "true"})
		return
	}
	defer cl.activeRequests.Add(-1)
	ctx := ex.ctx
	if route.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, route.Timeout)
		defer cancel()
	}
	up := newUpstreamRequest(route, h)
	rs := &retryState{policy: route.Retry, cl: cl, body: ex.body}
	defer rs.attemptDone()
	for {
		hst := rs.pick(ex.c.worker)
		if hst == nil {
			s.stats.inc(cl.prefix + "upstream_cx_none_healthy")
			ex.localReply(http.StatusServiceUnavailable, replyNoHealthy)
			return
		}
		a := ex.try(ctx, hst, up)
		rs.attemptDone()
		switch a.fail {
		case failGone:
			a.cancel()
			return
		case failTimeout:
			a.cancel()
			s.stats.inc(cl.prefix + "upstream_rq_timeout")
			ex.localReply(http.StatusGatewayTimeout, replyTimeout)
			return
		}
		if rs.shouldRetry(a) {
			a.discard()
			if !sleepCtx(ctx, rs.backoff()) {
				if ctx.Err() != nil && ex.ctx.Err() == nil {
					cl.outcome(hst, http.StatusGatewayTimeout)
					s.stats.inc(cl.prefix + "upstream_rq_timeout")
					ex.localReply(http.StatusGatewayTimeout, replyTimeout)
				}
				return
			}
			if rs.body != nil && !rs.body.replayable() {
				// The body outgrew the buffer during the back-off: Envoy gives up with 507.
				ex.localReply(http.StatusInsufficientStorage, replyBufferOverrun)
				return
			}
			continue
		}
		ex.finishAttempt(a, up.method, rs.retries)
		return
	}
}

// finishAttempt answers with the attempt that was not retried: the upstream's response, or the
// local reply for its failure.
func (ex *exchange) finishAttempt(a *attempt, method string, retries int) {
	defer a.cancel()
	switch a.fail {
	case failConnect:
		ex.localReply(http.StatusServiceUnavailable, replyConnectFail)
	case failReset:
		ex.localReply(http.StatusServiceUnavailable, replyReset)
	default:
		if retries > 0 {
			ex.s.stats.inc(ex.cluster.prefix + "upstream_rq_retry_success")
		}
		ex.writeUpstream(method, a.resp, a.took)
		if err := a.resp.Body.Close(); err != nil {
			ex.s.log.Debug("closing an upstream response", "err", err)
		}
	}
}

// try runs one attempt on h and reports its outcome to the cluster's stats and outlier
// detection.
func (ex *exchange) try(ctx context.Context, h *host, up upstreamRequest) *attempt {
	cl := ex.cluster
	a := &attempt{host: h}
	tryCtx, cancel := context.WithCancel(ctx)
	a.cancel = cancel
	start := time.Now()
	resp, err := ex.roundTrip(tryCtx, h, up)
	a.took = time.Since(start)
	cl.stats.inc(cl.prefix + "upstream_rq_total")
	h.rqTotal.Add(1)
	switch {
	case err == nil:
		a.resp, a.status = resp, resp.StatusCode
		cl.stats.inc(cl.prefix + "upstream_rq_" + strconv.Itoa(a.status/100) + "xx")
		cl.stats.inc(cl.prefix + "upstream_rq_" + strconv.Itoa(a.status))
	case ex.ctx.Err() != nil:
		a.fail = failGone
		return a // not the host's fault
	case ctx.Err() != nil:
		a.fail, a.status = failTimeout, http.StatusGatewayTimeout
	case isConnectError(err):
		a.fail, a.status = failConnect, http.StatusServiceUnavailable
	default:
		a.fail, a.status = failReset, http.StatusServiceUnavailable
	}
	cl.outcome(h, a.status)
	return a
}

// discard drops an attempt that will be retried.
func (a *attempt) discard() {
	if a.resp != nil {
		_, _ = io.Copy(io.Discard, io.LimitReader(a.resp.Body, 1<<20)) // only to reuse the connection
		_ = a.resp.Body.Close()                                        // the attempt is over either way
	}
	a.cancel()
}

func isConnectError(err error) bool {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return true
	}
	return errors.Is(err, syscall.ECONNREFUSED)
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

// roundTrip sends one attempt to h, with the request body (if any) read from its start.
func (ex *exchange) roundTrip(ctx context.Context, h *host, up upstreamRequest) (*http.Response, error) {
	// Opaque keeps the path byte for byte (no re-encoding), as Envoy forwards it.
	p, q, hasQuery := strings.Cut(up.path, "?")
	u := &url.URL{Scheme: "http", Host: h.addr, Opaque: p, RawQuery: q, ForceQuery: hasQuery && q == ""}
	req := &http.Request{
		Method:     up.method,
		URL:        u,
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Header:     up.header.Clone(),
		Host:       up.authority,
	}
	if b := ex.body; b != nil {
		req.Body = b.reader(ctx)
		req.ContentLength = ex.r.ContentLength // -1 (chunked) when unknown
		if req.ContentLength == 0 {
			req.ContentLength = -1
		}
		req.GetBody = func() (io.ReadCloser, error) {
			if !b.replayable() {
				return nil, errBodyGone
			}
			return b.reader(ctx), nil
		}
	} // else: Go sends "Content-Length: 0" itself for POST, PUT and PATCH
	return ex.cluster.transport.RoundTrip(req.WithContext(ctx))
}
